//! Signal names, the forwarding map (`INITD_SIGNAL_MAP`) and the signal mask
//! initd runs under.
//!
//! initd never installs signal handlers: every signal it cares about is
//! blocked and read from a signalfd in the supervisor's loop. That keeps all
//! logic in ordinary code (no async-signal-safety puzzles) and, as PID 1, is
//! the only way to receive signals whose default action the kernel would
//! otherwise discard for init.

use std::fmt;
use std::str::FromStr;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use thiserror::Error;

/// Signals raised synchronously by a fault in initd itself. Blocking them
/// would not stop the kernel from killing us, and catching them would hide a
/// bug, so they keep their default action (tini makes the same choice).
const FAULTS: [Signal; 7] = [
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

/// Signals that ask the container to stop. Docker sends TERM, a terminal INT,
/// and QUIT is the graceful stop of nginx and friends.
const STOPS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

pub fn is_stop(sig: Signal) -> bool {
    STOPS.contains(&sig)
}

/// Every signal initd takes over: all catchable standard signals but the
/// fault signals and SIGPIPE. SIGPIPE stays ignored (Rust's runtime default):
/// a blocked SIGPIPE raised by initd's own write to a closed stderr would
/// otherwise be read back and forwarded to the child as if someone sent it. SIGTTIN/SIGTTOU are included on purpose: while blocked, the
/// kernel treats them as ignored, so initd, once it has handed the terminal
/// to the child, can still write to it and take it back without being
/// stopped.
pub fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in Signal::iterator() {
        let reserved = matches!(sig, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGPIPE);
        if !reserved && !FAULTS.contains(&sig) {
            set.add(sig);
        }
    }
    set
}

/// Blocks every handled signal in the calling thread. Must run before the
/// first child is spawned so that no SIGCHLD or forwarded signal can slip
/// through between start-up and the first read of the signalfd.
pub fn block_handled() -> nix::Result<()> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None)
}

/// Parses `TERM`, `SIGTERM`, `sigterm` or a number such as `15`.
pub fn parse_signal(text: &str) -> Option<Signal> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok()
}

/// The short name users write: `TERM` for SIGTERM.
pub fn short_name(sig: Signal) -> &'static str {
    let name = sig.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

/// What a received signal becomes before it is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    To(Signal),
    Drop,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignalMapError {
    #[error("entry {entry:?} is not FROM:TO (e.g. TERM:QUIT or WINCH:none)")]
    Shape { entry: String },
    #[error("{name:?} is not a signal name or number (e.g. TERM, SIGUSR1, 10)")]
    UnknownSignal { name: String },
    #[error("{sig} cannot be caught, so it cannot be rewritten")]
    Uncatchable { sig: &'static str },
    #[error("entry {entry:?}: {}", why_not_forwarded(*.sig))]
    NotForwarded { entry: String, sig: Signal },
    #[error("{sig} is mapped twice")]
    Duplicate { sig: &'static str },
}

/// `INITD_SIGNAL_MAP`: rewrites applied to received signals before they are
/// forwarded, e.g. `TERM:QUIT,WINCH:none`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalMap {
    entries: Vec<(Signal, Mapped)>,
}

impl SignalMap {
    pub fn map(&self, sig: Signal) -> Mapped {
        self.entries
            .iter()
            .find(|(from, _)| *from == sig)
            .map(|(_, to)| *to)
            .unwrap_or(Mapped::To(sig))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries that are allowed but change what `docker stop` does.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.map(Signal::SIGTERM) == Mapped::Drop {
            out.push(
                "INITD_SIGNAL_MAP drops TERM (TERM:none): `docker stop` and Kubernetes no longer \
                 stop the app gracefully, they SIGKILL it after their grace period"
                    .to_string(),
            );
        }
        out
    }
}

impl FromStr for SignalMap {
    type Err = SignalMapError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut entries: Vec<(Signal, Mapped)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (from, to) = entry.split_once(':').ok_or_else(|| SignalMapError::Shape {
                entry: entry.to_string(),
            })?;
            let from_sig = parse_signal(from).ok_or_else(|| SignalMapError::UnknownSignal {
                name: from.trim().to_string(),
            })?;
            if NOT_FORWARDED.contains(&from_sig) {
                return Err(SignalMapError::NotForwarded {
                    entry: entry.to_string(),
                    sig: from_sig,
                });
            }
            let from = from_sig;
            let to = if to.trim().eq_ignore_ascii_case("none") {
                Mapped::Drop
            } else {
                Mapped::To(catchable(to)?)
            };
            if entries.iter().any(|(f, _)| *f == from) {
                return Err(SignalMapError::Duplicate {
                    sig: short_name(from),
                });
            }
            entries.push((from, to));
        }
        Ok(SignalMap { entries })
    }
}

