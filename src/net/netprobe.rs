//! The one TCP/HTTP probe client: "connect, send the request (for HTTP),
//! read the status line", within a deadline, in the same words wherever it
//! runs. The start-up wait (`INITD_WAIT_FOR`) drives it with [`run`], a
//! poll(2) on its socket and an interrupt descriptor; the control socket's
//! loop drives the same [`Exchange`] as one of its poll sources, so a
//! health probe needs no thread and no runtime.
//!
//! The exchange never blocks: each step is tried when poll says the socket
//! is ready, and what a step means for the outcome ([`StatusLine`],
//! [`judge`]) is pure.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self, SockaddrStorage, sockopt};

use crate::net::netio::{self, Interrupt, NetError};

/// More than any status line; a server sending more without a line break
/// is not speaking HTTP.
pub const MAX_STATUS_LINE: usize = 1024;

/// Why a probe did not find its target up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The interrupt descriptor became readable (a stop signal is pending).
    Interrupted,
    /// Not up (yet), and why, in the words every message uses.
    Down(String),
}

/// The usual network failures in the words people search for, without
/// std's "(os error 111)".
pub fn describe(err: &io::Error) -> String {
    use std::io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        AddrNotAvailable => "address not available".into(),
        _ => err.to_string(),
    }
}

/// The status line as it arrives, in pieces: complete at the first line
/// break, at the end of the stream, or once it is longer than any status
/// line (then without its reason phrase, see [`status_only`]).
#[derive(Debug, Default)]
pub struct StatusLine {
    line: Vec<u8>,
}

impl StatusLine {
    /// Adds what was read; `Some` once the line is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.line.extend_from_slice(bytes);
        if let Some(end) = self.line.iter().position(|b| *b == b'\n') {
            self.line.truncate(end);
            return Some(std::mem::take(&mut self.line));
        }
        if self.line.len() > MAX_STATUS_LINE {
            return Some(status_only(std::mem::take(&mut self.line)));
        }
        None
    }

    /// The stream ended: what came is the line, if anything did.
    pub fn end(&mut self) -> Result<Vec<u8>, String> {
        if self.line.is_empty() {
            return Err("connection closed without an HTTP response".into());
        }
        Ok(std::mem::take(&mut self.line))
    }
}

/// A status line too long to read whole, without its reason phrase, which
/// is cut somewhere unknown (maybe inside a secret that redaction would
/// then not recognise): `HTTP/1.1 503 Serv...` → `HTTP/1.1 503`.
pub fn status_only(mut line: Vec<u8>) -> Vec<u8> {
    if let Some((second_space, _)) = line.iter().enumerate().filter(|(_, b)| **b == b' ').nth(1) {
        line.truncate(second_space);
    }
    line
}

/// `HTTP/1.1 503 Service Unavailable` → (503, " Service Unavailable").
pub fn parse_status_line(line: &[u8]) -> Option<(u16, String)> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let rest = line.strip_prefix("HTTP/")?;
    let (_version, rest) = rest.split_once(' ')?;
    let (code, reason) = rest.split_at(rest.find(' ').unwrap_or(rest.len()));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Not cut here: a cut could leave a piece of a secret that redaction,
    // later, would no longer recognise. The line itself is bounded.
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim_end()
        .to_string();
    Some((code.parse().ok()?, reason))
}

/// A complete status line judged by the caller's rule for a status code:
/// `HTTP 200 OK` when up, the same words as the reason when not.
pub fn judge(line: &[u8], up: fn(u16) -> bool) -> Result<String, String> {
    match parse_status_line(line) {
        Some((status, reason)) if up(status) => Ok(format!("HTTP {status}{reason}")),
        Some((status, reason)) => Err(format!("HTTP {status}{reason}")),
        None => Err("not an HTTP response".into()),
    }
}

/// Where an exchange is.
#[derive(Debug)]
enum Step {
    Connecting,
    Sending { sent: usize },
    Reading(StatusLine),
    Done(Result<String, String>),
}

/// One probe of one address: a non-blocking state machine over its own
/// socket. Poll [`Exchange::fd`] for [`Exchange::events`] until
/// [`Exchange::deadline`], then call [`Exchange::advance`]; repeat until
/// [`Exchange::outcome`] is `Some`.
///
/// The connect has its own time budget, and the HTTP exchange a fresh one
/// after it (a slow connect does not eat the server's time to answer),
/// both within the overall limit.
#[derive(Debug)]
pub struct Exchange {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// The GET to send; `None` for a TCP probe, which is up once connected.
    request: Option<Vec<u8>>,
    up: fn(u16) -> bool,
    budget: Duration,
    limit: Instant,
    phase_deadline: Instant,
    step: Step,
}

