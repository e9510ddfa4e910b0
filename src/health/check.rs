//! `initd check` and `initd status`: ask the running supervisor over its
//! control socket.
//!
//! Docker runs a HEALTHCHECK command every few seconds for the life of the
//! container, so this path does the least it can: no secrets, no user
//! switch, no logging set-up and no validation of settings it does not
//! use. It reads `INITD_SOCKET` and `INITD_CHECK_TIMEOUT` (from the
//! environment, else the settings file), connects, sends one line, reads
//! one line, prints one line. Exit 0 means healthy, 1 anything else, as
//! Docker and Kubernetes expect.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr, sockopt};
use nix::sys::time::TimeVal;

use crate::health::probe::{self as health, DEFAULT_CHECK_TIMEOUT, DEFAULT_SOCKET};
use crate::health::protocol::{self, Report, Request};
use crate::units::human_duration as human;
use crate::units::parse_duration;

pub const HEALTHY: i32 = 0;
pub const UNHEALTHY: i32 = 1;

/// What the client needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSettings {
    /// `None`: `INITD_SOCKET=off`.
    pub socket: Option<PathBuf>,
    pub timeout: Duration,
}

/// Reads the two settings: the environment first, then the settings file
/// (`INITD_CONFIG`, or /etc/initd.toml when it exists) for whatever the
/// environment leaves out. Other settings are not looked at, so a mistake
/// elsewhere cannot make a healthy container look unhealthy.
pub fn settings(env: impl Fn(&str) -> Option<String>) -> Result<CheckSettings, String> {
    let mut socket = env("INITD_SOCKET").filter(|v| !v.trim().is_empty());
    let mut timeout = env("INITD_CHECK_TIMEOUT").filter(|v| !v.trim().is_empty());
    let mut from_file = ("INITD_SOCKET", "INITD_CHECK_TIMEOUT");
    if socket.is_none() || timeout.is_none() {
        let (path, required) = match env("INITD_CONFIG") {
            Some(path) => (PathBuf::from(path), true),
            None => (PathBuf::from("/etc/initd.toml"), false),
        };
        match crate::config::read_file(&path) {
            Ok(text) => {
                let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                    format!("config file {}: {}", path.display(), e.message())
                })?;
                let key = |k: &str| -> Result<Option<String>, String> {
                    match table.get(k) {
                        None => Ok(None),
                        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                        Some(toml::Value::Integer(n)) if k == "check_timeout" => Ok(Some(format!("{n}s"))),
                        Some(toml::Value::Float(n)) if k == "check_timeout" => Ok(Some(format!("{n}s"))),
                        Some(other) => Err(format!(
                            "config file {} key `{k}`={other}: expected a string",
                            path.display()
                        )),
                    }
                };
                if socket.is_none() {
                    socket = key("socket")?;
                    from_file.0 = "the config file's `socket`";
                }
                if timeout.is_none() {
                    timeout = key("check_timeout")?;
                    from_file.1 = "the config file's `check_timeout`";
                }
            }
            Err(crate::config::FileProblem::Missing) if !required => {}
            Err(e) => return Err(format!("config file {} (INITD_CONFIG): {e}", path.display())),
        }
    }
    let socket = match socket {
        None => Some(PathBuf::from(DEFAULT_SOCKET)),
        Some(text) => health::parse_socket(&text)
            .map_err(|expected| format!("{}={text:?}: expected {expected}", from_file.0))?,
    };
    let timeout = match timeout {
        None => DEFAULT_CHECK_TIMEOUT,
        Some(text) => parse_duration(&text).filter(|d| !d.is_zero()).ok_or_else(|| {
            format!(
                "{}={text:?}: expected a duration above zero such as 500ms, 2s or 1m",
                from_file.1
            )
        })?,
    };
    Ok(CheckSettings { socket, timeout })
}

/// Why there is no answer.
#[derive(Debug)]
pub enum AskError {
    /// Connecting failed.
    Connect(io::Error),
    /// No (complete) answer in time.
    Timeout,
    /// The connection broke, or the answer was not understood.
    Answer(String),
    /// Every connection the supervisor serves at once was taken until the
    /// deadline (a flood of clients).
    Busy,
}

