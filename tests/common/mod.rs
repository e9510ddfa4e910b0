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

/// The tests' initd serves no control socket unless a test gives it one:
/// the default, /run/initd/initd.sock, is the host's here (the pid
/// namespace shares the file system), and many initds run at once.
pub const NO_SOCKET: &str = "off";

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

/// What a real shell, CI runner or Kubernetes pod passes along besides the
/// test's own settings: unrelated variables, `*_FILE` settings of other
/// tools naming a missing file or a big one (the CA bundle is over 128 KiB),
/// and the variables Kubernetes injects for a Service named `initd` in the
/// namespace. initd must start with all of them present and hand every one
/// to the app unchanged. Every helper that starts initd passes them.
pub const REALISTIC_ENV: &[(&str, &str)] = &[
    ("LANG", "C.UTF-8"),
    ("TZ", "UTC"),
    ("HOSTNAME", "ci-runner-7"),
    ("CI", "true"),
    ("TF_CLI_CONFIG_FILE", "/nonexistent/home/.terraformrc"),
    (
        "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
        "/etc/ssl/certs/ca-certificates.crt",
    ),
    ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/.aws/credentials"),
    ("KUBECONFIG_FILE", "/nonexistent/.kube/config"),
    ("ENV_FILE", ".env"),
    ("HISTFILE", "/nonexistent/.bash_history"),
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
    ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
    ("INITD_SERVICE_HOST", "10.96.0.11"),
    ("INITD_SERVICE_PORT", "80"),
    ("INITD_SERVICE_PORT_HTTP", "80"),
    ("INITD_PORT", "tcp://10.96.0.11:80"),
    ("INITD_PORT_80_TCP", "tcp://10.96.0.11:80"),
    ("INITD_PORT_80_TCP_PROTO", "tcp"),
    ("INITD_PORT_80_TCP_PORT", "80"),
    ("INITD_PORT_80_TCP_ADDR", "10.96.0.11"),
];

/// Clears the environment but for PATH and [`REALISTIC_ENV`], so the host's
/// own settings cannot leak in.
pub fn realistic_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(REALISTIC_ENV.iter().copied())
}

/// A command that runs initd (with `args`) as PID 1. The environment is
/// [`realistic_env`], so the host's settings cannot leak in; the tests
/// run as root on a host without an `app` user, so root is allowed (the
/// user tests take it away again). No control socket: see [`NO_SOCKET`].
pub fn initd_pid1<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let prefix = pid1_prefix();
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..]).arg(INITD).args(args);
    realistic_env(&mut cmd)
        .env("INITD_ALLOW_ROOT", "true")
        .env("INITD_SOCKET", NO_SOCKET);
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
    realistic_env(&mut cmd)
        .env("INITD_ALLOW_ROOT", "true")
        .env("INITD_SOCKET", NO_SOCKET);
    cmd
}

/// A program (usually initd) started in the background, its output in
/// files under a scratch directory. Killed, with its pid namespace
/// (`unshare --kill-child`), if the test ends before [`Logged::finish`].
pub struct Logged {
    child: Option<Child>,
    behind_unshare: bool,
    pid: std::cell::OnceCell<i32>,
    out: PathBuf,
    err: PathBuf,
}

/// Starts `cmd` with stdout and stderr in `dir/TAG.stdout` and `.stderr`.
pub fn spawn_logged(cmd: &mut Command, dir: &Scratch, tag: &str) -> Logged {
    let out = dir.path(&format!("{tag}.stdout"));
    let err = dir.path(&format!("{tag}.stderr"));
    let behind_unshare = cmd.get_program() == OsStr::new(pid1_prefix()[0]);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn");
    Logged {
        child: Some(child),
        behind_unshare,
        pid: std::cell::OnceCell::new(),
        out,
        err,
    }
}

