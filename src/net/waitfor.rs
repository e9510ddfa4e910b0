//! `INITD_WAIT_FOR`: before anything starts, wait until the services the app
//! needs answer, e.g. `tcp://db:5432,http://search:9200/_cluster/health`.
//!
//! Targets are checked in rounds until all are up, with a backoff between
//! rounds (100 ms doubling to 2 s) and one shared deadline. Every blocking
//! step also watches an interrupt descriptor (initd's signalfd), so a
//! `docker stop` ends the wait at once rather than after a connect timeout.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info};

use crate::net::dns::message::WireName;
use crate::net::dns::{DnsError, Resolver};
use crate::net::netio::{Interrupt, NetError};
use crate::net::netprobe::{self, Exchange, Failure};
use crate::pid1::exit;
use crate::units::human_duration as human;

const FORMS: &str = "tcp://host:port, http://host[:port]/path or host:port";
const HTTP_PORT: u16 = 80;
const HTTPS_PORT: u16 = 443;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Up when a TCP connection is accepted.
    Tcp { host: String, port: u16 },
    /// Up when a GET for `path` gets a status below 500.
    Http { host: String, port: u16, path: String },
}

impl Target {
    pub fn host(&self) -> &str {
        match self {
            Target::Tcp { host, .. } | Target::Http { host, .. } => host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Target::Tcp { port, .. } | Target::Http { port, .. } => *port,
        }
    }
}

/// The canonical spelling (`db:5432` shows as `tcp://db:5432`), used in
/// every message about the target.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracketed(host)),
            Target::Http { host, port, path } => {
                write!(f, "http://{}", authority(host, *port, HTTP_PORT))?;
                f.write_str(path)
            }
        }
    }
}

/// `host` or `[v6]`, with `:port` unless it is the scheme's default.
fn authority(host: &str, port: u16, default: u16) -> String {
    if port == default {
        bracketed(host)
    } else {
        format!("{}:{port}", bracketed(host))
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error(
        "{entry:?}: https is not supported (initd has no TLS); to wait until the port accepts \
         connections use tcp://{authority}"
    )]
    Https { entry: String, authority: String },
    #[error("{entry:?}: {problem}; expected {FORMS}")]
    Malformed { entry: String, problem: String },
}

impl TargetError {
    #[cfg(test)]
    pub fn exit_code(&self) -> i32 {
        exit::CONFIG
    }
}

/// Parses the comma-separated list of `INITD_WAIT_FOR`. Blank entries are
/// skipped, so an empty value means nothing to wait for.
pub fn parse_targets(text: &str) -> Result<Vec<Target>, TargetError> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_target)
        .collect()
}

fn parse_target(entry: &str) -> Result<Target, TargetError> {
    let malformed = |problem: String| TargetError::Malformed {
        entry: entry.to_string(),
        problem,
    };
    let (scheme, rest) = match entry.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("tcp".to_string(), entry),
    };
    match scheme.as_str() {
        "tcp" => {
            if rest.contains('/') {
                return Err(malformed("a tcp target has no path".into()));
            }
            let (host, port) = host_port(rest, None).map_err(malformed)?;
            Ok(Target::Tcp { host, port })
        }
        "http" => {
            let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (auth, path) = rest.split_at(split);
            let (host, port) = host_port(auth, Some(HTTP_PORT)).map_err(malformed)?;
            Ok(Target::Http {
                host,
                port,
                path: request_path(path).map_err(malformed)?,
            })
        }
        "https" => {
            let auth = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
            let (host, port) = host_port(auth, Some(HTTPS_PORT)).map_err(malformed)?;
            Err(TargetError::Https {
                entry: entry.to_string(),
                authority: format!("{}:{port}", bracketed(&host)),
            })
        }
        _ => Err(malformed(format!("unknown scheme {scheme}://"))),
    }
}