/// Asks the supervisor at `path`, all within `timeout`. A "busy" answer
/// (the supervisor serves a bounded number of connections at once) is
/// asked again until the deadline.
pub fn ask(path: &Path, timeout: Duration) -> Result<Report, AskError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        match ask_once(path, deadline) {
            Err(AskError::Busy) if Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

fn ask_once(path: &Path, deadline: Instant) -> Result<Report, AskError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let stream = connect(path, timeout).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => AskError::Timeout,
        _ => AskError::Connect(e),
    })?;
    exchange(stream, deadline)
}

/// Sends the request on a connection and reads the answer.
fn exchange(mut stream: UnixStream, deadline: Instant) -> Result<Report, AskError> {
    // A supervisor with every connection taken answers "busy" and closes
    // at once, maybe before the request is sent: its line is still there
    // to read, so a broken pipe is only an error if nothing is.
    let unsent = match stream.write_all(Request::Check.line()) {
        Ok(()) => None,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Some(e)
        }
        Err(e) => return Err(AskError::Answer(format!("sending the request failed: {e}"))),
    };
    let mut reply = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AskError::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| AskError::Answer(e.to_string()))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.ends_with(b"\n") {
                    break;
                }
                if reply.len() > protocol::MAX_REPLY {
                    return Err(AskError::Answer("the answer is too long".into()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(AskError::Timeout);
            }
            Err(_) if reply.is_empty() && unsent.is_some() => break,
            Err(e) => return Err(AskError::Answer(format!("reading the answer failed: {e}"))),
        }
    }
    if let (true, Some(e)) = (reply.is_empty(), unsent) {
        return Err(AskError::Answer(format!("sending the request failed: {e}")));
    }
    if reply.is_empty() {
        return Err(AskError::Answer(
            "the supervisor closed the connection without answering".into(),
        ));
    }
    match protocol::decode(&reply) {
        Err(protocol::ReplyError::Refused(m)) if m.starts_with(protocol::BUSY) => Err(AskError::Busy),
        other => other.map_err(|e| AskError::Answer(e.to_string())),
    }
}

