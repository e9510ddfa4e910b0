//! Health checks end to end: the real initd as PID 1 of a pid namespace,
//! serving its control socket at a per-test path, asked by the real
//! `initd check` and `initd status` from outside, as Docker's HEALTHCHECK
//! would. Judged by exit codes, the printed line, and what the probes and
//! the children recorded.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers

/// initd as PID 1 with its stderr in a file, killed with its namespace if
/// the test fails.
struct Initd {
    run: Logged,
    socket: PathBuf,
}

impl Initd {
    /// Starts `initd ARGS` as PID 1 with the socket at `dir/initd.sock`
    /// and `env` on top of the tests' usual environment.
    fn start(dir: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Initd {
        let mut cmd = initd_pid1(args);
        Initd::spawn(dir, &mut cmd, env)
    }

    /// Starts `cmd`; the socket is `dir/initd.sock` unless `env` names
    /// another.
    fn spawn(dir: &Scratch, cmd: &mut Command, env: &[(&str, &str)]) -> Initd {
        let socket = env
            .iter()
            .find(|(k, _)| *k == "INITD_SOCKET")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| dir.path("initd.sock"));
        cmd.env("INITD_SOCKET", &socket).env("INITD_MIGRATE", "off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.current_dir(&dir.0);
        Initd {
            run: spawn_logged(cmd, dir, "initd"),
            socket,
        }
    }

    fn stderr(&self) -> String {
        self.run.stderr()
    }

    fn host_pid(&self) -> i32 {
        self.run.pid()
    }

    fn signal(&self, sig: Signal) {
        signal(self.host_pid(), sig);
    }

    /// Waits until initd's stderr contains `needle`.
    fn wait_stderr(&mut self, needle: &str) {
        self.run.wait_stderr(needle, LIMIT);
    }

    /// `initd check ARGS` against this initd.
    fn check(&self, args: &[&str]) -> Output {
        check_at(&self.socket, args, &[])
    }

    /// Runs checks until one prints a line starting with `prefix` (before
    /// the socket is there, checks say there is no supervisor).
    fn wait_check(&self, prefix: &str) -> Output {
        wait_check_line(&self.socket, prefix, LIMIT, &|| self.stderr())
    }

    /// Stops initd with TERM and returns how it ended.
    fn stop(self) -> (i32, String) {
        self.signal(Signal::SIGTERM);
        self.finish()
    }

    fn finish(self) -> (i32, String) {
        let out = self.run.finish(LIMIT);
        (out.status.code().expect("initd exited"), out.stderr)
    }
}

fn check_at(socket: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    run(check_cmd(socket, args, env), LIMIT)
}

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A Python HTTP server on 127.0.0.1:`port`: each GET appends a line to
/// `dir/hits`, then answers 503 while `dir/fail` exists and 200 otherwise.
fn http_server(dir: &Scratch, port: u16) -> String {
    let script = dir.path("server.py");
    write_script(
        &script,
        r#"import http.server, os, sys
port, d = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(os.path.join(d, "hits"), "a") as f:
            f.write(self.path + "\n")
        code = 503 if os.path.exists(os.path.join(d, "fail")) else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#,
    );
    format!("python3 {} {port} {}", script.display(), dir.0.display())
}

/// A server that records when it got TERM (seconds since the epoch, in
/// `dir/term`) and then exits 0.
/// A server that records when it gets TERM; it creates `term.ready` once
/// its handler is in place (a TERM before that would just kill it).
fn term_recorder(dir: &Scratch) -> String {
    let script = dir.path("recorder.py");
    write_script(
        &script,
        r#"import signal, sys, time
out = sys.argv[1]
def on_term(sig, frame):
    with open(out, "w") as f:
        f.write(repr(time.time()))
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(out + ".ready", "w").close()
while True:
    time.sleep(60)
"#,
    );
    format!("python3 {} {}", script.display(), dir.path("term").display())
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn lines(dir: &Scratch, name: &str) -> usize {
    dir.read(name).lines().count()
}

/// Zombies among the children of the process with host pid `pid`.
fn zombie_children(pid: i32) -> usize {
    initd::procfs::snapshot()
        .iter()
        .filter(|s| s.ppid == pid && s.state == 'Z')
        .count()
}

// ---------------------------------------------------------------------------
// States

#[test]
fn start_up_is_unhealthy_until_the_server_runs() {
    let dir = Scratch::new("health-startup");
    let release = dir.path("release");
    let migration = format!("sh -c 'until [ -e {} ]; do sleep 0.02; done'", release.display());
    let initd = Initd::start(
        &dir,
        &["run"],
        &[("INITD_MIGRATE", &migration), ("INITD_SERVER", "sleep 1000")],
    );
    let out = initd.wait_check("starting: ");
    assert_eq!(out.code(), 1, "{}", out.stdout);
    assert_eq!(out.stdout, "starting: migration running\n");
    let json = initd.check(&["--json"]);
    assert_eq!(json.code(), 1);
    assert!(
        json.stdout
            .starts_with("{\"protocol\":1,\"healthy\":false,\"state\":\"starting\""),
        "{}",
        json.stdout
    );

    fs::write(&release, "").unwrap();
    let out = initd.wait_check("running: ");
    assert_eq!(out.code(), 0, "{}", out.stdout);
    assert!(
        out.stdout.starts_with("running: server running (pid "),
        "{}",
        out.stdout
    );
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
}

/// The wait for a dependency is outside the loop's own poll: checks wake
/// it, are answered, and the wait goes on to its end.
#[test]
fn checks_are_answered_while_initd_waits_for_a_dependency() {
    let dir = Scratch::new("health-waitfor");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("tcp://127.0.0.1:{port}");
    let initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_WAIT_FOR", &target),
            ("INITD_WAIT_TIMEOUT", "5m"),
            ("INITD_SERVER", "sleep 1000"),
        ],
    );
    for _ in 0..3 {
        let out = initd.wait_check("starting: ");
        assert_eq!(out.code(), 1, "{}", out.stdout);
        assert_eq!(out.stdout, format!("starting: waiting for {target}\n"));
    }
    let _db = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = initd.wait_check("running: ");
    assert_eq!(out.code(), 0, "{}", out.stdout);
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
}