/// Splits `host:port` or `[v6]:port`; `default` is used when the port is
/// left out, and a missing port is an error without one.
fn host_port(text: &str, default: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or_else(|| "unclosed [ in the host".to_string())?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{v6:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {after:?} after ]"))?,
            ),
        };
        (v6.to_string(), port)
    } else {
        match text.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("an IPv6 address needs brackets, e.g. [::1]:5432".into());
            }
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (text.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    if !host.contains(':') && !valid_host_name(&host) {
        return Err(format!("{host:?} is not a valid host name"));
    }
    let port = match (port, default) {
        (Some(port), _) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {port:?} is not a number from 1 to 65535"))?,
        (None, Some(default)) => default,
        (None, None) => return Err("missing port".into()),
    };
    Ok((host, port))
}

/// Letters, digits, `-`, `_` (compose service names may have them) and
/// dots, in labels DNS can carry; IPv4 literals pass too.
fn valid_host_name(host: &str) -> bool {
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && WireName::from_dotted(host).is_ok()
        && host != "."
}

/// The request target: the path and query, without any `#fragment`
/// (never sent to a server), `/` when empty.
fn request_path(text: &str) -> Result<String, String> {
    let text = text.split('#').next().unwrap_or("");
    if text
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii())
    {
        return Err("the path has spaces or control characters; percent-encode them".into());
    }
    Ok(match text {
        "" => "/".to_string(),
        q if q.starts_with('?') => format!("/{q}"),
        path => path.to_string(),
    })
}

/// A target that was not up when the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub target: String,
    pub reason: String,
}

#[derive(Debug, Error)]
pub enum WaitError {
    #[error("not up after {}: {}", human(*.waited), list(.down))]
    TimedOut { waited: Duration, down: Vec<Down> },
    /// The interrupt descriptor became readable; it was not read.
    #[error("interrupted by a signal while waiting")]
    Interrupted,
    #[error("waiting failed: {0}")]
    System(std::io::Error),
}

impl WaitError {
    /// 69 (EX_UNAVAILABLE) when something never came up. For `Interrupted`
    /// the caller, which reads the signal, should exit 128+N for the signal
    /// it read; 143 (TERM, what `docker stop` sends) is only the fallback.
    pub fn exit_code(&self) -> i32 {
        match self {
            WaitError::TimedOut { .. } => exit::UNAVAILABLE,
            WaitError::Interrupted => 128 + libc::SIGTERM,
            WaitError::System(_) => exit::INTERNAL,
        }
    }
}

