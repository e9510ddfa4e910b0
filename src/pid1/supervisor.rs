//! The one PID-1 loop, for every mode. It supervises a set of children,
//! each with a [`Role`] whose [`OnExit`] policy says what its end means:
//! the main command and pipeline steps end the run, dev mode's server and
//! watchers are restarted by [`Rules`] (on a change, with backoff), health
//! probes are only reported. Signals, the [`Source`]s handed to it (the
//! control socket, `cmd:` probes) and the rules' own descriptors (file
//! changes, watcher output) are all file descriptors of one poll(2).
//!
//! There is no timer while idle: the poll has a timeout only while a
//! drain, a stop, a source's deadline or one of the rules' moments is due.
//!
//! The stop itself — drain, stop signal, grace period, SIGKILL — is the
//! pure state machine of [`crate::pid1::stopseq`]; this loop only carries out
//! what it says.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use crate::pid1::exit::{self, Fate};
use crate::pid1::procfs;
use crate::pid1::reaper;
use crate::pid1::signals::{self, Mapped, SignalMap, Target, short_name};
use crate::pid1::source::Source;
use crate::pid1::status::{Phase, Status};
use crate::pid1::stopseq::{self, Effect, StopSeq};
use crate::units::human_duration as human;

/// How signals are forwarded and how a stop proceeds.
#[derive(Debug, Clone)]
pub struct Policy {
    pub target: Target,
    pub map: SignalMap,
    pub stop_timeout: Duration,
    pub keep_signal_status: bool,
    /// How long checks fail before the main child gets the stop signal.
    pub drain: Duration,
}

impl Policy {
    /// The signal that asks processes to stop: TERM, unless the map rewrites
    /// it (TERM:QUIT for nginx).
    pub fn stop_signal(&self) -> Signal {
        match self.map.map(Signal::SIGTERM) {
            Mapped::To(sig) => sig,
            Mapped::Drop => Signal::SIGTERM,
        }
    }
}

/// What the main command is, for the lines that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainKind {
    /// `initd exec -- CMD`.
    Command,
    /// `initd run`: gunicorn or INITD_SERVER.
    Server,
    /// `initd dev`'s server.
    DevServer,
}

impl std::fmt::Display for MainKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MainKind::Command => "command",
            MainKind::Server => "server",
            MainKind::DevServer => "dev server",
        })
    }
}

/// Why a child runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Main(MainKind),
    /// A pre-start or dev setup command, run to completion.
    Step,
    DevServer,
    /// Dev mode's asset watcher number N.
    Watcher(usize),
    /// Started by the loop's source number N (a `cmd:` health probe).
    Sourced(usize),
}

/// What a child's end means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// The run is over (the main command, a step).
    EndRun,
    /// Started again after a delay that grows while it keeps failing.
    RestartWithBackoff,
    /// Started again on the next change of the source files.
    RestartOnChange,
    /// Its result is reported to whoever asked; nothing else.
    ReportOnly,
}

impl Role {
    pub fn on_exit(self) -> OnExit {
        match self {
            Role::Main(_) | Role::Step => OnExit::EndRun,
            Role::DevServer => OnExit::RestartOnChange,
            Role::Watcher(_) => OnExit::RestartWithBackoff,
            Role::Sourced(_) => OnExit::ReportOnly,
        }
    }
}

/// The supervised children that are running, by pid.
#[derive(Debug, Default)]
pub struct Children {
    members: Vec<(Pid, Role)>,
}

impl Children {
    pub fn add(&mut self, pid: Pid, role: Role) {
        self.members.push((pid, role));
    }

    fn remove(&mut self, pid: Pid) -> Option<Role> {
        let i = self.members.iter().position(|(p, _)| *p == pid)?;
        Some(self.members.swap_remove(i).1)
    }

    /// The running child that ends the run, if one runs.
    pub fn main(&self) -> Option<Pid> {
        self.members
            .iter()
            .find(|(_, role)| role.on_exit() == OnExit::EndRun)
            .map(|(pid, _)| *pid)
    }

    pub fn with_role(&self, role: Role) -> Option<Pid> {
        self.members.iter().find(|(_, r)| *r == role).map(|(p, _)| *p)
    }

    /// Whether dev mode's server or a watcher runs.
    fn runs_a_set(&self) -> bool {
        self.members
            .iter()
            .any(|(_, role)| matches!(role, Role::DevServer | Role::Watcher(_)))
    }
}

