//! Everything initd does after start-up runs on PID 1's one loop, on one
//! thread: watcher output, inotify, polling, health probes of a host name.
//! End to end, as a user sees it: the thread count in /proc, what arrives
//! on initd's stdout (also when nobody reads it for a while), reloads, and
//! how soon initd honours a TERM or a check.

mod common;

use std::fs;
use std::io::Read;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(30);

/// The `Threads:` line of /proc/PID/status.
fn threads(pid: i32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// `initd ARGS` as PID 1 in a private mount namespace whose /etc/hosts and
/// /etc/resolv.conf are `hosts` and `resolv_conf`, with its control socket
/// at `dir/initd.sock`.
fn initd_with_names(dir: &Scratch, hosts: &str, resolv_conf: &str, args: &[&str]) -> Command {
    fs::write(dir.path("hosts"), hosts).unwrap();
    fs::write(dir.path("resolv.conf"), resolv_conf).unwrap();
    let script = r#"set -e
mount --bind "$1/hosts" /etc/hosts
mount --bind "$1/resolv.conf" /etc/resolv.conf
shift
exec "$@"
"#;
    let mut cmd = pid1_after_mounts(script, &dir.0, std::iter::once(INITD).chain(args.iter().copied()));
    cmd.env("INITD_SOCKET", dir.path("initd.sock"))
        .env("INITD_MIGRATE", "off");
    cmd
}

/// A Python HTTP server on 127.0.0.1:`port` answering 200 to every GET.
fn http_server(dir: &Scratch, port: u16) -> String {
    let script = dir.path("server.py");
    fs::write(
        &script,
        r#"import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#,
    )
    .unwrap();
    format!("python3 {} {port}", script.display())
}

fn have_python(test: &str) -> bool {
    if which::which("python3").is_ok() {
        return true;
    }
    note(&format!("{test}: skipped, python3 is not installed"));
    false
}

/// Waits until the file at `path` contains `needle`.
fn wait_in_file(path: &Path, needle: &str) {
    wait_for(LIMIT, || {
        fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
            .then_some(())
    });
}

#[test]
fn dev_mode_with_watchers_inotify_polling_and_a_probe_of_a_host_name_is_one_thread() {
    let test = "dev_mode_with_watchers_inotify_polling_and_a_probe_of_a_host_name_is_one_thread";
    if !is_root_or_skip(test) || !have_python(test) {
        return;
    }
    let dir = Scratch::new("one-thread");
    let app = dir.path("app");
    fs::create_dir(&app).unwrap();
    fs::write(app.join("views.py"), "v1").unwrap();
    let port = free_port();
    let mut cmd = initd_with_names(
        &dir,
        "127.0.0.1 probe-target.test\n",
        "nameserver 127.0.0.1\n",
        &["dev"],
    );
    // /proc is on no file system known to be local, so it is polled as
    // well as watched by inotify: both run, next to the app's inotify.
    cmd.current_dir(&app)
        .env("AUTO_START_SERVER", "true")
        .env("INITD_DEV_SERVER", http_server(&dir, port))
        .env(
            "INITD_WATCHERS",
            "w=sh -c 'while :; do echo tick; sleep 0.1; done'",
        )
        .env(
            "INITD_RELOAD_PATHS",
            format!("{},/proc/sys/fs/inotify", app.display()),
        )
        .env("INITD_HEALTH", format!("http://probe-target.test:{port}/"));
    let mut initd = spawn_logged(&mut cmd, &dir, "initd");
    let socket = dir.path("initd.sock");
    let out = wait_check_line(&socket, "running: ", LIMIT, &|| initd.stderr());
    assert!(
        out.stdout
            .ends_with(&format!("probe-target.test:{port}/: HTTP 200 OK\n")),
        "{}",
        out.stdout
    );
    wait_in_file(&dir.path("initd.stdout"), "w | tick\n");
    let stderr = initd.stderr();
    assert!(stderr.contains("/proc/sys/fs/inotify"), "{stderr}");
    fs::write(app.join("views.py"), "v2").unwrap();
    initd.wait_stderr(": restarting the server", LIMIT);
    let pid = initd.pid();
    assert_eq!(threads(pid), 1, "{}", initd.stderr());
    // A second check, now the server restarted: still one thread.
    let out = wait_check_line(&socket, "running: ", LIMIT, &|| initd.stderr());
    assert_eq!(out.code(), 0, "{}", out.stdout);
    assert_eq!(threads(pid), 1, "{}", initd.stderr());
    signal(pid, Signal::SIGTERM);
    let out = initd.finish(LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// A child killed (with initd's pid namespace, through `unshare
/// --kill-child`) if the test fails.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `initd dev` with one watcher running `script`, stdout a pipe the test
/// reads when it likes, stderr in `dir/initd.stderr`.
fn dev_with_watcher(dir: &Scratch, script: &str) -> (Guard, ChildStdout) {
    let path = dir.path("watcher.sh");
    fs::write(&path, script).unwrap();
    let mut cmd = initd_pid1(["dev"]);
    cmd.current_dir(&dir.0)
        .env("INITD_WATCHERS", format!("w=sh {}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(dir.path("initd.stderr")).unwrap());
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().unwrap();
    (Guard(child), stdout)
}

/// Prints numbered lines as fast as it can, in blocks that cut lines.
const FLOOD: &str = "exec python3 -c '
import sys
i = 0
while True:
    sys.stdout.write(\"line %d %s\\n\" % (i, \"x\" * 200))
    i += 1
'
";

/// Reads what is there within `for_`, from a pipe set non-blocking.
fn read_for(pipe: &mut ChildStdout, into: &mut Vec<u8>, for_: Duration) {
    let until = Instant::now() + for_;
    let mut buf = vec![0u8; 1 << 16];
    while Instant::now() < until {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn set_nonblocking(pipe: &ChildStdout) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETFL on the test's own descriptor.
    unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
}

/// Every line whole, prefixed and numbered from 0 without a gap; the last
/// one may be cut (the watcher died with part of a line in its buffer).
fn assert_consecutive(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 100, "only {} lines", lines.len());
    let tail = "x".repeat(200);
    for (i, line) in lines.iter().enumerate() {
        let whole = format!("w | line {i} {tail}");
        let ok = *line == whole || (i == lines.len() - 1 && whole.starts_with(line));
        assert!(ok, "line {i} is {:?}", &line[..line.len().min(80)]);
    }
    lines.len()
}

#[test]
fn a_flooding_watcher_nobody_reads_holds_up_neither_a_stop_nor_its_lines() {
    if !have_python("a_flooding_watcher_nobody_reads_holds_up_neither_a_stop_nor_its_lines") {
        return;
    }
    // Nobody ever reads initd's stdout: the stop is still prompt.
    let dir = Scratch::new("flood-stop");
    let (mut guard, stdout) = dev_with_watcher(&dir, FLOOD);
    let child = &mut guard.0;
    std::thread::sleep(Duration::from_millis(1500));
    let pid = initd_host_pid(child);
    assert_eq!(threads(pid), 1);
    let asked = Instant::now();
    signal(pid, Signal::SIGTERM);
    let status = wait_timeout(child, LIMIT);
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "{}", dir.read("initd.stderr"));
    assert!(took < Duration::from_secs(6), "the stop took {took:?}");
    drop(stdout);

    // Nobody reads for a while, then someone does: every line arrives,
    // whole, prefixed and in order, none lost while the pipe was full.
    let dir = Scratch::new("flood-read");
    let (mut guard, mut stdout) = dev_with_watcher(&dir, FLOOD);
    let child = &mut guard.0;
    set_nonblocking(&stdout);
    std::thread::sleep(Duration::from_millis(1500));
    let mut got = Vec::new();
    read_for(&mut stdout, &mut got, Duration::from_millis(1500));
    signal(initd_host_pid(child), Signal::SIGTERM);
    let until = Instant::now() + LIMIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "initd did not stop");
        read_for(&mut stdout, &mut got, Duration::from_millis(50));
    }
    read_for(&mut stdout, &mut got, Duration::from_millis(200));
    let text = String::from_utf8(got).unwrap();
    let n = assert_consecutive(&text);
    // Far more than the pipes hold: the watcher went on once read.
    assert!(n > 2000, "{n} lines");
}

#[test]
fn lines_split_across_writes_are_joined_and_a_last_one_without_newline_is_printed() {
    let dir = Scratch::new("split-lines");
    let script = "trap 'printf \"bye without newline\"; exit 0' TERM\n\
                  printf 'bui'; sleep 0.2; printf 'lt in '; sleep 0.2; printf '3ms\\n'\n\
                  echo ready\n\
                  while :; do sleep 0.05; done\n";
    let (mut guard, mut stdout) = dev_with_watcher(&dir, script);
    let child = &mut guard.0;
    set_nonblocking(&stdout);
    let mut got = Vec::new();
    let until = Instant::now() + LIMIT;
    while !String::from_utf8_lossy(&got).contains("w | ready\n") {
        assert!(
            Instant::now() < until,
            "no ready line: {}",
            dir.read("initd.stderr")
        );
        read_for(&mut stdout, &mut got, Duration::from_millis(50));
    }
    signal(initd_host_pid(child), Signal::SIGTERM);
    let status = wait_timeout(child, LIMIT);
    assert_eq!(status.code(), Some(0));
    read_for(&mut stdout, &mut got, Duration::from_millis(200));
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "w | built in 3ms\nw | ready\nw | bye without newline\n"
    );
}

/// `initd dev` in `dir/app` with a server that appends a line to
/// `dir/starts` each time it starts.
fn dev_counting_starts(dir: &Scratch, env: &[(&str, &str)]) -> Logged {
    let app = dir.path("app");
    fs::create_dir_all(&app).unwrap();
    let mut cmd = initd_pid1(["dev"]);
    cmd.current_dir(&app).env("AUTO_START_SERVER", "true").env(
        "INITD_DEV_SERVER",
        format!(
            "sh -c 'echo start >> {}; exec sleep 1000'",
            dir.path("starts").display()
        ),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_logged(&mut cmd, dir, "initd")
}

fn starts(dir: &Scratch) -> usize {
    fs::read_to_string(dir.path("starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn wait_starts(dir: &Scratch, initd: &Logged, n: usize) {
    let until = Instant::now() + LIMIT;
    while starts(dir) < n {
        assert!(Instant::now() < until, "not {n} starts:\n{}", initd.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_directory_created_after_start_is_watched() {
    let dir = Scratch::new("new-dir");
    let initd = dev_counting_starts(&dir, &[("INITD_RELOAD_POLL", "off")]);
    wait_starts(&dir, &initd, 1);
    fs::create_dir_all(dir.path("app/pkg/sub")).unwrap();
    // Long enough for initd to watch the new directories: what is written
    // there from now on is only seen through their own watches.
    std::thread::sleep(Duration::from_millis(500));
    fs::write(dir.path("app/pkg/sub/views.py"), "v1").unwrap();
    wait_starts(&dir, &initd, 2);
    std::thread::sleep(Duration::from_millis(300));
    fs::write(dir.path("app/pkg/sub/views.py"), "v2").unwrap();
    wait_starts(&dir, &initd, 3);
    signal(initd.pid(), Signal::SIGTERM);
    let out = initd.finish(LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stderr.contains("pkg/sub/views.py changed"), "{}", out.stderr);
}

#[test]
fn polling_a_large_tree_does_not_delay_a_stop() {
    let dir = Scratch::new("big-tree");
    for d in 0..200 {
        let sub = dir.path(&format!("app/d{d}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            fs::write(sub.join(format!("m{f}.py")), "x").unwrap();
        }
    }
    let initd = dev_counting_starts(&dir, &[("INITD_RELOAD_POLL", "100ms")]);
    wait_starts(&dir, &initd, 1);
    // The first rounds learn the 20,000 files; an edit is then seen.
    std::thread::sleep(Duration::from_secs(2));
    fs::write(dir.path("app/d150/m99.py"), "changed").unwrap();
    wait_starts(&dir, &initd, 2);
    // Rounds run back to back now, at the interval: a TERM still ends it
    // at once.
    let pid = initd.pid();
    assert_eq!(threads(pid), 1);
    let asked = Instant::now();
    signal(pid, Signal::SIGTERM);
    let out = initd.finish(LIMIT);
    let took = asked.elapsed();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(took < Duration::from_secs(2), "the stop took {took:?}");
}

#[test]
fn a_probe_of_a_host_name_resolves_from_etc_hosts_and_a_silent_dns_server_stalls_nothing() {
    let test = "a_probe_of_a_host_name_resolves_from_etc_hosts_and_a_silent_dns_server_stalls_nothing";
    if !is_root_or_skip(test) || !have_python(test) {
        return;
    }
    // A name /etc/hosts knows.
    let dir = Scratch::new("probe-hosts");
    let port = free_port();
    let server = http_server(&dir, port);
    let mut cmd = initd_with_names(
        &dir,
        "127.0.0.1 probe-target.test\n",
        "nameserver 127.0.0.1\n",
        &["exec", "--", "sh", "-c", &server],
    );
    cmd.env("INITD_HEALTH", format!("http://probe-target.test:{port}/"));
    let initd = spawn_logged(&mut cmd, &dir, "initd");
    let out = wait_check_line(&dir.path("initd.sock"), "running: ", LIMIT, &|| initd.stderr());
    assert!(out.stdout.ends_with(": HTTP 200 OK\n"), "{}", out.stdout);
    assert_eq!(threads(initd.pid()), 1);
    signal(initd.pid(), Signal::SIGTERM);
    drop(initd.finish(LIMIT));

    // A name only DNS could answer, from a server that never does: the
    // loop goes on forwarding signals meanwhile, and the check says
    // unhealthy once the probe's time is up.
    let dir = Scratch::new("probe-silent");
    let silent = (100..200)
        .find_map(|n| UdpSocket::bind(format!("127.0.0.{n}:53")).ok())
        .expect("a free loopback address for the silent DNS server");
    let dns = silent.local_addr().unwrap();
    let hup = dir.path("hup");
    let child = format!(
        "trap 'echo hup >> {}' HUP; echo up; while :; do sleep 0.05; done",
        hup.display()
    );
    let mut cmd = initd_with_names(
        &dir,
        "127.0.0.1 localhost\n",
        &format!("nameserver {}\n", dns.ip()),
        &["exec", "--", "sh", "-c", &child],
    );
    cmd.env("INITD_HEALTH", "http://unanswered.test:8000/")
        .env("INITD_HEALTH_TIMEOUT", "3s");
    let initd = spawn_logged(&mut cmd, &dir, "initd");
    wait_in_file(&dir.path("initd.stdout"), "up\n");
    let socket = dir.path("initd.sock");
    wait_for(LIMIT, || socket.exists().then_some(()));
    let asked = Instant::now();
    let check = std::thread::spawn(move || run(check_cmd(&socket, &[], &[]), LIMIT));
    // The query reached the server: the probe now waits on it.
    let mut buf = [0u8; 512];
    silent.set_read_timeout(Some(LIMIT)).unwrap();
    silent.recv_from(&mut buf).expect("a DNS query");
    signal(initd.pid(), Signal::SIGHUP);
    wait_in_file(&hup, "hup");
    assert!(
        !check.is_finished(),
        "the check was answered before the probe's time was up"
    );
    assert!(
        asked.elapsed() < Duration::from_millis(2500),
        "{:?}",
        asked.elapsed()
    );
    let out = check.join().unwrap();
    let took = asked.elapsed();
    assert_eq!(out.code(), 1, "{}", out.stdout);
    assert_eq!(
        out.stdout,
        format!(
            "unhealthy: http://unanswered.test:8000/: unanswered.test: no answer from DNS server {dns}\n"
        )
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(threads(initd.pid()), 1);
    signal(initd.pid(), Signal::SIGTERM);
    drop(initd.finish(LIMIT));
}