impl Logged {
    /// The pid to watch and signal from here: initd's own when it runs
    /// behind `unshare` (found when first asked, as initd may be gone
    /// before a test needs it), else the child's.
    pub fn pid(&self) -> i32 {
        *self.pid.get_or_init(|| {
            let child = self.child.as_ref().unwrap();
            if self.behind_unshare {
                initd_host_pid(child)
            } else {
                child.id() as i32
            }
        })
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until `probe` holds, failing the test (with the end of the
    /// program's stderr) if it exits first or `limit` passes.
    pub fn wait_until(&mut self, what: &str, limit: Duration, mut probe: impl FnMut(&Logged) -> bool) {
        let deadline = Instant::now() + limit;
        while !probe(self) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("exited ({status}) before {what}:\n{}", tail(&self.stderr()));
            }
            assert!(
                Instant::now() < deadline,
                "not {what} within {limit:?}:\n{}",
                tail(&self.stderr())
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&mut self, needle: &str, limit: Duration) {
        self.wait_until(&format!("saying {needle:?}"), limit, |l| {
            l.stderr().contains(needle)
        });
    }

    /// Waits for the program to end (killing it after `limit`).
    pub fn finish(mut self, limit: Duration) -> Output {
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, limit);
        Output {
            status,
            stdout: fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last lines of a long log, for failure messages.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
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

/// Whether the tests run as real root: dropping to another user, chowning
/// and bind-mounting over /etc need it. Prints a note and returns false
/// otherwise.
pub fn is_root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    note(&format!(
        "{test}: skipped, needs root (setuid, chown, mount over /etc)"
    ));
    false
}

/// A line on stderr past the test harness's capture: a skipped test should
/// say so, not look all green.
pub fn note(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Like [`initd_pid1`], with a private /etc: see [`pid1_with_private_etc`].
pub fn initd_pid1_with_etc<I, S>(scratch: &Scratch, passwd: &[&str], group: &[&str], args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut argv = vec![std::ffi::OsString::from(INITD)];
    argv.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
    pid1_with_private_etc(scratch, passwd, group, argv)
}

/// Runs `argv` (initd, or a wrapper such as `setpriv` that execs it) as
/// PID 1 of a new pid namespace, inside a new mount namespace in which a
/// private /etc is bind-mounted over /etc: the directory `scratch/etc`,
/// with its own `passwd` and `group` (the host's with the given lines
/// appended) and a symbolic link to the host's copy of everything else
/// (copying all of /etc costs most of a second on some disks). Host
/// entries with the same name or id as an added one are left out so that
/// the added ones are the only matches (root excepted). Each added user's
/// home directory is created (owned by the user) when missing. `passwd`
/// and `group` can be read from outside, also after the run. Needs root
/// (see [`is_root_or_skip`]). The environment is that of [`initd_pid1`],
/// `INITD_ALLOW_ROOT` included.
pub fn pid1_with_private_etc<I, S>(scratch: &Scratch, passwd: &[&str], group: &[&str], argv: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let field = |line: &str, i: usize| line.split(':').nth(i).unwrap_or_default().to_string();
    // Name and id are fields 0 and 2 in both files. Root stays whatever is
    // added: a second uid-0 account is added next to it, not instead.
    let merged = |host: &str, added: &[&str]| {
        let clashes = |line: &str| {
            added.iter().any(|a| {
                field(a, 0) == field(line, 0) || (field(a, 2) != "0" && field(a, 2) == field(line, 2))
            })
        };
        let mut out: Vec<String> = fs::read_to_string(host)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.trim().is_empty() || l.starts_with('#') || !clashes(l))
            .map(str::to_string)
            .collect();
        out.extend(added.iter().map(|a| a.to_string()));
        out.join("\n") + "\n"
    };
    fs::write(scratch.path("passwd.new"), merged("/etc/passwd", passwd)).unwrap();
    fs::write(scratch.path("group.new"), merged("/etc/group", group)).unwrap();
    for line in passwd {
        let home = PathBuf::from(field(line, 5));
        if home.is_absolute() && !home.exists() {
            fs::create_dir_all(&home).unwrap();
            let id = |i| field(line, i).parse::<u32>().ok();
            std::os::unix::fs::chown(&home, id(2), id(3)).unwrap();
        }
    }
    // `sh` is PID 1 until it execs initd (or the wrapper), which keeps the
    // pid. The host's /etc stays reachable at host-etc once /etc is covered.
    let script = r#"set -e
dir=$1; shift
mkdir "$dir/etc" "$dir/host-etc"
mount --bind /etc "$dir/host-etc"
ln -s "$dir"/host-etc/* "$dir/etc/"
for f in "$dir"/host-etc/.[!.]*; do
    if [ -e "$f" ]; then ln -s "$f" "$dir/etc/"; fi
done
for f in passwd group; do
    rm -f "$dir/etc/$f"
    cat "$dir/$f.new" > "$dir/etc/$f"
    chmod 644 "$dir/etc/$f"
done
mount --bind "$dir/etc" /etc
exec "$@"
"#;
    pid1_after_mounts(script, &scratch.0, argv)
}

/// `argv` as PID 1 of a pid namespace with a private mount namespace, after
/// the shell `script` has set up mounts in it: the script gets `dir` as $1
/// and `argv` after it, and ends with `exec "$@"` (the exec keeps the pid).
/// The environment is that of [`initd_pid1`], `INITD_ALLOW_ROOT` included.
pub fn pid1_after_mounts<I, S>(script: &str, dir: &Path, argv: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut prefix = pid1_prefix();
    prefix.extend(["--mount", "--propagation", "private"]);
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..])
        .args(["sh", "-c", script, "sh"])
        .arg(dir)
        .args(argv);
    realistic_env(&mut cmd)
        .env("INITD_ALLOW_ROOT", "true")
        .env("INITD_SOCKET", NO_SOCKET);
    cmd
}

/// A port nothing listens on right now (the kernel's pick for port 0). The
/// caller's server binds it moments later; another process could take it in
/// between, which is why tests use it only on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The body of `GET /` on 127.0.0.1:`port` when the server answers 200,
/// else `None` (nothing listening yet, an error page, a cut answer): the
/// tests poll it until the page they wait for shows.
pub fn get(port: u16) -> Option<String> {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.") || !response.contains(" 200 ") {
        return None;
    }
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// A WSGI module whose app answers `body`. Each edit in a test should
/// change the body's length: Python trusts a cached .pyc whose source has
/// the same size and the same mtime in whole seconds, so a same-size edit
/// within a second of the last import would be served stale by any
/// server, restarted or not.
pub fn wsgi_app_source(body: &str) -> String {
    format!(
        "BODY = {body:?}.encode()\n\
         \n\
         def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [BODY]\n"
    )
}

/// A process handle that cannot be confused with a later process that
/// reuses the pid (pidfd_open(2)): for signalling a process that may have
/// exited, and for noticing the moment it does.
pub struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    /// `None` when the process is already gone.
    pub fn open(pid: i32) -> Option<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative return is a descriptor we now own.
        (fd >= 0).then(|| PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `sig`; `ESRCH` once the process has exited.
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal with a valid pidfd and no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(nix::errno::Errno::last())
        }
    }
}

/// Whether the process `pid` has a child right now (from /proc): a test
/// waits for this before it signals initd, so that initd has started its
/// child by then.
pub fn has_child(pid: i32) -> bool {
    initd::procfs::snapshot().iter().any(|s| s.ppid == pid)
}

/// Runs `initd check` against `socket` until its line starts with
/// `prefix`, within `limit`; panics with the last answer and `log()` (the
/// supervisor's output) otherwise. "no supervisor" (the socket is not
/// there yet) never counts, whatever the prefix.
pub fn wait_check_line(socket: &Path, prefix: &str, limit: Duration, log: &dyn Fn() -> String) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        let out = run(check_cmd(socket, &[], &[]), limit);
        let no_socket_yet = out.stdout.starts_with("unhealthy: no supervisor: ");
        if out.stdout.starts_with(prefix) && !no_socket_yet {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no check said {prefix:?} within {limit:?}; the last said {:?}\ninitd:\n{}",
            out.stdout,
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Watches processes from another thread and returns, for each, the
/// moment it was seen to end (the pidfd turns readable when the process
/// exits, before anyone reaps it), or `None` if it was still running
/// after `limit`.
pub fn watch_exits(fds: Vec<PidFd>, limit: Duration) -> std::thread::JoinHandle<Vec<Option<Instant>>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        let mut ended: Vec<Option<Instant>> = vec![None; fds.len()];
        while ended.iter().any(Option::is_none) && Instant::now() < deadline {
            let waiting: Vec<usize> = (0..fds.len()).filter(|&i| ended[i].is_none()).collect();
            let mut polled: Vec<PollFd> = waiting
                .iter()
                .map(|&i| PollFd::new(fds[i].0.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut polled, PollTimeout::from(100u16));
            let now = Instant::now();
            let ready: Vec<bool> = polled
                .iter()
                .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            for (k, &i) in waiting.iter().enumerate() {
                if ready[k] {
                    ended[i] = Some(now);
                }
            }
        }
        ended
    })
}

/// `initd check ARGS` (or `initd status ARGS` when `args` starts with
/// `status`) as a plain process, as Docker's HEALTHCHECK runs it: the
/// environment holds only PATH, INITD_SOCKET, a generous
/// INITD_CHECK_TIMEOUT and `env`.
pub fn check_cmd(socket: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(INITD);
    let args: Vec<&str> = if args.first() == Some(&"status") {
        args.to_vec()
    } else {
        std::iter::once("check").chain(args.iter().copied()).collect()
    };
    cmd.args(args);
    realistic_env(&mut cmd)
        .env("INITD_SOCKET", socket)
        .env("INITD_CHECK_TIMEOUT", "20s");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Speaks the control socket's protocol by hand: sends `request`, ends the
/// sending side and returns the answer. The supervisor may answer and
/// close before it has read everything, so a failed write is no error.
pub fn raw(socket: &Path, request: &[u8]) -> String {
    use std::io::Write;
    let mut conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = conn.write_all(request);
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
