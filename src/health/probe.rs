//! Health: what `initd check` tests (`INITD_HEALTH`), and how the
//! supervisor's state and a probe's outcome become the answer: a state
//! (`starting`, `running`, `idle`, `unhealthy`, `draining`, `stopping`),
//! healthy or not, and the reason. Pure, so every rule is unit-tested; the
//! socket is in `control`, the client in `check`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::cmdline;
use crate::net::netprobe::Exchange;
use crate::net::waitfor::{self, Target};
use crate::pid1::status::{Phase, Snapshot};

pub const DEFAULT_SOCKET: &str = "/run/initd/initd.sock";
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes,
/// the last one a NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `INITD_SOCKET`: an absolute path, or `off` (`None`).
pub fn parse_socket(text: &str) -> Result<Option<PathBuf>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    if !text.starts_with('/') {
        return Err("an absolute path such as /run/initd/initd.sock, or off".into());
    }
    if text.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "a path of at most {MAX_SOCKET_PATH} bytes (a Unix socket address holds no more)"
        ));
    }
    Ok(Some(PathBuf::from(text)))
}

/// What a check tests once start-up is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Nothing more than the main child being alive.
    Alive,
    /// A TCP connection is accepted.
    Tcp(Target),
    /// A GET answers 2xx or 3xx.
    Http(Target),
    /// The command exits 0.
    Cmd(Vec<String>),
}

const PROBE_FORMS: &str =
    "http://HOST:PORT/PATH, tcp://HOST:PORT or cmd:COMMAND (e.g. http://127.0.0.1:8000/healthz)";

impl FromStr for Probe {
    type Err = String;

    fn from_str(text: &str) -> Result<Probe, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Probe::Alive);
        }
        if let Some(command) = text.strip_prefix("cmd:") {
            return cmdline::split(command)
                .map(Probe::Cmd)
                .map_err(|e| format!("cmd:COMMAND with a command line ({e})"));
        }
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https" | "tcp")) {
            return Err(PROBE_FORMS.into());
        }
        if text.contains(',') {
            return Err(format!("one probe, not a list: {PROBE_FORMS}"));
        }
        let mut targets = waitfor::parse_targets(text).map_err(|e| e.to_string())?;
        match targets.pop() {
            Some(t @ Target::Http { .. }) => Ok(Probe::Http(t)),
            Some(t @ Target::Tcp { .. }) => Ok(Probe::Tcp(t)),
            None => Err(PROBE_FORMS.into()),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Alive => f.write_str("the main child is alive"),
            Probe::Tcp(t) | Probe::Http(t) => write!(f, "{t}"),
            Probe::Cmd(argv) => write!(f, "cmd:{}", cmdline::join(argv)),
        }
    }
}

/// The status codes a health endpoint answers when all is well. Unlike the
/// start-up wait, which only asks whether something answers at all, a 4xx
/// here is a broken check (a moved path, a login page) and fails.
pub fn healthy_status(status: u16) -> bool {
    (200..400).contains(&status)
}

/// What one probe run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// `HTTP 200 OK`, `connection refused`, `exited with status 1: ...`.
    pub detail: String,
    pub took: Duration,
}

/// The address of a target whose host is an IP literal (the usual
/// `http://127.0.0.1:8000/healthz`): no lookup needed.
pub fn literal_addr(target: &Target) -> Option<SocketAddr> {
    let ip: IpAddr = target.host().parse().ok()?;
    Some(SocketAddr::new(ip, target.port()))
}

/// A network probe of an address, started: the exchange of the start-up
/// wait (the same client, the same words), for a caller that polls its
/// socket, within `timeout`.
pub fn start_probe(target: &Target, addr: SocketAddr, timeout: Duration, now: Instant) -> Exchange {
    waitfor::exchange(target, addr, healthy_status, timeout, now + timeout, now)
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub state: &'static str,
    pub healthy: bool,
    pub reason: String,
}

/// Whether a check in this state runs the probe: only once start-up is
/// over and while the main child runs. Any other state answers by itself.
pub fn wants_probe(snap: &Snapshot, probe: &Probe) -> bool {
    snap.phase == Phase::Running && snap.main_pid.is_some() && *probe != Probe::Alive
}

