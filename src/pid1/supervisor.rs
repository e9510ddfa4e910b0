//! The PID-1 loop: sleep until a signal arrives (SIGCHLD included), forward
//! it, reap, and run the stop sequence — stop signal, grace period, SIGKILL.
//!
//! There is no timer while idle: the loop blocks in poll(2) on a signalfd
//! (and the health probe's wake-up pipe) with no timeout; only a drain, a
//! stop or a probe in progress gives it a deadline.
//!
//! With `INITD_DRAIN`, the first stop signal during the main child's run is
//! held back: checks fail (`draining`) for the drain period, so load
//! balancers move traffic away, and only then does the server get the stop
//! signal. A second stop signal ends the drain early.

use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use crate::health::cmdprobe::{self, Channel, Runner};
use crate::pid1::exit::{self, Fate, StopOutcome};
use crate::pid1::procfs;
use crate::pid1::reaper;
use crate::pid1::signals::{self, Mapped, SignalMap, Target, short_name};
use crate::pid1::status::{Phase, Status};
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

/// One signalfd, one stop state, for the whole life of initd: a stop asked
/// for during a pre-start step still holds when the next step would start.
pub struct Supervisor {
    pid1: bool,
    policy: Policy,
    signals: SignalFd,
    /// The child signals are forwarded to, while one runs.
    main: Option<Pid>,
    /// Set once a stop was asked for: the signal sent and whether the main
    /// child had to be killed.
    stop: Option<StopOutcome>,
    deadline: Option<Instant>,
    /// SIGKILL already went to everything; nothing is left to ask politely.
    killed_all: bool,
    /// Whether a child was still alive at the last reaping pass.
    children_left: bool,
    status: Arc<Status>,
    /// Supervising the main command (not a pre-start step): a stop drains.
    in_main: bool,
    /// While draining: when the stop signal goes to the main child.
    drain_until: Option<Instant>,
    /// `cmd:` health probes, started and reaped by this loop.
    probes: Runner,
    /// Starts serving the control socket. Held until the first client
    /// connects (the listening socket, `serve_fd`, turns readable in the
    /// loop's poll) or a long wait begins, so that a short-lived
    /// `initd exec` never pays for the socket's thread.
    serve: Option<Box<dyn FnOnce()>>,
    serve_fd: Option<RawFd>,
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
            policy,
            signals,
            main: None,
            stop: None,
            deadline: None,
            killed_all: false,
            children_left: false,
            status,
            in_main: false,
            drain_until: None,
            probes: Runner::new(Channel::new()?),
            serve: None,
            serve_fd: None,
        })
    }

    /// Holds `serve` until a client connects to `listening` (which must
    /// stay open until `serve` runs) or [`Supervisor::start_serving`] is
    /// called. Checks that come before wait in the socket's queue.
    pub fn serve_later(&mut self, listening: RawFd, serve: Box<dyn FnOnce()>) {
        self.serve = Some(serve);
        self.serve_fd = Some(listening);
    }

    /// Starts serving the control socket, if that is still to do: before
    /// anything that can take a while.
    pub fn start_serving(&mut self) {
        self.serve_fd = None;
        if let Some(serve) = self.serve.take() {
            serve();
        }
    }

    /// Where the control socket's thread asks for `cmd:` probe runs.
    pub fn probe_channel(&self) -> Arc<Channel> {
        self.probes.channel().clone()
    }

    /// Enables `cmd:` probes, once initd runs as the app user.
    pub fn set_probe_command(&mut self, spec: cmdprobe::Spec) {
        self.probes.configure(spec);
    }

    /// Readable while a probe run is wanted; for loops that sleep on their
    /// own (dev mode), with [`Supervisor::service_probes`].
    pub fn probe_wake_fd(&self) -> BorrowedFd<'_> {
        self.probes.wake_fd()
    }

    /// Starts wanted probe runs and ends overdue ones.
    pub fn service_probes(&mut self, now: Instant) {
        self.probes.service(now);
    }

    /// When the running probe must be killed, if one runs.
    pub fn probe_deadline(&self) -> Option<Instant> {
        self.probes.deadline()
    }

    /// Takes a reaped child's status if it was a probe.
    pub fn probe_reaped(&mut self, pid: Pid, fate: Fate) -> bool {
        self.probes.reaped(pid, fate)
    }

    /// What `initd check` reports; the pipeline sets the phases before the
    /// server, the supervisor those of the stop.
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Readable whenever a signal is pending: a wait outside this loop
    /// (for a dependency, a lock) polls it too, and returns to let
    /// [`Supervisor::handle_pending`] act on it.
    pub fn signal_fd(&self) -> BorrowedFd<'_> {
        self.signals.as_fd()
    }

    /// Reads the pending signals without acting on them, for a loop that
    /// applies its own rules (dev mode supervises several children).
    pub fn read_signals(&mut self) -> Vec<Signal> {
        let mut out = Vec::new();
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => out.extend(Signal::try_from(info.ssi_signo as i32).ok()),
                Ok(None) => return out,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    warn!("reading signals failed: {err}");
                    return out;
                }
            }
        }
    }

    /// The stop signal received so far, if any.
    pub fn stop_requested(&self) -> Option<Signal> {
        self.stop.map(|s| s.sent)
    }

    /// Acts on pending signals and reaps, without blocking. Only between
    /// children: while one runs, [`Supervisor::run_step`] owns the reaping,
    /// and reaping here would lose its exit status.
    pub fn handle_pending(&mut self) {
        debug_assert!(self.main.is_none(), "handle_pending while a child runs");
        self.drain_signals();
        self.probes.service(Instant::now());
        let probes = &mut self.probes;
        self.children_left = reaper::reap(Pid::from_raw(0), |pid, fate| {
            probes.reaped(pid, fate);
        })
        .children_left;
    }

    /// Supervises `pid` until it ends, forwarding signals to it, and returns
    /// how it ended. Processes it leaves behind are not waited for here.
    pub fn run_step(&mut self, pid: Pid) -> Fate {
        self.main = Some(pid);
        loop {
            self.sleep();
            self.check_deadline();
            self.drain_signals();
            self.probes.service(Instant::now());
            let probes = &mut self.probes;
            let pass = reaper::reap(pid, |pid, fate| {
                probes.reaped(pid, fate);
            });
            self.children_left = pass.children_left;
            if pass.orphans > 0 {
                debug!(count = pass.orphans, "reaped orphans");
            }
            if let Some(fate) = pass.main {
                self.main = None;
                return fate;
            }
        }
    }

    /// Supervises the main child to its end, then whatever it left behind,
    /// and returns initd's exit status.
    pub fn run_main(&mut self, pid: Pid) -> i32 {
        self.status.set_main(Some(pid.as_raw() as u32));
        self.in_main = true;
        let fate = self.run_step(pid);
        self.in_main = false;
        self.drain_until = None;
        self.status.set_main(None);
        self.status.set_phase(
            Phase::Stopping,
            format!("the main child {}; stopping", describe(fate)),
        );
        match fate {
            // A command that succeeded needs no epitaph among its output.
            Fate::Exited(0) => debug!("main child exited with status 0"),
            Fate::Exited(code) => info!("main child exited with status {code}"),
            Fate::Signaled(sig) => info!("main child was killed by {}", short_name(sig)),
        }
        self.finish(Some(fate))
    }

    /// Ends initd's work: stops what is left (stop signal, the grace period,
    /// SIGKILL) and returns the exit status for the last child's `fate`, or,
    /// when a stop came while no child ran, 128+N for its signal.
    pub fn finish(&mut self, fate: Option<Fate>) -> i32 {
        self.stop_leftovers();
        let keep = self.policy.keep_signal_status;
        match (fate, self.stop) {
            (Some(fate), stop) => exit::code(fate, stop, keep),
            (None, Some(stop)) => 128 + stop.sent as i32,
            (None, None) => 0,
        }
    }

    fn stop_leftovers(&mut self) {
        self.handle_pending();
        if !self.children_left {
            return;
        }
        if !self.killed_all {
            // Daemonised grandchildren get the same courtesy as the main
            // child: the stop signal, the grace period, and only then
            // SIGKILL. Within a stop already under way the original deadline
            // stands, so the whole stop still fits inside Docker's timeout.
            let sig = self
                .stop
                .map(|s| s.sent)
                .unwrap_or_else(|| self.policy.stop_signal());
            let deadline = *self
                .deadline
                .get_or_insert_with(|| Instant::now() + self.policy.stop_timeout);
            info!(
                "stopping leftover processes: {}, SIGKILL in {}",
                short_name(sig),
                human(deadline.saturating_duration_since(Instant::now()))
            );
            self.signal_all(sig);
        }
        while self.children_left {
            self.sleep();
            self.check_deadline();
            self.handle_pending();
        }
    }

    /// Blocks until a signal is pending, a probe is wanted, a first client
    /// connects to the control socket, or the drain, the stop or a probe is
    /// due.
    fn sleep(&mut self) {
        let due = [self.deadline, self.drain_until, self.probes.deadline()]
            .into_iter()
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
        // SAFETY: `serve_fd` is the listening socket owned by the pending
        // `serve` closure, open until that runs, which also clears it.
        let listening = self.serve_fd.map(|fd| unsafe { BorrowedFd::borrow_raw(fd) });
        let mut fds = vec![
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.probes.wake_fd(), PollFlags::POLLIN),
        ];
        if let Some(fd) = listening {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => warn!("poll failed: {err}"),
        }
        let client_waits = listening.is_some() && fds[2].revents().is_some_and(|r| !r.is_empty());
        drop(fds);
        if client_waits {
            self.start_serving();
        }
    }

    fn drain_signals(&mut self) {
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                        self.on_signal(sig);
                    }
                }
                Ok(None) => return,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    warn!("reading signals failed: {err}");
                    return;
                }
            }
        }
    }

    fn on_signal(&mut self, received: Signal) {
        match action(received, &self.policy.map) {
            Action::Reap => {}
            Action::Ignore => debug!(signal = short_name(received), "signal not forwarded"),
            Action::Forward(sig) => self.forward(sig),
            Action::Stop(sig) => {
                if self.stop.is_none() && self.drains() {
                    self.stop = Some(StopOutcome {
                        sent: sig,
                        killed: false,
                    });
                    let drain = self.policy.drain;
                    info!(
                        "draining on {}: checks fail for {}, then {} goes to the server (another {} stops it now)",
                        short_name(received),
                        human(drain),
                        short_name(sig),
                        short_name(received)
                    );
                    self.status.set_phase(
                        Phase::Draining,
                        format!(
                            "draining on {} for {}: the server is stopped afterwards",
                            short_name(received),
                            human(drain)
                        ),
                    );
                    self.drain_until = Some(Instant::now() + drain);
                    return;
                }
                if self.drain_until.is_some() {
                    info!("{} again: the drain is cut short", short_name(received));
                    self.end_drain();
                    return;
                }
                if self.stop.is_none() {
                    let grace = self.policy.stop_timeout;
                    match self.main {
                        Some(main) => info!(
                            "stopping: {} to pid {main}, SIGKILL in {}",
                            short_name(sig),
                            human(grace)
                        ),
                        None => info!("stopping on {}: nothing more will start", short_name(received)),
                    }
                    self.stop = Some(StopOutcome {
                        sent: sig,
                        killed: false,
                    });
                    self.status
                        .set_phase(Phase::Stopping, format!("stopping on {}", short_name(received)));
                    self.deadline = Some(Instant::now() + grace);
                }
                self.forward(sig);
                self.stop_adopted(sig);
            }
        }
    }

    /// Daemons the main child left behind were re-parented to initd: no
    /// parent is left to pass a stop on to them, so they get it from initd,
    /// with the same grace period as the main child. The main child's own
    /// children are not touched: a pre-fork server stops its workers itself.
    fn stop_adopted(&self, sig: Signal) {
        let Some(main) = self.main else {
            // Between children `forward` reached everything already.
            return;
        };
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

    /// Sends a signal on: to the running child (or its group), or, between
    /// children, to whatever earlier ones left behind.
    fn forward(&self, sig: Signal) {
        let Some(main) = self.main else {
            self.signal_all(sig);
            return;
        };
        let result = match self.policy.target {
            Target::Child => kill(main, sig),
            Target::Group => killpg(main, sig),
        };
        match result {
            Ok(()) => debug!(signal = short_name(sig), target = %self.policy.target, "forwarded"),
            // Already gone; its SIGCHLD is on its way.
            Err(Errno::ESRCH) => {}
            Err(err) => warn!("forwarding {} failed: {err}", short_name(sig)),
        }
    }

    /// Whether a first stop signal starts a drain: while the main command
    /// runs, with a drain configured.
    fn drains(&self) -> bool {
        self.in_main && self.main.is_some() && !self.policy.drain.is_zero()
    }

    /// The drain is over: the held-back stop signal goes to the main child
    /// and the grace period starts.
    fn end_drain(&mut self) {
        self.drain_until = None;
        let Some(stop) = self.stop else { return };
        let grace = self.policy.stop_timeout;
        if let Some(main) = self.main {
            info!(
                "stopping: {} to pid {main}, SIGKILL in {}",
                short_name(stop.sent),
                human(grace)
            );
        }
        self.status.set_phase(
            Phase::Stopping,
            format!("stopping: {} sent to the server", short_name(stop.sent)),
        );
        self.deadline = Some(Instant::now() + grace);
        self.forward(stop.sent);
    }

    fn check_deadline(&mut self) {
        if self.drain_until.is_some_and(|d| Instant::now() >= d) {
            self.end_drain();
        }
        if self.deadline.is_none_or(|d| Instant::now() < d) {
            return;
        }
        self.deadline = None;
        match self.main {
            Some(main) => {
                warn!("grace period over; sending SIGKILL to pid {main} and everything left");
                if let Some(stop) = self.stop.as_mut() {
                    stop.killed = true;
                }
            }
            None => warn!("grace period over; sending SIGKILL to the leftover processes"),
        }
        self.signal_all(Signal::SIGKILL);
        self.killed_all = true;
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

fn describe(fate: Fate) -> String {
    match fate {
        Fate::Exited(code) => format!("exited with status {code}"),
        Fate::Signaled(sig) => format!("was killed by {}", short_name(sig)),
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
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(8)), "8s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
