//! `initd dev` end to end: the real binary as PID 1 of a pid namespace, a
//! real tiny WSGI app served by gunicorn, watchers that are shell or Python
//! scripts, and edits made to the files on disk. Judged by what a developer
//! sees: the HTTP answers, initd's lines, the watchers' prefixed output,
//! files the children write, and exit codes.
//!
//! Every wait has a generous deadline; nothing here asserts how fast
//! anything is (benches/reload.sh measures that).

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers

/// initd dev running with its stdout and stderr read into memory as they
/// come (through pipes, as under `docker compose up`). Killed, with its
/// whole pid namespace, if the test fails.
struct Dev {
    child: Option<Child>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Dev {
    fn start(mut cmd: Command) -> Dev {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), err.clone()),
        ];
        Dev {
            child: Some(child),
            out,
            err,
            readers,
        }
    }

    fn host_pid(&self) -> i32 {
        initd_host_pid(self.child.as_ref().unwrap())
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// How many of initd's stderr lines contain `needle`.
    fn count(&self, needle: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(needle)).count()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("initd exited ({status}):\n{}", self.stderr());
        }
    }

    /// Waits until `probe` holds, failing (with initd's stderr) if initd
    /// exits first or `LIMIT` passes.
    fn wait_until(&mut self, what: &str, mut probe: impl FnMut(&Dev) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !probe(self) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "not within {LIMIT:?}: {what}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until initd's stderr has `n` lines containing `needle`.
    fn wait_count(&mut self, needle: &str, n: usize) {
        self.wait_until(&format!("{n} lines with {needle:?}"), |d| d.count(needle) >= n);
    }

    fn wait_stderr(&mut self, needle: &str) {
        self.wait_count(needle, 1);
    }

    /// Waits until the server on `port` answers with `body`.
    fn wait_body(&mut self, port: u16, body: &str) {
        self.wait_until(&format!("the server answers {body:?}"), |_| {
            get(port).as_deref() == Some(body)
        });
    }

    /// Sends SIGTERM and waits for initd to exit; its status and output.
    fn stop(mut self) -> Output {
        signal(self.host_pid(), Signal::SIGTERM);
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, LIMIT);
        // Everything in the namespace is gone with initd, so the pipes end.
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        Output {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // unshare --kill-child takes initd and its pid namespace along.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A project for `initd dev`: the scratch directory holds `app/` (initd's
/// working directory, so the watched tree, with `app.py`) and, next to it,
/// whatever the test's scripts write, outside the watched tree.
struct Project {
    scratch: Scratch,
    port: u16,
}

impl Project {
    fn new(tag: &str) -> Project {
        let scratch = Scratch::new(tag);
        fs::create_dir(scratch.path("app")).unwrap();
        let p = Project {
            scratch,
            port: free_port(),
        };
        p.write("app.py", &wsgi_app_source("v1"));
        p
    }

    /// A path in the app (the watched tree).
    fn app(&self, name: &str) -> PathBuf {
        self.scratch.path("app").join(name)
    }

    /// A path next to the app, not watched.
    fn outside(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.app(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(path, text).unwrap();
    }

    /// `initd dev` in the app directory, with nothing set but PATH, HOME
    /// and the root allowance.
    fn initd(&self) -> Command {
        let mut cmd = initd_pid1(["dev"]);
        cmd.current_dir(self.app("")).env("HOME", &self.scratch.0);
        cmd
    }

    /// `initd dev` with the app served by gunicorn (one worker) on the
    /// project's port.
    fn with_server(&self) -> Command {
        let mut cmd = self.initd();
        cmd.env("AUTO_START_SERVER", "true").env(
            "INITD_DEV_SERVER",
            format!(
                "gunicorn --bind 127.0.0.1:{} --workers 1 app:application",
                self.port
            ),
        );
        cmd
    }
}

/// Whether gunicorn is installed (`tests/run.sh` installs it); a note and
/// false otherwise.
fn have_gunicorn(test: &str) -> bool {
    if which::which("gunicorn").is_ok() {
        return true;
    }
    note(&format!("{test}: skipped, gunicorn is not installed"));
    false
}

fn have_python(test: &str) -> bool {
    if which::which("python3").is_ok() {
        return true;
    }
    note(&format!("{test}: skipped, python3 is not installed"));
    false
}

const STARTED: &str = "initd: starting the dev server";
const RESTARTING: &str = ": restarting the server";

// ---------------------------------------------------------------------------
// Reloading

#[test]
fn an_edit_restarts_the_server_which_serves_the_new_code() {
    if !have_gunicorn("an_edit_restarts_the_server_which_serves_the_new_code") {
        return;
    }
    let p = Project::new("dev-edit");
    let steps = p.outside("steps");
    let mut cmd = p.with_server();
    cmd.env(
        "INITD_MIGRATE",
        format!("sh -c 'echo migrate >> {}'", steps.display()),
    )
    .env(
        "INITD_PRESTART",
        format!("sh -c 'echo prestart >> {}'", steps.display()),
    );
    let mut dev = Dev::start(cmd);
    dev.wait_body(p.port, "v1");
    // The migration and pre-start commands ran before the server, once.
    assert_eq!(fs::read_to_string(&steps).unwrap(), "migrate\nprestart\n");
    assert_eq!(dev.count(STARTED), 1);

    p.write("app.py", &wsgi_app_source("edited"));
    dev.wait_body(p.port, "edited");
    let err = dev.stderr();
    let line = err
        .lines()
        .find(|l| l.contains(RESTARTING))
        .unwrap_or_else(|| panic!("no restart line:\n{err}"));
    assert!(
        line.starts_with(&format!("initd: {} changed", p.app("app.py").display())),
        "{line}"
    );
    assert_eq!(dev.count(STARTED), 2, "{err}");

    // An edit in a new subdirectory counts too: it is watched as it appears.
    p.write("templates/pages/index.html", "<p>hi</p>");
    dev.wait_count(RESTARTING, 2);
    dev.wait_count(STARTED, 3);
    dev.wait_body(p.port, "edited");
    assert!(
        dev.stderr().contains("templates/pages/index.html changed"),
        "{}",
        dev.stderr()
    );

    // Restarts do not rerun the migration.
    assert_eq!(fs::read_to_string(&steps).unwrap(), "migrate\nprestart\n");
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

#[test]
fn an_edit_in_an_ignored_path_does_not_restart() {
    if !have_gunicorn("an_edit_in_an_ignored_path_does_not_restart") {
        return;
    }
    let p = Project::new("dev-ignored");
    let mut cmd = p.with_server();
    // The default ignore list, plus a directory of our own.
    cmd.env(
        "INITD_RELOAD_IGNORE",
        ".git,__pycache__,node_modules,*.pyc,*.swp,generated",
    );
    let mut dev = Dev::start(cmd);
    dev.wait_body(p.port, "v1");
    let server = server_pid(dev.host_pid());

    p.write("node_modules/left-pad/index.py", "x = 1\n");
    p.write(".git/config.py", "x = 1\n");
    p.write("generated/schema.json", "{}");
    p.write("__pycache__/app.cpython-311.pyc", "junk");
    p.write(".app.py.swp", "junk");
    // Included names only: a stylesheet is not Python or a template.
    p.write("static/site.css", "body {}");
    // Well past the debounce: had any of them counted, the restart would
    // have begun by now.
    std::thread::sleep(Duration::from_millis(1500));
    dev.assert_running();
    assert_eq!(dev.count(RESTARTING), 0, "{}", dev.stderr());
    assert_eq!(server_pid(dev.host_pid()), server);

    // A wanted edit after them restarts once, naming only itself.
    p.write("app.py", &wsgi_app_source("edited"));
    dev.wait_body(p.port, "edited");
    let err = dev.stderr();
    assert_eq!(dev.count(RESTARTING), 1, "{err}");
    let line = err.lines().find(|l| l.contains(RESTARTING)).unwrap();
    assert!(line.contains("/app/app.py changed"), "{line}");
    assert!(!line.contains("more file"), "{line}");
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// The one child of initd (the dev server, when there are no watchers).
fn server_pid(initd: i32) -> i32 {
    wait_for(LIMIT, || {
        let children: Vec<i32> = initd::procfs::snapshot()
            .iter()
            .filter(|s| s.ppid == initd && s.state != 'Z')
            .map(|s| s.pid)
            .collect();
        (children.len() == 1).then(|| children[0])
    })
}

#[test]
fn a_burst_of_fifty_edits_is_one_restart() {
    if !have_gunicorn("a_burst_of_fifty_edits_is_one_restart") {
        return;
    }
    let p = Project::new("dev-burst");
    let mut dev = Dev::start(p.with_server());
    dev.wait_body(p.port, "v1");

    // A formatter or a `git checkout`: many files, written back to back.
    for i in 0..49 {
        p.write(&format!("pkg/mod{i}.py"), &format!("X = {i}\n"));
    }
    p.write("app.py", &wsgi_app_source("after the burst"));
    dev.wait_body(p.port, "after the burst");
    // Give a second restart, were one coming, the time to show.
    std::thread::sleep(Duration::from_millis(1500));
    let err = dev.stderr();
    assert_eq!(dev.count(RESTARTING), 1, "{err}");
    assert_eq!(dev.count(STARTED), 2, "{err}");
    // Every file of the burst counted, each once however many events its
    // write made.
    assert!(
        err.lines()
            .any(|l| l.contains("changed (and 49 more files): restarting the server")),
        "{err}"
    );
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

#[test]
fn a_syntax_error_leaves_initd_up_and_the_next_good_edit_recovers() {
    if !have_gunicorn("a_syntax_error_leaves_initd_up_and_the_next_good_edit_recovers") {
        return;
    }
    let p = Project::new("dev-syntax");
    let mut dev = Dev::start(p.with_server());
    dev.wait_body(p.port, "v1");

    p.write("app.py", "def application(:\n");
    // gunicorn cannot boot a worker and exits with status 3.
    dev.wait_stderr("the server exited with status 3; fix the error and save");
    let starts = dev.count(STARTED);
    assert_eq!(starts, 2, "{}", dev.stderr());
    // Not crash-looped: nothing starts again until the next change.
    std::thread::sleep(Duration::from_millis(2000));
    dev.assert_running();
    assert_eq!(dev.count(STARTED), starts, "{}", dev.stderr());
    assert_eq!(get(p.port), None);

    p.write("app.py", &wsgi_app_source("fixed"));
    dev.wait_body(p.port, "fixed");
    assert_eq!(dev.count(STARTED), starts + 1, "{}", dev.stderr());
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

#[test]
fn polling_mode_sees_an_edit() {
    if !have_gunicorn("polling_mode_sees_an_edit") {
        return;
    }
    let p = Project::new("dev-poll");
    let mut cmd = p.with_server();
    cmd.env("INITD_RELOAD_POLL", "200ms");
    let mut dev = Dev::start(cmd);
    dev.wait_body(p.port, "v1");
    dev.wait_stderr("initd: watching for changes by polling every 200ms (INITD_RELOAD_POLL)");

    p.write("app.py", &wsgi_app_source("seen by polling"));
    dev.wait_body(p.port, "seen by polling");
    // A new file in a new directory is seen as well.
    p.write("views/home.py", "X = 1\n");
    dev.wait_count(RESTARTING, 2);
    assert!(dev.stderr().contains("views/home.py changed"), "{}", dev.stderr());
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// Watchers

#[test]
fn a_crashing_watcher_is_restarted_with_growing_delays_while_the_server_answers() {
    if !have_gunicorn("a_crashing_watcher_is_restarted_with_growing_delays_while_the_server_answers") {
        return;
    }
    let p = Project::new("dev-crash");
    let crash_log = p.outside("crash.starts");
    let steady_log = p.outside("steady.starts");
    // Each start is recorded with the time in nanoseconds.
    write_script(
        &p.outside("crash.sh"),
        &format!(
            "#!/bin/sh\ndate +%s%N >> {}\necho 'build failed' >&2\nexit 3\n",
            crash_log.display()
        ),
    );
    write_script(
        &p.outside("steady.sh"),
        &format!(
            "#!/bin/sh\necho started >> {}\nexec sleep 1000\n",
            steady_log.display()
        ),
    );
    let mut cmd = p.with_server();
    cmd.env(
        "INITD_WATCHERS",
        format!(
            "crash={}; steady={}",
            p.outside("crash.sh").display(),
            p.outside("steady.sh").display()
        ),
    );
    let mut dev = Dev::start(cmd);
    dev.wait_body(p.port, "v1");
    // The server answers all along, however often the watcher falls over.
    dev.wait_until("three crashes, the server answering meanwhile", |d| {
        assert_eq!(get(p.port).as_deref(), Some("v1"), "{}", d.stderr());
        d.count("restarting in 4s") >= 1
    });
    let err = dev.stderr();
    let delays: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("initd: warning: watcher crash exited with status 3; restarting in"))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(delays, ["1s", "2s", "4s"], "{err}");
    // Its stderr came through prefixed, padded to the longest name.
    assert!(
        err.lines().filter(|l| *l == "crash  | build failed").count() >= 3,
        "{err}"
    );

    // The restarts really waited longer each time.
    let starts: Vec<u128> = fs::read_to_string(&crash_log)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(starts.len() >= 3, "{starts:?}");
    let gap = |i: usize| Duration::from_nanos((starts[i + 1] - starts[i]) as u64);
    assert!(gap(0) >= Duration::from_millis(900), "{:?}", gap(0));
    assert!(gap(1) >= Duration::from_millis(1900), "{:?}", gap(1));
    assert!(gap(1) > gap(0));

    // Neither the server nor the other watcher was touched.
    assert_eq!(dev.count(STARTED), 1, "{err}");
    assert_eq!(fs::read_to_string(&steady_log).unwrap(), "started\n");
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

#[test]
fn prefixed_output_lines_are_whole() {
    if !have_python("prefixed_output_lines_are_whole") {
        return;
    }
    let p = Project::new("dev-lines");
    // Long lines (well past a pipe's atomic write size and Python's buffer),
    // written as fast as Python can, by two watchers at once.
    let emit = p.outside("emit.py");
    fs::write(
        &emit,
        "import sys, time\n\
         ch = sys.argv[1]\n\
         for i in range(300):\n\
         \x20   sys.stdout.write(ch * 20000 + '\\n')\n\
         sys.stdout.flush()\n\
         time.sleep(1000)\n",
    )
    .unwrap();
    // The TOML form of INITD_WATCHERS.
    let toml = p.outside("initd.toml");
    fs::write(
        &toml,
        format!(
            "[watchers]\na = \"python3 {e} a\"\nbbb = \"python3 {e} b\"\n",
            e = emit.display()
        ),
    )
    .unwrap();
    let mut cmd = p.initd();
    cmd.env("INITD_CONFIG", &toml);
    let mut dev = Dev::start(cmd);
    dev.wait_until("600 lines on stdout", |d| {
        d.out.lock().unwrap().iter().filter(|&&b| b == b'\n').count() >= 600
    });
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);

    let a_line = format!("a   | {}", "a".repeat(20000));
    let b_line = format!("bbb | {}", "b".repeat(20000));
    let (mut a, mut b) = (0, 0);
    for (i, line) in out.stdout.lines().enumerate() {
        if line == a_line {
            a += 1;
        } else if line == b_line {
            b += 1;
        } else {
            panic!(
                "line {i} is not one whole watcher line: {:?}...",
                &line[..line.len().min(80)]
            );
        }
    }
    assert!(out.stdout.ends_with('\n'));
    assert_eq!((a, b), (300, 300));
}

#[test]
fn term_reaches_the_watchers_and_the_server_and_initd_exits_zero() {
    if !have_gunicorn("term_reaches_the_watchers_and_the_server_and_initd_exits_zero") {
        return;
    }
    let p = Project::new("dev-term");
    let recorder = p.outside("record.sh");
    write_script(
        &recorder,
        "#!/bin/sh\n\
         trap 'echo TERM > \"$1\"; echo bye; exit 0' TERM\n\
         echo ready\n\
         while :; do sleep 0.1; done\n",
    );
    // One that ignores TERM: the grace period ends it with SIGKILL.
    let stubborn = p.outside("stubborn.sh");
    write_script(
        &stubborn,
        "#!/bin/sh\ntrap '' TERM\necho ready\nwhile :; do sleep 0.1; done\n",
    );
    let mut cmd = p.with_server();
    cmd.env("INITD_STOP_TIMEOUT", "2s").env(
        "INITD_WATCHERS",
        format!(
            "one={r} {o}; two={r} {t}; stubborn={s}",
            r = recorder.display(),
            o = p.outside("one.term").display(),
            t = p.outside("two.term").display(),
            s = stubborn.display()
        ),
    );
    let mut dev = Dev::start(cmd);
    dev.wait_body(p.port, "v1");
    dev.wait_until("every watcher ready", |d| {
        let out = d.stdout();
        ["one      | ready", "two      | ready", "stubborn | ready"]
            .iter()
            .all(|l| out.lines().any(|line| line == *l))
    });

    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("initd: stopping on TERM: TERM to the server and watchers"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(p.outside("one.term")).unwrap(), "TERM\n");
    assert_eq!(fs::read_to_string(p.outside("two.term")).unwrap(), "TERM\n");
    // What they print as they stop is not lost as initd exits.
    for line in ["one      | bye", "two      | bye"] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line:?} not in:\n{}",
            out.stdout
        );
    }
    // gunicorn shut down in its own orderly way.
    assert!(out.stderr.contains("Shutting down: Master"), "{}", out.stderr);
    assert!(out.stderr.contains("grace period over"), "{}", out.stderr);
    assert!(out.stderr.contains("initd: stopped"), "{}", out.stderr);
    // Stopping restarts nothing.
    assert!(!out.stderr.contains("restarting in"), "{}", out.stderr);
    assert_eq!(out.stderr.matches(STARTED).count(), 1, "{}", out.stderr);
}

#[test]
fn what_a_watcher_prints_as_it_stops_is_not_lost() {
    let p = Project::new("dev-last-lines");
    // seq writes its lines in a few large blocks, all still in the pipe
    // as the watcher exits.
    let script = p.outside("farewell.sh");
    write_script(
        &script,
        "#!/bin/sh\n\
         trap 'seq -f \"line %g\" 0 4999; echo last; exit 0' TERM\n\
         echo ready\n\
         while :; do sleep 0.1; done\n",
    );
    let mut cmd = p.initd();
    cmd.env("INITD_WATCHERS", format!("w={}", script.display()));
    let mut dev = Dev::start(cmd);
    dev.wait_until("the watcher is ready", |d| d.stdout().contains("w | ready\n"));
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5002, "{}", out.stdout);
    assert_eq!(lines[1], "w | line 0");
    assert_eq!(lines[5001], "w | last");
}

// ---------------------------------------------------------------------------
// Setup and idle mode

#[test]
fn dev_setup_runs_in_order_and_skips_a_command_whose_path_exists() {
    let p = Project::new("dev-setup");
    fs::create_dir(p.app("node_modules")).unwrap();
    let log = p.outside("log");
    let l = log.display();
    let mut cmd = p.initd();
    cmd.env(
        "INITD_DEV_SETUP",
        format!(
            "sh -c 'echo npm-ci >> {l}' unless node_modules; \
             sh -c 'echo venv >> {l}; mkdir .venv' unless .venv; \
             sh -c 'echo always >> {l}'"
        ),
    )
    // Started once the setup is done: it sees all of it.
    .env(
        "INITD_WATCHERS",
        format!("w=sh -c 'echo watcher >> {l}; exec sleep 1000'"),
    );
    let mut dev = Dev::start(cmd);
    dev.wait_until("the watcher started", |_| {
        fs::read_to_string(&log).unwrap_or_default().contains("watcher")
    });
    assert_eq!(fs::read_to_string(&log).unwrap(), "venv\nalways\nwatcher\n");
    assert!(p.app(".venv").is_dir());
    let err = dev.stderr();
    assert!(
        err.contains(&format!(
            "initd: dev setup: skipping `sh -c 'echo npm-ci >> {l}'`: node_modules exists"
        )),
        "{err}"
    );
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);

    // Next time (the container restarted) both made paths exist.
    let mut cmd = p.initd();
    cmd.env(
        "INITD_DEV_SETUP",
        format!("sh -c 'echo venv >> {l}' unless .venv; sh -c 'echo always >> {l}'"),
    );
    fs::write(&log, "").unwrap();
    let mut dev = Dev::start(cmd);
    dev.wait_stderr("AUTO_START_SERVER is off");
    assert_eq!(fs::read_to_string(&log).unwrap(), "always\n");
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

#[test]
fn a_failing_dev_setup_command_ends_initd_with_its_status() {
    let p = Project::new("dev-setup-fail");
    let log = p.outside("log");
    let mut cmd = p.initd();
    cmd.env("INITD_DEV_SETUP", "sh -c 'exit 5'").env(
        "INITD_WATCHERS",
        format!("w=sh -c 'echo started >> {}'", log.display()),
    );
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("dev setup failed with status 5"),
        "{}",
        out.stderr
    );
    assert!(!log.exists(), "a watcher started after the failed setup");
}

#[test]
fn dev_setup_comes_before_the_wait_for_dependencies_and_the_migration() {
    let p = Project::new("dev-setup-wait");
    let log = p.outside("log");
    let mut cmd = p.initd();
    cmd.env("AUTO_START_SERVER", "true")
        .env("INITD_DEV_SERVER", "sleep 1000")
        .env(
            "INITD_DEV_SETUP",
            format!("sh -c 'echo setup >> {}'", log.display()),
        )
        .env(
            "INITD_MIGRATE",
            format!("sh -c 'echo migrate >> {}'", log.display()),
        )
        // Nothing listens there: the wait gives up after a second.
        .env("INITD_WAIT_FOR", format!("tcp://127.0.0.1:{}", free_port()))
        .env("INITD_WAIT_TIMEOUT", "1s");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 69, "{}", out.stderr);
    assert_eq!(fs::read_to_string(&log).unwrap(), "setup\n");
}

#[test]
fn without_auto_start_initd_idles_reaps_and_stops_on_term() {
    let p = Project::new("dev-idle");
    let steps = p.outside("steps");
    let mut cmd = p.initd();
    // Only for the server: with AUTO_START_SERVER off none of these run.
    cmd.env("AUTO_START_SERVER", "false")
        .env("INITD_STOP_TIMEOUT", "60s")
        .env(
            "INITD_MIGRATE",
            format!("sh -c 'echo migrate >> {}'", steps.display()),
        )
        .env(
            "INITD_PRESTART",
            format!("sh -c 'echo prestart >> {}'", steps.display()),
        )
        // Nothing listens there: waiting would never end.
        .env("INITD_WAIT_FOR", format!("tcp://127.0.0.1:{}", free_port()));
    let mut dev = Dev::start(cmd);
    dev.wait_stderr("AUTO_START_SERVER is off");
    let err = dev.stderr();
    assert!(err.contains("docker compose exec app initd exec"), "{err}");
    let pid = dev.host_pid();
    std::thread::sleep(Duration::from_millis(500));
    dev.assert_running();
    assert!(!steps.exists(), "{}", fs::read_to_string(&steps).unwrap());
    assert_eq!(dev.count("starting the dev server"), 0, "{err}");
    // Said once, not on every wake-up.
    assert_eq!(dev.count("AUTO_START_SERVER is off"), 1, "{err}");

    // `docker compose exec`: a process entering the namespace whose child
    // is orphaned; initd, as PID 1, inherits and reaps it.
    if which::which("nsenter").is_ok() {
        let orphan_file = p.outside("orphan");
        let status = Command::new("nsenter")
            .args(["--target", &pid.to_string(), "--pid", "--", "sh", "-c"])
            .arg(format!("sleep 0.3 & echo $! > {}", orphan_file.display()))
            .status()
            .unwrap();
        assert!(status.success());
        wait_for_file(&orphan_file);
        // The orphan was re-parented to initd, then ended and was reaped:
        // initd is left with no child, not even a zombie.
        wait_for(LIMIT, || {
            let table = initd::procfs::snapshot();
            (!table.iter().any(|s| s.ppid == pid)).then_some(())
        });
        dev.assert_running();
    } else {
        note("without_auto_start_initd_idles_reaps_and_stops_on_term: nsenter missing, reaping not checked");
    }

    // TERM ends it at once: stop() gives up after 30 s, half the grace
    // period a lingering process would get.
    let out = dev.stop();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stderr.contains("initd: stopped"), "{}", out.stderr);
}