/// Signals initd never forwards, so a map entry FROM one of them could never
/// apply: refused at start rather than silently doing nothing.
pub const NOT_FORWARDED: [Signal; 13] = [
    Signal::SIGCHLD,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGPIPE,
    Signal::SIGKILL,
    Signal::SIGSTOP,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGABRT,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGSEGV,
    Signal::SIGSYS,
];

/// Why `sig` is never forwarded (docs/pid1.md says the same).
pub fn why_not_forwarded(sig: Signal) -> String {
    let name = short_name(sig);
    match sig {
        Signal::SIGKILL | Signal::SIGSTOP => {
            format!("{name} cannot be caught, so initd never receives it to forward")
        }
        Signal::SIGCHLD => format!("initd reaps children on {name}; it is never forwarded"),
        Signal::SIGTTIN | Signal::SIGTTOU => {
            format!("the terminal sends {name} about initd's own access to it; it is never forwarded")
        }
        Signal::SIGPIPE => {
            format!("initd ignores {name} (its own write to a closed pipe raises it); it is never forwarded")
        }
        _ => format!(
            "{name} is a fault signal: it keeps its default action so a fault in initd is not \
             hidden, and it is never forwarded"
        ),
    }
}

fn catchable(name: &str) -> Result<Signal, SignalMapError> {
    let sig = parse_signal(name).ok_or_else(|| SignalMapError::UnknownSignal {
        name: name.trim().to_string(),
    })?;
    if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
        return Err(SignalMapError::Uncatchable { sig: short_name(sig) });
    }
    Ok(sig)
}

