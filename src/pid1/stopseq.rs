//! The supervisor's own state: whether a stop was asked for and how far it
//! got — running, draining until a moment, stopping with a deadline, or
//! killed. Pure: the loop feeds it the time and the stop signals it
//! receives, and carries out the [`Effect`]s it returns, so the whole
//! drain / stop / SIGKILL sequence is unit-tested with a fake clock and a
//! fake process table.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::pid1::exit::StopOutcome;

/// Where the supervisor is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No stop asked for (and none needed yet).
    Running,
    /// A stop arrived while the server runs: checks fail until `until`,
    /// then `signal` goes to the server.
    Draining { signal: Signal, until: Instant },
    /// `signal` went out; SIGKILL follows at `deadline`. `asked`: a stop
    /// signal arrived (rather than the main child ending with processes
    /// left behind).
    Stopping {
        signal: Signal,
        deadline: Instant,
        asked: bool,
    },
    /// The grace period ran out and SIGKILL went to everything.
    /// `main_killed`: the main child was still running then.
    Killed {
        signal: Signal,
        asked: bool,
        main_killed: bool,
    },
}

/// What the loop must do for the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Ask the supervised set to stop with this signal.
    Ask(Signal),
    /// SIGKILL to every process initd is responsible for.
    KillAll,
}

/// How a drain or stop was reached; for the log line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The first stop signal: checks fail for the drain period.
    DrainStarted,
    /// A second stop signal cut the drain short.
    DrainCut,
    /// The drain period is over.
    DrainOver,
    /// The stop signal went out; the grace period runs.
    Stopping,
    /// A stop signal while stopping: passed on again, deadline unchanged.
    Again,
    /// The grace period is over.
    Killing,
}

#[derive(Debug, Clone)]
pub struct StopSeq {
    phase: Phase,
    grace: Duration,
    drain: Duration,
}

