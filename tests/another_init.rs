//! initd as the container's entrypoint beneath another init: Debian's
//! `tini` as PID 1 of the pid namespace (what `docker run --init` and
//! compose's `init: true` do), initd its child. And guests: a second initd
//! entered into the namespace with `nsenter`, as `docker exec` does.
//!
//! Skipped (with a note) when `tini` is not installed
//! (`apt-get install tini`; tests/run.sh installs it).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(30);
const TINI: &str = "/usr/bin/tini";

fn have_tini(test: &str) -> bool {
    if Path::new(TINI).exists() {
        return true;
    }
    note(&format!("{test}: skipped, needs tini (apt-get install tini)"));
    false
}

/// `tini -- initd ARGS` as PID 1 (tini) of a new pid namespace.
fn under_tini(args: &[&str]) -> Command {
    let prefix = pid1_prefix();
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..]).args([TINI, "--", INITD]).args(args);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("INITD_ALLOW_ROOT", "true");
    cmd
}

/// Runs checks until one prints a line starting with `prefix`.
fn wait_check(socket: &Path, prefix: &str, initd: &Logged) -> Output {
    wait_check_line(socket, prefix, LIMIT, &|| tail(&initd.stderr()))
}

/// A guest initd in the namespace of `pid` (pid and mount namespaces, as
/// `docker exec` enters a container), with `env` and the tests' usual
/// environment.
fn guest(pid: i32, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--target={pid}"))
        .args(["--pid", "--mount", "--", INITD])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("INITD_ALLOW_ROOT", "true")
        .env("INITD_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, LIMIT)
}

#[test]
fn under_tini_checks_follow_the_probe_and_status_names_the_init() {
    if !have_tini("under_tini_checks_follow_the_probe_and_status_names_the_init") {
        return;
    }
    let dir = Scratch::new("tini-health");
    let socket = dir.path("initd.sock");
    let fail = dir.path("fail");
    let probe = format!("cmd:test ! -e {}", fail.display());
    let mut cmd = under_tini(&["run"]);
    cmd.env("INITD_SOCKET", &socket)
        .env("INITD_MIGRATE", "off")
        .env("INITD_SERVER", "sleep 1000")
        .env("INITD_HEALTH", &probe)
        .current_dir(&dir.0);
    let initd = spawn_logged(&mut cmd, &dir, "initd");
    let out = wait_check(&socket, "running: ", &initd);
    assert_eq!(out.code(), 0, "{}", out.stdout);

    let status = run(check_cmd(&socket, &["status"], &[]), LIMIT);
    assert_eq!(status.code(), 0, "{}{}", status.stdout, status.stderr);
    assert!(
        status
            .stdout
            .contains("init:    entrypoint under another init (PID 1 is tini)\n"),
        "{}",
        status.stdout
    );
    let json = run(check_cmd(&socket, &["--json"], &[]), LIMIT);
    assert!(
        json.stdout
            .contains("\"role\":\"entrypoint under another init (PID 1 is tini)\""),
        "{}",
        json.stdout
    );

    fs::write(&fail, "").unwrap();
    let out = wait_check(&socket, "unhealthy: ", &initd);
    assert_eq!(out.code(), 1, "{}", out.stdout);
    fs::remove_file(&fail).unwrap();
    let out = wait_check(&socket, "running: ", &initd);
    assert_eq!(out.code(), 0);

    // docker stop: TERM to PID 1 (tini), which passes it to initd.
    let tini = initd.pid();
    signal(tini, Signal::SIGTERM);
    let out = initd.finish(LIMIT);
    let said = out
        .stderr
        .matches("running under another init (PID 1 is tini)")
        .count();
    assert_eq!(said, 1, "{}", out.stderr);
    assert!(out.stderr.contains("stopping: TERM to pid"), "{}", out.stderr);
    assert!(!socket.exists(), "the entrypoint's socket outlived it");
}

#[test]
fn a_guest_neither_serves_nor_removes_the_socket_nor_chowns() {
    if !have_tini("a_guest_neither_serves_nor_removes_the_socket_nor_chowns")
        || !is_root_or_skip("a_guest_neither_serves_nor_removes_the_socket_nor_chowns")
    {
        return;
    }
    let dir = Scratch::new("tini-guest");
    let socket = dir.path("initd.sock");
    let data = dir.path("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("file"), "").unwrap();
    let passwd = format!("app:x:1000:1000::{}:/bin/sh", dir.path("home").display());
    let mut cmd = pid1_with_private_etc(&dir, &[&passwd], &["app:x:1000:"], [TINI, "--", INITD, "run"]);
    cmd.env_remove("INITD_ALLOW_ROOT")
        .env("INITD_SOCKET", &socket)
        .env("INITD_MIGRATE", "off")
        .env("INITD_SERVER", "sleep 1000")
        .env("INITD_CHOWN", &data)
        .current_dir(&dir.0);
    let initd = spawn_logged(&mut cmd, &dir, "initd");
    wait_check(&socket, "running: ", &initd);
    // The entrypoint chowned; put it back to see whether a guest does.
    assert_eq!(fs::metadata(data.join("file")).unwrap().uid(), 1000);
    std::os::unix::fs::chown(data.join("file"), Some(0), Some(0)).unwrap();
    let inode = fs::symlink_metadata(&socket).unwrap().ino();

    let tini = initd.pid();
    let data_env = data.to_str().unwrap();
    let out = guest(
        tini,
        &["exec", "--", "id", "-u"],
        &[
            ("INITD_SOCKET", socket.to_str().unwrap()),
            ("INITD_CHOWN", data_env),
        ],
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "1000\n", "the guest still drops to the app user");
    assert!(
        out.stderr
            .contains(&format!("guest: a supervisor answers on {}", socket.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("guest: HOST_UID/HOST_GID and INITD_CHOWN are left to the entrypoint"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::metadata(data.join("file")).unwrap().uid(),
        0,
        "the guest chowned INITD_CHOWN"
    );
    // The entrypoint's socket is still there, the same file, and answers.
    assert_eq!(fs::symlink_metadata(&socket).unwrap().ino(), inode);
    let out = run(check_cmd(&socket, &[], &[]), LIMIT);
    assert!(out.stdout.starts_with("running: "), "{}", out.stdout);

    // Without a socket to ask, the process table tells: the guest finds
    // the entrypoint (tini's child) and stays a guest.
    let out = guest(
        tini,
        &["exec", "--", "true"],
        &[("INITD_SOCKET", "off"), ("INITD_CHOWN", data_env)],
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("already supervises this container"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::metadata(data.join("file")).unwrap().uid(), 0);

    signal(tini, Signal::SIGTERM);
    let out = initd.finish(LIMIT);
    assert!(out.stderr.contains("stopping: TERM to pid"), "{}", out.stderr);
}

/// Runs `argv` in the mount namespace of `pid` (to reach its private
/// /run), with only PATH set.
fn inside(pid: i32, argv: &[&str]) -> Output {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--target={pid}"))
        .args(["--mount", "--"])
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin");
    run(cmd, LIMIT)
}

/// The default socket, /run/initd/initd.sock, in a private /run that
/// still holds the socket file of an earlier run (a restarted container
/// keeps its writable layer): the entrypoint under tini replaces it and
/// serves checks there.
#[test]
fn a_stale_socket_from_an_earlier_run_is_replaced() {
    if !have_tini("a_stale_socket_from_an_earlier_run_is_replaced") {
        return;
    }
    let dir = Scratch::new("tini-stale");
    let setup = "mount -t tmpfs tmpfs /run && mkdir -m 750 /run/initd && \
        python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"/run/initd/initd.sock\")' && \
        chmod 604 /run/initd/initd.sock && exec \"$@\"";
    let prefix = pid1_prefix();
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..])
        .args(["sh", "-c", setup, "sh", TINI, "--", INITD, "run"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("INITD_ALLOW_ROOT", "true")
        .env("INITD_MIGRATE", "off")
        .env("INITD_SERVER", "sleep 1000")
        .current_dir(&dir.0);
    let initd = spawn_logged(&mut cmd, &dir, "initd");
    let tini = initd.pid();
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = inside(tini, &[INITD, "check"]);
        if out.code() == 0 {
            assert!(out.stdout.starts_with("running: "), "{}", out.stdout);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never healthy: {}\n{}",
            out.stdout,
            tail(&initd.stderr())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = inside(tini, &["stat", "-c", "%a", "/run/initd/initd.sock"]);
    assert_eq!(mode.stdout, "660\n", "the stale socket is still there");
    signal(tini, Signal::SIGTERM);
    initd.finish(LIMIT);
}
