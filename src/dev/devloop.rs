//! `initd dev`: the development set, as rules on the supervisor's one loop.
//! Asset watchers run side by side with their output prefixed, each
//! restarted with backoff when it exits; the dev server restarts when a
//! source file changes, and a server that crashes (a syntax error) waits for
//! the next change instead of looping. With no server (`AUTO_START_SERVER`
//! off) the container idles, still reaping, forwarding and stopping at once.
//!
//! initd keeps the terminal: the server and the watchers run in the
//! background, so Ctrl-C and a hangup reach initd, which stops them all.
//! Sleeping, signals, reaping and the stop are the loop's; this module only
//! says what starts again, and when.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::cmdline;
use crate::dev::filter::Filter;
use crate::dev::prefix::{self, Label, Outputs};
use crate::dev::reload::{Debounce, Reloader};
use crate::pid1::child::Stream;
use crate::pid1::exit::Fate;
use crate::pid1::exit::{self, Halt};
use crate::pid1::launch::{Launcher, Terminal};
use crate::pid1::status::{Phase, Process};
use crate::pid1::supervisor::{Children, Ctx, Role, Rules, Supervisor};

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
    launcher: &'a Launcher,
    watchers: Vec<Watcher>,
    server_argv: Option<Vec<String>>,
    server: Server,
    restarts: u32,
    reloader: Option<Reloader>,
    roots: Vec<PathBuf>,
    filter: Filter,
    debounce: Debounce,
    poll: crate::config::ReloadPoll,
    /// A stop is under way: nothing starts again.
    stopping: bool,
    outputs: Outputs,
    /// Once every child has ended after a stop: how long their last lines
    /// may still take to be written out.
    output_deadline: Option<Instant>,
}

/// Runs dev mode until a stop; returns initd's exit status. A stop asked
/// for (`docker stop`, Ctrl-C, closing the terminal) is how dev mode is
/// meant to end, so it exits 0 once the set has stopped.
pub fn run(sup: &mut Supervisor, launcher: &Launcher, plan: DevPlan) -> i32 {
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
        poll: plan.poll,
        stopping: false,
        outputs: Outputs::default(),
        output_deadline: None,
    };
    sup.run_set(&mut dev);
    if !dev.outputs.is_done() {
        warn!(
            "the watchers' last lines were not all written out within {}: initd's output was full, or a \
             process they left still holds their output open",
            crate::units::human_duration(OUTPUT_DRAIN)
        );
    }
    info!("stopped");
    0
}

impl Rules for Dev<'_> {
    fn start(&mut self, now: Instant, ctx: &mut Ctx) {
        for i in 0..self.watchers.len() {
            self.start_watcher(i, now, ctx);
        }
        if self.server_argv.is_some() {
            self.reloader = Some(Reloader::start(&self.roots, &self.filter, self.poll));
            self.start_server(ctx);
        } else {
            info!(
                "AUTO_START_SERVER is off: no server runs and the container stays up; run commands with \
                 `docker compose exec app initd exec CMD` (secrets and user as here)"
            );
            ctx.status.set_phase(Phase::Idle, "AUTO_START_SERVER is off");
        }
    }

    fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut fds = self.outputs.fds();
        if !self.stopping {
            fds.extend(
                self.reloader
                    .as_ref()
                    .and_then(Reloader::fd)
                    .map(|fd| (fd, PollFlags::POLLIN)),
            );
        }
        fds
    }

    /// The earliest moment something is due, if anything is.
    fn due(&self) -> Option<Instant> {
        if self.stopping {
            return self.output_deadline;
        }
        let (server, debounce) = match self.server {
            // A pending change waits for the old server to be gone, which
            // the signalfd (SIGCHLD) reports: no timeout for it meanwhile.
            Server::Restarting { kill_at, .. } => (Some(kill_at), None),
            _ => (None, self.debounce.due()),
        };
        let polling = self.reloader.as_ref().and_then(Reloader::due);
        self.watchers
            .iter()
            .filter_map(|w| w.restart_at)
            .chain(debounce)
            .chain(server)
            .chain(polling)
            .min()
    }

    fn tick(&mut self, now: Instant, ctx: &mut Ctx) {
        self.outputs.pump();
        // Changes first: whether a server that ends in this pass starts
        // again at once depends on whether files are still changing.
        self.take_changes(now);
        if self.stopping {
            return;
        }
        // While the old server is still stopping the change stays pending:
        // the new one starts once the files are quiet.
        let stopping_old = matches!(self.server, Server::Restarting { .. });
        if !stopping_old && let Some((path, files)) = self.debounce.take_if_due(now) {
            let more = match files {
                0 | 1 => String::new(),
                2 => " (and 1 more file)".to_string(),
                n => format!(" (and {} more files)", n - 1),
            };
            info!("{} changed{more}: restarting the server", path.display());
            self.restart_server(now, ctx);
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
                self.start_watcher(i, now, ctx);
            }
        }
    }

    fn ended(&mut self, pid: Pid, role: Role, fate: Fate, now: Instant, ctx: &mut Ctx) {
        match role {
            Role::Watcher(i) => self.watcher_ended(i, fate, now, ctx),
            Role::DevServer => self.server_ended(pid, fate, ctx),
            _ => debug!(pid = pid.as_raw(), "reaped"),
        }
    }

    fn stopping(&mut self) {
        self.stopping = true;
        for w in &mut self.watchers {
            w.restart_at = None;
        }
    }

    /// Every watcher has ended, so their pipes are closed (unless a process
    /// they left holds one): what they printed last is written out,
    /// within [`OUTPUT_DRAIN`].
    fn settled(&mut self, now: Instant) -> bool {
        self.outputs.pump();
        let deadline = *self.output_deadline.get_or_insert(now + OUTPUT_DRAIN);
        self.outputs.is_done() || now >= deadline
    }

    fn forward_to(&self, children: &Children) -> Option<Vec<Pid>> {
        Some(match children.with_role(Role::DevServer) {
            Some(server) => vec![server],
            None => self.watchers.iter().filter_map(|w| w.pid).collect(),
        })
    }

    fn keeps_terminal(&self) -> bool {
        true
    }
}

