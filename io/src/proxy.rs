//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer sends first on
//! each connection it forwards, naming the client's real address. Parsed by `ppp`; this module
//! decides what a header means for the broker and bounds what it may cost.
//!
//! Sans-IO: [`parse`] looks at the bytes read so far and says whether the header is complete,
//! how long it is, and whom it names. The caller reads, and keeps what follows the header (the
//! client's first bytes often arrive in the same segment).

use std::net::{IpAddr, SocketAddr};

use ppp::v1;
use ppp::v2;
use ppp::{HeaderResult, PartialResult};

/// The longest header accepted. A version 1 header is at most 107 bytes; a version 2 header is
/// 16 bytes and its addresses (at most 216 bytes for UNIX sockets) plus whatever TLVs the
/// proxy adds (an AWS NLB adds its endpoint id, HAProxy its TLS details): 2 KiB is plenty, and
/// a header claiming more is refused before it is read.
pub const PROXY_HEADER_BYTES_MAX: usize = 2048;

/// The longest version 1 header, its line end included (the protocol's own limit).
const V1_HEADER_BYTES_MAX: usize = 107;

/// What the bytes read so far make of a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of the header has arrived: read more (at most [`PROXY_HEADER_BYTES_MAX`] in all).
    Incomplete,
    /// A whole header of `len` bytes. `source`: the client it names; `None` when the proxy
    /// speaks for itself (v2 `LOCAL`, v1 `UNKNOWN`: a health check) or names no IP client
    /// (a UNIX socket), in which case the socket's own peer address stands.
    Header { len: usize, source: Option<SocketAddr> },
    /// Not a PROXY header, or a broken one: the connection is closed.
    Invalid(String),
}

/// Parses the front of `bytes` as a PROXY protocol header (either version).
pub fn parse(bytes: &[u8]) -> Parsed {
    if bytes.is_empty() {
        return Parsed::Incomplete;
    }
    // A version 2 header says its length in its 16th and 15th bytes: refuse an oversized one
    // before waiting for it.
    if let Some(declared) = v2_declared_len(bytes) {
        if declared > PROXY_HEADER_BYTES_MAX {
            return Parsed::Invalid(format!(
                "a PROXY v2 header of {declared} bytes (at most {PROXY_HEADER_BYTES_MAX} accepted)"
            ));
        }
    }
    // A version 1 header is one line of at most 107 bytes: until its end has arrived it is
    // incomplete, whatever a parser makes of a line cut in the middle of a field.
    if b"PROXY".starts_with(&bytes[..bytes.len().min(5)]) {
        let line_end = bytes.windows(2).position(|pair| pair == b"\r\n");
        if line_end.is_none() {
            return if bytes.len() < V1_HEADER_BYTES_MAX {
                Parsed::Incomplete
            } else {
                Parsed::Invalid(format!("no PROXY v1 line end in {} bytes", bytes.len()))
            };
        }
    }
    let parsed = HeaderResult::parse(bytes);
    if parsed.is_incomplete() {
        return if bytes.len() >= PROXY_HEADER_BYTES_MAX {
            Parsed::Invalid(format!("no PROXY header end in {} bytes", bytes.len()))
        } else {
            Parsed::Incomplete
        };
    }
    match parsed {
        HeaderResult::V1(Ok(header)) => Parsed::Header {
            len: header.header.len(),
            source: match header.addresses {
                v1::Addresses::Tcp4(ip) => {
                    Some(SocketAddr::new(ip.source_address.into(), ip.source_port))
                }
                v1::Addresses::Tcp6(ip) => {
                    Some(SocketAddr::new(ip.source_address.into(), ip.source_port))
                }
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(header)) => Parsed::Header {
            len: header.len(),
            source: match (header.command, header.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => {
                    Some(SocketAddr::new(IpAddr::V4(ip.source_address), ip.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => {
                    Some(SocketAddr::new(IpAddr::V6(ip.source_address), ip.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
            },
        },
        HeaderResult::V1(Err(error)) => Parsed::Invalid(format!("a bad PROXY v1 header: {error}")),
        HeaderResult::V2(Err(error)) => Parsed::Invalid(format!("a bad PROXY v2 header: {error}")),
    }
}

/// The whole length a version 2 header declares, once its first 16 bytes are there.
fn v2_declared_len(bytes: &[u8]) -> Option<usize> {
    const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
    let fixed = bytes.get(..16)?;
    if !fixed.starts_with(SIGNATURE) {
        return None;
    }
    Some(16 + usize::from(u16::from_be_bytes([fixed[14], fixed[15]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.push(0x20 | command);
        header.push(family);
        let len = (addresses.len() + tlvs.len()) as u16;
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(addresses);
        header.extend_from_slice(tlvs);
        header
    }

    #[test]
    fn version_1_names_the_client_and_its_length() {
        let header = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 1883\r\n";
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&[0x10, 0x10]); // the CONNECT that follows
        assert_eq!(
            parse(&bytes),
            Parsed::Header { len: header.len(), source: Some("192.0.2.7:51234".parse().unwrap()) }
        );
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 1883\r\n";
        assert_eq!(
            parse(six),
            Parsed::Header { len: six.len(), source: Some("[2001:db8::1]:4000".parse().unwrap()) }
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parsed::Header { len: 15, source: None });
    }

    #[test]
    fn version_2_names_the_client_or_speaks_for_the_proxy() {
        // TCP over IPv4: 192.0.2.7:51234 -> 10.0.0.1:1883, and a NOOP TLV.
        let addresses = [192, 0, 2, 7, 10, 0, 0, 1, 0xC8, 0x22, 0x07, 0x5B];
        let header = v2(0x1, 0x11, &addresses, &[0x04, 0x00, 0x01, 0x2A]);
        let mut bytes = header.clone();
        bytes.push(0x10);
        assert_eq!(
            parse(&bytes),
            Parsed::Header { len: header.len(), source: Some("192.0.2.7:51234".parse().unwrap()) }
        );
        let local = v2(0x0, 0x00, &[], &[]);
        assert_eq!(parse(&local), Parsed::Header { len: 16, source: None });
    }

    #[test]
    fn partial_headers_wait_and_bad_ones_are_refused() {
        let header = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 1883\r\n";
        for cut in 0..header.len() {
            assert_eq!(parse(&header[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        let addresses = [192, 0, 2, 7, 10, 0, 0, 1, 0xC8, 0x22, 0x07, 0x5B];
        let two = v2(0x1, 0x11, &addresses, &[]);
        for cut in 0..two.len() {
            assert_eq!(parse(&two[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        // An MQTT CONNECT where a header should be.
        assert!(matches!(parse(&[0x10, 0x0C, 0x00, 0x04, b'M']), Parsed::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 999.0.2.7 10.0.0.1 1 2\r\n"), Parsed::Invalid(_)));
        // A v2 header lying about its length (65,535 bytes) is refused before it is read.
        let mut liar = v2(0x1, 0x11, &addresses, &[]);
        liar[14] = 0xFF;
        liar[15] = 0xFF;
        assert!(matches!(parse(&liar[..16]), Parsed::Invalid(why) if why.contains("65551")));
        // A v1 header that never ends.
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; PROXY_HEADER_BYTES_MAX]].concat();
        assert!(matches!(parse(&endless), Parsed::Invalid(_)));
    }
}