/// What [`Rules`] may touch while the loop runs.
pub struct Ctx<'a> {
    pub children: &'a mut Children,
    pub status: &'a Status,
    pub policy: &'a Policy,
}

/// A policy set on the loop: what restarts, when, and what else wakes the
/// loop. Dev mode is one; the main command and the steps need none.
pub trait Rules {
    /// Starts the set's first children, before the loop's first sleep.
    fn start(&mut self, _now: Instant, _ctx: &mut Ctx) {}
    /// The descriptors whose readiness is news for the rules (files
    /// changed, a watcher printed, initd's output has room again), polled
    /// with the loop's own; [`Rules::tick`] then tries them without
    /// blocking.
    fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        Vec::new()
    }
    /// The next moment [`Rules::tick`] has something to do.
    fn due(&self) -> Option<Instant> {
        None
    }
    /// After every wake-up, before children are reaped.
    fn tick(&mut self, _now: Instant, _ctx: &mut Ctx) {}
    /// A child whose role restarts ended.
    fn ended(&mut self, _pid: Pid, _role: Role, _fate: Fate, _now: Instant, _ctx: &mut Ctx) {}
    /// A stop began: from now on nothing starts again.
    fn stopping(&mut self) {}
    /// Once every child has ended after a stop: whether the rules are done
    /// too (`false`: the loop goes on serving their descriptors until
    /// [`Rules::due`], as for the watchers' last lines).
    fn settled(&mut self, _now: Instant) -> bool {
        true
    }
    /// Where a signal that is not a stop goes; `None`: the loop's rule
    /// (the main child, or between children whatever is left).
    fn forward_to(&self, _children: &Children) -> Option<Vec<Pid>> {
        None
    }
    /// initd keeps the terminal's foreground (dev mode): a hangup from it
    /// stops the whole set.
    fn keeps_terminal(&self) -> bool {
        false
    }
}

/// No rules: the main command or a step, which ends the run.
struct NoRules;
impl Rules for NoRules {}

/// What to do with one received signal (pure, so the rules are unit-tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reap; never forwarded.
    Reap,
    /// Forward this signal.
    Forward(Signal),
    /// Forward this signal and start the stop sequence.
    Stop(Signal),
    /// Dropped by the map, or a terminal-access signal meant for initd alone.
    Ignore,
}

pub fn action(received: Signal, map: &SignalMap) -> Action {
    match received {
        Signal::SIGCHLD => Action::Reap,
        // Sent by the terminal to a background group touching it: about
        // initd's own access, not something the child asked for.
        Signal::SIGTTIN | Signal::SIGTTOU => Action::Ignore,
        _ => match map.map(received) {
            Mapped::Drop => Action::Ignore,
            Mapped::To(sig) if signals::is_stop(received) || signals::is_stop(sig) => Action::Stop(sig),
            Mapped::To(sig) => Action::Forward(sig),
        },
    }
}

/// A signal as the signalfd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub sig: Signal,
    /// Raised by the kernel (the terminal: Ctrl-C, a hangup), not sent
    /// with kill(2) by a process (`docker stop`, `docker kill`).
    pub from_kernel: bool,
}

/// [`action`], and one rule on top: while initd keeps the terminal for a
/// set of children (dev mode), the terminal hanging up stops them all with
/// the stop signal, as closing foreman's window does. From a process, HUP
/// is forwarded as usual (a reload for gunicorn).
pub fn action_for(received: Received, map: &SignalMap, stop_signal: Signal, keeps_terminal: bool) -> Action {
    if received.sig == Signal::SIGHUP && received.from_kernel && keeps_terminal {
        return Action::Stop(stop_signal);
    }
    action(received.sig, map)
}

/// One signalfd, one stop sequence, for the whole life of initd: a stop
/// asked for during a pre-start step still holds when the next step would
/// start.
pub struct Supervisor {
    pid1: bool,
    policy: Policy,
    signals: SignalFd,
    children: Children,
    seq: StopSeq,
    /// Whether a child was still alive at the last reaping pass.
    children_left: bool,
    status: Arc<Status>,
    /// Supervising the main command (not a pre-start step): a stop drains.
    in_main: bool,
    /// What else the loop serves (the control socket, `cmd:` probes).
    sources: Vec<Box<dyn Source>>,
    /// For a wait outside the loop: readable when a signal is pending or a
    /// source's descriptor is ready (see [`Supervisor::wake_fd`]).
    wake: Option<Epoll>,
}