impl Exchange {
    /// Starts connecting to `addr`. `request` is the HTTP request to send
    /// once connected (`None`: just connect); `up` judges its status code.
    pub fn start(
        addr: SocketAddr,
        request: Option<Vec<u8>>,
        up: fn(u16) -> bool,
        budget: Duration,
        limit: Instant,
        now: Instant,
    ) -> Exchange {
        let mut exchange = Exchange {
            addr,
            stream: None,
            request,
            up,
            budget,
            limit,
            phase_deadline: limit.min(now + budget),
            step: Step::Connecting,
        };
        match netio::start_connect(addr) {
            Ok((stream, connected)) => {
                exchange.stream = Some(stream);
                if connected {
                    exchange.connected(now);
                }
            }
            Err(err) => exchange.finish(Err(describe(&err))),
        }
        exchange
    }

    /// The result, once there is one.
    pub fn outcome(&self) -> Option<&Result<String, String>> {
        match &self.step {
            Step::Done(result) => Some(result),
            _ => None,
        }
    }

    /// Takes the result, once there is one.
    pub fn into_outcome(self) -> Option<Result<String, String>> {
        match self.step {
            Step::Done(result) => Some(result),
            _ => None,
        }
    }

    /// The socket to poll while the exchange runs.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self.step {
            Step::Done(_) => None,
            _ => self.stream.as_ref().map(AsFd::as_fd),
        }
    }

    /// What to poll it for.
    pub fn events(&self) -> PollFlags {
        match self.step {
            Step::Connecting | Step::Sending { .. } => PollFlags::POLLOUT,
            Step::Reading(_) => PollFlags::POLLIN,
            Step::Done(_) => PollFlags::empty(),
        }
    }

    /// When the step in progress runs out of time.
    pub fn deadline(&self) -> Instant {
        self.phase_deadline
    }

    /// Makes what progress the socket allows. `ready`: poll reported an
    /// event on [`Exchange::fd`]; without one, a step past its deadline
    /// ends the exchange with the step's own words.
    pub fn advance(&mut self, now: Instant, ready: bool) {
        if ready && let Err(err) = self.try_steps(now) {
            self.finish(Err(describe(&err)));
        }
        if self.outcome().is_none() && now >= self.phase_deadline {
            let words = match self.step {
                Step::Connecting => "connect timed out",
                Step::Sending { .. } => "timed out",
                Step::Reading(_) => "no HTTP response in time",
                Step::Done(_) => return,
            };
            self.finish(Err(words.into()));
        }
    }

    /// Runs the steps until one would block or the exchange is over.
    fn try_steps(&mut self, now: Instant) -> io::Result<()> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return Ok(());
            };
            match &mut self.step {
                Step::Connecting => {
                    let err = socket::getsockopt(&*stream, sockopt::SocketError)?;
                    if err != 0 {
                        return Err(io::Error::from_raw_os_error(err));
                    }
                    if let Err(Errno::ENOTCONN) = socket::getpeername::<SockaddrStorage>(stream.as_raw_fd()) {
                        return Ok(()); // still under way: woken early
                    }
                    self.connected(now);
                }
                Step::Sending { sent } => {
                    let request = self.request.as_deref().unwrap_or_default();
                    match stream.write(&request[*sent..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                    if *sent == request.len() {
                        self.step = Step::Reading(StatusLine::default());
                    }
                }
                Step::Reading(line) => {
                    let mut buf = [0u8; 256];
                    let done = match stream.read(&mut buf) {
                        Ok(0) => Some(line.end()),
                        Ok(n) => line.feed(&buf[..n]).map(Ok),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
                        Err(e) => return Err(e),
                    };
                    if let Some(line) = done {
                        let up = self.up;
                        self.finish(line.and_then(|line| judge(&line, up)));
                    }
                }
                Step::Done(_) => return Ok(()),
            }
        }
    }

    /// The connect is done: a TCP probe is up, an HTTP one sends its
    /// request with a fresh budget.
    fn connected(&mut self, now: Instant) {
        if self.request.is_none() {
            self.finish(Ok(format!("connected to {}", self.addr)));
            return;
        }
        self.phase_deadline = self.limit.min(now + self.budget);
        self.step = Step::Sending { sent: 0 };
    }

    fn finish(&mut self, result: Result<String, String>) {
        self.step = Step::Done(result);
        // Closed at once: a probe run may keep its outcome a while.
        self.stream = None;
    }
}

