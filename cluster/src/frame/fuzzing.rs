//! The check the node-link fuzz target runs (`cluster/fuzz/fuzz_targets/frames.rs`), kept here so
//! the corpus replay test (`cluster/tests/fuzz_corpus.rs`) runs exactly the same code on stable
//! Rust in CI.
//!
//! A link's byte stream comes from a peer node: a bug or a version skew there must cost the link,
//! never this node. The check feeds arbitrary bytes to [`decode`] and asserts what must hold for
//! every input: no panic, decoding in small pieces gives the same frames and the same outcome as
//! decoding the stream whole, and every frame that decodes re-encodes to a frame that decodes to
//! itself.

// A checker reports a violated property by panicking; that is its job.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::BytesMut;

use super::{decode, Body, Encoder, FrameError, FRAME_BYTES_MAX};

/// How decoding a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Every byte was used, or the rest is the start of a frame.
    NeedMore,
    TooLarge(usize),
    Malformed,
}

/// Decodes everything in `buf`, stopping at the first error or when more bytes are needed.
fn drain(buf: &mut BytesMut, into: &mut Vec<Body>) -> End {
    loop {
        match decode(buf) {
            Ok(Some(body)) => into.push(body),
            Ok(None) => return End::NeedMore,
            Err(FrameError::TooLarge(length)) => {
                assert!(length > FRAME_BYTES_MAX, "a frame within the limit was refused");
                return End::TooLarge(length);
            }
            Err(FrameError::Malformed(_)) => return End::Malformed,
        }
    }
}

/// A node link's byte stream: `data[0]` picks the chunk size of the incremental pass, the rest is
/// the stream. Length prefixes are taken as they come, so a stream that claims a huge frame only
/// waits for it (as a link does until its read timeout).
pub fn check_frames(data: &[u8]) {
    let [chunking, stream @ ..] = data else {
        return;
    };

    let mut whole = BytesMut::from(stream);
    let mut bodies = Vec::new();
    let end = drain(&mut whole, &mut bodies);

    let chunk = usize::from(chunking & 0x1F) + 1;
    let mut buf = BytesMut::new();
    let mut pieces_bodies = Vec::new();
    let mut pieces_end = End::NeedMore;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        pieces_end = drain(&mut buf, &mut pieces_bodies);
        if pieces_end != End::NeedMore {
            break;
        }
    }
    assert_eq!(bodies, pieces_bodies, "chunked decoding differs");
    assert_eq!(end, pieces_end, "chunked decoding ends differently");

    let mut encoder = Encoder::new();
    for body in &bodies {
        let mut out = BytesMut::new();
        encoder.encode(body.clone(), &mut out);
        match decode(&mut out) {
            Ok(Some(again)) => assert_eq!(&again, body, "round trip changed the frame"),
            other => panic!("re-encoded frame does not decode: {other:?} for {body:?}"),
        }
        assert!(out.is_empty(), "re-encoded frame left bytes behind");
    }
}