impl fmt::Display for SignalMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|(from, to)| match to {
                Mapped::To(to) => format!("{}:{}", short_name(*from), short_name(*to)),
                Mapped::Drop => format!("{}:none", short_name(*from)),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Who receives forwarded signals (`INITD_SIGNAL_TARGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The main child only: a pre-fork server's master coordinates its own
    /// workers' graceful stop, and signalling the workers behind its back
    /// breaks that.
    #[default]
    Child,
    /// The child's whole process group, for shell wrappers that do not pass
    /// signals on.
    Group,
}

impl FromStr for Target {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text.trim().to_ascii_lowercase().as_str() {
            "child" => Ok(Target::Child),
            "group" => Ok(Target::Group),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Child => "child",
            Target::Group => "group",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_in_every_spelling() {
        assert_eq!(parse_signal("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("sigterm"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal(" SIGUSR1 "), Some(Signal::SIGUSR1));
        assert_eq!(parse_signal("15"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("TERMINATE"), None);
        assert_eq!(parse_signal("99"), None);
        assert_eq!(parse_signal(""), None);
    }

    #[test]
    fn map_rewrites_drops_and_passes_through() {
        let map: SignalMap = "TERM:QUIT, WINCH:none".parse().unwrap();
        assert_eq!(map.map(Signal::SIGTERM), Mapped::To(Signal::SIGQUIT));
        assert_eq!(map.map(Signal::SIGWINCH), Mapped::Drop);
        assert_eq!(map.map(Signal::SIGHUP), Mapped::To(Signal::SIGHUP));
        assert_eq!(map.to_string(), "TERM:QUIT,WINCH:none");
    }

    #[test]
    fn empty_map_is_identity() {
        let map: SignalMap = "".parse().unwrap();
        assert!(map.is_empty());
        assert_eq!(map.map(Signal::SIGINT), Mapped::To(Signal::SIGINT));
    }

    #[test]
    fn map_errors_name_the_bad_part() {
        assert_eq!(
            "TERM".parse::<SignalMap>(),
            Err(SignalMapError::Shape { entry: "TERM".into() })
        );
        assert_eq!(
            "TERM:QUITE".parse::<SignalMap>(),
            Err(SignalMapError::UnknownSignal { name: "QUITE".into() })
        );
        assert_eq!(
            "TERM:KILL".parse::<SignalMap>(),
            Err(SignalMapError::Uncatchable { sig: "KILL" })
        );
        assert_eq!(
            "TERM:QUIT,TERM:INT".parse::<SignalMap>(),
            Err(SignalMapError::Duplicate { sig: "TERM" })
        );
    }

    #[test]
    fn signals_initd_never_forwards_are_refused_as_from() {
        for sig in NOT_FORWARDED {
            for entry in [
                format!("{}:TERM", short_name(sig)),
                format!("SIG{}:none", short_name(sig)),
                format!("{}:USR1", sig as i32),
            ] {
                let text = format!("HUP:USR1, {entry}");
                match text.parse::<SignalMap>() {
                    Err(SignalMapError::NotForwarded { entry: e, sig: s }) => {
                        assert_eq!((e.as_str(), s), (entry.as_str(), sig));
                    }
                    other => panic!("{text}: {other:?}"),
                }
            }
        }
        let err = "CHLD:TERM".parse::<SignalMap>().unwrap_err().to_string();
        assert_eq!(
            err,
            "entry \"CHLD:TERM\": initd reaps children on CHLD; it is never forwarded"
        );
        let err = "SEGV:TERM".parse::<SignalMap>().unwrap_err().to_string();
        assert!(err.contains("SEGV is a fault signal"), "{err}");
        // The others are all still allowed as FROM.
        for sig in Signal::iterator().filter(|s| !NOT_FORWARDED.contains(s)) {
            let text = format!("{}:none", short_name(sig));
            assert!(text.parse::<SignalMap>().is_ok(), "{text}");
        }
    }

    #[test]
    fn dropping_term_is_allowed_with_a_warning() {
        let map: SignalMap = "TERM:none".parse().unwrap();
        assert_eq!(map.warnings().len(), 1);
        assert!(map.warnings()[0].contains("SIGKILL"));
        assert!(
            "TERM:QUIT,WINCH:none"
                .parse::<SignalMap>()
                .unwrap()
                .warnings()
                .is_empty()
        );
    }

    #[test]
    fn handled_set_leaves_faults_and_uncatchables_alone() {
        let set = handled_set();
        assert!(set.contains(Signal::SIGTERM));
        assert!(set.contains(Signal::SIGCHLD));
        assert!(set.contains(Signal::SIGTTOU));
        assert!(set.contains(Signal::SIGWINCH));
        assert!(!set.contains(Signal::SIGSEGV));
        assert!(!set.contains(Signal::SIGKILL));
        assert!(!set.contains(Signal::SIGSTOP));
        assert!(!set.contains(Signal::SIGPIPE));
    }

    #[test]
    fn target_parses() {
        assert_eq!("group".parse(), Ok(Target::Group));
        assert_eq!("Child".parse(), Ok(Target::Child));
        assert_eq!("pgrp".parse::<Target>(), Err(()));
    }
}

/// Property tests for `INITD_SIGNAL_MAP` and signal names: any text parses
/// or is refused with a reason, never a panic; a map prints as it parses.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn catchable() -> impl Strategy<Value = Signal> {
        proptest::sample::select(
            Signal::iterator()
                .filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP))
                .collect::<Vec<_>>(),
        )
    }

    fn forwardable() -> impl Strategy<Value = Signal> {
        proptest::sample::select(
            Signal::iterator()
                .filter(|s| !NOT_FORWARDED.contains(s))
                .collect::<Vec<_>>(),
        )
    }

    /// A name as users spell it: `TERM`, `SIGTERM`, `sigterm`, ` 15 `.
    fn spelling(sig: Signal) -> impl Strategy<Value = String> {
        prop_oneof![
            Just(short_name(sig).to_string()),
            Just(sig.as_str().to_string()),
            Just(sig.as_str().to_ascii_lowercase()),
            Just(format!(" {} ", sig as i32)),
        ]
    }

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_text_parses_or_is_refused_with_a_reason(text in any::<String>()) {
            match text.parse::<SignalMap>() {
                Ok(map) => {
                    // Whatever parsed prints in a form that parses the same.
                    prop_assert_eq!(map.to_string().parse::<SignalMap>(), Ok(map));
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        #[test]
        fn map_shaped_text_never_panics(text in "([A-Za-z0-9 ]{0,8}(:[A-Za-z0-9 ]{0,8})?,?){0,6}") {
            let _ = text.parse::<SignalMap>();
        }

        #[test]
        fn every_spelling_of_every_signal_parses(
            (sig, text) in catchable().prop_flat_map(|s| (Just(s), spelling(s))),
        ) {
            prop_assert_eq!(parse_signal(&text), Some(sig));
        }

        #[test]
        fn distinct_entries_round_trip(
            entries in proptest::collection::vec((forwardable(), proptest::option::of(catchable())), 0..8),
        ) {
            let mut distinct: Vec<(Signal, Mapped)> = Vec::new();
            for (from, to) in entries {
                if !distinct.iter().any(|(f, _)| *f == from) {
                    distinct.push((from, to.map_or(Mapped::Drop, Mapped::To)));
                }
            }
            let text: Vec<String> = distinct
                .iter()
                .map(|(from, to)| match to {
                    Mapped::To(to) => format!("{}:{}", short_name(*from), to.as_str()),
                    Mapped::Drop => format!("{}:none", short_name(*from)),
                })
                .collect();
            let map: SignalMap = text.join(",").parse().unwrap();
            for (from, to) in distinct {
                prop_assert_eq!(map.map(from), to);
            }
        }
    }
}