#[test]
fn a_server_that_exits_is_not_healthy_while_initd_winds_down() {
    let dir = Scratch::new("health-exit");
    // The server exits at once and leaves a grandchild that ignores TERM
    // behind, so initd stays up through the grace period.
    let script = dir.path("server.sh");
    let ready = dir.path("ready");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\n(trap '' TERM; touch {r}; exec sleep 1000) &\nuntil [ -e {r} ]; do sleep 0.01; done\nexit 3\n",
            r = ready.display()
        ),
    );
    let initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_SERVER", script.to_str().unwrap()),
            ("INITD_STOP_TIMEOUT", "20s"),
        ],
    );
    let out = initd.wait_check("stopping: ");
    assert_eq!(out.code(), 1);
    assert_eq!(
        out.stdout,
        "stopping: the main child exited with status 3; stopping\n"
    );
}

// ---------------------------------------------------------------------------
// Probes

#[test]
fn an_http_probe_follows_the_server() {
    let dir = Scratch::new("health-http");
    let port = free_port();
    let probe = format!("http://127.0.0.1:{port}/healthz");
    let initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_SERVER", &http_server(&dir, port)),
            ("INITD_HEALTH", &probe),
        ],
    );
    let out = initd.wait_check("running: ");
    assert_eq!(out.code(), 0);
    assert_eq!(
        out.stdout,
        format!("running: server running; {probe}: HTTP 200 OK\n")
    );
    assert!(dir.read("hits").contains("/healthz\n"));

    fs::write(dir.path("fail"), "").unwrap();
    let out = initd.check(&[]);
    assert_eq!(out.code(), 1);
    assert_eq!(
        out.stdout,
        format!("unhealthy: {probe}: HTTP 503 Service Unavailable\n")
    );
    let status = initd.check(&["status"]);
    assert_eq!(status.code(), 0, "{}", status.stderr);
    assert!(
        status.stdout.starts_with("state:   unhealthy (unhealthy)\n"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains(&format!(
            "probe:   {probe}: HTTP 503 Service Unavailable (failed, "
        )),
        "{}",
        status.stdout
    );
    fs::remove_file(dir.path("fail")).unwrap();
    assert_eq!(initd.check(&[]).code(), 0);
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
}

