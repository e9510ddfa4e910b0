//! initd on a terminal, as `docker run -it` and `docker compose run` give
//! it: PID 1 of a pid namespace, session leader, with a pseudo-terminal as
//! its controlling terminal and its stdin, stdout and stderr. The test holds
//! the terminal's other side and types Ctrl-C into it, or closes it (a
//! hangup), as a developer closing the window would.
//!
//! - `initd dev` keeps the terminal for itself: Ctrl-C and hangup stop the
//!   whole set (dev server and watchers), and initd exits 0.
//! - `initd exec -- CMD` hands CMD the terminal, as tini does: Ctrl-C is
//!   CMD's to handle.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};

const LIMIT: Duration = Duration::from_secs(30);

/// Who leads the terminal's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leader {
    /// initd, PID 1 of its namespace: `docker run -it`.
    Initd,
    /// `unshare`, outside initd's pid namespace, with initd in its process
    /// group: a shell running `unshare --pid --fork initd dev`, as
    /// run-scripts/demo.sh does.
    Outside,
}

/// A pseudo-terminal whose slave side is initd's controlling terminal.
/// Everything written to it is collected as a screen would show it.
struct Tty {
    master: Option<fs::File>,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    /// Tells the reader to close its copy of the master side.
    closing: Arc<AtomicBool>,
}

impl Tty {
    /// Starts `initd ARGS` as PID 1 of a new pid namespace, in a session
    /// of its own on a new terminal (`setsid --ctty` execs initd in place,
    /// so PID 1 is initd and the session leader, as in a container).
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Tty {
        Tty::start_with(dir, args, env, Leader::Initd, false)
    }

    /// [`Tty::start`] with the session led by `leader`; with `tostop`, a
    /// background process that writes to the terminal gets SIGTTOU (`stty
    /// tostop`).
    fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)], leader: Leader, tostop: bool) -> Tty {
        // Close-on-exec and no controlling terminal for the test process:
        // the other tests spawn processes concurrently.
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).unwrap();
        nix::pty::grantpt(&master).unwrap();
        nix::pty::unlockpt(&master).unwrap();
        let slave_path = nix::pty::ptsname_r(&master).unwrap();
        let slave: OwnedFd = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&slave_path)
            .unwrap()
            .into();
        if tostop {
            let mut modes = tcgetattr(&slave).unwrap();
            modes.local_flags |= LocalFlags::TOSTOP;
            tcsetattr(&slave, SetArg::TCSANOW, &modes).unwrap();
        }
        let mut initd_args = match leader {
            Leader::Initd => vec!["setsid", "--ctty", INITD],
            Leader::Outside => vec![INITD],
        };
        initd_args.extend_from_slice(args);
        let prefix = pid1_prefix();
        let mut cmd = Command::new(prefix[0]);
        cmd.args(&prefix[1..]).args(&initd_args);
        realistic_env(&mut cmd)
            .env("INITD_ALLOW_ROOT", "true")
            .env("INITD_SOCKET", NO_SOCKET)
            .env("HOME", dir)
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        if leader == Leader::Outside {
            // SAFETY: setsid and ioctl are async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        drop(cmd);
        let master = fs::File::from(OwnedFd::from(master));
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut from = master.try_clone().unwrap();
        let into = screen.clone();
        let closing = Arc::new(AtomicBool::new(false));
        let close = closing.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // Wakes now and then to see whether the test hangs up: the
                // terminal hangs up only once this copy is closed too.
                let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
                let ready = poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0);
                if close.load(Ordering::SeqCst) {
                    return;
                }
                if ready == 0 {
                    continue;
                }
                // EIO once nothing holds the slave side any more.
                match from.read(&mut buf) {
                    Ok(n @ 1..) => into.lock().unwrap().extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
        });
        Tty {
            master: Some(master),
            child,
            screen,
            reader: Some(reader),
            closing,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    fn wait_text(&self, needle: &str) {
        let found = wait_or_give_up(|| self.text().contains(needle));
        assert!(found, "never saw {needle:?} on the terminal:\n{}", self.text());
    }

    fn type_keys(&self, keys: &[u8]) {
        self.master.as_ref().unwrap().write_all(keys).unwrap();
    }

    /// Closes the terminal's only other side: the kernel hangs it up.
    fn hang_up(&mut self) {
        self.master = None;
        self.closing.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }

    /// Waits for initd to exit; everything on the screen until then.
    fn exit(&mut self) -> (ExitStatus, String) {
        let status = wait_or_none(&mut self.child, LIMIT);
        let Some(status) = status else {
            panic!("initd is still running after {LIMIT:?}:\n{}", self.text());
        };
        // The namespace is gone with initd: nothing holds the slave side.
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.text())
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        // unshare --kill-child takes initd and its pid namespace along.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` for up to [`LIMIT`].
fn wait_or_give_up(mut probe: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + LIMIT;
    while std::time::Instant::now() < deadline {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    probe()
}

fn have_python(test: &str) -> bool {
    if which::which("python3").is_ok() {
        return true;
    }
    note(&format!("{test}: skipped, python3 is not installed"));
    false
}

/// A Python program, written to `dir` (outside the watched tree), that
/// prints `NAME ready`, records in `NAME.got` each stop signal it receives,
/// and exits 0 on one. Returns the command that runs it.
fn recorder(dir: &Path, name: &str) -> String {
    let got = dir.join(format!("{name}.got"));
    let script = dir.join(format!("{name}.py"));
    fs::write(
        &script,
        format!(
            "import signal, sys, time\n\
             def stop(n, _):\n\
             \x20   open({got:?}, 'a').write(signal.Signals(n).name + '\\n')\n\
             \x20   sys.exit(0)\n\
             for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n\
             \x20   signal.signal(s, stop)\n\
             print('{name} ready', flush=True)\n\
             while True:\n\
             \x20   time.sleep(1)\n",
            got = got.display().to_string()
        ),
    )
    .unwrap();
    format!("python3 {}", script.display())
}

/// A project directory: `app/` is initd's working directory (and the
/// watched tree); the recorders write next to it.
fn project(tag: &str) -> (Scratch, PathBuf) {
    let scratch = Scratch::new(tag);
    let app = scratch.path("app");
    fs::create_dir(&app).unwrap();
    fs::write(app.join("app.py"), "print('hello')\n").unwrap();
    (scratch, app)
}

fn dev_env<'a>(server: &'a str, watcher: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AUTO_START_SERVER", "true"),
        ("INITD_DEV_SERVER", server),
        ("INITD_WATCHERS", watcher),
        // A step first: it has the terminal while it runs, and initd must
        // take it back before the set starts.
        ("INITD_MIGRATE", "echo migrated"),
    ]
}

