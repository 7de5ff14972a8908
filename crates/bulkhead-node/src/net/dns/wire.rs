//! The part of the DNS wire format (RFC 1035 §4) the resolver needs: read
//! one question, write a reply with A answers or an error code. Pure.
//!
//! Queries are strict: one question, no name compression in it (no client
//! compresses a lone question), opcode QUERY. Anything else is answered
//! `FORMERR` or `NOTIMP` when the header at least parses, dropped when not.
//! Answers point back at the question's name (`0xc00c`) and carry no EDNS
//! record: a reply of a few A records stays far below 512 bytes.

/// `QTYPE`/`TYPE` A.
pub const TYPE_A: u16 = 1;
/// `QTYPE` `*` (any).
pub const TYPE_ANY: u16 = 255;
/// `CLASS` IN.
pub const CLASS_IN: u16 = 1;
/// Largest UDP message a plain (non-EDNS) client accepts.
pub const UDP_MAX: usize = 512;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 12;

/// Response codes we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// Success (possibly with no answer: the name exists, not the type).
    NoError = 0,
    /// The query could not be read.
    FormErr = 1,
    /// Forwarding failed.
    ServFail = 2,
    /// The name does not exist (for this client).
    NxDomain = 3,
    /// Not a standard query.
    NotImp = 4,
    /// We do not answer this client.
    Refused = 5,
}

/// One parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Transaction id.
    pub id: u16,
    /// Recursion desired (copied into the reply).
    pub recursion_desired: bool,
    /// The name, lower case, labels joined by `.`, no final dot.
    pub name: String,
    /// The question's bytes as sent (name, type, class), echoed in replies.
    pub question: Vec<u8>,
    /// `QTYPE`.
    pub qtype: u16,
    /// `QCLASS`.
    pub qclass: u16,
}

/// Why a message is not a query we answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Too short for a header, or a response: drop it silently.
    Drop,
    /// The header parses; answer with this code and no question.
    Reply {
        /// The transaction id.
        id: u16,
        /// `FORMERR` or `NOTIMP`.
        rcode: Rcode,
    },
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// Reads a query (one question).
pub fn parse_query(message: &[u8]) -> Result<Query, ParseError> {
    if message.len() < HEADER_LEN {
        return Err(ParseError::Drop);
    }
    let id = u16_at(message, 0).ok_or(ParseError::Drop)?;
    let flags = u16_at(message, 2).ok_or(ParseError::Drop)?;
    if flags & 0x8000 != 0 {
        // A response: never answer one (no reflection loops).
        return Err(ParseError::Drop);
    }
    let reply = |rcode| ParseError::Reply { id, rcode };
    let opcode = (flags >> 11) & 0x0f;
    if opcode != 0 {
        return Err(reply(Rcode::NotImp));
    }
    let qdcount = u16_at(message, 4).ok_or(ParseError::Drop)?;
    if qdcount != 1 {
        return Err(reply(Rcode::FormErr));
    }
    let mut at = HEADER_LEN;
    let mut labels: Vec<String> = Vec::new();
    let mut name_len = 0usize;
    loop {
        let len = usize::from(*message.get(at).ok_or(reply(Rcode::FormErr))?);
        at += 1;
        if len == 0 {
            break;
        }
        // 0b11 is a compression pointer, 0b01/0b10 are reserved.
        if len & 0xc0 != 0 {
            return Err(reply(Rcode::FormErr));
        }
        let label = message.get(at..at + len).ok_or(reply(Rcode::FormErr))?;
        name_len += len + 1;
        if name_len > 255 {
            return Err(reply(Rcode::FormErr));
        }
        labels.push(
            label
                .iter()
                .map(|b| char::from(b.to_ascii_lowercase()))
                .collect(),
        );
        at += len;
    }
    let qtype = u16_at(message, at).ok_or(reply(Rcode::FormErr))?;
    let qclass = u16_at(message, at + 2).ok_or(reply(Rcode::FormErr))?;
    let question = message[HEADER_LEN..at + 4].to_vec();
    Ok(Query {
        id,
        recursion_desired: flags & 0x0100 != 0,
        name: labels.join("."),
        question,
        qtype,
        qclass,
    })
}

/// Options of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyFlags {
    /// We are the authority for the name (the platform's names).
    pub authoritative: bool,
    /// Recursion available (an upstream is configured).
    pub recursion_available: bool,
}

/// A reply to `query`: the question echoed, `answers` as A records of the
/// question's name with `ttl` seconds.
pub fn reply(
    query: &Query,
    rcode: Rcode,
    flags: ReplyFlags,
    answers: &[std::net::Ipv4Addr],
    ttl: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + query.question.len() + answers.len() * 16);
    let mut bits: u16 = 0x8000 | rcode as u16;
    if flags.authoritative {
        bits |= 0x0400;
    }
    if query.recursion_desired {
        bits |= 0x0100;
    }
    if flags.recursion_available {
        bits |= 0x0080;
    }
    let ancount = u16::try_from(answers.len()).unwrap_or(u16::MAX);
    for word in [query.id, bits, 1, ancount, 0, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(&query.question);
    for address in answers.iter().take(usize::from(ancount)) {
        out.extend_from_slice(&0xc00c_u16.to_be_bytes());
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4_u16.to_be_bytes());
        out.extend_from_slice(&address.octets());
    }
    out
}