/// What poll reported: the signalfd aside, per source, in the order of
/// its [`Source::fds`].
type Revents = Vec<Vec<PollFlags>>;

/// When the loop returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The child that ends the run ended.
    MainEnds,
    /// A stop is under way and no child is left.
    AllStopped,
}

impl Supervisor {
    /// Opens the signalfd. The handled signals must already be blocked
    /// (before any child is spawned, so none is missed).
    pub fn new(policy: Policy, status: Arc<Status>) -> nix::Result<Supervisor> {
        let signals = SignalFd::with_flags(
            &signals::handled_set(),
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )?;
        Ok(Supervisor {
            pid1: std::process::id() == 1,
            seq: StopSeq::new(policy.stop_timeout, policy.drain),
            policy,
            signals,
            children: Children::default(),
            children_left: false,
            status,
            in_main: false,
            sources: Vec::new(),
            wake: None,
        })
    }

    /// Serves `source` from now on, in this loop and in the waits outside
    /// it that poll [`Supervisor::wake_fd`].
    pub fn add_source(&mut self, source: Box<dyn Source>) {
        self.sources.push(source);
    }

    /// What `initd check` reports; the pipeline sets the phases before the
    /// server, the supervisor those of the stop.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Readable whenever a signal is pending: a wait outside this loop
    /// polls it too, and returns to let [`Supervisor::handle_pending`] act
    /// on it.
    pub fn signal_fd(&self) -> BorrowedFd<'_> {
        self.signals.as_fd()
    }

    /// Readable whenever a signal is pending or a source has something to
    /// do (a client connected to the control socket): a wait outside this
    /// loop (for a dependency) polls it, and returns to let
    /// [`Supervisor::handle_pending`] act on it. Valid until the next call
    /// of any other method: the sources' descriptors change as they work.
    /// Without an epoll (out of descriptors), the signalfd: the sources
    /// then wait until the wait is over.
    pub fn wake_fd(&mut self) -> BorrowedFd<'_> {
        match self.sources_epoll() {
            Ok(epoll) => self.wake.insert(epoll).0.as_fd(),
            Err(err) => {
                warn!(
                    "checks wait until this wait is over: cannot watch the control socket during it: {err}"
                );
                self.signals.as_fd()
            }
        }
    }

    fn sources_epoll(&self) -> nix::Result<Epoll> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(self.signals.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        for source in &self.sources {
            for (fd, events) in source.fds() {
                let mut flags = EpollFlags::empty();
                flags.set(EpollFlags::EPOLLIN, events.contains(PollFlags::POLLIN));
                flags.set(EpollFlags::EPOLLOUT, events.contains(PollFlags::POLLOUT));
                match epoll.add(fd, EpollEvent::new(flags, 0)) {
                    // Polled for two reasons: once is enough.
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(epoll)
    }

    /// Serves the sources and says whether a signal is pending, without
    /// blocking: for a wait outside the loop that asks "interrupted?" as
    /// it goes (the migration lock). Nothing is reaped here.
    pub fn serve_sources(&mut self) -> bool {
        let revents = self.poll_now(&NoRules, PollTimeout::ZERO);
        self.serve(Instant::now(), &revents);
        let mut fd = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fd, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// The stop signal received so far, if any.
    pub fn stop_requested(&self) -> Option<Signal> {
        self.seq.outcome().map(|s| s.sent)
    }

    /// Acts on pending signals and reaps, without blocking. Only between
    /// children.
    pub fn handle_pending(&mut self) {
        debug_assert!(
            self.children.main().is_none(),
            "handle_pending while a child runs"
        );
        let revents = self.poll_now(&NoRules, PollTimeout::ZERO);
        self.pass(&mut NoRules, Instant::now(), &revents);
    }

    /// Supervises `pid`, a pipeline step, until it ends, forwarding
    /// signals to it, and returns how it ended. Processes it leaves behind
    /// are not waited for here.
    pub fn run_step(&mut self, pid: Pid) -> Fate {
        self.children.add(pid, Role::Step);
        self.supervise(&mut NoRules, Until::MainEnds)
            .expect("the loop ends with the step")
    }

    /// Supervises the main child to its end, then whatever it left behind,
    /// and returns initd's exit status.
    pub fn run_main(&mut self, pid: Pid, kind: MainKind) -> i32 {
        self.status.set_main(Some(pid.as_raw() as u32));
        self.children.add(pid, Role::Main(kind));
        self.in_main = true;
        let fate = self
            .supervise(&mut NoRules, Until::MainEnds)
            .expect("the loop ends with the main child");
        self.in_main = false;
        self.status.set_main(None);
        self.status
            .set_phase(Phase::Stopping, format!("the main child {fate}; stopping"));
        match fate {
            // A command that succeeded needs no epitaph among its output.
            Fate::Exited(0) => debug!("main child exited with status 0"),
            _ => info!("main child {fate}"),
        }
        self.finish(Some(fate))
    }

    /// Runs a set of children under `rules` (dev mode) until a stop has
    /// ended them all.
    pub fn run_set(&mut self, rules: &mut dyn Rules) {
        rules.start(Instant::now(), &mut self.ctx());
        self.supervise(rules, Until::AllStopped);
    }

    /// Ends initd's work: stops what is left (stop signal, the grace period,
    /// SIGKILL) and returns the exit status for the last child's `fate`, or,
    /// when a stop came while no child ran, 128+N for its signal.
    pub fn finish(&mut self, fate: Option<Fate>) -> i32 {
        // The exit status is the main child's, as the stop stood when it
        // ended: a stop that arrives while leftovers are stopped does not
        // change how the main child's end reads.
        let stop = self.seq.outcome();
        self.stop_leftovers();
        match fate {
            Some(fate) => exit::code(fate, stop, self.policy.keep_signal_status),
            None => self.seq.outcome().map_or(0, |stop| 128 + stop.sent as i32),
        }
    }

    fn stop_leftovers(&mut self) {
        self.handle_pending();
        if !self.children_left {
            return;
        }
        // Daemonised grandchildren get the same courtesy as the main
        // child: the stop signal, the grace period, and only then SIGKILL.
        // Within a stop already under way the original deadline stands,
        // so the whole stop still fits inside Docker's timeout.
        let now = Instant::now();
        if let Some(Effect::Ask(sig)) = self.seq.leftovers(now, self.policy.stop_signal()) {
            let deadline = self.seq.due().unwrap_or(now);
            info!(
                "stopping leftover processes: {}, SIGKILL in {}",
                short_name(sig),
                human(deadline.saturating_duration_since(now))
            );
            self.signal_all(sig);
        }
        self.supervise(&mut NoRules, Until::AllStopped);
    }

    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            children: &mut self.children,
            status: &self.status,
            policy: &self.policy,
        }
    }

    /// The loop: sleep, then act on what woke it, until `until`.
    fn supervise(&mut self, rules: &mut dyn Rules, until: Until) -> Option<Fate> {
        loop {
            let revents = self.sleep(rules);
            if let Some(fate) = self.pass(rules, Instant::now(), &revents)
                && until == Until::MainEnds
            {
                return Some(fate);
            }
            let stopped = self.seq.phase() != stopseq::Phase::Running && !self.children_left;
            if until == Until::AllStopped && stopped && rules.settled(Instant::now()) {
                return None;
            }
        }
    }

    /// One pass over every source, without blocking; the fate of the child
    /// that ends the run, if it ended.
    fn pass(&mut self, rules: &mut dyn Rules, now: Instant, revents: &Revents) -> Option<Fate> {
        self.tick(now);
        for received in self.read_signals() {
            self.on_signal(received, rules, now);
        }
        self.serve(now, revents);
        rules.tick(now, &mut self.ctx());
        let (ended, children_left) = reaper::reap_any();
        self.children_left = children_left;
        let mut main = None;
        let mut orphans = 0;
        for (pid, fate) in ended {
            match self.children.remove(pid) {
                Some(role) => match role.on_exit() {
                    OnExit::EndRun => main = Some(fate),
                    OnExit::ReportOnly => {
                        if let Role::Sourced(i) = role {
                            self.sources[i].reaped(pid, fate);
                        }
                    }
                    OnExit::RestartWithBackoff | OnExit::RestartOnChange => {
                        rules.ended(pid, role, fate, Instant::now(), &mut self.ctx());
                    }
                },
                None => orphans += 1,
            }
        }
        if orphans > 0 {
            debug!(count = orphans, "reaped orphans");
        }
        main
    }

    /// Hands every source what poll reported (or nothing, to handle
    /// what timed out) and supervises the children they start.
    fn serve(&mut self, now: Instant, revents: &Revents) {
        let mut started = Vec::new();
        for (i, source) in self.sources.iter_mut().enumerate() {
            let events = revents.get(i).map_or(&[][..], |r| &r[..]);
            source.on_ready(now, events, &mut started);
            for pid in started.drain(..) {
                self.children.add(pid, Role::Sourced(i));
            }
        }
    }

    /// Blocks until a signal is pending, a source is ready, the rules have
    /// news, or something is due.
    fn sleep(&mut self, rules: &dyn Rules) -> Revents {
        let due = [self.seq.due(), rules.due()]
            .into_iter()
            .chain(self.sources.iter().map(|s| s.deadline()))
            .flatten()
            .min();
        let timeout = match due {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Round up so the loop does not wake just before the deadline.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        self.poll_now(rules, timeout)
    }

    /// One poll(2) over the signalfd, every source's descriptors and the
    /// rules'; what it reported for the sources.
    fn poll_now(&mut self, rules: &dyn Rules, timeout: PollTimeout) -> Revents {
        // The epoll of a wait outside the loop is done with.
        self.wake = None;
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        let mut counts = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            let wanted = source.fds();
            counts.push(wanted.len());
            fds.extend(wanted.into_iter().map(|(fd, events)| PollFd::new(fd, events)));
        }
        fds.extend(
            rules
                .fds()
                .into_iter()
                .map(|(fd, events)| PollFd::new(fd, events)),
        );
        let woke = match poll(&mut fds, timeout) {
            Ok(_) => true,
            Err(Errno::EINTR) => false,
            Err(err) => {
                warn!("poll failed: {err}");
                false
            }
        };
        let mut at = 1;
        counts
            .into_iter()
            .map(|n| {
                let events = fds[at..at + n]
                    .iter()
                    .map(|fd| match woke {
                        true => fd.revents().unwrap_or(PollFlags::POLLERR),
                        false => PollFlags::empty(),
                    })
                    .collect();
                at += n;
                events
            })
            .collect()
    }

    fn read_signals(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    out.extend(Signal::try_from(info.ssi_signo as i32).ok().map(|sig| Received {
                        sig,
                        from_kernel: info.ssi_code == libc::SI_KERNEL,
                    }))
                }
                Ok(None) => return out,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    warn!("reading signals failed: {err}");
                    return out;
                }
            }
        }
    }

    fn on_signal(&mut self, received: Received, rules: &mut dyn Rules, now: Instant) {
        let stop_signal = self.policy.stop_signal();
        let name = short_name(received.sig);
        match action_for(received, &self.policy.map, stop_signal, rules.keeps_terminal()) {
            Action::Reap => {}
            Action::Ignore => debug!(signal = name, "signal not forwarded"),
            Action::Forward(sig) => self.forward(sig, rules),
            Action::Stop(sig) => {
                let can_drain = self.in_main && self.children.main().is_some();
                let first = self.seq.outcome().is_none();
                let (step, effect) = self.seq.request(now, sig, can_drain);
                rules.stopping();
                self.report(step, name, sig, first);
                if let Some(Effect::Ask(sig)) = effect {
                    self.ask(sig, rules);
                }
            }
        }
    }

    /// The log line and the published phase for a step of the stop.
    fn report(&self, step: stopseq::Step, received: &str, sig: Signal, first: bool) {
        let grace = self.seq.grace();
        match step {
            stopseq::Step::DrainStarted => {
                let drain = self.seq.drain();
                info!(
                    "draining on {received}: checks fail for {}, then {} goes to the server (another {received} stops it now)",
                    human(drain),
                    short_name(sig),
                );
                self.status.set_phase(
                    Phase::Draining,
                    format!(
                        "draining on {received} for {}: the server is stopped afterwards",
                        human(drain)
                    ),
                );
            }
            stopseq::Step::DrainCut => {
                info!("{received} again: the drain is cut short");
                self.stopping_line(sig);
            }
            stopseq::Step::DrainOver => self.stopping_line(sig),
            stopseq::Step::Stopping => {
                match self.children.main() {
                    Some(main) => info!(
                        "stopping: {} to pid {main}, SIGKILL in {}",
                        short_name(sig),
                        human(grace)
                    ),
                    None if self.children.runs_a_set() => info!(
                        "stopping on {received}: {} to the server and watchers",
                        short_name(sig)
                    ),
                    None => info!("stopping on {received}: nothing more will start"),
                }
                self.status
                    .set_phase(Phase::Stopping, format!("stopping on {received}"));
            }
            stopseq::Step::Again if first => {
                // A stop signal while leftovers were being stopped.
                self.status
                    .set_phase(Phase::Stopping, format!("stopping on {received}"));
            }
            stopseq::Step::Again | stopseq::Step::Killing => {}
        }
    }

    fn stopping_line(&self, sig: Signal) {
        if let Some(main) = self.children.main() {
            info!(
                "stopping: {} to pid {main}, SIGKILL in {}",
                short_name(sig),
                human(self.seq.grace())
            );
        }
        self.status.set_phase(
            Phase::Stopping,
            format!("stopping: {} sent to the server", short_name(sig)),
        );
    }

    /// Asks the supervised set to stop: the child that ends the run (and
    /// the daemons it left), or, for a set of children or between children,
    /// everything.
    fn ask(&self, sig: Signal, rules: &dyn Rules) {
        match self.children.main() {
            Some(main) => {
                self.forward(sig, rules);
                self.stop_adopted(main, sig);
            }
            None => self.signal_all(sig),
        }
    }

    /// Ends a drain or a grace period that is over.
    fn tick(&mut self, now: Instant) {
        let main = self.children.main();
        let Some((step, effect)) = self.seq.tick(now, main.is_some()) else {
            return;
        };
        match effect {
            Effect::Ask(sig) => {
                self.report(step, "", sig, false);
                self.ask(sig, &NoRules);
            }
            Effect::KillAll => {
                match main {
                    Some(main) => {
                        warn!("grace period over; sending SIGKILL to pid {main} and everything left")
                    }
                    None if self.children.runs_a_set() => {
                        warn!("grace period over; sending SIGKILL to everything left")
                    }
                    None => warn!("grace period over; sending SIGKILL to the leftover processes"),
                }
                self.signal_all(Signal::SIGKILL);
            }
        }
    }

    /// Daemons the main child left behind were re-parented to initd: no
    /// parent is left to pass a stop on to them, so they get it from initd,
    /// with the same grace period as the main child. The main child's own
    /// children are not touched: a pre-fork server stops its workers itself.
    fn stop_adopted(&self, main: Pid, sig: Signal) {
        let me = std::process::id() as i32;
        let skip_group = (self.policy.target == Target::Group).then_some(main.as_raw());
        let adopted = procfs::adopted(&procfs::snapshot(), me, main.as_raw(), skip_group);
        for &pid in &adopted {
            // Only initd reaps its children, so none of these pids can have
            // been reused since the snapshot.
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(err) => warn!("sending {} to pid {pid} failed: {err}", short_name(sig)),
            }
        }
        if !adopted.is_empty() {
            debug!(
                count = adopted.len(),
                signal = short_name(sig),
                "stop signal sent to adopted processes"
            );
        }
    }

    /// Sends a signal on: where the rules say, else to the running child
    /// (or its group), or, between children, to whatever earlier ones left
    /// behind.
    fn forward(&self, sig: Signal, rules: &dyn Rules) {
        let targets = match rules.forward_to(&self.children) {
            Some(targets) => targets,
            None => match self.children.main() {
                Some(main) => vec![main],
                None => {
                    self.signal_all(sig);
                    return;
                }
            },
        };
        for pid in targets {
            self.send(pid, sig);
        }
    }

    /// Sends `sig` to one supervised child, or its group.
    pub fn send(&self, pid: Pid, sig: Signal) {
        send(self.policy.target, pid, sig);
    }

    /// Signals every process initd is responsible for. As PID 1 that is the
    /// whole pid namespace, which kill(-1) reaches atomically; as a
    /// subreaper, kill(-1) would reach the whole host, so only initd's own
    /// descendants are signalled.
    pub fn signal_all(&self, sig: Signal) {
        if self.pid1 {
            if let Err(err) = kill(Pid::from_raw(-1), sig)
                && err != Errno::ESRCH
            {
                warn!("signalling all processes failed: {err}");
            }
            return;
        }
        let me = std::process::id() as i32;
        for pid in procfs::descendants(&procfs::snapshot(), me) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
}

