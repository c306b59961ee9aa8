//! Checking every (publisher, subscriber) stream for lost, duplicated and reordered messages.
//!
//! A subscriber keeps one [`StreamCheck`] per publisher it hears from: the next sequence number
//! it expects and the gaps it has seen. A message below the expected number either fills a gap
//! (out of order) or was seen before (duplicate). At the end of the run, [`StreamEnd::lost`]
//! adds the gaps that were never filled and the tail the publisher sent but the subscriber never
//! got, and tells apart the messages the broker had acknowledged (a broken QoS 1/2 promise) from
//! those it had not (in flight when a connection died, which MQTT does not promise to deliver).

use serde::{Deserialize, Serialize};

/// The most gaps one stream remembers. Past it the oldest gap is written off as lost, so a
/// stream that loses every other message (QoS 0 under overload) costs bounded memory; a message
/// of a written-off gap that still arrives is then counted as a duplicate.
pub const GAPS_PER_STREAM_MAX: usize = 1024;

/// What a subscriber has seen of one publisher's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCheck {
    /// The lowest sequence number not seen yet and above every one seen.
    pub next: u64,
    /// Messages received, duplicates included.
    pub received: u64,
    pub duplicates: u64,
    /// Messages that arrived after a later one of the same publisher.
    pub out_of_order: u64,
    /// Ranges `[start, end)` below `next` not received (yet), ascending and disjoint.
    pub gaps: Vec<(u64, u64)>,
    /// Messages of gaps dropped past [`GAPS_PER_STREAM_MAX`]: counted as lost.
    pub gaps_written_off: u64,
}

/// How one arrival fitted its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    InOrder,
    /// It skipped ahead, leaving a gap.
    AfterGap,
    /// It filled part of an earlier gap.
    OutOfOrder,
    Duplicate,
}

impl StreamCheck {
    /// Takes in one message's sequence number.
    pub fn record(&mut self, sequence: u64) -> Arrival {
        self.received += 1;
        if sequence == self.next {
            self.next += 1;
            return Arrival::InOrder;
        }
        if sequence > self.next {
            if self.gaps.len() == GAPS_PER_STREAM_MAX {
                let (start, end) = self.gaps.remove(0);
                self.gaps_written_off += end - start;
            }
            self.gaps.push((self.next, sequence));
            self.next = sequence + 1;
            return Arrival::AfterGap;
        }
        // Below `next`: inside a gap, or seen before. Gaps are sorted by start.
        let index = self.gaps.partition_point(|&(start, _)| start <= sequence);
        let Some(gap_index) = index.checked_sub(1) else {
            self.duplicates += 1;
            return Arrival::Duplicate;
        };
        let (start, end) = self.gaps[gap_index];
        if sequence >= end {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.out_of_order += 1;
        match (sequence == start, sequence + 1 == end) {
            (true, true) => {
                self.gaps.remove(gap_index);
            }
            (true, false) => self.gaps[gap_index].0 = sequence + 1,
            (false, true) => self.gaps[gap_index].1 = sequence,
            (false, false) => {
                // Splitting can exceed the bound by one until the next gap is opened, which
                // then writes off the oldest; the bound stays within one entry.
                self.gaps[gap_index].1 = sequence;
                self.gaps.insert(gap_index + 1, (sequence + 1, end));
            }
        }
        Arrival::OutOfOrder
    }
}

/// A publisher's side of the end-of-run check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublisherEnd {
    pub publisher: u32,
    /// Messages handed to the socket: sequence numbers `0..sent`.
    pub sent: u64,
    /// QoS 1/2 messages the broker acknowledged (PUBACK, or PUBCOMP for QoS 2).
    pub acknowledged: u64,
    /// Sequence numbers sent but never acknowledged (QoS 1/2 only), ascending.
    pub unacknowledged: Vec<u64>,
}