impl StopSeq {
    pub fn new(grace: Duration, drain: Duration) -> StopSeq {
        StopSeq {
            phase: Phase::Running,
            grace,
            drain,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    pub fn drain(&self) -> Duration {
        self.drain
    }

    /// A stop signal arrived; `sig` is what it maps to. `can_drain`: the
    /// main command runs and may be drained first.
    pub fn request(&mut self, now: Instant, sig: Signal, can_drain: bool) -> (Step, Option<Effect>) {
        match self.phase {
            Phase::Running if can_drain && !self.drain.is_zero() => {
                self.phase = Phase::Draining {
                    signal: sig,
                    until: now + self.drain,
                };
                (Step::DrainStarted, None)
            }
            Phase::Running => {
                self.phase = Phase::Stopping {
                    signal: sig,
                    deadline: now + self.grace,
                    asked: true,
                };
                (Step::Stopping, Some(Effect::Ask(sig)))
            }
            // The signal held back is the one that goes out.
            Phase::Draining { signal, .. } => {
                self.stop_now(now, signal);
                (Step::DrainCut, Some(Effect::Ask(signal)))
            }
            Phase::Stopping {
                signal,
                deadline,
                asked: false,
            } => {
                // Stopping leftovers when a stop signal came: it is now a
                // stop that was asked for, within the deadline already set.
                self.phase = Phase::Stopping {
                    signal,
                    deadline,
                    asked: true,
                };
                (Step::Again, Some(Effect::Ask(sig)))
            }
            Phase::Stopping { .. } | Phase::Killed { .. } => (Step::Again, Some(Effect::Ask(sig))),
        }
    }

    /// The main child ended and processes are left: they get `sig` and the
    /// grace period, unless a stop is under way, whose deadline stands.
    pub fn leftovers(&mut self, now: Instant, sig: Signal) -> Option<Effect> {
        match self.phase {
            Phase::Running => {
                self.phase = Phase::Stopping {
                    signal: sig,
                    deadline: now + self.grace,
                    asked: false,
                };
                Some(Effect::Ask(sig))
            }
            Phase::Draining { signal, .. } => {
                self.stop_now(now, signal);
                Some(Effect::Ask(signal))
            }
            Phase::Stopping { signal, .. } => Some(Effect::Ask(signal)),
            Phase::Killed { .. } => None,
        }
    }

    /// Time passed: ends a drain or a grace period that is over.
    /// `main_running`: whether the main child is still there.
    pub fn tick(&mut self, now: Instant, main_running: bool) -> Option<(Step, Effect)> {
        match self.phase {
            Phase::Draining { signal, until } if now >= until => {
                self.stop_now(now, signal);
                Some((Step::DrainOver, Effect::Ask(signal)))
            }
            Phase::Stopping {
                signal,
                deadline,
                asked,
            } if now >= deadline => {
                self.phase = Phase::Killed {
                    signal,
                    asked,
                    main_killed: main_running,
                };
                Some((Step::Killing, Effect::KillAll))
            }
            _ => None,
        }
    }

    /// When [`StopSeq::tick`] has something to do.
    pub fn due(&self) -> Option<Instant> {
        match self.phase {
            Phase::Draining { until, .. } => Some(until),
            Phase::Stopping { deadline, .. } => Some(deadline),
            Phase::Running | Phase::Killed { .. } => None,
        }
    }

    /// The stop asked for, if one was: the signal and whether the main
    /// child had to be killed. Not set by stopping leftovers alone.
    pub fn outcome(&self) -> Option<StopOutcome> {
        match self.phase {
            Phase::Running => None,
            Phase::Draining { signal, .. } => Some(StopOutcome {
                sent: signal,
                killed: false,
            }),
            Phase::Stopping { signal, asked, .. } => asked.then_some(StopOutcome {
                sent: signal,
                killed: false,
            }),
            Phase::Killed {
                signal,
                asked,
                main_killed,
            } => asked.then_some(StopOutcome {
                sent: signal,
                killed: main_killed,
            }),
        }
    }

    fn stop_now(&mut self, now: Instant, signal: Signal) {
        self.phase = Phase::Stopping {
            signal,
            deadline: now + self.grace,
            asked: true,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Signal::{SIGINT, SIGKILL, SIGQUIT, SIGTERM};

    /// Processes that each end on some signals and ignore the rest.
    struct Table {
        procs: Vec<Proc>,
    }

    struct Proc {
        honours: &'static [Signal],
        got: Vec<Signal>,
        alive: bool,
    }

    impl Table {
        fn new(honours: &[&'static [Signal]]) -> Table {
            Table {
                procs: honours
                    .iter()
                    .map(|h| Proc {
                        honours: h,
                        got: Vec::new(),
                        alive: true,
                    })
                    .collect(),
            }
        }

        fn apply(&mut self, effect: Option<Effect>) {
            let sig = match effect {
                None => return,
                Some(Effect::Ask(sig)) => sig,
                Some(Effect::KillAll) => SIGKILL,
            };
            for p in self.procs.iter_mut().filter(|p| p.alive) {
                p.got.push(sig);
                if sig == SIGKILL || p.honours.contains(&sig) {
                    p.alive = false;
                }
            }
        }

        fn alive(&self) -> usize {
            self.procs.iter().filter(|p| p.alive).count()
        }
    }

    struct Clock(Instant);

    impl Clock {
        fn advance(&mut self, by: Duration) -> Instant {
            self.0 += by;
            self.0
        }
    }

    const GRACE: Duration = Duration::from_secs(10);
    const DRAIN: Duration = Duration::from_secs(5);

    #[test]
    fn a_stop_honoured_in_time_needs_no_sigkill() {
        let mut clock = Clock(Instant::now());
        let mut seq = StopSeq::new(GRACE, Duration::ZERO);
        let mut table = Table::new(&[&[SIGTERM], &[SIGTERM, SIGINT]]);
        let (step, effect) = seq.request(clock.0, SIGTERM, true);
        assert_eq!(step, Step::Stopping);
        table.apply(effect);
        assert_eq!(table.alive(), 0);
        assert_eq!(seq.due(), Some(clock.0 + GRACE));
        assert_eq!(seq.tick(clock.advance(Duration::from_secs(1)), false), None);
        assert_eq!(
            seq.outcome(),
            Some(StopOutcome {
                sent: SIGTERM,
                killed: false
            })
        );
    }

    #[test]
    fn what_ignores_the_stop_is_killed_at_the_deadline_and_not_before() {
        let mut clock = Clock(Instant::now());
        let mut seq = StopSeq::new(GRACE, Duration::ZERO);
        let mut table = Table::new(&[&[], &[SIGINT]]);
        let (_, effect) = seq.request(clock.0, SIGINT, false);
        table.apply(effect);
        assert_eq!(table.alive(), 1);
        assert_eq!(
            seq.tick(clock.advance(GRACE - Duration::from_millis(1)), true),
            None
        );
        let (step, effect) = seq.tick(clock.advance(Duration::from_millis(1)), true).unwrap();
        assert_eq!(step, Step::Killing);
        table.apply(Some(effect));
        assert_eq!(table.alive(), 0);
        assert_eq!(table.procs[0].got, [SIGINT, SIGKILL]);
        assert_eq!(seq.due(), None);
        assert!(matches!(
            seq.phase(),
            Phase::Killed {
                main_killed: true,
                ..
            }
        ));
        assert_eq!(
            seq.outcome(),
            Some(StopOutcome {
                sent: SIGINT,
                killed: true
            })
        );
    }

    #[test]
    fn a_second_stop_signal_is_passed_on_without_moving_the_deadline() {
        let mut clock = Clock(Instant::now());
        let start = clock.0;
        let mut seq = StopSeq::new(GRACE, Duration::ZERO);
        seq.request(clock.0, SIGTERM, false);
        let (step, effect) = seq.request(clock.advance(Duration::from_secs(3)), SIGINT, false);
        assert_eq!((step, effect), (Step::Again, Some(Effect::Ask(SIGINT))));
        assert_eq!(seq.due(), Some(start + GRACE));
    }

    #[test]
    fn a_drain_holds_the_signal_back_until_it_is_over() {
        let mut clock = Clock(Instant::now());
        let mut seq = StopSeq::new(GRACE, DRAIN);
        let mut table = Table::new(&[&[SIGQUIT]]);
        let (step, effect) = seq.request(clock.0, SIGQUIT, true);
        assert_eq!((step, effect), (Step::DrainStarted, None));
        assert!(matches!(seq.phase(), Phase::Draining { .. }));
        // Checks already fail: the stop counts as asked for.
        assert_eq!(seq.outcome().map(|o| o.sent), Some(SIGQUIT));
        assert_eq!(seq.tick(clock.advance(DRAIN / 2), true), None);
        table.apply(None);
        assert_eq!(table.alive(), 1);
        let (step, effect) = seq.tick(clock.advance(DRAIN / 2), true).unwrap();
        assert_eq!(step, Step::DrainOver);
        table.apply(Some(effect));
        assert_eq!(table.alive(), 0);
        // The grace period starts when the signal goes out.
        assert_eq!(seq.due(), Some(clock.0 + GRACE));
    }

    #[test]
    fn a_second_stop_signal_cuts_the_drain_short_with_the_first_signal() {
        let mut clock = Clock(Instant::now());
        let mut seq = StopSeq::new(GRACE, DRAIN);
        seq.request(clock.0, SIGQUIT, true);
        let (step, effect) = seq.request(clock.advance(Duration::from_secs(1)), SIGTERM, true);
        assert_eq!((step, effect), (Step::DrainCut, Some(Effect::Ask(SIGQUIT))));
        assert_eq!(seq.due(), Some(clock.0 + GRACE));
    }

    #[test]
    fn no_drain_without_a_server_or_a_drain_period() {
        let now = Instant::now();
        let mut seq = StopSeq::new(GRACE, DRAIN);
        assert_eq!(seq.request(now, SIGTERM, false).0, Step::Stopping);
        let mut seq = StopSeq::new(GRACE, Duration::ZERO);
        assert_eq!(seq.request(now, SIGTERM, true).0, Step::Stopping);
    }

    #[test]
    fn leftovers_get_the_stop_signal_and_the_grace_period_but_it_is_no_asked_stop() {
        let mut clock = Clock(Instant::now());
        let mut seq = StopSeq::new(GRACE, Duration::ZERO);
        let mut table = Table::new(&[&[], &[SIGTERM]]);
        table.apply(seq.leftovers(clock.0, SIGTERM));
        assert_eq!(table.alive(), 1);
        assert_eq!(seq.outcome(), None);
        let (_, effect) = seq.tick(clock.advance(GRACE), false).unwrap();
        table.apply(Some(effect));
        assert_eq!(table.alive(), 0);
        // Killing leftovers says nothing about the main child.
        assert_eq!(seq.outcome(), None);
    }

    #[test]
    fn leftovers_during_a_stop_keep_its_deadline_and_signal() {
        let mut clock = Clock(Instant::now());
        let start = clock.0;
        let mut seq = StopSeq::new(GRACE, Duration::ZERO);
        seq.request(clock.0, SIGINT, false);
        let effect = seq.leftovers(clock.advance(Duration::from_secs(4)), SIGTERM);
        assert_eq!(effect, Some(Effect::Ask(SIGINT)));
        assert_eq!(seq.due(), Some(start + GRACE));
        seq.tick(clock.advance(GRACE), false);
        assert_eq!(seq.leftovers(clock.0, SIGTERM), None);
    }

    #[test]
    fn a_stop_signal_while_stopping_leftovers_makes_it_an_asked_stop() {
        let mut clock = Clock(Instant::now());
        let start = clock.0;
        let mut seq = StopSeq::new(GRACE, DRAIN);
        seq.leftovers(clock.0, SIGTERM);
        let (step, _) = seq.request(clock.advance(Duration::from_secs(1)), SIGTERM, false);
        assert_eq!(step, Step::Again);
        assert_eq!(seq.outcome().map(|o| o.sent), Some(SIGTERM));
        assert_eq!(seq.due(), Some(start + GRACE));
    }
}
