//! Moving a client between nodes, on the shard its client id is homed on.
//!
//! A connect is answered once this node owns the client id in etcd:
//!
//! ```text
//! connect ──▶ Claim ──▶ Claimed / AlreadyOwned ─────────────────────────────▶ Ok
//!               │
//!               └──▶ HeldBy(owner) ──▶ TakeoverRequest to the owner
//!                        │
//!                        ├──▶ SessionTransfer(session) ──▶ install it here
//!                        │        └──▶ ClaimAfterRelease ──▶ Claimed ──▶ TransferInstalled, Ok
//!                        ├──▶ SessionTransfer(busy) ──▶ after TAKEOVER_RETRY, Claim again
//!                        ├──▶ SessionTransfer(other user) ──▶ refused
//!                        └──▶ nothing by the deadline ──▶ refused (etcd unavailable)
//! ```
//!
//! The owner, asked: refuses when the session is another user's; answers "busy" when it has
//! handed the client to a third node that has not confirmed yet; else stops serving the client
//! (its connection is closed with 0x8E), tells the control plane it no longer owns it, sends
//! the session and keeps a *parked* copy. The copy goes when the new owner confirms it
//! installed the session and owns the client (`TransferInstalled`); with no word by
//! [`HandoverConfig::park_for`], it becomes the session here again (offline). The same peer
//! asking again (its claim failed, or it never got the transfer) gets the same copy.
//!
//! The session is installed on arrival, before the claim: from then on, a peer that takes the
//! client over from this node finds it here. When the claim fails the installed session stays
//! (offline): the claim may have committed all the same, and whoever takes the client over next
//! asks the key's owner for it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shardmq_cluster::frame::{
    Body, SessionMessage, SessionTransfer, TakeoverRequest, TransferInstalled,
};
use shardmq_cluster::{ClaimOutcome, NodeId, Revision};
use shardmq_codec::ByteString;
use shardmq_shard::persist::{
    decode_message_record, decode_session, encode_message_record, encode_session, RecordError,
    Restored, WallClock,
};
use shardmq_shard::{ConnectRefusal, PeerNode, Shard, ShardId};

/// How long a connect waits before claiming again after its owner answered "busy".
pub const TAKEOVER_RETRY: Duration = Duration::from_millis(50);

/// A connect waiting for its claim, numbered by [`Handover::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// The timing of a [`Handover`].
#[derive(Debug, Clone, Copy)]
pub struct HandoverConfig {
    /// How long a connect may wait for its claim and takeover (`claim_timeout`).
    pub claim_timeout: Duration,
    /// How long a session handed over stays parked here without the new owner's confirmation
    /// before it becomes the session here again. Longer than the new owner's claim may take
    /// (its deadline) plus the time its confirmation may spend on the link.
    pub park_for: Duration,
}

impl HandoverConfig {
    /// Parks a session for twice the claim timeout plus `link_silence` (how long a link may
    /// be silent before it is declared dead).
    pub fn new(claim_timeout: Duration, link_silence: Duration) -> HandoverConfig {
        HandoverConfig { claim_timeout, park_for: claim_timeout * 2 + link_silence }
    }
}

/// What the driver knows of the node links and the membership.
pub trait Links {
    /// Whether the link to `peer` is up (a frame sent now is queued on it).
    fn up(&self, peer: PeerNode) -> bool;
    /// The number a node has among this node's peers.
    fn peer(&self, node: &NodeId) -> PeerNode;
}

/// What the driver carries out for a [`Handover`].
#[derive(Debug)]
pub enum Effect {
    /// Ask the control plane to claim `client_id`; answer with [`Handover::claim_answered`].
    Claim { ticket: Ticket, client_id: String },
    /// Ask the control plane to claim `client_id` whose key was at `revision` when its owner
    /// let it go; answer with [`Handover::claim_answered`].
    ClaimAfterRelease { ticket: Ticket, client_id: String, revision: Revision },
    /// Send `body` on the link to `peer` (the machine checked [`Links::up`] first).
    Send { peer: PeerNode, body: Body },
    /// This node no longer serves `client_id`: the control plane stops counting it as owned.
    HandedOver { client_id: String },
    /// The connect's answer: served here, or why not.
    Answer { ticket: Ticket, result: Result<(), ConnectRefusal> },
}

