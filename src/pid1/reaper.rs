//! Reaping: collecting the exit status of every child, whether it is the
//! main child or an orphan the kernel re-parented to initd.

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::pid1::exit::Fate;

/// What one reaping pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// The main child's end, if it ended in this pass.
    pub main: Option<Fate>,
    /// How many other processes were reaped.
    pub orphans: u32,
    /// Whether any child is still alive. With none left, no descendant is
    /// left either: every live descendant has a live ancestor that is our
    /// child, or it would have been re-parented to us.
    pub children_left: bool,
}

/// Reaps every child that has ended, without blocking. Children other than
/// `main` are counted as orphans and shown to `other`, which may know them
/// (a health probe).
pub fn reap(main: Pid, mut other: impl FnMut(Pid, Fate)) -> Pass {
    let mut pass = Pass::default();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                pass.children_left = true;
                return pass;
            }
            Ok(status) => {
                let fate = match status {
                    WaitStatus::Exited(_, code) => Some(Fate::Exited(code)),
                    WaitStatus::Signaled(_, sig, _) => Some(Fate::Signaled(sig)),
                    _ => None,
                };
                match (status.pid(), fate) {
                    (Some(pid), Some(fate)) if pid == main => pass.main = Some(fate),
                    (Some(pid), Some(fate)) => {
                        pass.orphans += 1;
                        other(pid, fate);
                    }
                    _ => {}
                }
            }
            Err(Errno::EINTR) => continue,
            // ECHILD: nobody left. Any other error cannot happen with these
            // arguments; treat it as "nothing to reap" rather than spin.
            Err(_) => return pass,
        }
    }
}

/// Reaps every child that has ended, without blocking, and says which ended
/// how; for loops that supervise several children at once.
pub fn reap_any() -> (Vec<(Pid, Fate)>, bool) {
    let mut ended = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return (ended, true),
            Ok(WaitStatus::Exited(pid, code)) => ended.push((pid, Fate::Exited(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => ended.push((pid, Fate::Signaled(sig))),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return (ended, false),
        }
    }
}

/// When initd is not PID 1 (run from a shell, or under another init), ask
/// the kernel to re-parent orphaned descendants to initd anyway, so they are
/// still reaped and still stopped at the end.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}
