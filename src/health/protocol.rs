//! The control socket's protocol, version 1. Small on purpose, and
//! read-only: no request changes what the supervisor does.
//!
//! A client connects, sends one line, and reads one line back, after which
//! the supervisor closes the connection:
//!
//! ```text
//! -> initd/1 check
//! <- {"protocol":1,"healthy":true,"state":"running","reason":"...",...}
//! ```
//!
//! `check` is the only request. The answer is the full status as a JSON
//! object ([`Report`]); a request the supervisor cannot serve gets
//! `{"protocol":1,"error":"..."}` instead. A request is at most
//! [`MAX_REQUEST`] bytes and must arrive within a second or two of the
//! connection; longer or slower ones are answered with an error or dropped.

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const VERSION: u32 = 1;
/// The longest request line, newline included.
pub const MAX_REQUEST: usize = 256;
/// The longest answer a client accepts: far above any real status (a few
/// hundred bytes, plus one line per dev-mode watcher).
pub const MAX_REPLY: usize = 1 << 20;
/// How the error a client gets when every connection the supervisor
/// serves at once is taken begins; `initd check` asks again.
pub const BUSY: &str = "busy";

/// What a client may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The state, healthy or not and why, with a fresh probe result when
    /// the server runs; and everything `initd status` shows.
    Check,
}

impl Request {
    pub fn line(self) -> &'static [u8] {
        match self {
            Request::Check => b"initd/1 check\n",
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("not an initd request; send `initd/1 check` and a newline")]
    Malformed,
    #[error("protocol {0:?} is not supported; this initd speaks initd/1")]
    Version(String),
    #[error("unknown request {0:?}; the only one is `check`")]
    Unknown(String),
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
}

/// What the bytes a client has sent so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// No newline yet, and room for more.
    Incomplete,
    /// The request line, without its newline.
    Line(&'a [u8]),
    /// [`MAX_REQUEST`] bytes and no newline among them.
    TooLong,
}

/// Finds the request line in what a client has sent so far. Only the first
/// [`MAX_REQUEST`] bytes count, so what a client sends beyond them cannot
/// make the supervisor read or hold more.
pub fn frame(received: &[u8]) -> Frame<'_> {
    let head = &received[..received.len().min(MAX_REQUEST)];
    match head.iter().position(|b| *b == b'\n') {
        Some(end) => Frame::Line(&head[..end]),
        None if head.len() == MAX_REQUEST => Frame::TooLong,
        None => Frame::Incomplete,
    }
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    let line = std::str::from_utf8(line).map_err(|_| RequestError::Malformed)?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split(' ');
    let (Some(version), Some(verb), None) = (words.next(), words.next(), words.next()) else {
        return Err(RequestError::Malformed);
    };
    let Some(number) = version.strip_prefix("initd/") else {
        return Err(RequestError::Malformed);
    };
    if number != VERSION.to_string() {
        return Err(RequestError::Version(version.chars().take(32).collect()));
    }
    match verb {
        "check" => Ok(Request::Check),
        other => Err(RequestError::Unknown(other.chars().take(32).collect())),
    }
}

/// The supervisor's answer to `check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub protocol: u32,
    /// What `initd check` exits on: 0 when true.
    pub healthy: bool,
    /// starting, running, idle, unhealthy, draining or stopping.
    pub state: String,
    pub reason: String,
    /// How long initd has been running.
    pub uptime_ms: u64,
    /// The main child (the server), while it runs.
    pub main_pid: Option<u32>,
    /// How often the main child was restarted (dev mode's reloads).
    pub main_restarts: u32,
    /// The probe this check ran; absent while none runs (start-up, a stop,
    /// idle) and with the default, which needs no probe.
    pub probe: Option<ProbeReport>,
    /// Dev mode's watchers and server.
    pub processes: Vec<ProcessReport>,
    /// `PID 1`, or `entrypoint under another init (PID 1 is tini)`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// While initd waits for the migration lock: what it waits for and
    /// who holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockReport>,
}

