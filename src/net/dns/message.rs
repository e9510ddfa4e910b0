//! DNS messages (RFC 1035): building an A or AAAA query and reading the
//! answer to it. Pure functions over bytes; nothing here touches a socket.
//!
//! The reader trusts nothing: every length is bounds-checked, compression
//! pointers must point strictly backwards (so a pointer loop cannot hang it),
//! the answer must echo our id and question, and only records on the CNAME
//! chain that starts at our own name are believed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

const HEADER_LEN: usize = 12;
/// Longest name on the wire, length bytes and root label included.
const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;
/// CNAME hops followed inside one answer; real chains are one or two long.
const MAX_CNAME_HOPS: usize = 16;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const OPCODE_MASK: u16 = 0x7800;

pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    A,
    Aaaa,
}

impl QType {
    fn code(self) -> u16 {
        match self {
            QType::A => TYPE_A,
            QType::Aaaa => TYPE_AAAA,
        }
    }
}

/// What a server said about our question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Addresses at the end of the CNAME chain, in the server's order.
    Addresses(Vec<IpAddr>),
    /// The name exists but has no record of this type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Any other response code (2 SERVFAIL, 5 REFUSED, ...): ask elsewhere.
    Failed(u8),
    /// The answer did not fit in a datagram: ask again over TCP.
    Truncated,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("empty label in {0:?}")]
    EmptyLabel(String),
    #[error("label longer than 63 bytes in {0:?}")]
    LabelTooLong(String),
    #[error("name longer than 253 characters: {0:?}")]
    TooLong(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("message ends early")]
    Short,
    #[error("not a response to a standard query")]
    NotAResponse,
    #[error("response id does not match the query")]
    WrongId,
    #[error("response question does not match the query")]
    WrongQuestion,
    #[error("compression pointer does not point backwards")]
    BadPointer,
    #[error("unsupported label type")]
    BadLabel,
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("address record of the wrong length")]
    BadAddress,
}

/// A domain name in wire form (length-prefixed labels, root label last),
/// lowercased so that comparing two names is comparing bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireName(Vec<u8>);

impl WireName {
    /// Encodes `example.com` or `example.com.`.
    pub fn from_dotted(name: &str) -> Result<WireName, NameError> {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        let mut wire = Vec::with_capacity(trimmed.len() + 2);
        if !trimmed.is_empty() {
            for label in trimmed.split('.') {
                if label.is_empty() {
                    return Err(NameError::EmptyLabel(name.to_string()));
                }
                if label.len() > MAX_LABEL_LEN {
                    return Err(NameError::LabelTooLong(name.to_string()));
                }
                wire.push(label.len() as u8);
                wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
            }
        }
        wire.push(0);
        if wire.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(name.to_string()));
        }
        Ok(WireName(wire))
    }

    #[cfg(test)]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A recursive (RD) query for one name and type.
pub fn build_query(id: u16, name: &WireName, qtype: QType) -> Vec<u8> {
    let mut msg = Vec::with_capacity(HEADER_LEN + name.0.len() + 4);
    msg.extend(id.to_be_bytes());
    msg.extend(FLAG_RD.to_be_bytes());
    msg.extend(1u16.to_be_bytes()); // QDCOUNT
    msg.extend([0; 6]); // ANCOUNT, NSCOUNT, ARCOUNT
    msg.extend(&name.0);
    msg.extend(qtype.code().to_be_bytes());
    msg.extend(CLASS_IN.to_be_bytes());
    msg
}

/// The id of a message, to match a datagram to its query before parsing.
pub fn message_id(msg: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.first()?, *msg.get(1)?]))
}

