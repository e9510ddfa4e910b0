//! `initd dev` on a real FUSE mount, as a Docker Desktop or WSL2 user has
//! it: the app's code is seen through a `bindfs` view (mount type `fuse`)
//! and edited in the directory beneath it, as the host edits the files it
//! shares into a VM. inotify on the view never hears of such an edit, so
//! only polling can notice it.
//!
//! Needs root, /dev/fuse, bindfs (`tests/run.sh` installs it) and gunicorn;
//! without them each test says why and passes without checking anything.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(30);
/// initd's default poll interval on file systems not known to be local.
const POLL: Duration = Duration::from_secs(1);
const RESTARTING: &str = ": restarting the server";

/// Whether a FUSE mount can be made here; a note saying why not otherwise.
fn fuse_or_skip(test: &str) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        "needs root to mount"
    } else if !Path::new("/dev/fuse").exists() {
        "/dev/fuse is missing (a container needs --device /dev/fuse)"
    } else if which::which("bindfs").is_err() {
        "bindfs is not installed (apt-get install bindfs, or run tests/run.sh)"
    } else if which::which("gunicorn").is_err() {
        "gunicorn is not installed (tests/run.sh installs it)"
    } else {
        return true;
    };
    note(&format!("{test}: skipped, {why}"));
    false
}

/// A bindfs view of a directory, unmounted when dropped.
struct View {
    path: PathBuf,
}

impl View {
    /// Mounts `under` at `at`; `None` (with a note) if bindfs fails.
    fn mount(test: &str, under: &Path, at: &Path) -> Option<View> {
        fs::create_dir_all(at).unwrap();
        let out = Command::new("bindfs")
            .arg(under)
            .arg(at)
            .output()
            .expect("run bindfs");
        if !out.status.success() {
            note(&format!(
                "{test}: skipped, bindfs cannot mount here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Some(View {
            path: at.to_path_buf(),
        })
    }

    /// The file system type mountinfo gives for the view.
    fn fs_type(&self) -> String {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        initd::watchplan::mount_fs_type(&info, &self.path).unwrap_or_default()
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// The app beneath a bindfs view, and `initd dev` (PID 1) serving it with
/// gunicorn from the view.
struct Setup {
    log: Logged,
    port: u16,
    under: PathBuf,
    view: View,
    // Dropped last: the view is unmounted before the directory goes.
    _scratch: Scratch,
}

fn start(test: &str, tag: &str, env: &[(&str, &str)]) -> Option<Setup> {
    let scratch = Scratch::new(tag);
    let under = scratch.path("under");
    fs::create_dir_all(&under).unwrap();
    fs::write(under.join("app.py"), wsgi_app_source("v1")).unwrap();
    let view = View::mount(test, &under, &scratch.path("view"))?;
    assert_eq!(
        view.fs_type(),
        "fuse",
        "bindfs's view should read as a fuse mount"
    );
    let port = free_port();
    let mut cmd = initd_pid1(["dev"]);
    cmd.current_dir(&view.path)
        .env("HOME", &scratch.0)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AUTO_START_SERVER", "true")
        .env(
            "INITD_DEV_SERVER",
            format!("gunicorn --bind 127.0.0.1:{port} --workers 1 app:application"),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut log = spawn_logged(&mut cmd, &scratch, "initd");
    log.wait_until("serving v1", LIMIT, |_| get(port).as_deref() == Some("v1"));
    Some(Setup {
        log,
        port,
        under,
        view,
        _scratch: scratch,
    })
}

#[test]
fn an_edit_beneath_a_fuse_mount_is_served_by_polling_within_two_intervals() {
    let test = "an_edit_beneath_a_fuse_mount_is_served_by_polling_within_two_intervals";
    if !fuse_or_skip(test) {
        return;
    }
    let Some(mut s) = start(test, "fuse-poll", &[]) else {
        return;
    };
    // Past the poller's first look, so the edit is a change to it.
    std::thread::sleep(POLL + Duration::from_millis(200));

    let written = Instant::now();
    fs::write(
        s.under.join("app.py"),
        wsgi_app_source("edited beneath the mount"),
    )
    .unwrap();
    let mut noticed = None;
    s.log.wait_until("serving the edit", LIMIT, |l| {
        if noticed.is_none() && l.stderr().contains(RESTARTING) {
            noticed = Some(written.elapsed());
        }
        get(s.port).as_deref() == Some("edited beneath the mount")
    });
    let served = written.elapsed();
    let noticed = noticed.unwrap_or(served);
    note(&format!(
        "{test}: restart begun {noticed:?} and edit served {served:?} after the write (poll interval {POLL:?})"
    ));
    // The restart is begun within two poll intervals of the write (the
    // server's own start after it is gunicorn's business).
    assert!(
        noticed <= 2 * POLL,
        "restart begun only {noticed:?} after the write:\n{}",
        tail(&s.log.stderr())
    );
    let err = s.log.stderr();
    // The start-up line says how the view is watched, and why.
    let watching = format!(
        "initd: watching for changes: {} with inotify and by polling every 1s (fuse is not a file system known \
         to be local, so inotify may miss changes made outside this container)\n",
        s.view.path.display()
    );
    assert!(err.contains(&watching), "{err}");
    let restart = err.lines().find(|l| l.contains(RESTARTING)).unwrap();
    assert!(
        restart.starts_with(&format!(
            "initd: {} changed",
            s.view.path.join("app.py").display()
        )),
        "{restart}"
    );
    // One save, one restart: inotify (which may see it too, elsewhere) and
    // the poller do not both restart the server.
    std::thread::sleep(3 * POLL);
    assert_eq!(
        s.log.stderr().matches(RESTARTING).count(),
        1,
        "{}",
        s.log.stderr()
    );
    signal(s.log.pid(), nix::sys::signal::Signal::SIGTERM);
    let out = s.log.finish(LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// The control: with INITD_RELOAD_POLL=off (inotify alone, as initd did on
/// `fuse` before), the same edit goes unnoticed, so the test above proves
/// the polling.
#[test]
fn inotify_alone_does_not_see_an_edit_beneath_a_fuse_mount() {
    let test = "inotify_alone_does_not_see_an_edit_beneath_a_fuse_mount";
    if !fuse_or_skip(test) {
        return;
    }
    let Some(mut s) = start(test, "fuse-off", &[("INITD_RELOAD_POLL", "off")]) else {
        return;
    };
    s.log.wait_stderr(
        &format!(
            "initd: watching for changes with inotify only (INITD_RELOAD_POLL=off): {}",
            s.view.path.display()
        ),
        LIMIT,
    );
    fs::write(
        s.under.join("app.py"),
        wsgi_app_source("edited beneath the mount"),
    )
    .unwrap();
    std::thread::sleep(4 * POLL);
    assert_eq!(get(s.port).as_deref(), Some("v1"));
    assert!(!s.log.stderr().contains(RESTARTING), "{}", s.log.stderr());
    // An edit made through the view is seen by inotify at once.
    fs::write(
        s.view.path.join("app.py"),
        wsgi_app_source("edited through the mount"),
    )
    .unwrap();
    s.log
        .wait_until("serving the edit made through the view", LIMIT, |_| {
            get(s.port).as_deref() == Some("edited through the mount")
        });
    signal(s.log.pid(), nix::sys::signal::Signal::SIGTERM);
    let out = s.log.finish(LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}
