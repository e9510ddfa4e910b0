//! The migration lock against a real PostgreSQL server. Start one with
//! `tests/support/postgres.sh run cargo test` (or `eval "$(… start DIR)"`);
//! without `INITD_TEST_DATABASE_URL` the server tests print a note and pass.
//!
//! Every test takes its own lock key: the tests run in parallel against one
//! server and must not queue behind each other.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use initd::migrate_lock::{self, LockError, LockTarget, acquire, parse_database_url};

mod common;

const LONG: Duration = Duration::from_secs(60);
/// Long enough to connect (SCRAM in a debug build on a busy machine), short
/// enough to show that a held lock is not granted.
const SHORT: Duration = Duration::from_secs(3);
const NEVER: &(dyn Fn() -> bool + Sync) = &|| false;

fn database_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr, past the test harness's capture, and once:
            // a run without a server should say so, not look all green.
            static NOTE: Once = Once::new();
            NOTE.call_once(|| {
                let _ = writeln!(
                    io::stderr(),
                    "migrate_lock: PostgreSQL tests skipped: {var} is not set \
                     (run `bash tests/support/postgres.sh run cargo test`)"
                );
            });
            None
        }
    }
}

fn target() -> Option<LockTarget> {
    database_url("INITD_TEST_DATABASE_URL").map(|url| parse_database_url(&url).unwrap())
}

/// Stands in for the pure-Rust resolver: `localhost` only.
fn stub_resolver(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    match host {
        "localhost" => Ok(vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host}: unknown host"),
        )),
    }
}

/// The test URL with one part swapped, e.g. another password.
fn url_with(find: &str, replace: &str) -> Option<String> {
    let url = database_url("INITD_TEST_DATABASE_URL")?;
    let at = url.rfind(find).unwrap_or_else(|| panic!("{url} has no {find}"));
    Some(format!("{}{replace}{}", &url[..at], &url[at + find.len()..]))
}

/// Kills the child on the way out, also when an assertion failed.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_second_replica_waits_until_the_first_releases() {
    let Some(target) = target() else { return };
    let key = 101;
    let log = Arc::new(Mutex::new(Vec::<&str>::new()));
    let note = |what| log.lock().unwrap().push(what);

    let first = acquire(&target, &stub_resolver, key, LONG, NEVER).unwrap();
    note("first took the lock");

    let checks = Arc::new(AtomicUsize::new(0));
    let second = {
        let (target, log, checks) = (target.clone(), Arc::clone(&log), Arc::clone(&checks));
        thread::spawn(move || {
            let counting = || {
                checks.fetch_add(1, Ordering::SeqCst);
                false
            };
            let lock = acquire(&target, &stub_resolver, key, LONG, &counting).unwrap();
            log.lock().unwrap().push("second took the lock");
            lock.release().unwrap();
        })
    };
    // The lock really excludes: a third replica with a short patience
    // gives up rather than getting it.
    let third = acquire(&target, &stub_resolver, key, SHORT, NEVER);
    assert!(
        matches!(third, Err(LockError::LockTimeout { .. })),
        "{:?}",
        third.err()
    );
    // The second has been waiting a while (one check per 50 ms slice).
    while checks.load(Ordering::SeqCst) < 20 {
        thread::sleep(Duration::from_millis(10));
    }

    note("first releases");
    first.release().unwrap();
    second.join().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["first took the lock", "first releases", "second took the lock"]
    );
}

#[test]
fn a_released_lock_can_be_taken_again_at_once() {
    let Some(target) = target() else { return };
    for _ in 0..3 {
        let lock = acquire(&target, &stub_resolver, 102, Duration::from_secs(5), NEVER).unwrap();
        lock.release().unwrap();
    }
}

#[test]
fn dropping_the_connection_releases_the_lock() {
    let Some(target) = target() else { return };
    let lock = acquire(&target, &stub_resolver, 103, LONG, NEVER).unwrap();
    drop(lock);
    let again = acquire(&target, &stub_resolver, 103, Duration::from_secs(10), NEVER);
    assert!(again.is_ok(), "{:?}", again.err());
}

/// Not a test on its own: the child process of `a_killed_holder_frees_the_lock`.
#[test]
fn helper_hold_the_lock_until_killed() {
    if std::env::var_os("INITD_TEST_HOLD_LOCK").is_none() {
        return;
    }
    let target = target().unwrap();
    let _lock = acquire(&target, &stub_resolver, 104, LONG, NEVER).unwrap();
    println!("holding");
    thread::sleep(LONG);
}

#[test]
fn a_killed_holder_frees_the_lock() {
    let Some(target) = target() else { return };
    let mut holder = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_hold_the_lock_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("INITD_TEST_HOLD_LOCK", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(holder.0.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("holding"))),
        "the holder never took the lock"
    );
    let busy = acquire(&target, &stub_resolver, 104, SHORT, NEVER);
    assert!(
        matches!(busy, Err(LockError::LockTimeout { .. })),
        "{:?}",
        busy.err()
    );

    drop(holder); // SIGKILL: no release, no clean close
    let after = acquire(&target, &stub_resolver, 104, Duration::from_secs(20), NEVER);
    assert!(after.is_ok(), "{:?}", after.err());
}