#[test]
fn a_tcp_probe_needs_a_listener() {
    let dir = Scratch::new("health-tcp");
    let port = free_port();
    // Listens until dir/close exists, then closes the listener and stays.
    let script = dir.path("listen.py");
    write_script(
        &script,
        r#"import os, socket, sys, time
port, close = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
s.settimeout(0.02)
while not os.path.exists(close):
    try:
        s.accept()[0].close()
    except socket.timeout:
        pass
s.close()
time.sleep(1000)
"#,
    );
    let server = format!(
        "python3 {} {port} {}",
        script.display(),
        dir.path("close").display()
    );
    let probe = format!("tcp://127.0.0.1:{port}");
    let initd = Initd::start(
        &dir,
        &["run"],
        &[("INITD_SERVER", &server), ("INITD_HEALTH", &probe)],
    );
    let out = initd.wait_check("running: ");
    assert_eq!(out.code(), 0);
    assert_eq!(
        out.stdout,
        format!("running: server running; {probe}: connected to 127.0.0.1:{port}\n")
    );
    fs::write(dir.path("close"), "").unwrap();
    let out = initd.wait_check("unhealthy: ");
    assert_eq!(out.code(), 1);
    assert_eq!(out.stdout, format!("unhealthy: {probe}: connection refused\n"));
}

/// A probe whose server takes the connection and the request and never
/// answers fails at INITD_HEALTH_TIMEOUT, and the socket goes on answering.
#[test]
fn an_http_probe_that_never_answers_fails_in_time() {
    let dir = Scratch::new("health-hang");
    let port = free_port();
    // Accepts, records each request's first line, answers nothing.
    let script = dir.path("hang.py");
    write_script(
        &script,
        r#"import socket, sys
port, log = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
held = []
while True:
    conn = s.accept()[0]
    line = conn.makefile("rb").readline()
    with open(log, "ab") as f:
        f.write(line)
    held.append(conn)
"#,
    );
    let server = format!(
        "python3 {} {port} {}",
        script.display(),
        dir.path("requests").display()
    );
    let probe = format!("http://127.0.0.1:{port}/healthz");
    let initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_SERVER", &server),
            ("INITD_HEALTH", &probe),
            ("INITD_HEALTH_TIMEOUT", "300ms"),
        ],
    );
    let out = initd.wait_check(&format!("unhealthy: {probe}: no answer"));
    assert_eq!(out.code(), 1);
    assert_eq!(
        out.stdout,
        format!("unhealthy: {probe}: no answer within 300ms\n")
    );
    assert!(
        dir.read("requests").contains("GET /healthz HTTP/1.1\r\n"),
        "{}",
        dir.read("requests")
    );
    // The next check runs a new probe, with the same result.
    let again = initd.check(&[]);
    assert_eq!((again.code(), again.stdout.as_str()), (1, out.stdout.as_str()));
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}");
}

#[test]
fn a_probe_may_name_its_host() {
    let dir = Scratch::new("health-name");
    let port = free_port();
    // Resolved by initd's own resolver from /etc/hosts, as for INITD_WAIT_FOR.
    let probe = format!("http://localhost:{port}/healthz");
    let initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_SERVER", &http_server(&dir, port)),
            ("INITD_HEALTH", &probe),
        ],
    );
    let out = initd.wait_check("running: ");
    assert_eq!(
        out.stdout,
        format!("running: server running; {probe}: HTTP 200 OK\n")
    );
    fs::write(dir.path("fail"), "").unwrap();
    let out = initd.check(&[]);
    assert_eq!(out.code(), 1);
    assert_eq!(
        out.stdout,
        format!("unhealthy: {probe}: HTTP 503 Service Unavailable\n")
    );
}

#[test]
fn a_cmd_probe_is_judged_by_its_exit_status() {
    let dir = Scratch::new("health-cmd");
    let probe = format!(
        "cmd:sh -c 'echo run >> {runs}; test -e {ok} || {{ echo database not ready >&2; exit 3; }}'",
        runs = dir.path("runs").display(),
        ok = dir.path("ok").display()
    );
    let initd = Initd::start(
        &dir,
        &["run"],
        &[("INITD_SERVER", "sleep 1000"), ("INITD_HEALTH", &probe)],
    );
    let out = initd.wait_check("unhealthy: ");
    assert_eq!(out.code(), 1);
    assert!(
        out.stdout
            .ends_with(": exited with status 3: database not ready\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.starts_with("unhealthy: cmd:sh -c "), "{}", out.stdout);
    fs::write(dir.path("ok"), "").unwrap();
    let out = initd.check(&[]);
    assert_eq!(out.code(), 0, "{}", out.stdout);
    assert!(out.stdout.ends_with(": exited with status 0\n"), "{}", out.stdout);
    assert!(lines(&dir, "runs") >= 2);
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
    // The probe's output is for the check, not the container's log; and
    // every probe child was reaped (none left to stop).
    assert!(!stderr.contains("database not ready"), "{stderr}");
    assert!(!stderr.contains("leftover"), "{stderr}");
}

#[test]
fn a_cmd_probe_that_hangs_is_killed_and_fails() {
    let dir = Scratch::new("health-cmd-hang");
    let initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_SERVER", "sleep 1000"),
            ("INITD_HEALTH", "cmd:sleep 1000"),
            ("INITD_HEALTH_TIMEOUT", "300ms"),
        ],
    );
    let out = initd.wait_check("unhealthy: ");
    assert_eq!(out.code(), 1);
    assert_eq!(
        out.stdout,
        "unhealthy: cmd:sleep 1000: no answer within 300ms (INITD_HEALTH_TIMEOUT)\n"
    );
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
    assert!(
        !stderr.contains("leftover"),
        "the hung probe was not killed:\n{stderr}"
    );
}

