//! Exit codes: how the main child's fate becomes initd's exit status, and the
//! codes initd uses for its own failures (sysexits-style, so they never
//! collide with 126/127 or the 128+N range of a signalled child).

use nix::sys::signal::Signal;

/// Bad command line.
pub const USAGE: i32 = 2;
/// A service named in INITD_WAIT_FOR did not come up in time, or the
/// migration lock was not had in time (EX_UNAVAILABLE).
pub const UNAVAILABLE: i32 = 69;
/// initd itself failed (a syscall it cannot work without).
pub const INTERNAL: i32 = 70;
/// The app user cannot be set up or switched to (EX_NOPERM).
pub const NOPERM: i32 = 77;
/// Bad configuration: an unknown or malformed setting.
pub const CONFIG: i32 = 78;
/// The command was found but cannot be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;

/// The documented table, shared by `--help` and docs/pid1.md.
pub const TABLE: &str = "\
EXIT STATUS
    N        the main child's exit status
    128+N    the main child was killed by signal N: 143 after docker stop
             (SIGTERM), as tini, dumb-init and shells report it;
             INITD_STOP_EXIT=zero reports 0 when it died of the stop signal
             initd forwarded
    137      the child ignored the stop signal and was killed after the grace
             period
    2        bad command line
    69       a service in INITD_WAIT_FOR did not come up in INITD_WAIT_TIMEOUT,
             or the migration lock was not had in INITD_MIGRATE_LOCK_TIMEOUT
    70       internal error in initd (a system call it needs failed)
    77       the app user cannot be used (missing, root without
             INITD_ALLOW_ROOT, or initd cannot switch to it)
    78       bad configuration (unknown or malformed setting or secret)
    126      the command exists but cannot be executed
    127      the command was not found
    initd check exits 0 when healthy and 1 otherwise (also when it cannot
    ask, or is misused: never Docker's reserved 2); initd status exits 0
    when the supervisor answered, 1 when it could not be asked";

/// How the main child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Exited(i32),
    Signaled(Signal),
}

/// What initd knows about a stop it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopOutcome {
    /// The signal initd forwarded to ask the child to stop.
    pub sent: Signal,
    /// The grace period ran out and initd sent SIGKILL to the main child.
    pub killed: bool,
}

/// Maps the main child's fate to initd's exit status.
///
/// A child that dies of a signal gives 128+N, even the stop signal initd
/// forwarded (`keep_signal_status`, the default): that is what tini,
/// dumb-init and every shell report, and a Kubernetes Job whose pod is
/// evicted mid-run must not look `Completed`. With `INITD_STOP_EXIT=zero`
/// (`keep_signal_status` false) a child that died of the very stop signal
/// initd forwarded did what it was asked, and that is reported as 0.
pub fn code(fate: Fate, stop: Option<StopOutcome>, keep_signal_status: bool) -> i32 {
    match fate {
        Fate::Exited(code) => code,
        Fate::Signaled(Signal::SIGKILL) if stop.is_some_and(|s| s.killed) => 128 + 9,
        Fate::Signaled(sig) => {
            let honoured = stop.is_some_and(|s| s.sent == sig && !s.killed);
            if honoured && !keep_signal_status {
                0
            } else {
                128 + sig as i32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM_STOP: Option<StopOutcome> = Some(StopOutcome {
        sent: Signal::SIGTERM,
        killed: false,
    });

    #[test]
    fn exit_status_passes_through() {
        assert_eq!(code(Fate::Exited(0), None, false), 0);
        assert_eq!(code(Fate::Exited(3), None, false), 3);
        assert_eq!(code(Fate::Exited(3), TERM_STOP, false), 3);
    }

    #[test]
    fn unrequested_signal_death_is_128_plus_n() {
        assert_eq!(code(Fate::Signaled(Signal::SIGSEGV), None, false), 139);
        assert_eq!(code(Fate::Signaled(Signal::SIGTERM), None, false), 143);
        assert_eq!(code(Fate::Signaled(Signal::SIGKILL), None, false), 137);
    }

    #[test]
    fn honoured_stop_is_clean_unless_kept() {
        assert_eq!(code(Fate::Signaled(Signal::SIGTERM), TERM_STOP, false), 0);
        assert_eq!(code(Fate::Signaled(Signal::SIGTERM), TERM_STOP, true), 143);
    }

    #[test]
    fn dying_of_another_signal_during_a_stop_is_not_honouring_it() {
        assert_eq!(code(Fate::Signaled(Signal::SIGABRT), TERM_STOP, false), 134);
    }

    #[test]
    fn a_mapped_stop_is_honoured_by_the_mapped_signal() {
        let quit = Some(StopOutcome {
            sent: Signal::SIGQUIT,
            killed: false,
        });
        assert_eq!(code(Fate::Signaled(Signal::SIGQUIT), quit, false), 0);
        assert_eq!(code(Fate::Signaled(Signal::SIGTERM), quit, false), 143);
    }

    #[test]
    fn a_stop_that_needed_sigkill_is_137() {
        let killed = Some(StopOutcome {
            sent: Signal::SIGTERM,
            killed: true,
        });
        assert_eq!(code(Fate::Signaled(Signal::SIGKILL), killed, false), 137);
        assert_eq!(code(Fate::Signaled(Signal::SIGKILL), killed, true), 137);
    }
}