fn list(down: &[Down]) -> String {
    let parts: Vec<String> = down
        .iter()
        .map(|d| format!("{} ({})", d.target, d.reason))
        .collect();
    parts.join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitOptions {
    /// The shared deadline for all targets (`INITD_WAIT_TIMEOUT`).
    pub timeout: Duration,
    /// Bound on one TCP connect and, separately, one HTTP exchange.
    pub probe_timeout: Duration,
    /// How often a still-waiting target is reported.
    pub progress_every: Duration,
    /// When the wait began, if this call resumes it after an interruption
    /// (a check, a signal that is not a stop): the deadline, the progress
    /// lines and the time a target took count from then.
    pub since: Option<Instant>,
}

impl WaitOptions {
    pub fn new(timeout: Duration) -> WaitOptions {
        WaitOptions {
            timeout,
            probe_timeout: Duration::from_secs(2),
            progress_every: Duration::from_secs(5),
            since: None,
        }
    }
}

/// Waits until every target is up, with the system's resolver
/// (`/etc/hosts`, `/etc/resolv.conf`).
///
/// `interrupt` is polled alongside every connect, read and sleep and is
/// never read: once it is readable the wait returns `Interrupted` and the
/// caller reads the signal. Pass a signalfd whose mask holds only the
/// signals that should end the wait (the stop signals): any other signal
/// would end it too, while with a narrower mask it stays pending for the
/// supervisor.
///
/// `since` is when the wait began, for a wait resumed after an
/// interruption; `timeout` counts from then.
pub fn wait_all(
    targets: &[Target],
    since: Option<Instant>,
    timeout: Duration,
    interrupt: BorrowedFd<'_>,
) -> Result<(), WaitError> {
    wait_with(
        targets,
        WaitOptions {
            since,
            ..WaitOptions::new(timeout)
        },
        &Resolver::system(),
        Interrupt::new(interrupt),
    )
}

/// [`wait_all`] with every part supplied.
///
/// Each target is checked at least once even if `timeout` is shorter than
/// a check (so a timeout of 0 means "check once, do not wait").
pub fn wait_with(
    targets: &[Target],
    opts: WaitOptions,
    resolver: &Resolver,
    interrupt: Interrupt<'_>,
) -> Result<(), WaitError> {
    let now = Instant::now();
    let resumed = opts.since.is_some();
    let start = opts.since.unwrap_or(now);
    let deadline = start + opts.timeout;
    let check_deadline = deadline.max(now + opts.probe_timeout);
    let mut pending: Vec<(&Target, String)> = targets
        .iter()
        .map(|t| (t, "not checked yet".to_string()))
        .collect();
    let mut backoff = Backoff::default();
    // On the rhythm of the whole wait, not of this call.
    let every = opts.progress_every.max(Duration::from_millis(1));
    let mut next_progress = start + every * ((now - start).as_millis() / every.as_millis() + 1) as u32;
    let mut first_round = true;
    while !pending.is_empty() {
        if interrupt.pending().map_err(system)? {
            return Err(WaitError::Interrupted);
        }
        let mut still_down = Vec::with_capacity(pending.len());
        for (target, last_reason) in pending {
            if !first_round && Instant::now() >= deadline {
                still_down.push((target, last_reason));
                continue;
            }
            let check = Check {
                resolver,
                probe_timeout: opts.probe_timeout,
                deadline: check_deadline,
                interrupt,
                up: answering,
            };
            match check.target(target) {
                Ok(_) if first_round && !resumed => debug!("{target} is up"),
                Ok(_) => info!("{target} is up after {}", human(round_down(start.elapsed()))),
                Err(Failure::Interrupted) => return Err(WaitError::Interrupted),
                Err(Failure::Down(reason)) => {
                    debug!("{target} is not up: {reason}");
                    still_down.push((target, reason));
                }
            }
        }
        pending = still_down;
        first_round = false;
        if pending.is_empty() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::TimedOut {
                waited: opts.timeout,
                down: pending
                    .into_iter()
                    .map(|(t, reason)| Down {
                        target: t.to_string(),
                        reason,
                    })
                    .collect(),
            });
        }
        if now >= next_progress {
            for (target, reason) in &pending {
                info!(
                    "waiting for {target} ({reason}), {}s of {}",
                    (now - start).as_secs(),
                    human(opts.timeout)
                );
            }
            next_progress = now + opts.progress_every;
        }
        interrupt
            .sleep_until(deadline.min(now + backoff.next_delay()))
            .map_err(system)?;
    }
    Ok(())
}

fn system(err: NetError) -> WaitError {
    match err {
        NetError::Interrupted => WaitError::Interrupted,
        NetError::TimedOut => WaitError::System(std::io::ErrorKind::TimedOut.into()),
        NetError::Io(err) => WaitError::System(err),
    }
}

/// The delay between rounds: 100 ms, doubling, at most 2 s. Quick enough to
/// catch a service the moment it comes up, gentle on one that takes long.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_FIRST }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(BACKOFF_MAX);
        delay
    }
}

/// The wait's rule for an HTTP answer: any status below 500. A 404 or 401
/// comes from a server that is running and answering (perhaps the path
/// needs auth, or moved), and the point is to know it is there, not to test
/// the app. 5xx is what a proxy or app says while its backend is still
/// starting.
fn answering(status: u16) -> bool {
    status < 500
}

struct Check<'a> {
    resolver: &'a Resolver,
    probe_timeout: Duration,
    deadline: Instant,
    interrupt: Interrupt<'a>,
    /// Whether an HTTP status counts as up.
    up: fn(u16) -> bool,
}