/// The verdict on one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// Messages the subscriber should have received: the publisher's sent count.
    pub expected: u64,
    pub received: u64,
    /// Never received, whatever their acknowledgement.
    pub lost: u64,
    /// Lost although the broker had acknowledged them (QoS 1/2): a broken delivery promise.
    pub lost_acknowledged: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl StreamEnd {
    /// Judges a stream from what its subscriber saw (`None` if it saw nothing) and what its
    /// publisher sent.
    pub fn judge(check: Option<&StreamCheck>, publisher: &PublisherEnd) -> StreamEnd {
        let empty = StreamCheck::default();
        let check = check.unwrap_or(&empty);
        let mut lost_ranges: Vec<(u64, u64)> = check.gaps.clone();
        if publisher.sent > check.next {
            lost_ranges.push((check.next, publisher.sent));
        }
        let lost = lost_ranges.iter().map(|(start, end)| end - start).sum::<u64>()
            + check.gaps_written_off;
        // Both lists are ascending: count lost messages that were never acknowledged.
        let lost_unacknowledged = publisher
            .unacknowledged
            .iter()
            .filter(|&&sequence| {
                let index = lost_ranges.partition_point(|&(start, _)| start <= sequence);
                index
                    .checked_sub(1)
                    .and_then(|index| lost_ranges.get(index))
                    .is_some_and(|&(_, end)| sequence < end)
            })
            .count() as u64;
        StreamEnd {
            expected: publisher.sent,
            received: check.received,
            lost,
            lost_acknowledged: lost.saturating_sub(lost_unacknowledged),
            duplicates: check.duplicates,
            out_of_order: check.out_of_order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `arrivals` and checks the counts against the publisher's `sent`/`unacked`.
    fn check(arrivals: &[u64], sent: u64, unacknowledged: &[u64], expected: StreamEnd) {
        let mut stream = StreamCheck::default();
        for &sequence in arrivals {
            stream.record(sequence);
        }
        let publisher = PublisherEnd {
            publisher: 0,
            sent,
            acknowledged: sent - unacknowledged.len() as u64,
            unacknowledged: unacknowledged.to_vec(),
        };
        assert_eq!(StreamEnd::judge(Some(&stream), &publisher), expected, "{arrivals:?}");
    }

    fn end(expected: u64, received: u64, lost: u64, lost_acked: u64) -> StreamEnd {
        StreamEnd {
            expected,
            received,
            lost,
            lost_acknowledged: lost_acked,
            duplicates: 0,
            out_of_order: 0,
        }
    }

    #[test]
    fn streams_are_judged_exactly() {
        check(&[0, 1, 2, 3], 4, &[], end(4, 4, 0, 0));
        // A lost tail, partly unacknowledged.
        check(&[0, 1], 4, &[3], end(4, 2, 2, 1));
        // A gap never filled, acknowledged.
        check(&[0, 2, 3], 4, &[], end(4, 3, 1, 1));
        // A gap filled late: reordered, not lost.
        check(&[0, 3, 1, 2], 4, &[], StreamEnd { out_of_order: 2, ..end(4, 4, 0, 0) });
        // A gap split in the middle, then its ends filled.
        check(&[5, 2, 0, 4, 1, 3], 6, &[], StreamEnd { out_of_order: 5, ..end(6, 6, 0, 0) });
        // Duplicates of delivered messages.
        check(&[0, 1, 1, 0, 2], 3, &[], StreamEnd { duplicates: 2, ..end(3, 5, 0, 0) });
        // Nothing received at all.
        let publisher = PublisherEnd { sent: 5, unacknowledged: vec![4], ..Default::default() };
        assert_eq!(StreamEnd::judge(None, &publisher), end(5, 0, 5, 4));
    }

    #[test]
    fn gaps_are_bounded() {
        let mut stream = StreamCheck::default();
        let gaps = GAPS_PER_STREAM_MAX as u64 + 10;
        for index in 0..gaps {
            stream.record(index * 2 + 1);
        }
        assert_eq!(stream.gaps.len(), GAPS_PER_STREAM_MAX);
        let publisher = PublisherEnd { sent: gaps * 2, ..Default::default() };
        let judged = StreamEnd::judge(Some(&stream), &publisher);
        assert_eq!(judged.lost, gaps);
    }
}