/// The migration lock being waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockReport {
    /// The lock and the database it is taken on (password masked).
    pub lock: String,
    /// One line: connecting, or waiting for the holder.
    pub detail: String,
    pub waited_ms: u64,
    /// The session holding it, when the server shows it.
    pub holder: Option<LockHolderReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolderReport {
    /// The holder's PostgreSQL backend pid.
    pub pid: i32,
    /// `initd migrate HOSTNAME` for another initd.
    pub application_name: String,
    pub client_addr: String,
    /// When the holder's session began, by the server's clock.
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// `INITD_HEALTH` as initd understood it.
    pub probe: String,
    pub ok: bool,
    pub detail: String,
    pub took_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessReport {
    pub name: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub note: String,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    protocol: u32,
    error: &'a str,
}

/// One line: the report as JSON and a newline.
pub fn encode(report: &Report) -> Vec<u8> {
    let mut out = serde_json::to_vec(report).expect("a report always serialises");
    out.push(b'\n');
    out
}

pub fn encode_error(error: &str) -> Vec<u8> {
    let reply = ErrorReply {
        protocol: VERSION,
        error,
    };
    let mut out = serde_json::to_vec(&reply).expect("an error always serialises");
    out.push(b'\n');
    out
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReplyError {
    #[error("the supervisor refused the request: {0}")]
    Refused(String),
    #[error("the supervisor speaks protocol {0}, this initd speaks {VERSION}; run the same initd binary")]
    Version(u64),
    #[error("the supervisor's answer is not understood ({0})")]
    Garbled(String),
}

/// Decodes an answer (the newline optional).
pub fn decode(reply: &[u8]) -> Result<Report, ReplyError> {
    let value: serde_json::Value =
        serde_json::from_slice(reply).map_err(|e| ReplyError::Garbled(e.to_string()))?;
    match value.get("protocol").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => return Err(ReplyError::Version(v)),
        None => return Err(ReplyError::Garbled("no protocol version".into())),
    }
    if let Some(error) = value.get("error") {
        return Err(ReplyError::Refused(
            error.as_str().unwrap_or_default().to_string(),
        ));
    }
    serde_json::from_value(value).map_err(|e| ReplyError::Garbled(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            protocol: VERSION,
            healthy: false,
            state: "starting".into(),
            reason: "migration running".into(),
            uptime_ms: 1500,
            main_pid: None,
            main_restarts: 0,
            probe: Some(ProbeReport {
                probe: "http://127.0.0.1:8000/healthz".into(),
                ok: false,
                detail: "HTTP 503 \"busy\"".into(),
                took_ms: 3,
            }),
            role: String::new(),
            lock: None,
            processes: vec![ProcessReport {
                name: "css".into(),
                pid: Some(12),
                restarts: 2,
                note: "running".into(),
            }],
        }
    }

    #[test]
    fn the_request_line_parses() {
        let line = Request::Check.line();
        assert_eq!(parse_request(&line[..line.len() - 1]), Ok(Request::Check));
        assert_eq!(parse_request(b"initd/1 check\r"), Ok(Request::Check));
    }

    #[test]
    fn bad_requests_are_named() {
        assert_eq!(parse_request(b""), Err(RequestError::Malformed));
        assert_eq!(parse_request(b"GET / HTTP/1.1"), Err(RequestError::Malformed));
        assert_eq!(parse_request(b"check"), Err(RequestError::Malformed));
        assert_eq!(parse_request(b"\xff\xfe check"), Err(RequestError::Malformed));
        assert_eq!(
            parse_request(b"initd/2 check"),
            Err(RequestError::Version("initd/2".into()))
        );
        assert_eq!(
            parse_request(b"initd/1 restart"),
            Err(RequestError::Unknown("restart".into()))
        );
        assert_eq!(parse_request(b"initd/1 check now"), Err(RequestError::Malformed));
    }

    #[test]
    fn a_report_survives_the_wire() {
        let wire = encode(&report());
        assert_eq!(wire.last(), Some(&b'\n'));
        assert_eq!(wire.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(decode(&wire), Ok(report()));
    }

    #[test]
    fn errors_and_other_versions_are_reported() {
        assert_eq!(
            decode(&encode_error("request longer than 256 bytes")),
            Err(ReplyError::Refused("request longer than 256 bytes".into()))
        );
        assert_eq!(
            decode(br#"{"protocol":2,"healthy":true}"#),
            Err(ReplyError::Version(2))
        );
        assert!(matches!(decode(b"{\"protocol\":1}"), Err(ReplyError::Garbled(_))));
        assert!(matches!(decode(b"ok"), Err(ReplyError::Garbled(_))));
    }
}

/// The socket's side of the protocol meets whatever a local process sends:
/// fuzzed here. `PROPTEST_CASES=100000 cargo test --lib props` runs them
/// longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// The longest answer to a request that is not understood: the fixed
    /// words and at most 32 echoed characters, each at most 6 bytes once
    /// escaped for JSON (`\u0001`).
    const MAX_ERROR_REPLY: usize = 256;

    /// Bytes that look like a request more often than uniform ones do.
    fn request_like() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "(initd|INITD|initd/|initd/1|initd/01|initd/1 |initd/1  check)?[ -~\\r\\n\\t\\u{0}\\u{ff}]{0,20}"
                .prop_map(String::into_bytes),
            (
                "(initd/[0-9]{0,3}|[a-z/]{0,8})",
                "( |  |\\t)?",
                "(check|CHECK|check |[a-z]{0,10})",
                "(\\r|\\r\\r|\\n)?"
            )
                .prop_map(|(a, b, c, d)| format!("{a}{b}{c}{d}").into_bytes()),
        ]
    }

    proptest! {
        #![proptest_config(crate::props::config())]

        /// Only the one request line is accepted; anything else gets an
        /// error that names it, as one short JSON line a client decodes
        /// back to the same message.
        #[test]
        fn only_the_check_request_is_accepted(line in request_like()) {
            match parse_request(&line) {
                Ok(Request::Check) => {
                    prop_assert!(line == b"initd/1 check" || line == b"initd/1 check\r", "{:?}", line);
                }
                Err(e) => {
                    let reply = encode_error(&e.to_string());
                    prop_assert!(reply.len() <= MAX_ERROR_REPLY, "{} bytes", reply.len());
                    prop_assert_eq!(reply.iter().filter(|b| **b == b'\n').count(), 1);
                    prop_assert_eq!(reply.last(), Some(&b'\n'));
                    prop_assert_eq!(decode(&reply), Err(ReplyError::Refused(e.to_string())));
                }
            }
        }

        /// However a client splits what it sends, the supervisor sees the
        /// same request: framing depends only on the bytes, never on how
        /// they arrive, and never holds more than MAX_REQUEST of them.
        #[test]
        fn framing_does_not_depend_on_how_bytes_arrive(
            bytes in request_like(),
            cuts in proptest::collection::vec(1usize..64, 0..16),
        ) {
            let whole = frame(&bytes);
            match whole {
                Frame::Line(line) => {
                    prop_assert!(line.len() < MAX_REQUEST && !line.contains(&b'\n'));
                    prop_assert_eq!(bytes.get(line.len()), Some(&b'\n'));
                }
                Frame::TooLong => prop_assert!(!bytes[..MAX_REQUEST].contains(&b'\n')),
                Frame::Incomplete => prop_assert!(bytes.len() < MAX_REQUEST && !bytes.contains(&b'\n')),
            }
            // Read piece by piece into a MAX_REQUEST buffer, as the
            // connection handler does, stopping at the first verdict.
            let mut received = Vec::new();
            let mut rest = &bytes[..];
            let mut cuts = cuts.into_iter();
            let verdict = loop {
                match frame(&received) {
                    Frame::Incomplete if !rest.is_empty() => {}
                    verdict => break verdict,
                }
                let room = MAX_REQUEST - received.len();
                let n = cuts.next().unwrap_or(usize::MAX).min(rest.len()).min(room);
                received.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            };
            prop_assert_eq!(verdict, whole);
            prop_assert!(received.len() <= MAX_REQUEST);
        }

        /// A client never panics on what comes back, whatever it is.
        #[test]
        fn any_reply_decodes_or_fails_cleanly(reply in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "\\{\"protocol\":[0-9]{1,3}(,\"(error|healthy|state|reason)\":(true|null|1|\"[ -~]{0,8}\"|\\[\\]))*\\}\n?"
                .prop_map(String::into_bytes),
        ]) {
            match decode(&reply) {
                Ok(report) => prop_assert_eq!(report.protocol, VERSION),
                Err(ReplyError::Refused(_) | ReplyError::Version(_) | ReplyError::Garbled(_)) => {}
            }
        }

        /// Whatever a report holds (a reason or a probe's output with
        /// newlines, quotes, control characters), it is one line on the
        /// wire and reads back the same.
        #[test]
        fn any_report_is_one_line_and_reads_back(
            healthy in any::<bool>(),
            texts in proptest::collection::vec(any::<String>(), 5),
            numbers in (any::<u64>(), any::<Option<u32>>(), any::<u32>(), any::<u64>()),
            with_probe in any::<bool>(),
        ) {
            let report = Report {
                protocol: VERSION,
                healthy,
                state: texts[0].clone(),
                reason: texts[1].clone(),
                uptime_ms: numbers.0,
                main_pid: numbers.1,
                main_restarts: numbers.2,
                probe: with_probe.then(|| ProbeReport {
                    probe: texts[2].clone(),
                    ok: !healthy,
                    detail: texts[3].clone(),
                    took_ms: numbers.3,
                }),
                role: String::new(),
                lock: None,
                processes: vec![ProcessReport {
                    name: texts[4].clone(),
                    pid: numbers.1,
                    restarts: numbers.2,
                    note: texts[1].clone(),
                }],
            };
            let wire = encode(&report);
            prop_assert_eq!(wire.iter().filter(|b| **b == b'\n').count(), 1);
            prop_assert_eq!(wire.last(), Some(&b'\n'));
            prop_assert_eq!(decode(&wire), Ok(report));
        }
    }
}
