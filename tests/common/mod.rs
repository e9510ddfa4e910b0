//! Shared helpers for the integration tests: run the real initd binary as
//! PID 1 in a fresh pid namespace and watch it from outside.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const INITD: &str = env!("CARGO_BIN_EXE_initd");

/// `unshare` arguments that make the next program PID 1 of a new pid
/// namespace with its own /proc. As root that is all; otherwise a user
/// namespace maps us to root inside first.
pub fn pid1_prefix() -> Vec<&'static str> {
    let mut args = vec!["unshare"];
    if !nix::unistd::geteuid().is_root() {
        args.extend(["--user", "--map-root-user"]);
    }
    args.extend(["--pid", "--fork", "--mount-proc", "--kill-child"]);
    args
}

/// A command that runs initd (with `args`) as PID 1. The environment is
/// cleared but for PATH so the host's settings cannot leak in; the tests
/// run as root on a host without an `app` user, so root is allowed (the
/// user tests take it away again).
pub fn initd_pid1<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let prefix = pid1_prefix();
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..]).arg(INITD).args(args);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("INITD_ALLOW_ROOT", "true");
    cmd
}

/// initd run directly (not PID 1), as a subreaper.
pub fn initd_plain<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(INITD);
    cmd.args(args);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("INITD_ALLOW_ROOT", "true");
    cmd
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {:?}", self.status))
    }
}

/// Runs to completion, failing the test instead of hanging past `limit`.
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>, limit: Duration) -> Output {
    let child = cmd
        .borrow_mut()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    finish(child, limit)
}

pub fn finish(mut child: Child, limit: Duration) -> Output {
    let status = wait_timeout(&mut child, limit);
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).unwrap();
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).unwrap();
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The exit status, or `None` if the child is still running after `limit`.
pub fn wait_or_none(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The host pid of initd: the only child of the `unshare` process.
pub fn initd_host_pid(unshare: &Child) -> i32 {
    let parent = unshare.id() as i32;
    wait_for(Duration::from_secs(10), || {
        initd::procfs::snapshot()
            .into_iter()
            .find(|s| s.ppid == parent)
            .map(|s| s.pid)
    })
}

pub fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).expect("kill");
}

/// Polls `probe` until it yields a value, failing the test after `limit`.
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < limit, "condition not met within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_for_file(path: &Path) {
    wait_for(Duration::from_secs(10), || path.exists().then_some(()));
}

/// A scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "initd-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