/// The answer for the supervisor's state and, when it ran, the probe.
pub fn assess(snap: &Snapshot, probe: &Probe, outcome: Option<&Outcome>) -> Assessment {
    let answer = |state, healthy, reason: String| Assessment {
        state,
        healthy,
        reason,
    };
    match snap.phase {
        // Failing while starting is what lets Docker's start_period and a
        // Kubernetes startupProbe cover the migrations.
        Phase::Starting => answer("starting", false, snap.reason.clone()),
        Phase::Idle => answer("idle", true, snap.reason.clone()),
        Phase::Draining => answer("draining", false, snap.reason.clone()),
        Phase::Stopping => answer("stopping", false, snap.reason.clone()),
        Phase::Running => {
            let Some(pid) = snap.main_pid else {
                return answer("unhealthy", false, snap.reason.clone());
            };
            match (probe, outcome) {
                (Probe::Alive, _) => answer("running", true, format!("{} (pid {pid})", snap.reason)),
                (_, Some(o)) if o.ok => {
                    answer("running", true, format!("{}; {probe}: {}", snap.reason, o.detail))
                }
                (_, Some(o)) => answer("unhealthy", false, format!("{probe}: {}", o.detail)),
                (_, None) => answer("unhealthy", false, format!("{probe}: the probe did not run")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(phase: Phase, reason: &str, main_pid: Option<u32>) -> Snapshot {
        Snapshot {
            phase,
            reason: reason.into(),
            main_pid,
            main_restarts: 0,
            uptime: Duration::from_secs(3),
            processes: Vec::new(),
            role: String::new(),
            lock_wait: None,
        }
    }

    fn outcome(ok: bool, detail: &str) -> Outcome {
        Outcome {
            ok,
            detail: detail.into(),
            took: Duration::from_millis(2),
        }
    }

    #[test]
    fn probes_parse_in_every_form() {
        assert_eq!("".parse(), Ok(Probe::Alive));
        assert_eq!(
            "http://127.0.0.1:8000/healthz".parse(),
            Ok(Probe::Http(Target::Http {
                host: "127.0.0.1".into(),
                port: 8000,
                path: "/healthz".into()
            }))
        );
        assert_eq!(
            "tcp://localhost:6379".parse(),
            Ok(Probe::Tcp(Target::Tcp {
                host: "localhost".into(),
                port: 6379
            }))
        );
        assert_eq!(
            "cmd:celery -A proj inspect ping -d 'celery@$HOSTNAME'".parse(),
            Ok(Probe::Cmd(
                [
                    "celery",
                    "-A",
                    "proj",
                    "inspect",
                    "ping",
                    "-d",
                    "celery@$HOSTNAME"
                ]
                .map(String::from)
                .to_vec()
            ))
        );
    }

    #[test]
    fn bad_probes_say_what_is_expected() {
        let err = |text: &str| text.parse::<Probe>().unwrap_err();
        assert!(
            err("127.0.0.1:8000").starts_with("http://HOST:PORT/PATH"),
            "{}",
            err("x")
        );
        assert!(err("cmd:").contains("empty command"), "{}", err("cmd:"));
        assert!(err("cmd:sh -c 'open").contains("unbalanced quotes"));
        assert!(err("https://api/healthz").contains("https is not supported"));
        assert!(err("tcp://db").contains("missing port"));
        assert!(err("tcp://a:1,tcp://b:2").starts_with("one probe"));
    }

    #[test]
    fn probes_display_as_written() {
        for text in [
            "http://127.0.0.1:8000/healthz",
            "tcp://db:5432",
            "cmd:celery inspect ping",
        ] {
            assert_eq!(text.parse::<Probe>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn socket_paths() {
        assert_eq!(parse_socket("off"), Ok(None));
        assert_eq!(
            parse_socket(" /tmp/x.sock "),
            Ok(Some(PathBuf::from("/tmp/x.sock")))
        );
        assert!(parse_socket("initd.sock").unwrap_err().contains("absolute"));
        let long = format!("/{}", "a".repeat(120));
        assert!(parse_socket(&long).unwrap_err().contains("107 bytes"));
    }

    #[test]
    fn only_2xx_and_3xx_are_healthy() {
        assert!(healthy_status(200));
        assert!(healthy_status(204));
        assert!(healthy_status(302));
        assert!(!healthy_status(404));
        assert!(!healthy_status(503));
        assert!(!healthy_status(101));
    }

    /// A server answering successive connections with `answers`.
    fn http_server(answers: Vec<&'static str>) -> u16 {
        crate::testnet::answering_server(answers.into_iter().map(String::from).collect()).0
    }

    /// The probe of `addr` as the control socket runs it, driven here by
    /// the blocking driver.
    fn probe_addr(target: &Target, addr: SocketAddr) -> Result<String, String> {
        let exchange = start_probe(target, addr, Duration::from_secs(5), Instant::now());
        crate::net::netprobe::run(exchange, crate::net::netio::Interrupt::none()).map_err(|f| match f {
            crate::net::netprobe::Failure::Down(reason) => reason,
            crate::net::netprobe::Failure::Interrupted => "interrupted".into(),
        })
    }

    #[test]
    fn literal_addresses_need_no_lookup() {
        let target = |text: &str| match text.parse::<Probe>().unwrap() {
            Probe::Http(t) | Probe::Tcp(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            literal_addr(&target("http://127.0.0.1:8000/healthz")),
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(
            literal_addr(&target("tcp://[::1]:6379")),
            Some("[::1]:6379".parse().unwrap())
        );
        assert_eq!(literal_addr(&target("http://web:8000/")), None);
    }

    #[test]
    fn an_address_probe_judges_like_the_blocking_one() {
        let port = http_server(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\n\r\n",
            "SSH-2.0-OpenSSH_9.2\r\n",
            "",
        ]);
        let target = Target::Http {
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
        };
        let addr = literal_addr(&target).unwrap();
        assert_eq!((probe_addr(&target, addr)), Ok("HTTP 200 OK".into()));
        assert_eq!((probe_addr(&target, addr)), Err("HTTP 404 Not Found".into()));
        assert_eq!((probe_addr(&target, addr)), Err("not an HTTP response".into()));
        assert_eq!(
            (probe_addr(&target, addr)),
            Err("connection closed without an HTTP response".into())
        );
        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let tcp = Target::Tcp {
            host: "127.0.0.1".into(),
            port: closed.port(),
        };
        assert_eq!((probe_addr(&tcp, closed)), Err("connection refused".into()));
    }

    #[test]
    fn start_up_and_stop_fail_without_a_probe() {
        let http: Probe = "http://127.0.0.1:8000/".parse().unwrap();
        for (phase, state) in [
            (Phase::Starting, "starting"),
            (Phase::Draining, "draining"),
            (Phase::Stopping, "stopping"),
        ] {
            let s = snap(phase, "why", Some(7));
            assert!(!wants_probe(&s, &http));
            assert_eq!(
                assess(&s, &http, None),
                Assessment {
                    state,
                    healthy: false,
                    reason: "why".into()
                }
            );
        }
    }

    #[test]
    fn idle_is_healthy() {
        let a = assess(
            &snap(Phase::Idle, "AUTO_START_SERVER is off", None),
            &Probe::Alive,
            None,
        );
        assert_eq!((a.state, a.healthy), ("idle", true));
    }

    #[test]
    fn running_needs_the_main_child() {
        let a = assess(
            &snap(Phase::Running, "server running", Some(7)),
            &Probe::Alive,
            None,
        );
        assert_eq!(
            a,
            Assessment {
                state: "running",
                healthy: true,
                reason: "server running (pid 7)".into()
            }
        );
        let gone = snap(
            Phase::Running,
            "server exited with status 1, waiting for a change",
            None,
        );
        let http: Probe = "http://127.0.0.1:8000/".parse().unwrap();
        assert!(!wants_probe(&gone, &http));
        let a = assess(&gone, &http, None);
        assert_eq!((a.state, a.healthy), ("unhealthy", false));
        assert!(a.reason.starts_with("server exited"));
    }

    #[test]
    fn a_running_server_is_judged_by_its_probe() {
        let http: Probe = "http://127.0.0.1:8000/healthz".parse().unwrap();
        let s = snap(Phase::Running, "server running", Some(7));
        assert!(wants_probe(&s, &http));
        let ok = assess(&s, &http, Some(&outcome(true, "HTTP 200 OK")));
        assert_eq!((ok.state, ok.healthy), ("running", true));
        assert_eq!(
            ok.reason,
            "server running; http://127.0.0.1:8000/healthz: HTTP 200 OK"
        );
        let bad = assess(&s, &http, Some(&outcome(false, "HTTP 503 Service Unavailable")));
        assert_eq!((bad.state, bad.healthy), ("unhealthy", false));
        assert_eq!(
            bad.reason,
            "http://127.0.0.1:8000/healthz: HTTP 503 Service Unavailable"
        );
    }
}