/// Reads the response to the query (`id`, `name`, `qtype`). An error means
/// the message is not a believable answer to it and should be ignored.
pub fn parse_response(msg: &[u8], id: u16, name: &WireName, qtype: QType) -> Result<Answer, ParseError> {
    let mut r = Reader { msg, pos: 0 };
    let got_id = r.u16()?;
    let flags = r.u16()?;
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    r.skip(4)?; // NSCOUNT, ARCOUNT: never needed for an address lookup
    if flags & FLAG_QR == 0 || flags & OPCODE_MASK != 0 {
        return Err(ParseError::NotAResponse);
    }
    if got_id != id {
        return Err(ParseError::WrongId);
    }
    // The echoed question is what ties the answer to our query beyond a
    // 16-bit id, so it is required even in error responses.
    if qdcount != 1 {
        return Err(ParseError::WrongQuestion);
    }
    let qname = r.name()?;
    let (qt, qclass) = (r.u16()?, r.u16()?);
    if qname != *name || qt != qtype.code() || qclass != CLASS_IN {
        return Err(ParseError::WrongQuestion);
    }
    if flags & FLAG_TC != 0 {
        return Ok(Answer::Truncated);
    }
    match (flags & 0x000f) as u8 {
        0 => {}
        RCODE_NXDOMAIN => return Ok(Answer::NxDomain),
        rcode => return Ok(Answer::Failed(rcode)),
    }

    let mut records = Vec::with_capacity(usize::from(ancount));
    for _ in 0..ancount {
        records.push(r.record()?);
    }
    Ok(follow_chain(name, qtype, &records))
}

#[derive(Debug)]
enum Data {
    Addr(IpAddr),
    Cname(WireName),
    Other,
}

#[derive(Debug)]
struct Record {
    owner: WireName,
    data: Data,
}

/// Walks from the question's name through CNAMEs to the addresses. Records
/// owned by names off the chain are ignored: a server (or a spoofer) may
/// not answer for names nobody asked about.
fn follow_chain(name: &WireName, qtype: QType, records: &[Record]) -> Answer {
    let mut current = name;
    for _ in 0..=MAX_CNAME_HOPS {
        let addrs: Vec<IpAddr> = records
            .iter()
            .filter(|rec| rec.owner == *current)
            .filter_map(|rec| match rec.data {
                Data::Addr(ip)
                    if matches!(
                        (qtype, ip),
                        (QType::A, IpAddr::V4(_)) | (QType::Aaaa, IpAddr::V6(_))
                    ) =>
                {
                    Some(ip)
                }
                _ => None,
            })
            .collect();
        if !addrs.is_empty() {
            return Answer::Addresses(addrs);
        }
        let next = records.iter().find_map(|rec| match &rec.data {
            Data::Cname(target) if rec.owner == *current => Some(target),
            _ => None,
        });
        match next {
            Some(target) => current = target,
            None => break,
        }
    }
    // A chain that ends without addresses (or loops) answers nothing usable.
    Answer::NoData
}