/// A connect and where its claim stands.
#[derive(Debug)]
struct Connecting {
    client_id: String,
    clean_start: bool,
    username: Option<String>,
    deadline: Instant,
    stage: Stage,
    /// A newer connect of the same client id came: this one was refused, and only finishes
    /// its claim after the release (confirming the transfer to the peer if it won).
    superseded: bool,
}

#[derive(Debug)]
enum Stage {
    /// The control plane is asked to claim the id.
    Claiming,
    /// The owner `peer` is asked for the session (takeover `request`).
    Asking { request: u64, peer: PeerNode, revision: Revision },
    /// The owner said "busy": claim again at `at`.
    Waiting { at: Instant },
    /// The session is installed; the claim after the owner's release is under way.
    Releasing { request: u64, peer: PeerNode },
}

/// A session this shard handed over, kept until the new owner says it installed it.
#[derive(Debug)]
struct Parked {
    peer: PeerNode,
    request: u64,
    session: Restored,
    /// When it becomes the session here again, with no word from the peer.
    until: Instant,
}

/// What a [`Handover`] did, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandoverStats {
    /// Sessions handed to peers that asked (with or without a session here).
    pub handed_over: u64,
    /// Parked copies sent again to the same peer asking again.
    pub parked_resent: u64,
    /// Parked copies that became the session here again: no confirmation in time, or this
    /// node won the client back first.
    pub parked_restored: u64,
    pub parked_taken_back: u64,
    /// Takeovers whose owner did not answer by the connect's deadline.
    pub takeovers_timed_out: u64,
    /// Connects refused because a newer connect of the same client id came.
    pub superseded: u64,
    /// Invitations of draining peers taken up.
    pub invited: u64,
}

/// One shard's side of moving clients between nodes (see the module docs).
#[derive(Debug)]
pub struct Handover {
    stats: HandoverStats,
    shard: ShardId,
    config: HandoverConfig,
    clock: WallClock,
    next_ticket: u64,
    next_request: u64,
    connects: HashMap<Ticket, Connecting>,
    /// Takeover request numbers this shard asked with, to their connects.
    requests: HashMap<u64, Ticket>,
    parked: HashMap<String, Parked>,
    effects: Vec<Effect>,
}

impl Handover {
    /// `first_request` numbers this run's takeover requests: above any an earlier run of this
    /// node could have used (the engine takes the wall clock), so that a late answer to a
    /// request of an earlier run is never taken for one of this run.
    pub fn new(
        shard: ShardId,
        config: HandoverConfig,
        clock: WallClock,
        first_request: u64,
    ) -> Handover {
        Handover {
            stats: HandoverStats::default(),
            shard,
            config,
            clock,
            next_ticket: 0,
            next_request: first_request,
            connects: HashMap::new(),
            requests: HashMap::new(),
            parked: HashMap::new(),
            effects: Vec::new(),
        }
    }

    /// The effects left since the last call, in order.
    pub fn drain_effects(&mut self, into: &mut Vec<Effect>) {
        into.append(&mut self.effects);
    }

