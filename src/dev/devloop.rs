//! `initd dev`: the development loop. Asset watchers run side by side with
//! their output prefixed, each restarted with backoff when it exits; the dev
//! server restarts when a source file changes, and a server that crashes
//! (a syntax error) waits for the next change instead of looping. With no
//! server (`AUTO_START_SERVER` off) the container idles, still reaping,
//! forwarding and stopping at once on TERM.
//!
//! Like the supervisor, the loop sleeps in poll(2) on the signalfd (and the
//! file watcher's and the health probe's wake pipes) with a timeout only
//! while something is due.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::cmdline;
use crate::dev::filter::Filter;
use crate::dev::prefix::{self, Label, Outputs};
use crate::dev::reload::{Debounce, Reloader};
use crate::pid1::child;
use crate::pid1::exit::Fate;
use crate::pid1::reaper;
use crate::pid1::signals::{Target, short_name};
use crate::pid1::status::{Phase, Process};
use crate::pid1::steps::{Launcher, spawn_failed};
use crate::pid1::supervisor::{Action, Supervisor, action};

/// Restart delays for a watcher that keeps exiting: doubling from 1 s up to
/// 30 s, back to 1 s once it has run for a minute.
pub fn backoff(consecutive_failures: u32) -> Duration {
    let exp = consecutive_failures.saturating_sub(1).min(5);
    Duration::from_secs(1 << exp).min(MAX_BACKOFF)
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const GOOD_RUN: Duration = Duration::from_secs(60);
/// A burst of writes (a formatter, a `git checkout`) is one restart once the
/// files have been quiet this long.
const QUIET: Duration = Duration::from_millis(100);
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// How long the watchers' last lines may take to be written out at exit.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

pub struct DevPlan {
    pub watchers: Vec<(String, Vec<String>)>,
    pub server: Option<Vec<String>>,
    pub reload_roots: Vec<PathBuf>,
    pub filter: Filter,
    pub poll: crate::config::ReloadPoll,
}

struct Watcher {
    name: String,
    argv: Vec<String>,
    label_out: Label,
    label_err: Label,
    pid: Option<Pid>,
    started: Option<Instant>,
    failures: u32,
    restarts: u32,
    restart_at: Option<Instant>,
    note: String,
}

enum Server {
    /// Idle mode: there is none.
    Off,
    Running(Pid),
    /// Asked to stop for a restart; started again once it is gone.
    Restarting {
        pid: Pid,
        kill_at: Instant,
    },
    /// Exited on its own; starts again on the next change.
    Down,
}

struct Dev<'a> {
    sup: &'a mut Supervisor,
    launcher: &'a Launcher,
    watchers: Vec<Watcher>,
    server_argv: Option<Vec<String>>,
    server: Server,
    restarts: u32,
    reloader: Option<Reloader>,
    roots: Vec<PathBuf>,
    filter: Filter,
    debounce: Debounce,
    /// Set once a stop arrived: when SIGKILL is due.
    stop_deadline: Option<Instant>,
    outputs: Outputs,
}

/// Runs dev mode until a stop; returns initd's exit status.
pub fn run(sup: &mut Supervisor, launcher: &Launcher, plan: DevPlan) -> i32 {
    sup.start_serving();
    let width = plan.watchers.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let colour = prefix::colour_wanted();
    let watchers = plan
        .watchers
        .into_iter()
        .enumerate()
        .map(|(i, (name, argv))| Watcher {
            label_out: Label::new(&name, i, width, colour),
            label_err: Label::new(&name, i, width, colour),
            name,
            argv,
            pid: None,
            started: None,
            failures: 0,
            restarts: 0,
            restart_at: None,
            note: String::new(),
        })
        .collect();
    let mut dev = Dev {
        sup,
        launcher,
        watchers,
        server: if plan.server.is_some() {
            Server::Down
        } else {
            Server::Off
        },
        server_argv: plan.server,
        restarts: 0,
        reloader: None,
        roots: plan.reload_roots,
        filter: plan.filter,
        debounce: Debounce::new(QUIET, MAX_DEBOUNCE),
        stop_deadline: None,
        outputs: Outputs::default(),
    };
    let now = Instant::now();
    for i in 0..dev.watchers.len() {
        dev.start_watcher(i, now);
    }
    if dev.server_argv.is_some() {
        match Reloader::start(&dev.roots, &dev.filter, plan.poll) {
            Ok(reloader) => dev.reloader = Some(reloader),
            Err(e) => warn!("cannot watch for changes ({e}); the server will not reload"),
        }
        dev.start_server(now);
    } else {
        info!(
            "AUTO_START_SERVER is off: no server runs and the container stays up; run commands with \
             `docker compose exec app initd exec CMD` (secrets and user as here)"
        );
        dev.sup
            .status()
            .set_phase(Phase::Idle, "AUTO_START_SERVER is off");
    }
    dev.run()
}