#[test]
fn a_cmd_probe_runs_as_the_app_user() {
    if !is_root_or_skip("a_cmd_probe_runs_as_the_app_user") {
        return;
    }
    let dir = Scratch::new("health-cmd-user");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
    let passwd = format!("app:x:1000:1000::{}:/bin/sh", dir.path("home").display());
    let probe = format!("cmd:sh -c 'id -u > {}'", dir.path("uid").display());
    let mut cmd = initd_pid1_with_etc(&dir, &[&passwd], &["app:x:1000:"], ["run"]);
    cmd.env_remove("INITD_ALLOW_ROOT");
    // Not in `dir` itself, which everyone may write (initd would refuse
    // it): in a directory initd makes there.
    let socket = dir.path("run/initd.sock");
    let initd = Initd::spawn(
        &dir,
        &mut cmd,
        &[
            ("INITD_SERVER", "sleep 1000"),
            ("INITD_HEALTH", &probe),
            ("INITD_SOCKET", socket.to_str().unwrap()),
        ],
    );
    let out = initd.wait_check("running: ");
    assert_eq!(out.code(), 0);
    assert_eq!(dir.read("uid"), "1000\n");
    // Made by root before the drop, for root and the app's group only.
    let meta = fs::metadata(&initd.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 1000);
    // initd dropped root, and serves the socket from its one thread (a
    // thread left with root would be a way back).
    let pid = initd.host_pid();
    let tasks: Vec<_> = fs::read_dir(format!("/proc/{pid}/task")).unwrap().collect();
    assert_eq!(tasks.len(), 1, "a thread besides the loop's");
    for task in tasks {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert_eq!(
            uid.split_whitespace().skip(1).collect::<Vec<_>>(),
            ["1000"; 4],
            "{status}"
        );
    }
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
}

#[test]
fn a_non_root_initd_serves_where_it_may_write() {
    if !is_root_or_skip("a_non_root_initd_serves_where_it_may_write") {
        return;
    }
    let as_1000 = |dir: &Scratch| {
        let passwd = format!("app:x:1000:1000::{}:/bin/sh", dir.path("home").display());
        let mut cmd = pid1_with_private_etc(
            dir,
            &[&passwd],
            &["app:x:1000:"],
            [
                "setpriv",
                "--reuid=1000",
                "--regid=1000",
                "--clear-groups",
                INITD,
                "run",
            ],
        );
        cmd.env_remove("INITD_ALLOW_ROOT");
        cmd
    };
    // A directory only root may write: no socket, one warning, and the app
    // runs all the same.
    let dir = Scratch::new("health-nonroot-ro");
    let mut initd = Initd::spawn(&dir, &mut as_1000(&dir), &[("INITD_SERVER", "sleep 1000")]);
    initd.wait_stderr("starting server");
    let stderr = initd.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("initd: warning: no health checks: "))
        .unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(
        warning.contains("initd runs as uid 1000, not root") && warning.contains("INITD_SOCKET"),
        "{warning}"
    );
    let out = initd.check(&[]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stdout.starts_with("unhealthy: no supervisor: "),
        "{}",
        out.stdout
    );
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM

    // A directory it may write: it makes its own, private one there.
    let dir = Scratch::new("health-nonroot-rw");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path("run/initd.sock");
    let initd = Initd::spawn(
        &dir,
        &mut as_1000(&dir),
        &[
            ("INITD_SERVER", "sleep 1000"),
            ("INITD_SOCKET", socket.to_str().unwrap()),
        ],
    );
    let out = initd.wait_check("running: ");
    assert_eq!(out.code(), 0);
    let meta = fs::metadata(dir.path("run")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1000);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", INITD, "check"])
        .env_clear()
        .env("INITD_SOCKET", &socket);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 1);
    assert!(
        out.stdout.starts_with("unhealthy: permission denied on "),
        "{}",
        out.stdout
    );
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
}