/// Runs an exchange to its end, blocking in poll(2) on its socket and on
/// `interrupt`, which cuts it short.
pub fn run(mut exchange: Exchange, interrupt: Interrupt<'_>) -> Result<String, Failure> {
    loop {
        let Some(fd) = exchange.fd() else {
            return exchange
                .into_outcome()
                .unwrap_or_else(|| Err("the probe ended without an outcome".into()))
                .map_err(Failure::Down);
        };
        let ready = match interrupt.ready(fd, exchange.events(), exchange.deadline()) {
            Ok(()) => true,
            Err(NetError::TimedOut) => false,
            Err(NetError::Interrupted) => return Err(Failure::Interrupted),
            Err(NetError::Io(err)) => return Err(Failure::Down(describe(&err))),
        };
        exchange.advance(Instant::now(), ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn healthy(status: u16) -> bool {
        (200..400).contains(&status)
    }

    #[test]
    fn a_status_line_is_complete_at_its_line_break() {
        let mut line = StatusLine::default();
        assert_eq!(line.feed(b"HTTP/1.1 2"), None);
        assert_eq!(
            line.feed(b"00 OK\r\nContent-Length: 0\r\n"),
            Some(b"HTTP/1.1 200 OK\r".to_vec())
        );
        let mut line = StatusLine::default();
        assert_eq!(line.feed(b"HTTP/1.0 204"), None);
        assert_eq!(line.end(), Ok(b"HTTP/1.0 204".to_vec()));
        assert_eq!(
            StatusLine::default().end(),
            Err("connection closed without an HTTP response".into())
        );
    }

    #[test]
    fn an_overlong_status_line_loses_its_reason() {
        let mut line = StatusLine::default();
        let mut long = b"HTTP/1.1 503 token s3cr".to_vec();
        long.resize(MAX_STATUS_LINE + 1, b'x');
        assert_eq!(line.feed(&long), Some(b"HTTP/1.1 503".to_vec()));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Some((200, " OK".into())));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r"),
            Some((503, " Service Unavailable".into()))
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 404"), Some((404, String::new())));
        assert_eq!(parse_status_line(b"HTTP/2 204 \r"), Some((204, String::new())));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH_9.6"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line(b"\xff\xfe"), None);
        assert_eq!(status_only(b"HTTP/1.1 503 token s3cr".to_vec()), b"HTTP/1.1 503");
        assert_eq!(status_only(b"HTTP/1.1 503".to_vec()), b"HTTP/1.1 503");
    }

    #[test]
    fn the_callers_rule_judges_the_status() {
        assert_eq!(
            judge(b"HTTP/1.1 302 Found\r", healthy),
            Ok("HTTP 302 Found".into())
        );
        assert_eq!(
            judge(b"HTTP/1.1 404 Not Found\r", healthy),
            Err("HTTP 404 Not Found".into())
        );
        assert_eq!(
            judge(b"HTTP/1.1 404 Not Found\r", |s| s < 500),
            Ok("HTTP 404 Not Found".into())
        );
        assert_eq!(judge(b"SSH-2.0", healthy), Err("not an HTTP response".into()));
    }

    fn exchange(addr: SocketAddr, request: Option<&[u8]>, budget: Duration) -> Exchange {
        let now = Instant::now();
        Exchange::start(
            addr,
            request.map(<[u8]>::to_vec),
            healthy,
            budget,
            now + budget,
            now,
        )
    }

    #[test]
    fn a_tcp_probe_is_up_once_connected_and_refused_says_so() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ex = exchange(addr, None, Duration::from_secs(5));
        assert_eq!(run(ex, Interrupt::none()), Ok(format!("connected to {addr}")));
        drop(listener);
        let ex = exchange(addr, None, Duration::from_secs(5));
        assert_eq!(
            run(ex, Interrupt::none()),
            Err(Failure::Down("connection refused".into()))
        );
    }

    #[test]
    fn an_http_probe_sends_its_request_and_reads_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            // In two pieces: the line is put together.
            conn.write_all(b"HTTP/1.1 503 Service").unwrap();
            conn.flush().unwrap();
            thread::sleep(Duration::from_millis(20));
            conn.write_all(b" Unavailable\r\n\r\n").unwrap();
            head
        });
        let ex = exchange(addr, Some(b"GET / HTTP/1.1\r\n\r\n"), Duration::from_secs(5));
        assert_eq!(
            run(ex, Interrupt::none()),
            Err(Failure::Down("HTTP 503 Service Unavailable".into()))
        );
        assert_eq!(server.join().unwrap(), b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn a_silent_server_runs_out_of_time_in_the_words_of_its_step() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ex = exchange(
            listener.local_addr().unwrap(),
            Some(b"GET / HTTP/1.1\r\n\r\n"),
            Duration::from_millis(100),
        );
        assert_eq!(
            run(ex, Interrupt::none()),
            Err(Failure::Down("no HTTP response in time".into()))
        );
    }

    #[test]
    fn an_interrupt_ends_the_exchange() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (rx, tx) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&tx, b"x").unwrap();
        let ex = exchange(
            listener.local_addr().unwrap(),
            Some(b"GET / HTTP/1.1\r\n\r\n"),
            Duration::from_secs(30),
        );
        assert_eq!(run(ex, Interrupt::new(rx.as_fd())), Err(Failure::Interrupted));
    }
}

/// Property tests: the status line comes from whatever answers on the
/// network; it may not panic initd.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_status_line_never_panics(line in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Some((code, reason)) = parse_status_line(&line) {
                prop_assert!(code <= 999);
                prop_assert!(!reason.chars().any(char::is_control) && reason.len() < line.len());
            }
        }

        #[test]
        fn status_lines_read_back(code in 100u16..1000, reason in "[ -~]{0,40}") {
            let line = format!("HTTP/1.1 {code} {reason}\r");
            let (got, _) = parse_status_line(line.as_bytes()).unwrap();
            prop_assert_eq!(got, code);
        }
    }
}