impl Dev<'_> {
    fn server_ended(&mut self, pid: Pid, fate: Fate, ctx: &mut Ctx) {
        match self.server {
            Server::Running(p) if p == pid => {
                self.server = Server::Down;
                ctx.status.set_main(None);
                if self.stopping {
                    return;
                }
                if self.debounce.due().is_some() {
                    // It may have imported a file that was still being
                    // written (an editor truncates, then writes): the rest
                    // of the save is pending and starts it again.
                    info!(
                        "the server {fate}; files changed meanwhile, so it starts again once they are quiet"
                    );
                    ctx.status.set_phase(
                        Phase::Running,
                        format!("server {fate}, starting again after a change"),
                    );
                    self.publish_server(ctx, None, format!("{fate}; starting again after the change"));
                    return;
                }
                match fate {
                    Fate::Exited(0) => info!("the server {fate}; it starts again on the next change"),
                    _ => {
                        error!(
                            "the server {fate}; fix the error and save: it starts again on the next change"
                        )
                    }
                }
                ctx.status
                    .set_phase(Phase::Running, format!("server {fate}, waiting for a change"));
                self.publish_server(ctx, None, format!("{fate}; waiting for a change"));
            }
            Server::Restarting { pid: p, .. } if p == pid => {
                self.server = Server::Down;
                ctx.status.set_main(None);
                if self.stopping {
                    return;
                }
                self.restarts += 1;
                ctx.status.count_main_restart();
                if self.debounce.due().is_some() {
                    // Files changed again while the old server stopped:
                    // starting now could import one half-written.
                    debug!("more changes pending; the server starts once the files are quiet");
                    self.publish_server(ctx, None, "restarting once the files are quiet".into());
                } else {
                    self.start_server(ctx);
                }
            }
            _ => debug!(pid = pid.as_raw(), "reaped"),
        }
    }

    fn watcher_ended(&mut self, i: usize, fate: Fate, now: Instant, ctx: &mut Ctx) {
        let w = &mut self.watchers[i];
        w.pid = None;
        if self.stopping {
            return;
        }
        if w.started.is_some_and(|s| now.duration_since(s) >= GOOD_RUN) {
            w.failures = 0;
        }
        w.failures += 1;
        let delay = backoff(w.failures);
        w.restart_at = Some(now + delay);
        w.note = format!("{fate}; restarting in {}s", delay.as_secs());
        warn!("watcher {} {}", w.name, w.note);
        self.publish_watcher(i, ctx);
    }

    fn start_watcher(&mut self, i: usize, now: Instant, ctx: &mut Ctx) {
        let w = &mut self.watchers[i];
        w.restart_at = None;
        let what = format!("watcher {}", w.name);
        let spawned = watcher_pipes()
            .map_err(|e| {
                Halt::error(
                    exit::INTERNAL,
                    format!("{what}: cannot make its output pipes: {e}"),
                )
            })
            .and_then(|[(out, out_w), (err, err_w)]| {
                let streams = [Stream::Null, Stream::Fd(out_w.as_fd()), Stream::Fd(err_w.as_fd())];
                let pid = self
                    .launcher
                    .start_with(&what, &w.argv, Terminal::Background, streams)?;
                // The write ends are the watcher's alone now: its exit ends
                // the streams.
                drop((out_w, err_w));
                Ok((pid, out, err))
            });
        match spawned {
            Ok((pid, out, err)) => {
                for (fd, label, to_stderr) in [(out, &w.label_out, false), (err, &w.label_err, true)] {
                    if let Err(e) = self.outputs.forward(fd, label.clone(), to_stderr) {
                        warn!("the output of {what} cannot be read without blocking ({e}); it is dropped");
                    }
                }
                ctx.children.add(pid, Role::Watcher(i));
                if w.started.is_some() {
                    w.restarts += 1;
                }
                w.pid = Some(pid);
                w.started = Some(now);
                w.note = "running".into();
                debug!(pid = pid.as_raw(), "{what} started: {}", cmdline::join(&w.argv));
            }
            Err(halt) => {
                // Not startable (not found, not executable): try again later
                // rather than give up; the developer may be installing it.
                error!("{halt}");
                w.failures += 1;
                let delay = backoff(w.failures);
                w.restart_at = Some(now + delay);
                w.note = format!("cannot start; retrying in {}s", delay.as_secs());
            }
        }
        self.publish_watcher(i, ctx);
    }

    fn publish_watcher(&self, i: usize, ctx: &Ctx) {
        let w = &self.watchers[i];
        ctx.status.set_process(Process {
            name: w.name.clone(),
            pid: w.pid.map(|p| p.as_raw() as u32),
            restarts: w.restarts,
            note: w.note.clone(),
        });
    }

    fn publish_server(&self, ctx: &Ctx, pid: Option<Pid>, note: String) {
        ctx.status.set_process(Process {
            name: "server".into(),
            pid: pid.map(|p| p.as_raw() as u32),
            restarts: self.restarts,
            note,
        });
    }

    fn start_server(&mut self, ctx: &mut Ctx) {
        let Some(argv) = self.server_argv.clone() else {
            return;
        };
        info!("starting the dev server: {}", cmdline::join(&argv));
        match self.launcher.start("dev server", &argv, Terminal::Background) {
            Ok(pid) => {
                ctx.children.add(pid, Role::DevServer);
                self.server = Server::Running(pid);
                ctx.status.set_main(Some(pid.as_raw() as u32));
                ctx.status.set_phase(Phase::Running, "dev server running");
                self.publish_server(ctx, Some(pid), "running".into());
            }
            Err(halt) => {
                error!("{halt}");
                self.server = Server::Down;
                ctx.status.set_phase(
                    Phase::Running,
                    "the dev server cannot start; waiting for a change",
                );
                self.publish_server(ctx, None, "cannot start; waiting for a change".into());
            }
        }
    }

    fn restart_server(&mut self, now: Instant, ctx: &mut Ctx) {
        match self.server {
            Server::Running(pid) => {
                let sig = ctx.policy.stop_signal();
                crate::pid1::supervisor::send(ctx.policy.target, pid, sig);
                self.server = Server::Restarting {
                    pid,
                    kill_at: now + ctx.policy.stop_timeout,
                };
                self.publish_server(ctx, Some(pid), "restarting".into());
            }
            Server::Down => self.start_server(ctx),
            Server::Restarting { .. } | Server::Off => {}
        }
    }

    fn take_changes(&mut self, now: Instant) {
        let Some(reloader) = self.reloader.as_mut() else {
            return;
        };
        if self.stopping {
            return;
        }
        let changes = reloader.drain();
        for path in changes {
            if wanted(&self.roots, &self.filter, &path) {
                debug!(path = %path.display(), "change");
                self.debounce.record(now, path);
            }
        }
    }
}

/// Whether a changed path (absolute, under one of the roots) is an edit.
/// A watcher's stdout and stderr pipes: (read end, write end) each, both
/// close-on-exec (the spawn gives the watcher its ends as 1 and 2).
fn watcher_pipes() -> nix::Result<[(OwnedFd, OwnedFd); 2]> {
    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    Ok([nix::unistd::pipe2(flags)?, nix::unistd::pipe2(flags)?])
}

fn wanted(roots: &[PathBuf], filter: &Filter, path: &Path) -> bool {
    roots
        .iter()
        .find_map(|root| path.strip_prefix(root).ok())
        .is_some_and(|relative| filter.wants(relative))
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