/// A blocking connect bounded by `timeout`: for a Unix socket the send
/// timeout also bounds the wait for room in a full accept queue.
fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let tv = TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
    socket::setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    let addr = UnixAddr::new(path)?;
    loop {
        match socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => return Ok(UnixStream::from(fd)),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The one line for a failure to get an answer, with what to do about it.
pub fn describe(path: &Path, timeout: Duration, err: &AskError) -> String {
    let shown = path.display();
    match err {
        AskError::Connect(e) => match e.kind() {
            io::ErrorKind::NotFound => format!(
                "no supervisor: {shown} does not exist (no initd supervises this container, or it runs with another INITD_SOCKET)"
            ),
            io::ErrorKind::ConnectionRefused => {
                format!("no supervisor: nothing listens on {shown} (initd has exited)")
            }
            io::ErrorKind::PermissionDenied => {
                let who = std::fs::metadata(path)
                    .map(|m| format!(" (owner uid {}, group gid {})", m.uid(), m.gid()))
                    .unwrap_or_default();
                format!("permission denied on {shown}{who}: run the check as root or as the app user")
            }
            _ => format!("cannot connect to {shown}: {e}"),
        },
        AskError::Timeout => format!(
            "no answer from the supervisor on {shown} within {} (INITD_CHECK_TIMEOUT)",
            human(timeout)
        ),
        AskError::Answer(reason) => format!("{shown}: {reason}"),
        AskError::Busy => format!(
            "the supervisor on {shown} was busy (every connection it serves at once taken) for {} \
             (INITD_CHECK_TIMEOUT)",
            human(timeout)
        ),
    }
}

/// Liveness (`initd check --live`): whether restarting the container could
/// help. Live while the supervisor answers and the main child is alive,
/// whatever the probe says (a database that is down must not restart every
/// pod) and while draining or stopping (the pod is on its way out anyway).
/// Before the main child exists (secrets, wait-for, migrations) the answer
/// itself is enough: a long migration must not be killed half-way, and
/// start-up is bounded by INITD_WAIT_TIMEOUT and the startupProbe.
pub fn liveness(report: &Report) -> (bool, String) {
    match (report.state.as_str(), report.main_pid) {
        ("starting", _) => (true, format!("starting: {}", report.reason)),
        ("idle", _) => (true, format!("idle: {}", report.reason)),
        (state, Some(pid)) => (
            true,
            format!("{state}: the main child (pid {pid}) is alive; {}", report.reason),
        ),
        (state, None) => (
            false,
            format!("{state}: the main child is not running; {}", report.reason),
        ),
    }
}

/// `initd check [--live] [--json]`.
pub fn run(json: bool, live: bool) -> i32 {
    let outcome = settings(|name| std::env::var(name).ok()).and_then(|s| match s.socket {
        None => Err("INITD_SOCKET=off: the supervisor serves no checks".to_string()),
        Some(path) => ask(&path, s.timeout).map_err(|e| describe(&path, s.timeout, &e)),
    });
    let (code, line) = match &outcome {
        Ok(report) if live => {
            let (ok, why) = liveness(report);
            let line = if json {
                live_json(report, ok, &why)
            } else if ok {
                format!("live: {why}\n")
            } else {
                format!("not live: {why}\n")
            };
            (if ok { HEALTHY } else { UNHEALTHY }, line)
        }
        Ok(report) => (
            if report.healthy { HEALTHY } else { UNHEALTHY },
            if json {
                String::from_utf8_lossy(&protocol::encode(report)).into_owned()
            } else {
                format!("{}: {}\n", report.state, report.reason)
            },
        ),
        Err(reason) if json => (UNHEALTHY, unreachable_json(reason, live)),
        Err(reason) if live => (UNHEALTHY, format!("not live: {reason}\n")),
        Err(reason) => (UNHEALTHY, format!("unhealthy: {reason}\n")),
    };
    // Docker keeps the output of each check; one write, so a reader never
    // sees half a line.
    let _ = io::stdout().lock().write_all(line.as_bytes());
    code
}

fn unreachable_json(reason: &str, live: bool) -> String {
    let mut value = serde_json::json!({
        "protocol": protocol::VERSION,
        "healthy": false,
        "error": reason,
    });
    if live {
        value["live"] = false.into();
    }
    format!("{value}\n")
}

/// The supervisor's full report with the liveness verdict added: `live`
/// (what the exit status says) and `live_reason`; `healthy` stays the
/// readiness answer.
fn live_json(report: &Report, live: bool, why: &str) -> String {
    let mut value = serde_json::to_value(report).expect("a report always serialises");
    value["live"] = live.into();
    value["live_reason"] = why.into();
    format!("{value}\n")
}

/// `initd status`: the table. Exit 0 when the supervisor answered.
pub fn status() -> i32 {
    let s = match settings(|name| std::env::var(name).ok()) {
        Ok(s) => s,
        Err(e) => {
            crate::logging::early_error(&e);
            return UNHEALTHY;
        }
    };
    let Some(path) = s.socket else {
        crate::logging::early_error("INITD_SOCKET=off: the supervisor serves no status");
        return UNHEALTHY;
    };
    match ask(&path, s.timeout) {
        Ok(report) => {
            print!("{}", table(&report));
            HEALTHY
        }
        Err(e) => {
            crate::logging::early_error(&describe(&path, s.timeout, &e));
            UNHEALTHY
        }
    }
}

/// The human-readable status: a summary, then one row per process.
pub fn table(report: &Report) -> String {
    let health = if report.healthy { "healthy" } else { "unhealthy" };
    let mut out = format!(
        "state:   {} ({health})\nreason:  {}\nuptime:  {}\n",
        report.state,
        report.reason,
        uptime(Duration::from_millis(report.uptime_ms))
    );
    if !report.role.is_empty() {
        out.push_str(&format!("init:    {}\n", report.role));
    }
    if let Some(l) = &report.lock {
        out.push_str(&format!(
            "lock:    waiting {} for {}: {}\n",
            uptime(Duration::from_millis(l.waited_ms)),
            l.lock,
            l.detail
        ));
        if let Some(h) = &l.holder {
            let from = if h.client_addr.is_empty() {
                "a local connection".to_string()
            } else {
                h.client_addr.clone()
            };
            out.push_str(&format!(
                "holder:  {:?} from {from}, connected since {} (backend pid {})\n",
                h.application_name, h.since, h.pid
            ));
        }
    }
    if let Some(p) = &report.probe {
        out.push_str(&format!(
            "probe:   {}: {} ({}, {} ms)\n",
            p.probe,
            p.detail,
            if p.ok { "ok" } else { "failed" },
            p.took_ms
        ));
    }
    let mut rows: Vec<[String; 4]> = vec![["NAME", "PID", "RESTARTS", "STATE"].map(String::from)];
    let pid = |p: Option<u32>| p.map_or("-".to_string(), |p| p.to_string());
    if report.processes.is_empty() {
        let state = if report.main_pid.is_some() {
            "running"
        } else {
            "not running"
        };
        rows.push([
            "main".into(),
            pid(report.main_pid),
            report.main_restarts.to_string(),
            state.into(),
        ]);
    }
    for p in &report.processes {
        rows.push([p.name.clone(), pid(p.pid), p.restarts.to_string(), p.note.clone()]);
    }
    let widths: Vec<usize> = (0..3)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    out.push('\n');
    for row in rows {
        out.push_str(&format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ));
    }
    out
}