/// A header-only error reply (the question could not be read).
pub fn error_reply(id: u16, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    for word in [id, 0x8000 | rcode as u16, 0, 0, 0, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out
}

/// A query for `name` and `qtype` with transaction id `id` (for tests, the
/// benchmarks and the forwarder's own checks).
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    for word in [id, 0x0100, 1, 0, 0, 0] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// What a reply says, read back (for tests and the forwarder's checks): its
/// id, response code and A answers. `None` when it is not a reply.
pub fn parse_reply(message: &[u8]) -> Option<(u16, u8, Vec<std::net::Ipv4Addr>)> {
    let id = u16_at(message, 0)?;
    let flags = u16_at(message, 2)?;
    if flags & 0x8000 == 0 {
        return None;
    }
    let rcode = (flags & 0x0f) as u8;
    let qdcount = u16_at(message, 4)?;
    let ancount = u16_at(message, 6)?;
    let mut at = HEADER_LEN;
    for _ in 0..qdcount {
        at = skip_name(message, at)? + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..ancount {
        at = skip_name(message, at)?;
        let rtype = u16_at(message, at)?;
        let rdlength = usize::from(u16_at(message, at + 8)?);
        let data = message.get(at + 10..at + 10 + rdlength)?;
        if rtype == TYPE_A
            && let Ok(octets) = <[u8; 4]>::try_from(data)
        {
            answers.push(std::net::Ipv4Addr::from(octets));
        }
        at += 10 + rdlength;
    }
    Some((id, rcode, answers))
}

/// The offset after the name at `at` (labels, or labels ending in a pointer).
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *message.get(at)?;
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1 + usize::from(len);
        if len == 0 {
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn a_query_round_trips_into_an_answer() {
        let message = build_query(0x1234, "App.Web.", TYPE_A);
        let query = parse_query(&message).expect("a query");
        assert_eq!(query.name, "app.web");
        assert_eq!((query.id, query.qtype, query.qclass), (0x1234, 1, 1));
        assert!(query.recursion_desired);
        let flags = ReplyFlags {
            authoritative: true,
            recursion_available: false,
        };
        let answer = reply(
            &query,
            Rcode::NoError,
            flags,
            &[Ipv4Addr::new(10, 240, 0, 2)],
            5,
        );
        // The header, the question as sent, one A record.
        assert_eq!(&answer[..4], &[0x12, 0x34, 0x85, 0x00]);
        assert_eq!(&answer[12..12 + query.question.len()], &query.question[..]);
        assert_eq!(
            parse_reply(&answer),
            Some((0x1234, 0, vec![Ipv4Addr::new(10, 240, 0, 2)]))
        );
    }

    #[test]
    fn nxdomain_has_no_answer() {
        let query = parse_query(&build_query(7, "db", TYPE_A)).expect("a query");
        let flags = ReplyFlags {
            authoritative: true,
            recursion_available: true,
        };
        let answer = reply(&query, Rcode::NxDomain, flags, &[], 5);
        assert_eq!(parse_reply(&answer), Some((7, 3, vec![])));
        assert_eq!(answer[3] & 0x80, 0x80, "recursion available");
    }

    #[test]
    fn malformed_queries_are_refused_or_dropped() {
        assert_eq!(parse_query(&[0; 5]), Err(ParseError::Drop));
        let mut response = build_query(1, "web", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), Err(ParseError::Drop));
        let mut two = build_query(2, "web", TYPE_A);
        two[5] = 2;
        assert_eq!(
            parse_query(&two),
            Err(ParseError::Reply {
                id: 2,
                rcode: Rcode::FormErr
            })
        );
        let mut notify = build_query(3, "web", TYPE_A);
        notify[2] |= 4 << 3;
        assert_eq!(
            parse_query(&notify),
            Err(ParseError::Reply {
                id: 3,
                rcode: Rcode::NotImp
            })
        );
        let mut pointer = build_query(4, "web", TYPE_A);
        pointer[12] = 0xc0;
        assert!(matches!(
            parse_query(&pointer),
            Err(ParseError::Reply {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        let truncated = &build_query(5, "web", TYPE_A)[..15];
        assert!(matches!(
            parse_query(truncated),
            Err(ParseError::Reply {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        assert_eq!(
            parse_reply(&error_reply(9, Rcode::FormErr)),
            Some((9, 1, vec![]))
        );
    }

    #[test]
    fn names_longer_than_255_bytes_are_formerr() {
        let long = vec!["a".repeat(63); 5].join(".");
        assert!(matches!(
            parse_query(&build_query(1, &long, TYPE_A)),
            Err(ParseError::Reply {
                rcode: Rcode::FormErr,
                ..
            })
        ));
    }
}