struct Reader<'m> {
    msg: &'m [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Short)?;
        let bytes = self.msg.get(self.pos..end).ok_or(ParseError::Short)?;
        self.pos = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), ParseError> {
        self.take(n).map(drop)
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn name(&mut self) -> Result<WireName, ParseError> {
        let (name, end) = read_name(self.msg, self.pos)?;
        self.pos = end;
        Ok(name)
    }

    fn record(&mut self) -> Result<Record, ParseError> {
        let owner = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        self.skip(4)?; // TTL: every probe asks afresh
        let len = usize::from(self.u16()?);
        let start = self.pos;
        let rdata = self.take(len)?;
        let data = match (rtype, class) {
            (TYPE_A, CLASS_IN) => {
                let octets: [u8; 4] = rdata.try_into().map_err(|_| ParseError::BadAddress)?;
                Data::Addr(IpAddr::V4(Ipv4Addr::from(octets)))
            }
            (TYPE_AAAA, CLASS_IN) => {
                let octets: [u8; 16] = rdata.try_into().map_err(|_| ParseError::BadAddress)?;
                Data::Addr(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            (TYPE_CNAME, CLASS_IN) => {
                // The target may be compressed against the whole message,
                // but must lie within this record's data.
                let (target, end) = read_name(self.msg, start)?;
                if end > self.pos {
                    return Err(ParseError::Short);
                }
                Data::Cname(target)
            }
            _ => Data::Other,
        };
        Ok(Record { owner, data })
    }
}

/// Reads the (possibly compressed) name at `start`; returns it and the
/// offset just past it in the original position.
///
/// Each pointer must point strictly before the previous jump's target (the
/// first: before `start`). Legitimate compression only ever refers to names
/// written earlier, and a strictly decreasing offset cannot cycle, so
/// malicious loops end in an error after at most `msg.len()` jumps.
fn read_name(msg: &[u8], start: usize) -> Result<(WireName, usize), ParseError> {
    let mut wire = Vec::new();
    let mut pos = start;
    let mut floor = start;
    let mut end = None;
    loop {
        let len = *msg.get(pos).ok_or(ParseError::Short)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                wire.push(0);
                return Ok((WireName(wire), end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or(ParseError::Short)?;
                wire.push(len);
                wire.extend(label.iter().map(u8::to_ascii_lowercase));
                // The root label still has to fit.
                if wire.len() >= MAX_NAME_LEN {
                    return Err(ParseError::NameTooLong);
                }
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(ParseError::Short)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= floor {
                    return Err(ParseError::BadPointer);
                }
                end.get_or_insert(pos + 2);
                floor = target;
                pos = target;
            }
            // 0x40 (extended) and 0x80 label types are obsolete or unused.
            _ => return Err(ParseError::BadLabel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> WireName {
        WireName::from_dotted(text).unwrap()
    }

    /// Header for a response: id, flags, counts (qd=1).
    fn header(id: u16, flags: u16, ancount: u16) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(id.to_be_bytes());
        m.extend(flags.to_be_bytes());
        m.extend([0, 1]);
        m.extend(ancount.to_be_bytes());
        m.extend([0, 0, 0, 0]);
        m
    }

    /// `db.svc` A IN question, at offset 12.
    const QUESTION_DB_SVC_A: &[u8] = &[2, b'd', b'b', 3, b's', b'v', b'c', 0, 0, 1, 0, 1];

    fn record(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut m = owner.to_vec();
        m.extend(rtype.to_be_bytes());
        m.extend(CLASS_IN.to_be_bytes());
        m.extend(60u32.to_be_bytes());
        m.extend((rdata.len() as u16).to_be_bytes());
        m.extend(rdata);
        m
    }

    /// Pointer to offset 12, where the question's name starts.
    const PTR_QNAME: &[u8] = &[0xc0, 12];

    #[test]
    fn builds_the_query_byte_for_byte() {
        let q = build_query(0xbeef, &name("DB.svc."), QType::Aaaa);
        assert_eq!(
            q,
            [
                0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header, RD
                2, b'd', b'b', 3, b's', b'v', b'c', 0, // lowercased name
                0, 28, 0, 1, // AAAA IN
            ]
        );
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(name("a.b").as_bytes(), [1, b'a', 1, b'b', 0]);
        assert_eq!(name(".").as_bytes(), [0]);
        assert!(matches!(
            WireName::from_dotted("a..b"),
            Err(NameError::EmptyLabel(_))
        ));
        assert!(matches!(
            WireName::from_dotted(&"x".repeat(64)),
            Err(NameError::LabelTooLong(_))
        ));
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(matches!(WireName::from_dotted(&long), Err(NameError::TooLong(_))));
        let fits = vec!["abcdefghi"; 25].join(".");
        assert!(WireName::from_dotted(&fits).is_ok());
    }

    #[test]
    fn reads_a_compressed_a_answer() {
        let mut m = header(7, 0x8180, 2);
        m.extend(QUESTION_DB_SVC_A);
        m.extend(record(PTR_QNAME, TYPE_A, &[10, 0, 0, 5]));
        m.extend(record(PTR_QNAME, TYPE_A, &[10, 0, 0, 6]));
        assert_eq!(
            parse_response(&m, 7, &name("db.svc"), QType::A),
            Ok(Answer::Addresses(vec![
                "10.0.0.5".parse().unwrap(),
                "10.0.0.6".parse().unwrap()
            ]))
        );
    }

    #[test]
    fn question_matching_ignores_case() {
        let mut m = header(7, 0x8180, 1);
        m.extend([2, b'D', b'b', 3, b'S', b'V', b'C', 0, 0, 1, 0, 1]);
        m.extend(record(PTR_QNAME, TYPE_A, &[10, 0, 0, 5]));
        assert!(matches!(
            parse_response(&m, 7, &name("db.svc"), QType::A),
            Ok(Answer::Addresses(_))
        ));
    }

    #[test]
    fn follows_a_cname_chain_in_any_record_order() {
        let mut m = header(1, 0x8180, 3);
        m.extend(QUESTION_DB_SVC_A); // "db.svc" at 12, "svc" at 15
        // The final address comes first: real.svc A 10.1.1.1.
        let real_at = m.len() as u8;
        m.extend(record(
            &[4, b'r', b'e', b'a', b'l', 0xc0, 15],
            TYPE_A,
            &[10, 1, 1, 1],
        ));
        // db.svc CNAME mid.svc
        m.extend(record(PTR_QNAME, TYPE_CNAME, &[3, b'm', b'i', b'd', 0xc0, 15]));
        // mid.svc CNAME real.svc, the target a pointer to record 1's owner.
        m.extend(record(
            &[3, b'm', b'i', b'd', 0xc0, 15],
            TYPE_CNAME,
            &[0xc0, real_at],
        ));
        assert_eq!(
            parse_response(&m, 1, &name("db.svc"), QType::A),
            Ok(Answer::Addresses(vec!["10.1.1.1".parse().unwrap()]))
        );
    }

    #[test]
    fn records_off_the_chain_are_not_believed() {
        let mut m = header(1, 0x8180, 1);
        m.extend(QUESTION_DB_SVC_A);
        m.extend(record(
            &[5, b'e', b'v', b'i', b'l', b'x', 0],
            TYPE_A,
            &[6, 6, 6, 6],
        ));
        assert_eq!(
            parse_response(&m, 1, &name("db.svc"), QType::A),
            Ok(Answer::NoData)
        );
    }

    #[test]
    fn a_cname_loop_ends_as_no_data() {
        let mut m = header(1, 0x8180, 2);
        m.extend(QUESTION_DB_SVC_A);
        let b_at = m.len();
        m.extend(record(&[1, b'b', 0], TYPE_CNAME, PTR_QNAME));
        m.extend(record(PTR_QNAME, TYPE_CNAME, &[0xc0, b_at as u8]));
        assert_eq!(
            parse_response(&m, 1, &name("db.svc"), QType::A),
            Ok(Answer::NoData)
        );
    }

    #[test]
    fn aaaa_answers_and_type_filtering() {
        let mut m = header(2, 0x8180, 2);
        m.extend([2, b'd', b'b', 3, b's', b'v', b'c', 0, 0, 28, 0, 1]);
        m.extend(record(PTR_QNAME, TYPE_A, &[10, 0, 0, 1]));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        m.extend(record(PTR_QNAME, TYPE_AAAA, &v6));
        assert_eq!(
            parse_response(&m, 2, &name("db.svc"), QType::Aaaa),
            Ok(Answer::Addresses(vec!["::1".parse().unwrap()]))
        );
    }

    #[test]
    fn response_codes() {
        for (flags, want) in [
            (0x8183, Answer::NxDomain),
            (0x8182, Answer::Failed(RCODE_SERVFAIL)),
            (0x8185, Answer::Failed(5)),
            (0x8380, Answer::Truncated),
            (0x8180, Answer::NoData),
        ] {
            let mut m = header(9, flags, 0);
            m.extend(QUESTION_DB_SVC_A);
            assert_eq!(
                parse_response(&m, 9, &name("db.svc"), QType::A),
                Ok(want),
                "{flags:#x}"
            );
        }
    }

    #[test]
    fn foreign_or_malformed_messages_are_rejected() {
        let mut ok = header(9, 0x8180, 0);
        ok.extend(QUESTION_DB_SVC_A);
        let parse = |m: &[u8]| parse_response(m, 9, &name("db.svc"), QType::A);
        assert_eq!(parse(&ok), Ok(Answer::NoData));
        assert_eq!(
            parse_response(&ok, 10, &name("db.svc"), QType::A),
            Err(ParseError::WrongId)
        );
        assert_eq!(
            parse_response(&ok, 9, &name("db.other"), QType::A),
            Err(ParseError::WrongQuestion)
        );
        assert_eq!(
            parse_response(&ok, 9, &name("db.svc"), QType::Aaaa),
            Err(ParseError::WrongQuestion)
        );
        let mut query = ok.clone();
        query[2] &= 0x7f; // QR clear: a query, not a response
        assert_eq!(parse(&query), Err(ParseError::NotAResponse));
        for cut in 0..ok.len() {
            assert_eq!(parse(&ok[..cut]), Err(ParseError::Short), "cut at {cut}");
        }
        let mut no_question = header(9, 0x8180, 0);
        no_question[5] = 0;
        assert_eq!(parse(&no_question), Err(ParseError::WrongQuestion));
    }

    #[test]
    fn record_data_is_bounds_checked() {
        let mut m = header(1, 0x8180, 1);
        m.extend(QUESTION_DB_SVC_A);
        m.extend(record(PTR_QNAME, TYPE_A, &[10, 0, 0]));
        assert_eq!(
            parse_response(&m, 1, &name("db.svc"), QType::A),
            Err(ParseError::BadAddress)
        );
        let mut m = header(1, 0x8180, 1);
        m.extend(QUESTION_DB_SVC_A);
        let mut rec = record(PTR_QNAME, TYPE_A, &[10, 0, 0, 1]);
        rec.truncate(rec.len() - 1);
        m.extend(rec);
        assert_eq!(
            parse_response(&m, 1, &name("db.svc"), QType::A),
            Err(ParseError::Short)
        );
        // A CNAME target running past its rdata.
        let mut m = header(1, 0x8180, 1);
        m.extend(QUESTION_DB_SVC_A);
        let mut rec = record(PTR_QNAME, TYPE_CNAME, &[3, b'a', b'b']);
        rec.extend([b'c', 0]);
        m.extend(rec);
        assert_eq!(
            parse_response(&m, 1, &name("db.svc"), QType::A),
            Err(ParseError::Short)
        );
    }

    #[test]
    fn pointer_loops_and_forward_pointers_fail_fast() {
        // Self pointer at offset 12.
        let mut m = header(1, 0x8180, 0);
        m.extend([0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(read_name(&m, 12), Err(ParseError::BadPointer));
        // Forward pointer.
        let mut m = header(1, 0x8180, 0);
        m.extend([0xc0, 14, 1, b'a', 0]);
        assert_eq!(read_name(&m, 12), Err(ParseError::BadPointer));
        // Label then a pointer back to that label: a<ptr to a> would repeat
        // forever if the pointer were only checked against its own offset.
        let mut m = header(1, 0x8180, 0);
        m.extend([1, b'a', 0xc0, 12]);
        assert_eq!(read_name(&m, 12), Err(ParseError::BadPointer));
        assert_eq!(read_name(&m, 14), Err(ParseError::BadPointer));
        // Two pointers pointing at each other.
        let mut m = header(1, 0x8180, 0);
        m.extend([0xc0, 14, 0xc0, 12]);
        assert_eq!(read_name(&m, 14), Err(ParseError::BadPointer));
        // The same loop in a record owner inside a full response.
        let mut m = header(1, 0x8180, 1);
        m.extend(QUESTION_DB_SVC_A);
        let at = m.len() as u8;
        m.extend(record(&[1, b'x', 0xc0, at], TYPE_A, &[1, 2, 3, 4]));
        assert_eq!(
            parse_response(&m, 1, &name("db.svc"), QType::A),
            Err(ParseError::BadPointer)
        );
    }

    #[test]
    fn chains_of_backward_pointers_are_fine() {
        // "svc" at 12, "db" + ptr(12) at 17, ptr(17) at 22.
        let mut m = header(1, 0x8180, 0);
        m.extend([3, b's', b'v', b'c', 0, 2, b'd', b'b', 0xc0, 12, 0xc0, 17]);
        assert_eq!(read_name(&m, 22), Ok((name("db.svc"), 24)));
        assert_eq!(read_name(&m, 17), Ok((name("db.svc"), 22)));
    }

    #[test]
    fn overlong_names_are_rejected() {
        // 128 one-byte labels = 256 bytes before the root label.
        let mut m = header(1, 0x8180, 0);
        for _ in 0..128 {
            m.extend([1, b'a']);
        }
        m.push(0);
        assert_eq!(read_name(&m, 12), Err(ParseError::NameTooLong));
        let mut m = header(1, 0x8180, 0);
        m.extend([0x40, 0]);
        assert_eq!(read_name(&m, 12), Err(ParseError::BadLabel));
    }

    #[test]
    fn message_id_reads_the_first_two_bytes() {
        assert_eq!(message_id(&[0x12, 0x34, 0]), Some(0x1234));
        assert_eq!(message_id(&[0x12]), None);
    }

    /// Property tests: a DNS answer is whatever reaches the socket (a broken
    /// server, a spoofer); no datagram may panic or hang the resolver.
    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A valid header and question for `db.svc` A, then anything.
        fn response() -> impl Strategy<Value = Vec<u8>> {
            (
                any::<u16>(),
                0u16..8,
                proptest::collection::vec(any::<u8>(), 0..300),
            )
                .prop_map(|(flags, ancount, tail)| {
                    let mut m = header(7, 0x8180 | (flags & 0x020f), ancount);
                    m.extend(QUESTION_DB_SVC_A);
                    m.extend(tail);
                    m
                })
        }

        /// Records with names made of labels and compression pointers.
        fn records() -> impl Strategy<Value = Vec<u8>> {
            let label = prop_oneof![
                "[a-z]{1,4}".prop_map(|l| {
                    let mut v = vec![l.len() as u8];
                    v.extend(l.into_bytes());
                    v
                }),
                (0u16..64).prop_map(|to| vec![0xc0 | (to >> 8) as u8, to as u8]),
                Just(vec![0]),
            ];
            let owner = proptest::collection::vec(label, 1..4).prop_map(|ls| ls.concat());
            let rdata = proptest::collection::vec(any::<u8>(), 0..20);
            proptest::collection::vec(
                (
                    owner,
                    prop_oneof![Just(1u16), Just(5), Just(28), any::<u16>()],
                    rdata,
                ),
                0..6,
            )
            .prop_map(|recs| {
                let mut m = header(7, 0x8180, recs.len() as u16);
                m.extend(QUESTION_DB_SVC_A);
                for (owner, rtype, rdata) in recs {
                    m.extend(record(&owner, rtype, &rdata));
                }
                m
            })
        }

        proptest! {
            #![proptest_config(crate::props::config())]
            #[test]
            fn any_datagram_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..600)) {
                for qtype in [QType::A, QType::Aaaa] {
                    let _ = parse_response(&msg, 7, &name("db.svc"), qtype);
                }
                let _ = message_id(&msg);
            }

            #[test]
            fn answers_with_garbage_records_never_panic(msg in response()) {
                let _ = parse_response(&msg, 7, &name("db.svc"), QType::A);
            }

            #[test]
            fn compressed_records_never_panic(msg in records()) {
                if let Ok(Answer::Addresses(ips)) = parse_response(&msg, 7, &name("db.svc"), QType::A) {
                    prop_assert!(ips.iter().all(|ip| ip.is_ipv4()));
                }
            }

            #[test]
            fn any_name_is_encoded_or_refused(text in any::<String>()) {
                if let Ok(wire) = WireName::from_dotted(&text) {
                    prop_assert!(wire.as_bytes().len() <= 255);
                    prop_assert_eq!(wire.as_bytes().last(), Some(&0));
                }
            }
        }
    }
}