impl Check<'_> {
    /// Resolves the host afresh (a compose service's name appears only once
    /// its container runs) and tries each address until one is up.
    fn target(&self, target: &Target) -> Result<String, Failure> {
        let host = target.host();
        let addrs = self
            .resolver
            .lookup(host, self.deadline, self.interrupt)
            .map_err(|err| match err {
                DnsError::Interrupted => Failure::Interrupted,
                err => Failure::Down(format!("{host}: {err}")),
            })?;
        let mut first_reason = None;
        for ip in addrs {
            let addr = SocketAddr::new(ip, target.port());
            match self.address(target, addr) {
                Ok(seen) => return Ok(seen),
                Err(Failure::Interrupted) => return Err(Failure::Interrupted),
                Err(Failure::Down(reason)) => {
                    debug!("{target}: {addr}: {reason}");
                    first_reason.get_or_insert(reason);
                }
            }
            if Instant::now() >= self.deadline {
                break;
            }
        }
        Err(Failure::Down(
            first_reason.unwrap_or_else(|| format!("{host}: no address")),
        ))
    }

    fn address(&self, target: &Target, addr: SocketAddr) -> Result<String, Failure> {
        let exchange = exchange(
            target,
            addr,
            self.up,
            self.probe_timeout,
            self.deadline,
            Instant::now(),
        );
        netprobe::run(exchange, self.interrupt)
    }
}

/// Starts the probe client on one address of `target`: a connect, and for
/// HTTP a GET whose status `up` judges. Each step gets `budget`, all of
/// them end by `limit`.
pub fn exchange(
    target: &Target,
    addr: SocketAddr,
    up: fn(u16) -> bool,
    budget: Duration,
    limit: Instant,
    now: Instant,
) -> Exchange {
    let request = match target {
        Target::Http { host, port, path } => Some(http_request(host, *port, path).into_bytes()),
        Target::Tcp { .. } => None,
    };
    Exchange::start(addr, request, up, budget, limit, now)
}

/// A minimal GET. `Connection: close` so the server does not hold the
/// connection open for more requests; only the status line is read.
pub(crate) fn http_request(host: &str, port: u16, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: initd/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        authority(host, port, HTTP_PORT),
        env!("CARGO_PKG_VERSION"),
    )
}

fn round_down(d: Duration) -> Duration {
    if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    }
}