/// `initd dev` on a terminal with a server and a watcher that record the
/// stop signals they get, once both are ready.
fn dev_set(tag: &str, leader: Leader) -> (Scratch, Tty) {
    let (scratch, app) = project(tag);
    let server = recorder(&scratch.0, "server");
    let watcher = format!("css={}", recorder(&scratch.0, "watcher"));
    let tty = Tty::start_with(&app, &["dev"], &dev_env(&server, &watcher), leader, false);
    tty.wait_text("server ready");
    tty.wait_text("watcher ready");
    (scratch, tty)
}

fn got(scratch: &Scratch, name: &str) -> String {
    fs::read_to_string(scratch.path(&format!("{name}.got"))).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// initd dev

#[test]
fn dev_ctrl_c_stops_the_server_and_the_watchers_and_initd_exits_zero() {
    if !have_python("dev_ctrl_c_stops_the_server_and_the_watchers_and_initd_exits_zero") {
        return;
    }
    dev_ctrl_c("tty-dev-int", Leader::Initd);
}

#[test]
fn dev_ctrl_c_stops_everything_when_a_shell_outside_leads_the_session() {
    if !have_python("dev_ctrl_c_stops_everything_when_a_shell_outside_leads_the_session") {
        return;
    }
    dev_ctrl_c("tty-dev-int-outside", Leader::Outside);
}

fn dev_ctrl_c(tag: &str, leader: Leader) {
    let (scratch, mut tty) = dev_set(tag, leader);
    tty.type_keys(b"\x03");
    let (status, screen) = tty.exit();
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(screen.contains("initd: stopping on INT"), "{screen}");
    assert!(screen.contains("initd: stopped"), "{screen}");
    assert!(!screen.contains("starts again on the next change"), "{screen}");
    // Each got the stop once, from initd, and ended on it: none was killed.
    assert_eq!(got(&scratch, "server"), "SIGINT\n", "{screen}");
    assert_eq!(got(&scratch, "watcher"), "SIGINT\n", "{screen}");
    assert!(!screen.contains("SIGKILL"), "{screen}");
}

#[test]
fn dev_hangup_stops_the_server_and_the_watchers() {
    if !have_python("dev_hangup_stops_the_server_and_the_watchers") {
        return;
    }
    let (scratch, mut tty) = dev_set("tty-dev-hup", Leader::Initd);
    tty.hang_up();
    let (status, screen) = tty.exit();
    assert_eq!(status.code(), Some(0), "{screen}");
    // The stop signal (TERM) went to each, once: a hangup is no reload.
    assert_eq!(got(&scratch, "server"), "SIGTERM\n", "{screen}");
    assert_eq!(got(&scratch, "watcher"), "SIGTERM\n", "{screen}");
}

#[test]
fn dev_keeps_the_terminal_so_the_server_is_in_the_background() {
    if !have_python("dev_keeps_the_terminal_so_the_server_is_in_the_background") {
        return;
    }
    let (_scratch, app) = project("tty-dev-fg");
    let script = app.join("../fg.py");
    fs::write(
        &script,
        "import os, time\n\
         print('server fg=%s' % (os.tcgetpgrp(2) == os.getpgrp()), flush=True)\n\
         time.sleep(1000)\n",
    )
    .unwrap();
    let server = format!("python3 {}", script.display());
    let mut tty = Tty::start(&app, &["dev"], &dev_env(&server, ""));
    tty.wait_text("server fg=");
    assert!(tty.text().contains("server fg=False"), "{}", tty.text());
    tty.type_keys(b"\x03");
    let (status, screen) = tty.exit();
    assert_eq!(status.code(), Some(0), "{screen}");
}

#[test]
fn idle_dev_stops_at_once_on_ctrl_c() {
    let (_scratch, app) = project("tty-idle-int");
    let mut tty = Tty::start(&app, &["dev"], &[("AUTO_START_SERVER", "false")]);
    tty.wait_text("AUTO_START_SERVER is off");
    tty.type_keys(b"\x03");
    let (status, screen) = tty.exit();
    assert_eq!(status.code(), Some(0), "{screen}");
    assert!(screen.contains("initd: stopping on INT"), "{screen}");
}

#[test]
fn idle_dev_stops_at_once_on_hangup() {
    let (_scratch, app) = project("tty-idle-hup");
    let mut tty = Tty::start(&app, &["dev"], &[("AUTO_START_SERVER", "false")]);
    tty.wait_text("AUTO_START_SERVER is off");
    tty.hang_up();
    let (status, screen) = tty.exit();
    assert_eq!(status.code(), Some(0), "{screen}");
}

// ---------------------------------------------------------------------------
// initd exec

#[test]
fn exec_gives_ctrl_c_to_an_interactive_command_which_keeps_running() {
    if !have_python("exec_gives_ctrl_c_to_an_interactive_command_which_keeps_running") {
        return;
    }
    let (_scratch, app) = project("tty-exec-shell");
    // A REPL in miniature, as `python manage.py shell` handles Ctrl-C.
    let script = "import sys\n\
                  while True:\n\
                  \x20   try:\n\
                  \x20       print('>>> ', end='', flush=True)\n\
                  \x20       line = sys.stdin.readline()\n\
                  \x20   except KeyboardInterrupt:\n\
                  \x20       print('KeyboardInterrupt', flush=True)\n\
                  \x20       continue\n\
                  \x20   if line.strip() == 'quit':\n\
                  \x20       sys.exit(7)\n\
                  \x20   print('echo ' + line.strip(), flush=True)\n";
    let mut tty = Tty::start(&app, &["exec", "--", "python3", "-c", script], &[]);
    tty.wait_text(">>> ");
    tty.type_keys(b"\x03");
    tty.wait_text("KeyboardInterrupt");
    tty.type_keys(b"still here\n");
    tty.wait_text("echo still here");
    tty.type_keys(b"quit\n");
    let (status, screen) = tty.exit();
    assert_eq!(status.code(), Some(7), "{screen}");
    assert!(!screen.contains("stopping"), "{screen}");
}

#[test]
fn exec_sleep_dies_of_ctrl_c_and_initd_exits_130() {
    let (_scratch, app) = project("tty-exec-sleep");
    let mut tty = Tty::start(
        &app,
        &["exec", "--", "sh", "-c", "echo sleeping; sleep 1000"],
        &[],
    );
    // The shell and sleep share the foreground group: both die of INT,
    // whichever is running when the key is typed.
    tty.wait_text("sleeping");
    tty.type_keys(b"\x03");
    let (status, screen) = tty.exit();
    assert_eq!(status.code(), Some(130), "{screen}");
    assert!(!screen.contains("stopping"), "{screen}");
}

#[test]
fn exec_on_a_terminal_the_child_is_the_foreground_and_gets_ctrl_c() {
    if !have_python("exec_on_a_terminal_the_child_is_the_foreground_and_gets_ctrl_c") {
        return;
    }
    let (_scratch, app) = project("tty-exec-fg");
    let script = "import os, time\n\
                  print('fg=%s' % (os.tcgetpgrp(0) == os.getpgrp()), flush=True)\n\
                  time.sleep(30)";
    // TOSTOP makes a background writer get SIGTTOU: initd, no longer in the
    // foreground, must still be able to log its last line.
    let mut tty = Tty::start_with(&app, &["python3", "-c", script], &[], Leader::Initd, true);
    tty.wait_text("fg=");
    assert!(
        tty.text().contains("fg=True"),
        "child is not the foreground group: {}",
        tty.text()
    );
    tty.type_keys(b"\x03");
    let (status, screen) = tty.exit();
    // The terminal sent INT to the child's group, not to initd: no stop
    // sequence, and the child's death by INT is reported as 130.
    assert_eq!(status.code(), Some(130), "{screen}");
    assert!(!screen.contains("stopping"), "{screen}");
    assert!(screen.contains("main child was killed by INT"), "{screen}");
}