impl Dev<'_> {
    fn run(&mut self) -> i32 {
        loop {
            self.sleep();
            let now = Instant::now();
            for sig in self.sup.read_signals() {
                self.on_signal(sig, now);
            }
            self.sup.service_probes(now);
            // Changes first: whether a server that just ended starts again
            // at once depends on whether files are still changing.
            self.take_changes(now);
            let (ended, children_left) = reaper::reap_any();
            for (pid, fate) in ended {
                self.on_exit(pid, fate, Instant::now());
            }
            if let Some(deadline) = self.stop_deadline {
                if !children_left {
                    // Every watcher is gone, so their pipes are closed:
                    // what they printed last is written out in moments.
                    if !std::mem::take(&mut self.outputs).finish(OUTPUT_DRAIN) {
                        warn!("a watcher's output was still open; its last lines may be missing");
                    }
                    info!("stopped");
                    return 0;
                }
                if now >= deadline {
                    warn!("grace period over; sending SIGKILL to everything left");
                    self.sup.signal_all(Signal::SIGKILL);
                    self.stop_deadline = Some(now + Duration::from_secs(3600));
                }
                continue;
            }
            // While the old server is still stopping the change stays
            // pending: the new one starts once the files are quiet.
            let stopping_old = matches!(self.server, Server::Restarting { .. });
            if !stopping_old && let Some((path, files)) = self.debounce.take_if_due(now) {
                let more = match files {
                    0 | 1 => String::new(),
                    2 => " (and 1 more file)".to_string(),
                    n => format!(" (and {} more files)", n - 1),
                };
                info!("{} changed{more}: restarting the server", path.display());
                self.restart_server(now);
            }
            if let Server::Restarting { pid, kill_at } = self.server
                && now >= kill_at
            {
                warn!("the server did not stop within the grace period; sending SIGKILL");
                let _ = killpg(pid, Signal::SIGKILL);
                self.server = Server::Restarting {
                    pid,
                    kill_at: now + Duration::from_secs(3600),
                };
            }
            for i in 0..self.watchers.len() {
                if self.watchers[i].restart_at.is_some_and(|t| t <= now) {
                    self.start_watcher(i, now);
                }
            }
        }
    }

    /// The earliest moment something is due, if anything is.
    fn next_due(&self) -> Option<Instant> {
        let (server, debounce) = match self.server {
            // A pending change waits for the old server to be gone, which
            // the signalfd (SIGCHLD) reports: no timeout for it meanwhile.
            Server::Restarting { kill_at, .. } => (Some(kill_at), None),
            _ => (None, self.debounce.due()),
        };
        self.watchers
            .iter()
            .filter_map(|w| w.restart_at)
            .chain(debounce)
            .chain(server)
            .chain(self.stop_deadline)
            .chain(self.sup.probe_deadline())
            .min()
    }

    fn sleep(&self) {
        let timeout = match self.next_due() {
            None => PollTimeout::NONE,
            Some(due) => {
                let left = due.saturating_duration_since(Instant::now());
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![
            PollFd::new(self.sup.signal_fd(), PollFlags::POLLIN),
            PollFd::new(self.sup.probe_wake_fd(), PollFlags::POLLIN),
        ];
        if let Some(r) = &self.reloader {
            fds.push(PollFd::new(r.wake_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => warn!("poll failed: {e}"),
        }
    }

    fn on_signal(&mut self, received: Signal, now: Instant) {
        match action(received, &self.sup.policy().map) {
            Action::Reap | Action::Ignore => {}
            Action::Stop(sig) if self.stop_deadline.is_none() => {
                let grace = self.sup.policy().stop_timeout;
                info!(
                    "stopping on {}: {} to the server and watchers",
                    short_name(received),
                    short_name(sig)
                );
                self.sup
                    .status()
                    .set_phase(Phase::Stopping, format!("stopping on {}", short_name(received)));
                self.stop_deadline = Some(now + grace);
                for w in &mut self.watchers {
                    w.restart_at = None;
                }
                self.sup.signal_all(sig);
            }
            Action::Stop(sig) => self.sup.signal_all(sig),
            Action::Forward(sig) => match self.server {
                Server::Running(pid) => self.send(pid, sig),
                _ => {
                    for pid in self.watchers.iter().filter_map(|w| w.pid) {
                        self.send(pid, sig);
                    }
                }
            },
        }
    }

    fn send(&self, pid: Pid, sig: Signal) {
        let result = match self.sup.policy().target {
            Target::Child => kill(pid, sig),
            Target::Group => killpg(pid, sig),
        };
        if let Err(e) = result
            && e != Errno::ESRCH
        {
            warn!("forwarding {} failed: {e}", short_name(sig));
        }
    }

    fn on_exit(&mut self, pid: Pid, fate: Fate, now: Instant) {
        if self.sup.probe_reaped(pid, fate) {
            return;
        }
        if let Some(i) = self.watchers.iter().position(|w| w.pid == Some(pid)) {
            self.watcher_ended(i, fate, now);
            return;
        }
        match self.server {
            Server::Running(p) if p == pid => {
                self.server = Server::Down;
                self.sup.status().set_main(None);
                if self.stop_deadline.is_some() {
                    return;
                }
                let how = describe(fate);
                // With a terminal the server had its foreground, so Ctrl-C
                // went to it alone: take the terminal back, and the next
                // Ctrl-C stops everything.
                let terminal = self.launcher.foreground && child::reclaim_terminal().is_ok();
                let ctrl_c = terminal && fate == Fate::Signaled(Signal::SIGINT);
                if self.debounce.due().is_some() && !ctrl_c {
                    // It may have imported a file that was still being
                    // written (an editor truncates, then writes): the rest
                    // of the save is pending and starts it again.
                    info!(
                        "the server {how}; files changed meanwhile, so it starts again once they are quiet"
                    );
                    self.sup.status().set_phase(
                        Phase::Running,
                        format!("server {how}, starting again after a change"),
                    );
                    self.publish_server(None, format!("{how}; starting again after the change"));
                    return;
                }
                match fate {
                    Fate::Signaled(Signal::SIGINT) if terminal => info!(
                        "the server stopped on Ctrl-C; it starts again on the next change, \
                         and Ctrl-C again stops everything"
                    ),
                    Fate::Exited(0) => info!("the server {how}; it starts again on the next change"),
                    _ => {
                        error!("the server {how}; fix the error and save: it starts again on the next change")
                    }
                }
                self.sup
                    .status()
                    .set_phase(Phase::Running, format!("server {how}, waiting for a change"));
                self.publish_server(None, format!("{how}; waiting for a change"));
            }
            Server::Restarting { pid: p, .. } if p == pid => {
                self.server = Server::Down;
                self.sup.status().set_main(None);
                if self.stop_deadline.is_none() {
                    self.restarts += 1;
                    self.sup.status().count_main_restart();
                    if self.debounce.due().is_some() {
                        // Files changed again while the old server stopped:
                        // starting now could import one half-written.
                        debug!("more changes pending; the server starts once the files are quiet");
                        self.publish_server(None, "restarting once the files are quiet".into());
                    } else {
                        self.start_server(now);
                    }
                }
            }
            _ => debug!(pid = pid.as_raw(), "reaped"),
        }
    }

    fn watcher_ended(&mut self, i: usize, fate: Fate, now: Instant) {
        let stopping = self.stop_deadline.is_some();
        let w = &mut self.watchers[i];
        w.pid = None;
        if stopping {
            return;
        }
        if w.started.is_some_and(|s| now.duration_since(s) >= GOOD_RUN) {
            w.failures = 0;
        }
        w.failures += 1;
        let delay = backoff(w.failures);
        w.restart_at = Some(now + delay);
        w.note = format!("{}; restarting in {}s", describe(fate), delay.as_secs());
        warn!("watcher {} {}", w.name, w.note);
        self.publish_watcher(i);
    }

    fn start_watcher(&mut self, i: usize, now: Instant) {
        let w = &mut self.watchers[i];
        w.restart_at = None;
        let what = format!("watcher {}", w.name);
        let spawned = self
            .launcher
            .command(&what, &w.argv, false)
            .ok()
            .and_then(|mut cmd| {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                cmd.spawn().map_err(|e| spawn_failed(&what, &w.argv[0], &e)).ok()
            });
        match spawned {
            Some(mut child) => {
                if let Some(out) = child.stdout.take() {
                    self.outputs.forward(out, w.label_out.clone(), false);
                }
                if let Some(err) = child.stderr.take() {
                    self.outputs.forward(err, w.label_err.clone(), true);
                }
                let pid = Pid::from_raw(child.id() as i32);
                if w.started.is_some() {
                    w.restarts += 1;
                }
                w.pid = Some(pid);
                w.started = Some(now);
                w.note = "running".into();
                debug!(pid = pid.as_raw(), "{what} started: {}", cmdline::join(&w.argv));
            }
            None => {
                // Not startable (not found, not executable): try again later
                // rather than give up; the developer may be installing it.
                w.failures += 1;
                let delay = backoff(w.failures);
                w.restart_at = Some(now + delay);
                w.note = format!("cannot start; retrying in {}s", delay.as_secs());
            }
        }
        self.publish_watcher(i);
    }

    fn publish_watcher(&self, i: usize) {
        let w = &self.watchers[i];
        self.sup.status().set_process(Process {
            name: w.name.clone(),
            pid: w.pid.map(|p| p.as_raw() as u32),
            restarts: w.restarts,
            note: w.note.clone(),
        });
    }

    fn publish_server(&self, pid: Option<Pid>, note: String) {
        self.sup.status().set_process(Process {
            name: "server".into(),
            pid: pid.map(|p| p.as_raw() as u32),
            restarts: self.restarts,
            note,
        });
    }

    fn start_server(&mut self, _now: Instant) {
        let Some(argv) = self.server_argv.clone() else {
            return;
        };
        info!("starting the dev server: {}", cmdline::join(&argv));
        match self.launcher.start("dev server", &argv) {
            Ok(pid) => {
                self.server = Server::Running(pid);
                self.sup.status().set_main(Some(pid.as_raw() as u32));
                self.sup.status().set_phase(Phase::Running, "dev server running");
                self.publish_server(Some(pid), "running".into());
            }
            Err(_) => {
                if self.launcher.foreground {
                    let _ = child::reclaim_terminal();
                }
                self.server = Server::Down;
                self.sup.status().set_phase(
                    Phase::Running,
                    "the dev server cannot start; waiting for a change",
                );
                self.publish_server(None, "cannot start; waiting for a change".into());
            }
        }
    }

    fn restart_server(&mut self, now: Instant) {
        match self.server {
            Server::Running(pid) => {
                let sig = self.sup.policy().stop_signal();
                self.send(pid, sig);
                self.server = Server::Restarting {
                    pid,
                    kill_at: now + self.sup.policy().stop_timeout,
                };
                self.publish_server(Some(pid), "restarting".into());
            }
            Server::Down => self.start_server(now),
            Server::Restarting { .. } | Server::Off => {}
        }
    }

    fn take_changes(&mut self, now: Instant) {
        let Some(reloader) = self.reloader.as_mut() else {
            return;
        };
        let changes = reloader.drain();
        if changes.is_empty() || self.stop_deadline.is_some() {
            return;
        }
        for path in changes {
            if wanted(&self.roots, &self.filter, &path) {
                debug!(path = %path.display(), "change");
                self.debounce.record(now, path);
            }
        }
    }
}

/// Whether a changed path (absolute, under one of the roots) is an edit.
fn wanted(roots: &[PathBuf], filter: &Filter, path: &Path) -> bool {
    roots
        .iter()
        .find_map(|root| path.strip_prefix(root).ok())
        .is_some_and(|relative| filter.wants(relative))
}

fn describe(fate: Fate) -> String {
    match fate {
        Fate::Exited(code) => format!("exited with status {code}"),
        Fate::Signaled(sig) => format!("was killed by {}", short_name(sig)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn only_wanted_files_under_a_root_count() {
        let roots = vec![PathBuf::from("/app")];
        let f = Filter::default();
        assert!(wanted(&roots, &f, Path::new("/app/proj/views.py")));
        assert!(!wanted(&roots, &f, Path::new("/app/node_modules/a.py")));
        assert!(!wanted(&roots, &f, Path::new("/elsewhere/views.py")));
    }
}