    /// The earliest moment [`Handover::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let connects = self.connects.values().filter_map(|c| match c.stage {
            Stage::Asking { .. } => Some(c.deadline),
            Stage::Waiting { at } => Some(at),
            Stage::Claiming | Stage::Releasing { .. } => None,
        });
        connects.chain(self.parked.values().map(|p| p.until)).min()
    }

    pub fn stats(&self) -> HandoverStats {
        self.stats
    }

    /// Connects in progress (for the admin API and tests).
    pub fn connects(&self) -> usize {
        self.connects.len()
    }

    /// Whether a copy of `client_id`'s session is parked here for a peer.
    pub fn is_parked(&self, client_id: &str) -> bool {
        self.parked.contains_key(client_id)
    }

    // --- the connecting side -----------------------------------------------------------------

    /// A client connects with `client_id`: its claim starts. The answer comes as
    /// [`Effect::Answer`] with the returned ticket.
    pub fn connect(
        &mut self,
        client_id: &str,
        clean_start: bool,
        username: Option<&str>,
        now: Instant,
    ) -> Ticket {
        // The newest connect of a client id wins, as the ownership core decides for claims: an
        // older one still waiting could otherwise install, after the newer one was served, a
        // session transferred for it that is older than the one served since.
        let older: Vec<Ticket> = (self.connects.iter())
            .filter(|(_, c)| c.client_id == client_id && !c.superseded)
            .map(|(ticket, _)| *ticket)
            .collect();
        for ticket in older {
            self.supersede(ticket);
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let connecting = Connecting {
            client_id: client_id.to_string(),
            clean_start,
            username: username.map(str::to_string),
            deadline: now + self.config.claim_timeout,
            stage: Stage::Claiming,
            superseded: false,
        };
        self.connects.insert(ticket, connecting);
        self.effects.push(Effect::Claim { ticket, client_id: client_id.to_string() });
        ticket
    }

    /// Draining peer `inviter` asks this node to take client `client_id` over: it is claimed as
    /// a connect would claim it, and its session taken over from the owner etcd names (the
    /// inviter, normally), then kept here offline until its client connects.
    /// Nothing happens when a connect of the client is under way here or its session is here
    /// already: a client's own connect always wins over an invitation.
    pub fn invite(
        &mut self,
        shard: &Shard,
        client_id: &str,
        username: Option<&str>,
        inviter: PeerNode,
        now: Instant,
    ) -> Option<Ticket> {
        let busy = self.connects.values().any(|c| c.client_id == client_id && !c.superseded);
        if busy || shard.has_session(client_id) {
            return None;
        }
        self.stats.invited += 1;
        tracing::debug!(shard = %self.shard, "{inviter} invites this node to take client {client_id:?} over");
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let connecting = Connecting {
            client_id: client_id.to_string(),
            clean_start: false,
            username: username.map(str::to_string),
            deadline: now + self.config.claim_timeout,
            stage: Stage::Claiming,
            superseded: false,
        };
        self.connects.insert(ticket, connecting);
        self.effects.push(Effect::Claim { ticket, client_id: client_id.to_string() });
        Some(ticket)
    }

    /// The control plane answered the claim of `ticket` ([`Effect::Claim`] or
    /// [`Effect::ClaimAfterRelease`]).
    pub fn claim_answered(
        &mut self,
        shard: &mut Shard,
        links: &impl Links,
        ticket: Ticket,
        outcome: ClaimOutcome,
        now: Instant,
    ) {
        let Some(connecting) = self.connects.get(&ticket) else { return };
        if matches!(outcome, ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned) {
            let client_id = connecting.client_id.clone();
            self.take_back(shard, &client_id, now);
        }
        let Some(connecting) = self.connects.get_mut(&ticket) else { return };
        match (&connecting.stage, outcome) {
            (Stage::Releasing { request, peer }, outcome) => {
                // When this claim fails, the session installed here stays (offline): the claim
                // may still have committed, and whoever takes the client over next asks the
                // key's owner for it. The old owner is told either way: on a failure its copy
                // is the session there again at once (the two copies are the same, neither was
                // served, and etcd names the one a later takeover asks).
                let owned = matches!(outcome, ClaimOutcome::Claimed | ClaimOutcome::AlreadyOwned);
                let client_id = connecting.client_id.clone();
                let request = *request;
                let installed = TransferInstalled { client_id, request, installed: owned };
                let body = Body::TransferInstalled(Box::new(installed));
                if links.up(*peer) {
                    self.effects.push(Effect::Send { peer: *peer, body });
                }
                self.answer(ticket, owned.then_some(()).ok_or(ConnectRefusal::EtcdUnavailable));
            }
            // For an invitation too: etcd names no other owner, so the inviter's copy is not the
            // one etcd vouches for (it may be stale: the simulator found an inviter handing an
            // old offline copy over a newer session here). What this node has stays; the
            // inviter's copy stays on its disk, claimed again when it returns.
            (_, ClaimOutcome::AlreadyOwned | ClaimOutcome::Claimed) => self.answer(ticket, Ok(())),
            (_, ClaimOutcome::HeldBy { owner, revision }) => {
                self.ask(links, ticket, &owner, revision)
            }
            (_, ClaimOutcome::Busy) => self.answer(ticket, Err(ConnectRefusal::EtcdBusy)),
            (_, ClaimOutcome::Unavailable) => {
                self.answer(ticket, Err(ConnectRefusal::EtcdUnavailable))
            }
            (_, ClaimOutcome::Fenced) => self.answer(ticket, Err(ConnectRefusal::Fenced)),
        }
    }

    /// This node owns `client_id` again while a copy of its session is parked here for a peer
    /// (the client came back before the peer confirmed, and this node's claim won): the copy
    /// is the session again, unless one is here already (installed since, so newer). The peer's
    /// claim after the release fails, and its copy is never served.
    fn take_back(&mut self, shard: &mut Shard, client_id: &str, now: Instant) {
        let Some(parked) = self.parked.remove(client_id) else { return };
        if !shard.has_session(client_id) {
            self.stats.parked_taken_back += 1;
            shard.adopt_session(parked.session, now);
        }
    }

    /// Asks `owner` to stop serving the client and send its session.
    fn ask(&mut self, links: &impl Links, ticket: Ticket, owner: &NodeId, revision: Revision) {
        self.ask_peer(links, ticket, links.peer(owner), revision)
    }

    fn ask_peer(&mut self, links: &impl Links, ticket: Ticket, peer: PeerNode, revision: Revision) {
        if !links.up(peer) {
            let Some(connecting) = self.connects.get(&ticket) else { return };
            tracing::warn!(
                shard = %self.shard,
                "cannot take client {:?} over from {peer}: no link to it",
                connecting.client_id
            );
            return self.answer(ticket, Err(ConnectRefusal::EtcdUnavailable));
        }
        let request = self.next_request;
        self.next_request += 1;
        let Some(connecting) = self.connects.get_mut(&ticket) else { return };
        connecting.stage = Stage::Asking { request, peer, revision };
        self.requests.insert(request, ticket);
        let body = Body::TakeoverRequest(Box::new(TakeoverRequest {
            client_id: connecting.client_id.clone(),
            request,
            reply_shard: self.shard.0,
            clean_start: connecting.clean_start,
            username: connecting.username.clone(),
        }));
        self.effects.push(Effect::Send { peer, body });
    }

    /// A peer answered one of this shard's takeover requests.
    ///
    /// `from` is the peer it came from. An answer to a request no connect waits for any more
    /// (superseded by a newer connect, given up at its deadline, or of an earlier run of this
    /// node) that carries a session is refused at once (`TransferInstalled` with `installed`
    /// false): its sender parked the session and would otherwise answer every other node asking
    /// for the client "busy" until its wait for a confirmation ends.
    pub fn transfer_arrived(
        &mut self,
        shard: &mut Shard,
        links: &impl Links,
        from: PeerNode,
        transfer: &SessionTransfer,
        now: Instant,
    ) {
        let Some(&ticket) = self.requests.get(&transfer.request) else {
            if transfer.session.is_some() && links.up(from) {
                let client_id = transfer.client_id.clone();
                let refused =
                    TransferInstalled { client_id, request: transfer.request, installed: false };
                let body = Body::TransferInstalled(Box::new(refused));
                self.effects.push(Effect::Send { peer: from, body });
            }
            return;
        };
        let Some(connecting) = self.connects.get_mut(&ticket) else { return };
        let Stage::Asking { request, peer, revision } = connecting.stage else { return };
        if connecting.client_id != transfer.client_id {
            tracing::warn!(
                shard = %self.shard,
                "ignoring a session transfer for {:?} answering a request for {:?}",
                transfer.client_id,
                connecting.client_id
            );
            return;
        }
        self.requests.remove(&request);
        if transfer.busy {
            // The owner is handing the client to another node: claim again once it has.
            if now + TAKEOVER_RETRY < connecting.deadline {
                connecting.stage = Stage::Waiting { at: now + TAKEOVER_RETRY };
                return;
            }
            return self.answer(ticket, Err(ConnectRefusal::EtcdUnavailable));
        }
        if transfer.other_user {
            return self.answer(ticket, Err(ConnectRefusal::SessionOfAnotherUser));
        }
        // Installed at once, before anything else runs on this shard: from here on, a peer that
        // takes the client over from this node finds the session here.
        match decode_transfer(transfer, &self.clock) {
            Ok(restored) => {
                if let Some(restored) = restored {
                    shard.adopt_session(restored, now);
                }
                connecting.stage = Stage::Releasing { request, peer };
                let client_id = connecting.client_id.clone();
                self.effects.push(Effect::ClaimAfterRelease { ticket, client_id, revision });
            }
            Err(error) => {
                // Its node keeps its copy, not hearing that it was installed.
                tracing::warn!(
                    shard = %self.shard,
                    "bad session transfer for {:?}: {error}",
                    transfer.client_id
                );
                self.answer(ticket, Err(ConnectRefusal::EtcdUnavailable));
            }
        }
    }

    fn answer(&mut self, ticket: Ticket, result: Result<(), ConnectRefusal>) {
        if let Some(connecting) = self.connects.remove(&ticket) {
            if let Stage::Asking { request, .. } = connecting.stage {
                self.requests.remove(&request);
            }
            if !connecting.superseded {
                self.effects.push(Effect::Answer { ticket, result });
            }
        }
    }

    /// A newer connect of the same client id supersedes `ticket`: it is refused now (busy).
    /// One whose session is installed and whose claim after the release is under way goes on
    /// in the background, so that a win is still confirmed to the peer that handed it over.
    fn supersede(&mut self, ticket: Ticket) {
        let Some(connecting) = self.connects.get_mut(&ticket) else { return };
        self.stats.superseded += 1;
        if let Stage::Releasing { .. } = connecting.stage {
            connecting.superseded = true;
            let result = Err(ConnectRefusal::EtcdBusy);
            self.effects.push(Effect::Answer { ticket, result });
        } else {
            self.answer(ticket, Err(ConnectRefusal::EtcdBusy));
        }
    }

    // --- the owner's side --------------------------------------------------------------------

    /// A peer takes over a client homed on this shard: its connection here is closed, its
    /// session goes to the peer, and this node stops counting it as owned.
    pub fn request_arrived(
        &mut self,
        shard: &mut Shard,
        links: &impl Links,
        peer: PeerNode,
        request: &TakeoverRequest,
        now: Instant,
    ) {
        let username = request.username.as_deref();
        // The session here, or the copy parked for a peer that has not confirmed it yet.
        let parked_owner = self.parked.get(&request.client_id).and_then(|parked| {
            parked.session.sessions.first().map(|(_, record)| record.username.clone())
        });
        let foreign = shard.belongs_to_another_user(&request.client_id, username)
            || parked_owner.is_some_and(|owner| shard.is_another_user(owner.as_deref(), username));
        if foreign {
            // A session of another user stays where it is, and its client stays connected.
            shard.connect_refused(ConnectRefusal::SessionOfAnotherUser);
            tracing::warn!(
                shard = %self.shard,
                user = ?username,
                "refused a takeover from {peer}: client id {:?} has a session of another user",
                request.client_id
            );
            let mut refused = self.transfer_frame(request, None, false);
            refused.other_user = true;
            return self.send_transfer(links, peer, refused);
        }
        let parked_for = self.parked.get(&request.client_id).map(|p| p.peer);
        let restored = match parked_for {
            // Handed to a third node that has not confirmed: "no session here" would let this
            // peer claim the client without it. It asks again; by then the third node owns the
            // client (and is asked instead), or the copy is back here.
            Some(to) if to != peer => {
                let busy = self.transfer_frame(request, None, true);
                return self.send_transfer(links, peer, busy);
            }
            // The same peer asks again (its claim failed, or it never got the transfer): it
            // gets the same copy again, unless the client has come back here since and has a
            // session here, which is then the newer.
            Some(_) => {
                let parked = self.parked.remove(&request.client_id).map(|p| p.session);
                let here = self.let_go(shard, request, now);
                self.stats.parked_resent += u64::from(here.is_none() && parked.is_some());
                here.or(parked)
            }
            None => self.let_go(shard, request, now),
        };
        let transfer = self.transfer_frame(request, restored.as_ref(), false);
        if !links.up(peer) {
            // The session would be lost with the frame: it stays here (offline) instead, and
            // the requester, getting no answer, refuses its connect.
            tracing::warn!(
                shard = %self.shard,
                "cannot hand client {:?} over: the link to its new node is down; keeping its \
                 session",
                request.client_id
            );
            if let Some(restored) = restored {
                shard.adopt_session(restored, now);
            }
            return;
        }
        self.send_transfer(links, peer, transfer);
        // The frame (or the link) may still be lost, or the peer may fail to claim the client:
        // a copy stays here until the peer says it installed the session and owns the client.
        let Some(session) = restored else { return };
        let until = now + self.config.park_for;
        let parked = Parked { peer, request: request.request, session, until };
        self.parked.insert(request.client_id.clone(), parked);
    }

    /// Stops serving the client here and gives up its session, if it has one here. Always
    /// tells the control plane this node no longer owns the client, even when a copy parked for
    /// the same peer is what goes: a claim of this node's own may have won the key meanwhile (the
    /// client came back here), and once the peer claims after this release, this node must not
    /// serve the client on that claim's answer.
    fn let_go(
        &mut self,
        shard: &mut Shard,
        request: &TakeoverRequest,
        now: Instant,
    ) -> Option<Restored> {
        let restored = shard.hand_over(&request.client_id, request.clean_start, now);
        self.stats.handed_over += 1;
        let client_id = request.client_id.clone();
        self.effects.push(Effect::HandedOver { client_id });
        restored
    }

    fn send_transfer(&mut self, links: &impl Links, peer: PeerNode, transfer: SessionTransfer) {
        if links.up(peer) {
            let body = Body::SessionTransfer(Box::new(transfer));
            self.effects.push(Effect::Send { peer, body });
        }
    }

    /// The answer to a takeover `request`: the session handed over (`None`: there was none
    /// here), or "busy".
    fn transfer_frame(
        &self,
        request: &TakeoverRequest,
        restored: Option<&Restored>,
        busy: bool,
    ) -> SessionTransfer {
        let mut transfer = SessionTransfer {
            client_id: request.client_id.clone(),
            request: request.request,
            shard: request.reply_shard,
            session: None,
            messages: None,
            incoming_qos2: None,
            busy,
            other_user: false,
        };
        if let Some(restored) = restored {
            if let Some((_, record)) = restored.sessions.first() {
                transfer.session = Some(encode_session(record));
            }
            let messages = restored.messages.iter().map(|(_, seq, record)| SessionMessage {
                seq: *seq,
                record: encode_message_record(record, &self.clock),
            });
            transfer.messages = Some(messages.collect());
            let qos2 = restored.incoming_qos2.iter().map(|(_, id)| *id);
            transfer.incoming_qos2 = Some(qos2.collect());
        }
        transfer
    }

    /// The new owner installed a session this shard handed over: the copy kept here goes.
    /// With `installed` false, the peer's claim failed: the copy is the session here again.
    pub fn installed_arrived(
        &mut self,
        shard: &mut Shard,
        installed: &TransferInstalled,
        now: Instant,
    ) {
        let answered = self
            .parked
            .get(&installed.client_id)
            .is_some_and(|parked| parked.request == installed.request);
        if !answered {
            return;
        }
        if installed.installed {
            self.parked.remove(&installed.client_id);
        } else {
            let why = "its claim failed";
            self.restore_parked(shard, &installed.client_id, why, now);
        }
    }

    // --- time --------------------------------------------------------------------------------

    /// What is due at `now`: takeovers unanswered by their deadline are refused, connects told
    /// "busy" claim again, and parked copies with no word from their peer become the session
    /// here again.
    pub fn tick(&mut self, shard: &mut Shard, now: Instant) {
        let mut due = Vec::new();
        for (ticket, connecting) in &self.connects {
            match connecting.stage {
                Stage::Asking { .. } if now >= connecting.deadline => due.push(*ticket),
                Stage::Waiting { at } if now >= at => due.push(*ticket),
                _ => {}
            }
        }
        due.sort();
        for ticket in due {
            let Some(connecting) = self.connects.get_mut(&ticket) else { continue };
            if let Stage::Waiting { .. } = connecting.stage {
                connecting.stage = Stage::Claiming;
                let client_id = connecting.client_id.clone();
                self.effects.push(Effect::Claim { ticket, client_id });
                continue;
            }
            tracing::warn!(
                shard = %self.shard,
                "cannot take client {:?} over: no answer over the node link",
                connecting.client_id
            );
            self.stats.takeovers_timed_out += 1;
            self.answer(ticket, Err(ConnectRefusal::EtcdUnavailable));
        }
        let mut expired: Vec<String> = (self.parked.iter())
            .filter(|(_, parked)| now >= parked.until)
            .map(|(client_id, _)| client_id.clone())
            .collect();
        expired.sort();
        for client_id in expired {
            self.restore_parked(shard, &client_id, "no confirmation in time", now);
        }
    }

    /// No word from the peer that it installed a session handed over to it: the copy kept here
    /// becomes the session again (offline), unless the client has one here by now. Where the
    /// peer did install it after all, its copy is the newer one, and a takeover from it
    /// replaces this one.
    fn restore_parked(&mut self, shard: &mut Shard, client_id: &str, why: &str, now: Instant) {
        let Some(parked) = self.parked.remove(client_id) else { return };
        if shard.has_session(client_id) {
            return;
        }
        tracing::warn!(
            shard = %self.shard,
            "the node that took client {client_id:?} over did not install its session ({why}): \
             keeping it here"
        );
        self.stats.parked_restored += 1;
        shard.adopt_session(parked.session, now);
    }
}

/// The session a transfer carries, if any.
fn decode_transfer(
    transfer: &SessionTransfer,
    clock: &WallClock,
) -> Result<Option<Restored>, RecordError> {
    let Some(session) = &transfer.session else { return Ok(None) };
    let client_id = ByteString::from(transfer.client_id.as_str());
    let mut restored = Restored::default();
    restored.sessions.push((client_id.clone(), decode_session(session)?));
    for message in transfer.messages.iter().flatten() {
        let record = decode_message_record(&message.record, clock)?;
        restored.messages.push((client_id.clone(), message.seq, record));
    }
    for &packet_id in transfer.incoming_qos2.iter().flatten() {
        restored.incoming_qos2.push((client_id.clone(), packet_id));
    }
    Ok(Some(restored))
}