/// Sends `sig` to `pid`, or to its process group, as INITD_SIGNAL_TARGET
/// says.
pub fn send(target: Target, pid: Pid, sig: Signal) {
    let result = match target {
        Target::Child => kill(pid, sig),
        Target::Group => killpg(pid, sig),
    };
    match result {
        Ok(()) => debug!(signal = short_name(sig), %target, "forwarded"),
        // Already gone; its SIGCHLD is on its way.
        Err(Errno::ESRCH) => {}
        Err(err) => warn!("forwarding {} failed: {err}", short_name(sig)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> SignalMap {
        text.parse().unwrap()
    }

    #[test]
    fn stop_signals_start_a_stop() {
        let none = SignalMap::default();
        assert_eq!(action(Signal::SIGTERM, &none), Action::Stop(Signal::SIGTERM));
        assert_eq!(action(Signal::SIGINT, &none), Action::Stop(Signal::SIGINT));
        assert_eq!(action(Signal::SIGQUIT, &none), Action::Stop(Signal::SIGQUIT));
    }

    #[test]
    fn other_signals_are_forwarded_as_they_are() {
        let none = SignalMap::default();
        for sig in [
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
            Signal::SIGCONT,
        ] {
            assert_eq!(action(sig, &none), Action::Forward(sig));
        }
        assert_eq!(action(Signal::SIGCHLD, &none), Action::Reap);
        assert_eq!(action(Signal::SIGTTOU, &none), Action::Ignore);
    }

    #[test]
    fn the_map_applies_before_forwarding() {
        let m = map("TERM:QUIT,WINCH:none,USR1:TERM");
        assert_eq!(action(Signal::SIGTERM, &m), Action::Stop(Signal::SIGQUIT));
        assert_eq!(action(Signal::SIGWINCH, &m), Action::Ignore);
        // Mapping onto a stop signal makes it a stop.
        assert_eq!(action(Signal::SIGUSR1, &m), Action::Stop(Signal::SIGTERM));
        assert_eq!(action(Signal::SIGHUP, &m), Action::Forward(Signal::SIGHUP));
    }

    #[test]
    fn a_dropped_stop_signal_does_not_stop() {
        assert_eq!(action(Signal::SIGINT, &map("INT:none")), Action::Ignore);
    }

    #[test]
    fn a_hangup_of_the_terminal_initd_keeps_stops_the_set() {
        let none = SignalMap::default();
        let hup = |from_kernel| Received {
            sig: Signal::SIGHUP,
            from_kernel,
        };
        let quit = Signal::SIGQUIT;
        assert_eq!(action_for(hup(true), &none, quit, true), Action::Stop(quit));
        // `docker kill -s HUP`: a reload, as ever.
        assert_eq!(
            action_for(hup(false), &none, quit, true),
            Action::Forward(Signal::SIGHUP)
        );
        // `initd exec`: the command has the terminal and gets the hangup.
        assert_eq!(
            action_for(hup(true), &none, quit, false),
            Action::Forward(Signal::SIGHUP)
        );
        let int = Received {
            sig: Signal::SIGINT,
            from_kernel: true,
        };
        assert_eq!(action_for(int, &none, quit, true), Action::Stop(Signal::SIGINT));
    }

    #[test]
    fn stop_signal_follows_the_map() {
        let policy = |m: &str| Policy {
            target: Target::Child,
            map: map(m),
            stop_timeout: Duration::from_secs(1),
            keep_signal_status: false,
            drain: Duration::ZERO,
        };
        assert_eq!(policy("").stop_signal(), Signal::SIGTERM);
        assert_eq!(policy("TERM:QUIT").stop_signal(), Signal::SIGQUIT);
        assert_eq!(policy("TERM:none").stop_signal(), Signal::SIGTERM);
    }

    #[test]
    fn roles_have_their_policies() {
        assert_eq!(Role::Main(MainKind::Server).on_exit(), OnExit::EndRun);
        assert_eq!(Role::Step.on_exit(), OnExit::EndRun);
        assert_eq!(Role::DevServer.on_exit(), OnExit::RestartOnChange);
        assert_eq!(Role::Watcher(0).on_exit(), OnExit::RestartWithBackoff);
        assert_eq!(Role::Sourced(0).on_exit(), OnExit::ReportOnly);
        let mut children = Children::default();
        children.add(Pid::from_raw(10), Role::Watcher(0));
        assert_eq!(children.main(), None);
        children.add(Pid::from_raw(11), Role::Step);
        assert_eq!(children.main(), Some(Pid::from_raw(11)));
        assert_eq!(children.remove(Pid::from_raw(11)), Some(Role::Step));
        assert_eq!(children.remove(Pid::from_raw(11)), None);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(8)), "8s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