#[test]
fn a_stop_request_ends_the_wait_promptly() {
    let Some(target) = target() else { return };
    let _held = acquire(&target, &stub_resolver, 105, LONG, NEVER).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = mpsc::channel();
    {
        let (target, stop, checks) = (target.clone(), Arc::clone(&stop), Arc::clone(&checks));
        thread::spawn(move || {
            let interrupted = || {
                checks.fetch_add(1, Ordering::SeqCst);
                stop.load(Ordering::SeqCst)
            };
            let result = acquire(&target, &stub_resolver, 105, LONG, &interrupted);
            done_tx.send((result.err(), Instant::now())).unwrap();
        });
    }
    // Well into the wait (every 50 ms slice checks once), then stop.
    while checks.load(Ordering::SeqCst) < 20 {
        thread::sleep(Duration::from_millis(10));
    }
    let stopped_at = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let (err, returned_at) = done_rx.recv_timeout(LONG).unwrap();
    assert!(matches!(err, Some(LockError::Interrupted)), "{err:?}");
    // Far below the 60 s timeout: the stop, not the deadline, ended it.
    assert!(returned_at.duration_since(stopped_at) < Duration::from_secs(5));
}

#[test]
fn a_wrong_password_is_refused_without_showing_it() {
    let Some(url) = url_with(":p%40ss", ":Wr0ngPassw0rd%21") else {
        return;
    };
    let target = parse_database_url(&url).unwrap();
    let started = Instant::now();
    let err = acquire(&target, &stub_resolver, 106, LONG, NEVER).err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, LockError::Refused { .. }), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains(":***@127.0.0.1"), "{text}");
    assert!(!text.contains("Wr0ng") && !text.contains("p@ss"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a refused login is not retried"
    );
}

#[test]
fn md5_password_logins_work() {
    let Some(url) = database_url("INITD_TEST_MD5_DATABASE_URL") else {
        return;
    };
    let target = parse_database_url(&url).unwrap();
    acquire(&target, &stub_resolver, 107, Duration::from_secs(10), NEVER)
        .unwrap()
        .release()
        .unwrap();
}

#[test]
fn a_host_name_goes_through_the_injected_resolver() {
    let Some(url) = url_with("@127.0.0.1:", "@localhost:") else {
        return;
    };
    let target = parse_database_url(&url).unwrap();
    let asked = Mutex::new(Vec::new());
    let resolve = |host: &str, port: u16| {
        asked.lock().unwrap().push((host.to_string(), port));
        stub_resolver(host, port)
    };
    acquire(&target, &resolve, 108, Duration::from_secs(10), NEVER)
        .unwrap()
        .release()
        .unwrap();
    assert_eq!(*asked.lock().unwrap(), [("localhost".to_string(), target.port())]);
}

#[test]
fn a_missing_database_is_refused() {
    let Some(url) = url_with("/initd_test", "/no_such_db") else {
        return;
    };
    let target = parse_database_url(&url).unwrap();
    let err = acquire(&target, &stub_resolver, 109, LONG, NEVER).err().unwrap();
    assert!(err.to_string().contains("\"no_such_db\" does not exist"), "{err}");
}

#[test]
fn tls_only_urls_are_refused_before_connecting() {
    let Some(url) = database_url("INITD_TEST_DATABASE_URL") else {
        return;
    };
    let err = parse_database_url(&format!("{url}?sslmode=require")).unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("no TLS support"), "{err}");
    assert!(!err.to_string().contains("p%40ss"), "{err}");
}

// No server needed below.