/// `3m12s`, `2h05m`, `4d03h`.
fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::protocol::{ProbeReport, ProcessReport};

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    fn no_file() -> (&'static str, &'static str) {
        ("INITD_CONFIG", "/nonexistent/initd.toml")
    }

    /// A supervisor end that has already answered `answer` and closed,
    /// before the request could be sent.
    fn closed_after(answer: &[u8]) -> UnixStream {
        let (client, mut server) = UnixStream::pair().unwrap();
        server.write_all(answer).unwrap();
        drop(server);
        client
    }

    #[test]
    fn a_busy_line_is_read_even_when_the_request_could_not_be_sent() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let busy = protocol::encode_error("busy: 1024 connections are open");
        assert!(matches!(
            exchange(closed_after(&busy), deadline),
            Err(AskError::Busy)
        ));
        match exchange(closed_after(b""), deadline) {
            Err(AskError::Answer(m)) => assert!(m.starts_with("sending the request failed: "), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settings_from_the_environment() {
        let s = settings(env(&[
            ("INITD_SOCKET", "/tmp/x.sock"),
            ("INITD_CHECK_TIMEOUT", "500ms"),
        ]))
        .unwrap();
        assert_eq!(
            s,
            CheckSettings {
                socket: Some("/tmp/x.sock".into()),
                timeout: Duration::from_millis(500)
            }
        );
        let s = settings(env(&[("INITD_SOCKET", "off"), ("INITD_CHECK_TIMEOUT", "1s")])).unwrap();
        assert_eq!(s.socket, None);
    }

    #[test]
    fn unrelated_settings_are_not_looked_at() {
        let s = settings(env(&[
            ("INITD_SOCKET", "/tmp/x.sock"),
            ("INITD_CHECK_TIMEOUT", "1s"),
            ("INITD_WROKERS", "3"),
            ("INITD_STOP_TIMEOUT", "soon"),
        ]));
        assert!(s.is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        let err = settings(env(&[
            ("INITD_SOCKET", "initd.sock"),
            ("INITD_CHECK_TIMEOUT", "1s"),
        ]))
        .unwrap_err();
        assert!(
            err.starts_with("INITD_SOCKET=\"initd.sock\": expected an absolute path"),
            "{err}"
        );
        let err = settings(env(&[("INITD_SOCKET", "/x"), ("INITD_CHECK_TIMEOUT", "0")])).unwrap_err();
        assert!(
            err.starts_with("INITD_CHECK_TIMEOUT=\"0\": expected a duration above zero"),
            "{err}"
        );
        let err = settings(env(&[("INITD_SOCKET", "/x"), no_file()])).unwrap_err();
        assert!(err.contains("/nonexistent/initd.toml (INITD_CONFIG)"), "{err}");
    }

    #[test]
    fn the_file_fills_in_what_the_environment_leaves_out() {
        let dir = std::env::temp_dir().join(format!("initd-check-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("initd.toml");
        std::fs::write(
            &file,
            "socket = \"/tmp/f.sock\"\ncheck_timeout = 3\nworkers = \"many\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let s = settings(env(&[("INITD_CONFIG", path)])).unwrap();
        assert_eq!(s.socket, Some(PathBuf::from("/tmp/f.sock")));
        assert_eq!(s.timeout, Duration::from_secs(3));
        let s = settings(env(&[("INITD_CONFIG", path), ("INITD_SOCKET", "/tmp/e.sock")])).unwrap();
        assert_eq!(s.socket, Some(PathBuf::from("/tmp/e.sock")));
        std::fs::write(&file, "socket = 5\n").unwrap();
        let err = settings(env(&[("INITD_CONFIG", path)])).unwrap_err();
        assert!(err.contains("key `socket`=5: expected a string"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_supervisor_is_a_clear_failure() {
        let path = Path::new("/nonexistent/initd.sock");
        let err = ask(path, Duration::from_secs(1)).unwrap_err();
        let line = describe(path, Duration::from_secs(1), &err);
        assert!(
            line.starts_with("no supervisor: /nonexistent/initd.sock does not exist"),
            "{line}"
        );
        let line = describe(path, Duration::from_millis(1500), &AskError::Timeout);
        assert!(line.ends_with("within 1.5s (INITD_CHECK_TIMEOUT)"), "{line}");
    }

    #[test]
    fn the_table_lists_the_processes() {
        let mut report = Report {
            protocol: 1,
            healthy: true,
            state: "running".into(),
            reason: "server running (pid 7)".into(),
            uptime_ms: 192_000,
            main_pid: Some(7),
            main_restarts: 0,
            probe: None,
            processes: Vec::new(),
            role: String::new(),
            lock: None,
        };
        let text = table(&report);
        assert!(text.starts_with("state:   running (healthy)\n"), "{text}");
        assert!(text.contains("uptime:  3m12s\n"), "{text}");
        assert!(
            text.contains("NAME  PID  RESTARTS  STATE\nmain    7         0  running\n"),
            "{text}"
        );
        report.probe = Some(ProbeReport {
            probe: "tcp://127.0.0.1:8000".into(),
            ok: true,
            detail: "connected to 127.0.0.1:8000".into(),
            took_ms: 1,
        });
        report.processes = vec![
            ProcessReport {
                name: "css".into(),
                pid: None,
                restarts: 12,
                note: "exited with status 1; restarting in 8s".into(),
            },
            ProcessReport {
                name: "server".into(),
                pid: Some(1234),
                restarts: 3,
                note: "running".into(),
            },
        ];
        let text = table(&report);
        assert!(text.contains("probe:   tcp://127.0.0.1:8000: connected to 127.0.0.1:8000 (ok, 1 ms)\n"));
        assert!(
            text.contains(
                "NAME     PID  RESTARTS  STATE\n\
                 css        -        12  exited with status 1; restarting in 8s\n\
                 server  1234         3  running\n"
            ),
            "{text}"
        );
    }

    fn report(state: &str, main_pid: Option<u32>, healthy: bool) -> Report {
        Report {
            protocol: 1,
            healthy,
            state: state.into(),
            reason: "why".into(),
            uptime_ms: 1,
            main_pid,
            main_restarts: 0,
            probe: None,
            processes: Vec::new(),
            role: String::new(),
            lock: None,
        }
    }

    #[test]
    fn liveness_follows_the_main_child_not_the_probe() {
        for (state, pid, healthy, live) in [
            ("running", Some(7), true, true),
            // The probe fails (a dependency is down): ready no, live yes.
            ("unhealthy", Some(7), false, true),
            ("draining", Some(7), false, true),
            ("stopping", Some(7), false, true),
            ("starting", None, false, true),
            ("idle", None, true, true),
            // Dev mode's server crashed and waits for a change.
            ("unhealthy", None, false, false),
            ("running", None, false, false),
        ] {
            let (ok, why) = liveness(&report(state, pid, healthy));
            assert_eq!(ok, live, "{state} {pid:?}: {why}");
            assert!(why.starts_with(state), "{why}");
        }
        let text = live_json(&report("draining", Some(7), false), true, "draining: x");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["live"], true);
        assert_eq!(value["healthy"], false);
        assert_eq!(value["main_pid"], 7);
        assert_eq!(value["state"], "draining");
        let value: serde_json::Value = serde_json::from_str(&unreachable_json("gone", true)).unwrap();
        assert_eq!(
            (value["live"].as_bool(), value["healthy"].as_bool()),
            (Some(false), Some(false))
        );
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(Duration::from_secs(5)), "5s");
        assert_eq!(uptime(Duration::from_secs(3725)), "1h02m");
        assert_eq!(uptime(Duration::from_secs(90_000)), "1d01h");
    }
}
