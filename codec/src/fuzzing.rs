//! The checks the fuzz targets run (`codec/fuzz/fuzz_targets/*`), kept here so the corpus replay
//! test runs exactly the same code on stable Rust in CI.
//!
//! Each check feeds arbitrary bytes to a decoder and asserts what must hold for every input: no
//! panic (the fuzzer notices those), every packet that decodes re-encodes and decodes to an equal
//! packet, and decoding a stream in small pieces gives the same packets and error as decoding it
//! whole.

// A checker reports a violated property by panicking; that is its job.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::{Bytes, BytesMut};

use super::{
    decode_body, decode_packet, DecodeError, Decoded, Decoder, Packet, ProtocolVersion,
    PACKET_BYTES_MAX,
};

/// Runs `check` over every input committed for fuzz target `target` under `fuzz_dir` (its
/// `corpus/<target>/` and `regressions/<target>/`), as the crates' `fuzz_corpus` tests do on
/// stable Rust; returns how many there were. An input whose check panics fails, named.
pub fn replay_corpus(fuzz_dir: &std::path::Path, target: &str, check: fn(&[u8])) -> usize {
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir.join(dir).join(target)) else { continue };
        for entry in entries {
            let path = entry.expect("readable corpus directory").path();
            let data = std::fs::read(&path).expect("readable corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            count += 1;
        }
    }
    count
}

/// Which decoder an input drives, picked by its first byte.
fn version_for(selector: u8) -> Option<ProtocolVersion> {
    match selector % 4 {
        0 => None,
        1 => Some(ProtocolVersion::V3_1),
        2 => Some(ProtocolVersion::V3_1_1),
        _ => Some(ProtocolVersion::V5),
    }
}

/// Re-encodes a decoded packet and checks it decodes to itself.
fn check_round_trip(packet: &Packet, version: ProtocolVersion) {
    let version = match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    };
    let mut buf = BytesMut::new();
    let written = packet
        .encode(version, &mut buf)
        .unwrap_or_else(|error| panic!("decoded packet does not encode: {error}: {packet:?}"));
    assert_eq!(written, buf.len());
    assert_eq!(packet.encoded_len(version).ok(), Some(written));
    match decode_packet(&mut buf, version, PACKET_BYTES_MAX) {
        Ok(Decoded::Packet(again)) => assert_eq!(&again, packet, "round trip changed the packet"),
        other => panic!("re-encoded packet does not decode: {other:?} for {packet:?}"),
    }
    assert!(buf.is_empty(), "re-encoded packet left bytes behind");
}

/// Decodes everything in `buf` with `decoder`, stopping at the first error or when more bytes
/// are needed.
fn drain(decoder: &mut Decoder, buf: &mut BytesMut) -> (Vec<Packet>, Option<DecodeError>) {
    let mut packets = Vec::new();
    loop {
        match decoder.decode(buf) {
            Ok(Decoded::Packet(packet)) => packets.push(packet),
            Ok(Decoded::NeedMore(needed)) => {
                assert!(needed > 0);
                return (packets, None);
            }
            Err(error) => return (packets, Some(error)),
        }
    }
}

/// A byte stream on one connection: `data[0]` picks the decoder (server side, or a client of
/// 3.1, 3.1.1 or 5.0), `data[1]` the chunk size for the incremental pass and the maximum packet
/// size. Decoding whole and decoding in chunks must agree, and every packet must round-trip.
pub fn check_stream(data: &[u8]) {
    let [selector, chunking, stream @ ..] = data else {
        return;
    };
    let version = version_for(*selector);
    let max_packet_size = if chunking & 0x80 != 0 { 64 } else { PACKET_BYTES_MAX };
    let new_decoder = || match version {
        Some(version) => Decoder::client(version, max_packet_size),
        None => Decoder::server(max_packet_size),
    };

    let mut whole_decoder = new_decoder();
    let mut whole = BytesMut::from(stream);
    let (packets, error) = drain(&mut whole_decoder, &mut whole);

    let chunk = usize::from(chunking & 0x0F) + 1;
    let mut pieces_decoder = new_decoder();
    let mut buf = BytesMut::new();
    let mut pieces_packets = Vec::new();
    let mut pieces_error = None;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        let (mut got, error) = drain(&mut pieces_decoder, &mut buf);
        pieces_packets.append(&mut got);
        if error.is_some() {
            pieces_error = error;
            break;
        }
    }
    assert_eq!(packets, pieces_packets, "chunked decoding differs");
    // Decoding whole may stop at an error that chunked decoding reaches only as a later error,
    // never a different one: the error comes from the same packet.
    assert_eq!(error, pieces_error, "chunked decoding fails differently");

    let round_trip_version = whole_decoder.version().unwrap_or(ProtocolVersion::V5);
    for packet in &packets {
        check_round_trip(packet, round_trip_version);
    }
}

/// One packet body of a known version: `data[0]` picks the version, `data[1]` is the first byte
/// of the fixed header, the rest is the body.
pub fn check_body(data: &[u8]) {
    let [selector, first_byte, body @ ..] = data else {
        return;
    };
    let version = version_for(*selector).unwrap_or(ProtocolVersion::V5);
    if let Ok(packet) = decode_body(*first_byte, Bytes::copy_from_slice(body), version) {
        check_round_trip(&packet, version);
    }
}

/// A first packet on a server connection: CONNECT (or anything else, which must be refused).
pub fn check_connect(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut decoder = Decoder::server(PACKET_BYTES_MAX);
    match decoder.decode(&mut buf) {
        Ok(Decoded::Packet(packet)) => {
            let Packet::Connect(connect) = &packet else {
                panic!("server decoder accepted a first packet that is not CONNECT: {packet:?}");
            };
            assert_eq!(decoder.version(), Some(connect.protocol));
            check_round_trip(&packet, connect.protocol);
        }
        Ok(Decoded::NeedMore(_)) | Err(_) => {}
    }
}