#[test]
fn an_unreachable_server_times_out_naming_the_last_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: connections are refused
    let target = parse_database_url(&format!("postgres://app:s3cret@127.0.0.1:{port}/db")).unwrap();
    let err = acquire(&target, &stub_resolver, 110, Duration::from_millis(700), NEVER)
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, LockError::Unreachable { .. }), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert!(
        text.contains("app:***@127.0.0.1") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn an_unknown_host_is_retried_then_reported() {
    let target = parse_database_url("postgres://app:s3cret@db.invalid/shop").unwrap();
    let err = acquire(&target, &stub_resolver, 111, Duration::from_millis(500), NEVER)
        .err()
        .unwrap();
    assert!(err.to_string().contains("cannot resolve the host"), "{err}");
}

#[test]
fn the_documented_key_is_stable() {
    assert_eq!(migrate_lock::LOCK_KEY, 6_896_294_806_788_535_525);
}

// The real binary: INITD_MIGRATE_LOCK_TIMEOUT and what `initd status`
// shows while the lock is waited for.

/// initd as PID 1 running `initd run` with the lock on `url`, a migration
/// that records itself, and a socket in `dir`.
fn initd_with_lock(dir: &common::Scratch, url: &str, timeout: &str) -> Command {
    let mut cmd = common::initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("DATABASE_URL", url)
        .env("INITD_MIGRATE_LOCK", "postgres")
        .env("INITD_MIGRATE_LOCK_TIMEOUT", timeout)
        .env(
            "INITD_MIGRATE",
            format!("touch {}", dir.path("migrated").display()),
        )
        .env("INITD_SERVER", "sleep 1000")
        .env("INITD_SOCKET", dir.path("initd.sock"));
    cmd
}

#[test]
fn a_held_lock_is_shown_with_its_holder_and_given_up_after_the_timeout() {
    let Some(url) = database_url("INITD_TEST_DATABASE_URL") else {
        return;
    };
    let target = parse_database_url(&url).unwrap();
    // A stuck session holding initd's own lock: another replica's initd,
    // named `initd migrate HOSTNAME` like every one.
    let held = acquire(&target, &stub_resolver, migrate_lock::LOCK_KEY, LONG, NEVER).unwrap();
    let dir = common::Scratch::new("lock-timeout");
    let socket = dir.path("initd.sock");
    let mut initd = common::spawn_logged(&mut initd_with_lock(&dir, &url, "6s"), &dir, "initd");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let holder = format!("initd migrate {}", host.trim());
    // While it waits: check --json and status name the lock and the holder.
    let mut json = String::new();
    initd.wait_until("showing the lock's holder", LONG, |_| {
        json = common::run(common::check_cmd(&socket, &["--json"], &[]), LONG).stdout;
        json.contains("\"holder\":{")
    });
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["healthy"], false, "{json}");
    assert_eq!(report["state"], "starting", "{json}");
    let lock = &report["lock"];
    let name = lock["lock"].as_str().unwrap();
    assert!(
        name.starts_with(&format!(
            "the migration lock (advisory lock {} on postgres://initd_test:***@127.0.0.1:",
            migrate_lock::LOCK_KEY
        )),
        "{json}"
    );
    assert!(!json.contains("p%40ss") && !json.contains("p@ss"), "{json}");
    assert_eq!(lock["holder"]["application_name"], holder.as_str(), "{json}");
    assert_eq!(lock["holder"]["client_addr"], "127.0.0.1", "{json}");
    assert!(lock["holder"]["since"].as_str().unwrap().ends_with('Z'), "{json}");
    let status = common::run(common::check_cmd(&socket, &["status"], &[]), LONG);
    assert!(status.stdout.contains("lock:    waiting "), "{}", status.stdout);
    assert!(
        status
            .stdout
            .contains(&format!("holder:  \"{holder}\" from 127.0.0.1, connected since ")),
        "{}",
        status.stdout
    );
    // Past INITD_MIGRATE_LOCK_TIMEOUT: exit 69, one line naming the lock,
    // the setting and the holder; no migration, no server.
    let out = initd.finish(LONG);
    assert_eq!(out.code(), 69, "{}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("initd: error: gave up waiting for the migration lock"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        line.contains("after 6s (INITD_MIGRATE_LOCK_TIMEOUT): held by")
            && line.contains(&holder)
            && line.ends_with("; the migration did not run"),
        "{line}"
    );
    assert!(!dir.path("migrated").exists());
    assert!(!out.stderr.contains("starting server"), "{}", out.stderr);
    held.release().unwrap();
}

/// A PostgreSQL that accepts the connection and never answers (a stuck
/// proxy, a firewall that eats packets after the handshake).
fn silent_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, format!("postgres://app:s3cret@127.0.0.1:{port}/db"))
}

#[test]
fn an_unanswering_server_is_given_up_on_with_exit_69() {
    let (_listener, url) = silent_server();
    let dir = common::Scratch::new("lock-silent");
    let started = Instant::now();
    let out = common::run(initd_with_lock(&dir, &url, "3s"), LONG);
    assert_eq!(out.code(), 69, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("was not reachable within 3s (INITD_MIGRATE_LOCK_TIMEOUT)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
    assert!(!dir.path("migrated").exists());
    assert!(started.elapsed() < LONG);
}

#[test]
fn a_stop_ends_the_wait_for_an_unanswering_server() {
    let (_listener, url) = silent_server();
    let dir = common::Scratch::new("lock-silent-stop");
    let mut initd = common::spawn_logged(&mut initd_with_lock(&dir, &url, "10m"), &dir, "initd");
    initd.wait_stderr("taking the migration lock", LONG);
    // Well into a connection attempt that gets no answer.
    thread::sleep(Duration::from_secs(1));
    let stopped = Instant::now();
    common::signal(initd.pid(), nix::sys::signal::Signal::SIGTERM);
    let out = initd.finish(LONG);
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(out.code(), 143, "{}", out.stderr);
    assert!(!dir.path("migrated").exists());
}