/// An IP literal target needs no resolver; for tests and callers that
/// build targets by hand.
impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::{Arc, Mutex};
    use std::thread;

    use crate::net::dns::{Hosts, ResolvConf};

    fn tcp(host: &str, port: u16) -> Target {
        Target::Tcp {
            host: host.into(),
            port,
        }
    }

    fn http(host: &str, port: u16, path: &str) -> Target {
        Target::Http {
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    fn problem(text: &str) -> String {
        match parse_targets(text) {
            Err(TargetError::Malformed { problem, .. }) => problem,
            other => panic!("{text:?}: expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse_targets("tcp://db:5432,http://search:9200/_cluster/health").unwrap(),
            [tcp("db", 5432), http("search", 9200, "/_cluster/health")]
        );
        assert_eq!(
            parse_targets(" redis:6379 , HTTP://api , http://api/health?full=1#frag,").unwrap(),
            [
                tcp("redis", 6379),
                http("api", 80, "/"),
                http("api", 80, "/health?full=1")
            ]
        );
        assert_eq!(
            parse_targets("http://api?ready,tcp://10.0.0.5:80,[::1]:5432,http://[fe80::1]:8080/x").unwrap(),
            [
                http("api", 80, "/?ready"),
                tcp("10.0.0.5", 80),
                tcp("::1", 5432),
                http("fe80::1", 8080, "/x")
            ]
        );
        assert_eq!(
            parse_targets("my_db.internal:1").unwrap(),
            [tcp("my_db.internal", 1)]
        );
        assert_eq!(parse_targets("").unwrap(), []);
        assert_eq!(parse_targets(" , ").unwrap(), []);
    }

    #[test]
    fn displays_the_canonical_form() {
        let shown: Vec<String> =
            parse_targets("db:5432,http://api:80/h,http://api:8080,[::1]:1,http://[::1]/")
                .unwrap()
                .iter()
                .map(Target::to_string)
                .collect();
        assert_eq!(
            shown,
            [
                "tcp://db:5432",
                "http://api/h",
                "http://api:8080/",
                "tcp://[::1]:1",
                "http://[::1]/"
            ]
        );
    }

    #[test]
    fn https_is_refused_with_the_fix() {
        let err = parse_targets("db:5432, https://search:9200/health").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"https://search:9200/health\": https is not supported (initd has no TLS); to wait until \
             the port accepts connections use tcp://search:9200"
        );
        assert_eq!(err.exit_code(), 78);
        let err = parse_targets("https://api").unwrap_err();
        assert!(err.to_string().ends_with("use tcp://api:443"), "{err}");
    }

    #[test]
    fn bad_entries_name_the_entry_and_the_forms() {
        let err = parse_targets("db:5432,db").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"db\": missing port; expected tcp://host:port, http://host[:port]/path or host:port"
        );
        assert_eq!(err.exit_code(), exit::CONFIG);
        assert_eq!(problem("tcp://db"), "missing port");
        assert_eq!(problem("db:0"), "port \"0\" is not a number from 1 to 65535");
        assert_eq!(
            problem("db:65536"),
            "port \"65536\" is not a number from 1 to 65535"
        );
        assert_eq!(problem("db:pg"), "port \"pg\" is not a number from 1 to 65535");
        assert_eq!(
            problem("http://api:/x"),
            "port \"\" is not a number from 1 to 65535"
        );
        assert_eq!(problem(":5432"), "missing host");
        assert_eq!(problem("http:///health"), "missing host");
        assert_eq!(problem("tcp://db:5432/x"), "a tcp target has no path");
        assert_eq!(problem("ftp://files:21"), "unknown scheme ftp://");
        assert_eq!(
            problem("::1:5432"),
            "an IPv6 address needs brackets, e.g. [::1]:5432"
        );
        assert_eq!(problem("[::1:5432"), "unclosed [ in the host");
        assert_eq!(problem("[db]:5432"), "\"db\" is not an IPv6 address");
        assert_eq!(problem("[::1]5432"), "unexpected \"5432\" after ]");
        assert_eq!(problem("user@db:5432"), "\"user@db\" is not a valid host name");
        assert_eq!(problem("db..x:1"), "\"db..x\" is not a valid host name");
        assert!(problem("http://api/a b").contains("percent-encode"));
    }

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn the_request_names_the_host_and_closes() {
        assert_eq!(
            http_request("api", 80, "/health"),
            format!(
                "GET /health HTTP/1.1\r\nHost: api\r\nUser-Agent: initd/{}\r\nAccept: */*\r\n\
                 Connection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(http_request("::1", 8080, "/").contains("\r\nHost: [::1]:8080\r\n"));
    }

    #[test]
    fn exit_codes() {
        let timed_out = WaitError::TimedOut {
            waited: Duration::from_secs(60),
            down: vec![],
        };
        assert_eq!(timed_out.exit_code(), 69);
        assert_eq!(WaitError::Interrupted.exit_code(), 143);
    }

    // Integration-style tests: real sockets, 127.0.0.1 only.

    fn opts(timeout_ms: u64) -> WaitOptions {
        WaitOptions::new(Duration::from_millis(timeout_ms))
    }

    /// Resolves nothing but IP literals and `hosts` entries.
    fn resolver(hosts: &str) -> Resolver {
        Resolver::new(Hosts::parse(hosts), ResolvConf::default())
    }

    /// A port on 127.0.0.1 with (for now) nothing listening.
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe().unwrap()
    }

    /// An HTTP server answering successive connections with `statuses`,
    /// recording each request's head.
    fn http_server(statuses: Vec<&'static str>) -> (u16, Arc<Mutex<Vec<String>>>) {
        let answers = statuses
            .iter()
            .map(|status| format!("{status}\r\nContent-Length: 0\r\n\r\n"))
            .collect();
        crate::testnet::answering_server(answers)
    }

    #[test]
    fn nothing_to_wait_for_is_done_at_once() {
        wait_with(&[], opts(0), &resolver(""), Interrupt::none()).unwrap();
    }

    #[test]
    fn waits_for_a_listener_that_appears_later() {
        let port = free_port();
        let server = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
            let _ = listener.accept();
        });
        let start = Instant::now();
        wait_with(
            &[tcp("127.0.0.1", port)],
            opts(10_000),
            &resolver(""),
            Interrupt::none(),
        )
        .unwrap();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        // Backoff between rounds is still short at this point.
        assert!(took < Duration::from_secs(2), "{took:?}");
        server.join().unwrap();
    }

    #[test]
    fn host_names_resolve_through_the_hosts_file() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let targets = parse_targets(&format!("myservice:{port}")).unwrap();
        wait_with(
            &targets,
            opts(5_000),
            &resolver("127.0.0.1 myservice\n"),
            Interrupt::none(),
        )
        .unwrap();
    }

    #[test]
    fn waits_for_http_to_stop_answering_5xx() {
        let (port, seen) = http_server(vec!["HTTP/1.1 503 Service Unavailable", "HTTP/1.1 200 OK"]);
        let targets = [http("127.0.0.1", port, "/health?deep=1")];
        wait_with(&targets, opts(10_000), &resolver(""), Interrupt::none()).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(
            seen[0].starts_with("GET /health?deep=1 HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{}",
            seen[0]
        );
        assert!(seen[0].contains("\r\nConnection: close\r\n"), "{}", seen[0]);
    }

    #[test]
    fn a_404_is_up() {
        let (port, _) = http_server(vec!["HTTP/1.1 404 Not Found"]);
        wait_with(
            &[http("127.0.0.1", port, "/")],
            opts(5_000),
            &resolver(""),
            Interrupt::none(),
        )
        .unwrap();
    }

    #[test]
    fn the_deadline_names_what_never_came_up() {
        let closed = free_port();
        let (up, _) = http_server(vec!["HTTP/1.1 200 OK"]);
        let (busy, _) = http_server(vec!["HTTP/1.1 502 Bad Gateway"; 50]);
        let targets = [
            tcp("127.0.0.1", closed),
            http("127.0.0.1", up, "/"),
            http("127.0.0.1", busy, "/"),
        ];
        let start = Instant::now();
        let err = wait_with(&targets, opts(500), &resolver(""), Interrupt::none()).unwrap_err();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "not up after 500ms: tcp://127.0.0.1:{closed} (connection refused), \
                 http://127.0.0.1:{busy}/ (HTTP 502 Bad Gateway)"
            )
        );
        assert_eq!(err.exit_code(), exit::UNAVAILABLE);
    }

    /// Collects formatted log lines for one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn progress_is_reported_while_waiting() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let port = free_port();
        let options = WaitOptions {
            progress_every: Duration::from_millis(100),
            ..opts(450)
        };
        let result = tracing::subscriber::with_default(subscriber, || {
            wait_with(
                &[tcp("127.0.0.1", port)],
                options,
                &resolver(""),
                Interrupt::none(),
            )
        });
        assert!(matches!(result, Err(WaitError::TimedOut { .. })));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = format!("INFO waiting for tcp://127.0.0.1:{port} (connection refused), 0s of 450ms");
        let count = text.lines().filter(|l| l.trim() == line).count();
        assert!((2..=4).contains(&count), "{text}");
    }

    #[test]
    fn a_server_that_is_not_http_is_not_up() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for conn in listener.incoming().take(20) {
                let _ = conn.unwrap().write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
            }
        });
        let err = wait_with(
            &[http("127.0.0.1", port, "/")],
            opts(300),
            &resolver(""),
            Interrupt::none(),
        )
        .unwrap_err();
        assert!(err.to_string().ends_with("(not an HTTP response)"), "{err}");
    }

    #[test]
    fn a_resumed_wait_counts_from_when_the_wait_began() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Resumed after a check woke it, 3 s into the wait: the target's
        // time is the whole wait's, not this call's.
        let options = WaitOptions {
            since: Some(Instant::now() - Duration::from_secs(3)),
            ..opts(60_000)
        };
        let result = tracing::subscriber::with_default(subscriber, || {
            wait_with(
                &[tcp("127.0.0.1", port)],
                options,
                &resolver(""),
                Interrupt::none(),
            )
        });
        assert!(result.is_ok(), "{result:?}");
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = format!("INFO tcp://127.0.0.1:{port} is up after 3s");
        assert!(text.lines().any(|l| l.trim() == line), "{text}");
    }

    #[test]
    fn an_unresolvable_name_is_reported_as_such() {
        // resolv.conf points at a UDP port with nothing behind it.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut conf = ResolvConf::parse("nameserver 127.0.0.1\n");
        conf.nameservers = vec![dead];
        let resolver = Resolver::new(Hosts::default(), conf);
        let err = wait_with(&[tcp("db", 5432)], opts(300), &resolver, Interrupt::none()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "not up after 300ms: tcp://db:5432 (db: DNS server {dead}: "
            )),
            "{text}"
        );
    }

    #[test]
    fn timeout_zero_checks_once() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::from(listener.local_addr().unwrap());
        wait_with(&[target], opts(0), &resolver(""), Interrupt::none()).unwrap();
        let closed = tcp("127.0.0.1", free_port());
        let err = wait_with(&[closed], opts(0), &resolver(""), Interrupt::none()).unwrap_err();
        assert!(err.to_string().ends_with("(connection refused)"), "{err}");
    }

    #[test]
    fn an_interrupt_ends_the_backoff_at_once() {
        let (rx, tx) = pipe();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            nix::unistd::write(&tx, b"x").unwrap();
            tx
        });
        let start = Instant::now();
        let err = wait_with(
            &[tcp("127.0.0.1", free_port())],
            opts(30_000),
            &resolver(""),
            Interrupt::new(rx.as_fd()),
        )
        .unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, WaitError::Interrupted), "{err}");
        assert!(took < Duration::from_millis(600), "{took:?}");
        // Left unread for the caller.
        assert!(Interrupt::new(rx.as_fd()).pending().unwrap());
        drop(writer.join());
    }

    #[test]
    fn an_interrupt_cuts_a_hanging_http_exchange_short() {
        // Accepts, reads, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = thread::spawn(move || listener.accept().map(|(conn, _)| conn));
        let (rx, tx) = pipe();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            nix::unistd::write(&tx, b"x").unwrap();
            tx
        });
        let start = Instant::now();
        let err = wait_with(
            &[http("127.0.0.1", port, "/")],
            opts(30_000),
            &resolver(""),
            Interrupt::new(rx.as_fd()),
        )
        .unwrap_err();
        assert!(matches!(err, WaitError::Interrupted), "{err}");
        // Well inside the 2 s the HTTP exchange would otherwise be given.
        assert!(
            start.elapsed() < Duration::from_millis(800),
            "{:?}",
            start.elapsed()
        );
        drop(writer.join());
        drop(hold.join());
    }

    #[test]
    fn a_pending_interrupt_wins_even_when_all_is_up() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (rx, tx) = pipe();
        nix::unistd::write(&tx, b"x").unwrap();
        let err = wait_with(
            &[Target::from(listener.local_addr().unwrap())],
            opts(5_000),
            &resolver(""),
            Interrupt::new(rx.as_fd()),
        )
        .unwrap_err();
        assert!(matches!(err, WaitError::Interrupted), "{err}");
    }

    #[test]
    fn wait_all_uses_the_system_resolver_for_literals() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (rx, _tx) = pipe();
        let addr = listener.local_addr().unwrap();
        wait_all(&[Target::from(addr)], None, Duration::from_secs(5), rx.as_fd()).unwrap();
    }
}

/// Property tests: `INITD_WAIT_FOR` is free text; it may not panic initd.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_target_list_parses_or_names_the_entry(text in any::<String>()) {
            if let Err(e) = parse_targets(&text) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn target_shaped_text_never_panics(
            text in "((tcp|http|https|HTTP|ftp)://)?(\\[[0-9a-f:]{0,8}\\]?|[a-z.]{0,8})(:[0-9a-z]{0,6})?(/[ -~]{0,6})?(,|, )?",
        ) {
            let _ = parse_targets(&text);
        }
    }
}