#[test]
fn a_hundred_checks_at_once_share_one_probe_run() {
    let dir = Scratch::new("health-storm");
    let runs = dir.path("runs");
    let release = dir.path("release");
    let probe = format!(
        "cmd:sh -c 'echo run >> {}; while [ ! -e {} ]; do sleep 0.02; done'",
        runs.display(),
        release.display()
    );
    let initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_SERVER", "sleep 1000"),
            ("INITD_HEALTH", &probe),
            ("INITD_HEALTH_TIMEOUT", "60s"),
        ],
    );
    // One check first, released at once, so the server is surely running.
    fs::write(&release, "").unwrap();
    initd.wait_check("running: ");
    let warm_up = lines(&dir, "runs");
    fs::remove_file(&release).unwrap();

    let checks: Vec<Child> = (0..100)
        .map(|_| {
            check_cmd(&initd.socket, &[], &[("INITD_CHECK_TIMEOUT", "90s")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    wait_for(LIMIT, || (lines(&dir, "runs") > warm_up).then_some(()));
    // Every check has sent its request and waits for the answer (in
    // recvfrom(2), syscall 45, or read(2), 0), so all of them arrived
    // while the probe runs.
    for c in &checks {
        wait_for(LIMIT, || {
            let syscall = fs::read_to_string(format!("/proc/{}/syscall", c.id())).ok()?;
            let number = syscall.split(' ').next()?;
            matches!(number, "45" | "0").then_some(())
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    fs::write(&release, "").unwrap();
    for c in checks {
        let out = finish(c, LIMIT);
        assert_eq!(out.code(), 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.starts_with("running: "), "{}", out.stdout);
    }
    assert_eq!(
        lines(&dir, "runs"),
        warm_up + 1,
        "the checks made more than one probe run"
    );
}

// ---------------------------------------------------------------------------
// Drain

#[test]
fn a_drain_fails_checks_before_the_server_gets_term() {
    let dir = Scratch::new("health-drain");
    let mut initd = Initd::start(
        &dir,
        &["run"],
        &[("INITD_SERVER", &term_recorder(&dir)), ("INITD_DRAIN", "3s")],
    );
    initd.wait_check("running: ");
    wait_for_file(&dir.path("term.ready"));
    let sent = SystemTime::now();
    initd.signal(Signal::SIGTERM);
    initd.wait_stderr("draining on TERM");
    let out = initd.check(&[]);
    assert_eq!(out.code(), 1);
    assert!(out.stdout.starts_with("draining: "), "{}", out.stdout);
    let (code, stderr) = initd.finish();
    assert_eq!(code, 0, "{stderr}");
    let term: f64 = dir.read("term").parse().expect("the server got TERM");
    assert!(
        term >= epoch_secs(sent) + 3.0,
        "TERM came {:.3}s after the stop signal, inside the 3s drain",
        term - epoch_secs(sent)
    );
    assert!(stderr.contains("stopping: TERM to pid"), "{stderr}");
}

#[test]
fn a_second_term_ends_the_drain() {
    let dir = Scratch::new("health-drain2");
    let mut initd = Initd::start(
        &dir,
        &["run"],
        &[("INITD_SERVER", &term_recorder(&dir)), ("INITD_DRAIN", "600s")],
    );
    initd.wait_check("running: ");
    wait_for_file(&dir.path("term.ready"));
    initd.signal(Signal::SIGTERM);
    initd.wait_stderr("draining on TERM");
    assert!(initd.check(&[]).stdout.starts_with("draining: "));
    initd.signal(Signal::SIGTERM);
    // Well within the test's limit, far from the 600s drain.
    let (code, stderr) = initd.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("TERM again: the drain is cut short"), "{stderr}");
    assert!(dir.path("term").exists(), "the server never got TERM");
}

#[test]
fn the_drain_still_forwards_and_reaps() {
    let dir = Scratch::new("health-drain-hup");
    let script = dir.path("hup.sh");
    // Records HUP; starts an orphan that exits at once (a zombie unless
    // initd reaps it); exits on TERM.
    write_script(
        &script,
        &format!(
            "#!/bin/sh\ntrap 'echo hup >> {hups}; sh -c \"sleep 0 &\"' HUP\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n",
            hups = dir.path("hups").display()
        ),
    );
    let mut initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_SERVER", script.to_str().unwrap()),
            ("INITD_DRAIN", "600s"),
        ],
    );
    initd.wait_check("running: ");
    initd.signal(Signal::SIGTERM);
    initd.wait_stderr("draining on TERM");
    initd.signal(Signal::SIGHUP);
    wait_for(LIMIT, || dir.read("hups").contains("hup").then_some(()));
    // The orphan the HUP made is reaped.
    let pid = initd.host_pid();
    wait_for(LIMIT, || (zombie_children(pid) == 0).then_some(()));
    assert!(initd.check(&[]).stdout.starts_with("draining: "));
    assert!(!dir.path("term").exists());
    initd.signal(Signal::SIGTERM);
    let (code, stderr) = initd.finish();
    assert_eq!(code, 0, "{stderr}");
}

// ---------------------------------------------------------------------------
// The socket under abuse

#[test]
fn bad_requests_are_refused_and_the_supervisor_still_answers() {
    let dir = Scratch::new("health-abuse");
    let initd = Initd::start(&dir, &["run"], &[("INITD_SERVER", "sleep 1000")]);
    initd.wait_check("running: ");
    let s = &initd.socket;
    assert!(raw(s, b"GET / HTTP/1.1\r\n\r\n").contains("\"error\":\"not an initd request"));
    assert!(raw(s, b"initd/9 check\n").contains("\"error\":\"protocol \\\"initd/9\\\" is not supported"));
    assert!(raw(s, b"initd/1 reboot\n").contains("\"error\":\"unknown request \\\"reboot\\\""));
    assert!(raw(s, b"\xff\xfe\x00\n").contains("\"error\""));
    assert!(raw(s, &[b'a'; 1 << 20]).contains("\"error\":\"request longer than 256 bytes\""));
    // Connect and leave at once, or half-close without a newline.
    drop(UnixStream::connect(s).unwrap());
    assert!(raw(s, b"initd/1 check").contains("\"state\":\"running\""));
    // Clients that connect and send nothing do not hold up a check.
    let idle: Vec<UnixStream> = (0..50).map(|_| UnixStream::connect(s).unwrap()).collect();
    let out = initd.check(&[]);
    assert_eq!(out.code(), 0, "{}", out.stdout);
    // Nor are they kept forever: the supervisor drops them.
    for mut conn in idle {
        conn.set_read_timeout(Some(LIMIT)).unwrap();
        let mut rest = Vec::new();
        assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0);
    }
    assert_eq!(initd.check(&[]).code(), 0);
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
}

#[test]
fn a_thousand_clients_at_once_are_all_answered() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // A thousand connections need a thousand descriptors on both sides;
    // initd inherits the raised limit.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < 2200 {
        note(&format!(
            "a_thousand_clients_at_once_are_all_answered: skipped, the descriptor limit is {hard}"
        ));
        return;
    }
    setrlimit(Resource::RLIMIT_NOFILE, soft.max(2200), hard).unwrap();
    let dir = Scratch::new("health-thousand");
    let port = free_port();
    let probe = format!("http://127.0.0.1:{port}/healthz");
    let initd = Initd::start(
        &dir,
        &["run"],
        &[
            ("INITD_SERVER", &http_server(&dir, port)),
            ("INITD_HEALTH", &probe),
        ],
    );
    initd.wait_check("running: ");
    let conns: Vec<UnixStream> = (0..1000)
        .map(|_| UnixStream::connect(&initd.socket).unwrap())
        .collect();
    for mut c in &conns {
        c.write_all(b"initd/1 check\n").unwrap();
    }
    for mut c in &conns {
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("{\"protocol\":1,\"healthy\":true,\"state\":\"running\""),
            "{answer}"
        );
    }
    // Far fewer probe runs than checks: they share them.
    let hits = lines(&dir, "hits");
    assert!(hits < 500, "{hits} probe runs for 1000 checks");
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
}

