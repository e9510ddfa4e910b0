//! Starting a command: its own process group, the terminal's
//! foreground when there is one, and a clean signal mask.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::unistd::Pid;

/// Whether stdin is a terminal whose foreground initd may hand over: an
/// interactive `docker run -it`.
pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Sets no_new_privs on initd itself, so that every command it starts
/// from now on inherits it: no exec can add privileges (setuid and setgid
/// bits and file capabilities are ignored). The flag can never be cleared,
/// which is the point. On initd rather than in each child: initd never
/// execs, and a child that needs no code between fork and exec is started
/// with posix_spawn (see [`spawn_process`]), which runs no code of ours
/// between fork and exec.
pub fn forbid_privilege_gain() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes the terminal's foreground back for initd's own process group once
/// the child it was handed to has ended, so that the next Ctrl-C reaches
/// initd rather than a group that no longer exists (between pipeline steps,
/// and before dev mode, which keeps the terminal). initd blocks SIGTTOU, so
/// it may do this from the background.
pub fn reclaim_terminal() -> io::Result<()> {
    // SAFETY: plain system calls on stdin, no memory passed.
    unsafe {
        let mut group = libc::getpgrp();
        if group == 0 {
            // initd's group is led from outside its pid namespace (`unshare
            // --pid --fork` run from a shell, as run-scripts/demo.sh does),
            // so it has no number here to hand the terminal to: initd
            // leads a group of its own instead.
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            group = libc::getpid();
        }
        if libc::tcsetpgrp(libc::STDIN_FILENO, group) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where a child's standard stream comes from.
#[derive(Debug, Clone, Copy)]
pub enum Stream<'a> {
    /// initd's own.
    Inherit,
    /// /dev/null.
    Null,
    /// This descriptor (a pipe, a memory file).
    Fd(BorrowedFd<'a>),
}

/// Everything [`spawn_process`] needs to start a command.
pub struct Spec<'a> {
    /// Already resolved.
    pub program: &'a Path,
    /// With `argv[0]` as the user typed it.
    pub argv: &'a [String],
    pub env: &'a [(OsString, OsString)],
    /// Hand the child the terminal's foreground (stdin is initd's
    /// controlling terminal).
    pub foreground: bool,
    /// stdin, stdout, stderr.
    pub streams: [Stream<'a>; 3],
}

/// Starts a command in a process group of its own, with an empty signal
/// mask and SIGPIPE at its default, through posix_spawn: glibc
/// starts it with a vfork-style clone that shares initd's memory until
/// the exec, so initd's page tables are not copied and initd takes no
/// copy-on-write faults afterwards — most of what a fork and exec of a
/// command otherwise costs initd. A failed exec is the error returned
/// (ENOENT, EACCES, ENOEXEC), as it would be from execve.
pub fn spawn_process(spec: &Spec) -> io::Result<Pid> {
    let program = c_string(
        spec.program.as_os_str().as_bytes().to_vec(),
        spec.program.as_os_str(),
    )?;
    let argv = spec
        .argv
        .iter()
        .map(|a| c_string(a.clone().into_bytes(), OsStr::new(a)))
        .collect::<io::Result<Vec<_>>>()?;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| env_entry(k, v))
        .collect::<io::Result<Vec<_>>>()?;
    let argv_ptrs = null_terminated(&argv);
    let env_ptrs = null_terminated(&env);
    let mut actions = FileActions::new()?;
    for (fd, stream) in spec.streams.iter().enumerate() {
        match stream {
            Stream::Inherit => {}
            Stream::Null => actions.open_null(fd as libc::c_int)?,
            Stream::Fd(from) => actions.dup2(from.as_raw_fd(), fd as libc::c_int)?,
        }
    }
    if spec.foreground && owns_terminal() {
        actions.take_terminal()?;
    }
    let attrs = Attrs::new()?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: the CStrings and their
    // null-terminated pointer arrays live until it returns.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &actions.0,
            &attrs.0,
            argv_ptrs.as_ptr(),
            env_ptrs.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(Pid::from_raw(pid))
}

/// `NAME=value` as one allocation: a container's environment can hold
/// hundreds of variables, and every command start builds them all.
fn env_entry(name: &OsStr, value: &OsStr) -> io::Result<CString> {
    let mut entry = Vec::with_capacity(name.len() + value.len() + 2);
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    c_string(entry, name)
}

/// `bytes` for a C call; `what` names them if they hold a NUL byte.
fn c_string(bytes: Vec<u8>, what: &OsStr) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} holds a NUL byte", what.to_string_lossy()),
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Whether stdin is initd's controlling terminal, so its foreground can be
/// handed over (a terminal that is not, as in some test harnesses, has no
/// foreground of ours to give).
fn owns_terminal() -> bool {
    // SAFETY: tcgetpgrp only inspects the descriptor.
    unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) >= 0 }
}

struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<FileActions> {
        // SAFETY: init fills the zeroed struct; Drop destroys it.
        unsafe {
            let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            check(libc::posix_spawn_file_actions_init(&mut actions))?;
            Ok(FileActions(actions))
        }
    }

    fn open_null(&mut self, fd: libc::c_int) -> io::Result<()> {
        let flags = if fd == 0 { libc::O_RDONLY } else { libc::O_WRONLY };
        // SAFETY: glibc copies the path.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(&mut self.0, fd, c"/dev/null".as_ptr(), flags, 0)
        })
    }

    fn dup2(&mut self, from: libc::c_int, to: libc::c_int) -> io::Result<()> {
        // SAFETY: records the two numbers only.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, from, to) })
    }

    /// The child takes the terminal's foreground for its own group. Run in
    /// the child with every signal blocked, so SIGTTOU cannot stop it.
    fn take_terminal(&mut self) -> io::Result<()> {
        // SAFETY: records the descriptor number only.
        check(unsafe { libc::posix_spawn_file_actions_addtcsetpgrp_np(&mut self.0, libc::STDIN_FILENO) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in new().
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

struct Attrs(libc::posix_spawnattr_t);

impl Attrs {
    /// Own process group, an empty signal mask, and SIGPIPE, which initd
    /// ignores, back at its default. Other dispositions are inherited as
    /// exec always passes them on: a signal ignored by whoever started
    /// initd (nohup's SIGHUP) stays ignored, as under tini. (glibc itself
    /// sets its two internal signals to ignored in every posix_spawn child;
    /// glibc programs install their own handlers for them when needed.)
    fn new() -> io::Result<Attrs> {
        // SAFETY: init fills the zeroed struct; the sets are initialised
        // by sigemptyset before use; Drop destroys the attrs.
        unsafe {
            let mut attrs: libc::posix_spawnattr_t = std::mem::zeroed();
            check(libc::posix_spawnattr_init(&mut attrs))?;
            let mut attrs = Attrs(attrs);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::posix_spawnattr_setsigmask(&mut attrs.0, &empty))?;
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(&mut attrs.0, &pipe))?;
            check(libc::posix_spawnattr_setpgroup(&mut attrs.0, 0))?;
            let flags =
                libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(
                &mut attrs.0,
                flags as libc::c_short,
            ))?;
            Ok(attrs)
        }
    }
}

impl Drop for Attrs {
    fn drop(&mut self) {
        // SAFETY: initialised in new().
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// posix_spawn's functions return the error number instead of setting errno.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
