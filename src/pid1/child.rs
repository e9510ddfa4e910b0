//! Starting the main child: its own process group, the terminal's
//! foreground when there is one, and a clean signal mask.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::Pid;

/// Whether stdin is a terminal whose foreground initd may hand over: an
/// interactive `docker run -it`.
pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// How a child is set up between fork and exec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Setup {
    /// Take the terminal's foreground (stdin is a terminal).
    pub foreground: bool,
    /// Set PR_SET_NO_NEW_PRIVS: from then on no exec can add privileges
    /// (setuid and setgid bits and file capabilities are ignored).
    pub no_new_privs: bool,
}

/// Builds the command for `program` (already resolved) with `argv[0]` as the
/// user typed it. The child gets its own process group so signals can reach
/// the group without reaching initd, and, with `setup.foreground`, takes the
/// terminal so Ctrl-C and job control act on it rather than on initd.
pub fn command(program: &Path, argv: &[OsString], setup: Setup) -> Command {
    let Setup {
        foreground,
        no_new_privs,
    } = setup;
    let mut cmd = Command::new(program);
    if let Some((arg0, args)) = argv.split_first() {
        cmd.arg0(arg0).args(args);
    }
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe system calls, with no allocation.
    unsafe {
        cmd.pre_exec(move || {
            if foreground {
                // Still under initd's mask here, so SIGTTOU is blocked and a
                // background group may take the terminal. ENOTTY: stdin is a
                // terminal but not our controlling one; nothing to hand over.
                if libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid()) != 0 {
                    let err = io::Error::last_os_error();
                    if !matches!(err.raw_os_error(), Some(libc::ENOTTY | libc::ENXIO | libc::EPERM)) {
                        return Err(err);
                    }
                }
            }
            // The flag is inherited by everything the child starts and can
            // never be cleared, which is the point.
            if no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The mask survives exec: without this the child would start
            // with every signal blocked and ignore `docker stop`.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Takes the terminal's foreground back for initd's own process group once
/// the child it was handed to has ended, so that the next Ctrl-C reaches
/// initd rather than a group that no longer exists. (initd blocks SIGTTOU,
/// so it may do this from the background.)
pub fn reclaim_terminal() -> io::Result<()> {
    // SAFETY: plain system calls on stdin, no memory passed.
    if unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts the command, returning the child's pid (which is also its process
/// group id).
pub fn spawn(mut cmd: Command) -> io::Result<Pid> {
    let child = cmd.spawn()?;
    // The std handle is dropped on purpose: the reaper collects every child
    // with waitpid(-1), and a second waiter would race it.
    Ok(Pid::from_raw(child.id() as i32))
}