#[test]
fn a_user_without_access_gets_a_clear_failure() {
    if !is_root_or_skip("a_user_without_access_gets_a_clear_failure") {
        return;
    }
    let dir = Scratch::new("health-access");
    let initd = Initd::start(&dir, &["run"], &[("INITD_SERVER", "sleep 1000")]);
    initd.wait_check("running: ");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", INITD, "check"])
        .env_clear()
        .env("INITD_SOCKET", &initd.socket);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with(&format!(
            "unhealthy: permission denied on {} (owner uid 0, group gid 0): run the check as root or as the app user",
            initd.socket.display()
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn without_a_supervisor_a_check_fails_and_says_why() {
    let dir = Scratch::new("health-none");
    let missing = dir.path("missing.sock");
    let out = check_at(&missing, &[], &[]);
    assert_eq!(out.code(), 1);
    assert_eq!(
        out.stdout,
        format!(
            "unhealthy: no supervisor: {} does not exist (no initd supervises this container, or it runs with another INITD_SOCKET)\n",
            missing.display()
        )
    );
    let json = check_at(&missing, &["--json"], &[]);
    assert_eq!(json.code(), 1);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["healthy"], false, "{}", json.stdout);
    assert_eq!(value["protocol"], 1, "{}", json.stdout);
    assert!(
        value["error"].as_str().unwrap().starts_with("no supervisor: "),
        "{}",
        json.stdout
    );

    // A socket left by an initd that is gone.
    let stale = dir.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = check_at(&stale, &[], &[]);
    assert_eq!(out.code(), 1);
    assert!(out.stdout.contains("nothing listens on"), "{}", out.stdout);

    // A listener that never answers: the check gives up in time.
    let silent = dir.path("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let out = check_at(&silent, &[], &[("INITD_CHECK_TIMEOUT", "200ms")]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stdout.ends_with("within 200ms (INITD_CHECK_TIMEOUT)\n"),
        "{}",
        out.stdout
    );

    let out = check_at(Path::new("off"), &[], &[]);
    assert_eq!(out.code(), 1);
    assert_eq!(
        out.stdout,
        "unhealthy: INITD_SOCKET=off: the supervisor serves no checks\n"
    );

    // Misuse is unhealthy too: exit 1, never Docker's reserved 2.
    let out = check_at(&missing, &["--verbose"], &[]);
    assert_eq!(out.code(), 1);
    let status = check_at(&missing, &["status"], &[]);
    assert_eq!(status.code(), 1);
    assert!(status.stderr.contains("no supervisor"), "{}", status.stderr);
}

#[test]
fn a_check_ignores_settings_it_does_not_use() {
    let dir = Scratch::new("health-unrelated");
    let initd = Initd::start(&dir, &["run"], &[("INITD_SERVER", "sleep 1000")]);
    initd.wait_check("running: ");
    // A secret file that does not exist and a misspelt setting would stop
    // `initd run`; a check does not care.
    let out = check_at(
        &initd.socket,
        &[],
        &[
            ("DATABASE_PASSWORD_FILE", "/nonexistent/secret"),
            ("INITD_WROKERS", "3"),
        ],
    );
    assert_eq!(out.code(), 0, "{}", out.stdout);
}

// ---------------------------------------------------------------------------
// initd status and dev mode

#[test]
fn status_shows_the_main_child() {
    let dir = Scratch::new("health-status");
    let initd = Initd::start(&dir, &["run"], &[("INITD_SERVER", "sleep 1000")]);
    initd.wait_check("running: ");
    let out = initd.check(&["status"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = out.stdout;
    assert!(
        text.starts_with("state:   running (healthy)\nreason:  server running (pid "),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("main "))
        .unwrap_or_else(|| panic!("no main row:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2..], ["0", "running"], "{text}");
    assert!(cols[1].parse::<u32>().unwrap() > 1, "{text}");
    assert!(text.contains("\nNAME "), "{text}");
}

#[test]
fn dev_mode_without_a_server_is_idle_and_healthy() {
    let dir = Scratch::new("health-dev");
    let initd = Initd::start(
        &dir,
        &["dev"],
        &[("INITD_WATCHERS", "css=sleep 1000; js=no-such-watcher --watch")],
    );
    let out = initd.wait_check("idle: ");
    assert_eq!(out.code(), 0);
    assert_eq!(out.stdout, "idle: AUTO_START_SERVER is off\n");
    let status = initd.check(&["status"]);
    assert_eq!(status.code(), 0, "{}", status.stderr);
    let text = status.stdout;
    assert!(text.starts_with("state:   idle (healthy)\n"), "{text}");
    let css = text
        .lines()
        .find(|l| l.starts_with("css "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(css.ends_with("  running"), "{text}");
    let js = text
        .lines()
        .find(|l| l.starts_with("js "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(js.contains("cannot start; retrying in"), "{text}");
    let (code, stderr) = initd.stop();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn the_socket_goes_away_with_initd() {
    let dir = Scratch::new("health-gone");
    let initd = Initd::start(&dir, &["run"], &[("INITD_SERVER", "sleep 1000")]);
    initd.wait_check("running: ");
    let socket = initd.socket.clone();
    let (code, _) = initd.stop();
    assert_eq!(code, 143); // the server died of the TERM
    let out = check_at(&socket, &[], &[]);
    assert_eq!(out.code(), 1);
    assert!(
        out.stdout.starts_with("unhealthy: no supervisor: "),
        "{}",
        out.stdout
    );
}

/// PID 1 serves the socket from its own loop: a container runs with initd
/// as a single thread, checked or not.
#[test]
fn checks_are_answered_without_a_thread() {
    let dir = Scratch::new("health-lazy");
    let initd = Initd::start(&dir, &["exec", "--", "sh", "-c", "echo up; exec sleep 1000"], &[]);
    let stdout = dir.path("initd.stdout");
    wait_for(LIMIT, || {
        fs::read_to_string(&stdout)
            .unwrap_or_default()
            .contains("up")
            .then_some(())
    });
    let threads = |pid: i32| fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    let pid = initd.host_pid();
    assert!(initd.socket.exists(), "no socket at {}", initd.socket.display());
    assert_eq!(threads(pid), 1, "a thread before any check:\n{}", initd.stderr());
    let out = initd.wait_check("running: ");
    assert_eq!(out.code(), 0, "{}", out.stdout);
    assert_eq!(threads(pid), 1, "a thread after a check:\n{}", initd.stderr());
    let (code, stderr) = initd.stop();
    assert_eq!(code, 143, "{stderr}"); // the server died of the TERM
}

/// Without INITD_SOCKET, PID 1 serves /run/initd/initd.sock (in a private
/// /run here), in a directory only root and the app's group may enter; a
/// second initd started beside it (`docker exec IMAGE initd exec ...`) is
/// not PID 1, serves nothing and leaves PID 1's socket alone.
#[test]
fn pid1_serves_the_default_socket_and_a_second_initd_leaves_it_alone() {
    if !is_root_or_skip("pid1_serves_the_default_socket_and_a_second_initd_leaves_it_alone") {
        return;
    }
    let script = r#"
        initd check; echo "check=$?"
        stat -c 'mode=%a' /run/initd
        initd exec -- true; echo "second=$?"
        initd check; echo "again=$?"
    "#;
    let prefix = pid1_prefix();
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..])
        .args([
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /run && exec initd exec -- sh -c \"$0\"",
            script,
        ])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", Path::new(INITD).parent().unwrap().display()),
        )
        .env("INITD_ALLOW_ROOT", "true");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", out.stdout);
    assert!(lines[0].starts_with("running: "), "{}", out.stdout);
    assert_eq!(lines[1..4], ["check=0", "mode=750", "second=0"], "{}", out.stdout);
    assert!(lines[4].starts_with("running: "), "{}", out.stdout);
    assert_eq!(lines[5], "again=0", "{}", out.stdout);
}

/// The socket's directory is writable by the app user (uid 1000 owns it),
/// who keeps swapping the socket's name for a link to a root-owned file
/// while initd starts, to have root's chmod/chown land on that file.
/// initd refuses such an INITD_SOCKET outright, in one line naming it, and
/// the file is untouched however the race goes.
#[test]
fn a_socket_directory_the_app_may_write_is_refused_and_its_links_never_followed() {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    if !is_root_or_skip("a_socket_directory_the_app_may_write_is_refused_and_its_links_never_followed") {
        return;
    }
    let dir = Scratch::new("health-socket-race");
    let victim = dir.path("victim");
    fs::write(&victim, "root's\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    let shared = dir.path("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(1000), Some(1000)).unwrap();
    let socket = shared.join("initd.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, socket, victim, shared) = (stop.clone(), socket.clone(), victim.clone(), shared.clone());
        std::thread::spawn(move || {
            let link = shared.join("link");
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = fs::remove_file(&link);
                let _ = std::os::unix::fs::symlink(&victim, &link);
                // Over whatever is there: nothing, or initd's new socket.
                if fs::rename(&link, &socket).is_ok() {
                    swaps += 1;
                }
                let _ = fs::remove_file(&socket);
            }
            swaps
        })
    };
    for _ in 0..10 {
        let mut cmd = initd_pid1(["exec", "--", "true"]);
        cmd.env("INITD_SOCKET", &socket);
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 78, "{}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        assert!(
            lines[0].starts_with(&format!(
                "initd: error: INITD_SOCKET={}: its directory {} is writable by its owner, uid 1000",
                socket.display(),
                shared.display()
            )),
            "{}",
            lines[0]
        );
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert!(swaps > 0);
    let meta = fs::metadata(&victim).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "the victim's mode changed");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "the victim's owner changed");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's\n");
}
