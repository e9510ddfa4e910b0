//! Starting the pipeline's commands: the environment, directory and
//! privileges every command runs with, and the lookup of the program, whose
//! failures become 127/126 with a line naming the command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use tracing::debug;

use crate::cmdline;
use crate::pid1::child::{self, Stream};
use crate::pid1::exit::{self, Halt};
use crate::pid1::resolve;

/// The environment and directory every command of the pipeline runs with.
#[derive(Clone)]
pub struct Launcher {
    pub env: Vec<(OsString, OsString)>,
    /// initd's own working directory, which every command inherits; here
    /// for looking up a program named by a relative path.
    pub cwd: PathBuf,
    /// Whether stdin is a terminal whose foreground a command may take.
    pub foreground: bool,
}

/// A failed exec, as the error that ends initd with the shell's status.
pub fn spawn_failed(what: &str, program: &str, e: &std::io::Error) -> Halt {
    let code = if e.kind() == std::io::ErrorKind::NotFound {
        exit::NOT_FOUND
    } else {
        exit::NOT_EXECUTABLE
    };
    Halt::error(code, format!("{what}: cannot execute {program}: {e}"))
}

/// Who a started command shares the terminal with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// It takes the terminal's foreground (a command run to completion, or
    /// the one main child of `initd exec`/`run`): Ctrl-C is its own.
    Foreground,
    /// initd keeps the terminal (a set of children, dev mode): the command
    /// runs in the background, reading nothing from it.
    Background,
}

impl Launcher {
    pub fn new(env: Vec<(OsString, OsString)>, cwd: &Path) -> Launcher {
        Launcher {
            env,
            cwd: cwd.to_path_buf(),
            foreground: child::stdin_is_terminal(),
        }
    }

    fn path_var(&self) -> Option<&OsString> {
        self.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v)
    }

    /// Starts `argv` as a supervised child. Lookup and exec failures are
    /// the error naming `what`, with 127/126.
    pub fn start(&self, what: &str, argv: &[String], terminal: Terminal) -> Result<Pid, Halt> {
        // From the background a read of the terminal would stop it (SIGTTIN)
        // for good: nobody would ever bring it forward.
        let stdin = if terminal == Terminal::Background && self.foreground {
            Stream::Null
        } else {
            Stream::Inherit
        };
        self.start_with(what, argv, terminal, [stdin, Stream::Inherit, Stream::Inherit])
    }

    /// [`Launcher::start`] with the child's stdin, stdout and stderr given.
    pub fn start_with(
        &self,
        what: &str,
        argv: &[String],
        terminal: Terminal,
        streams: [Stream; 3],
    ) -> Result<Pid, Halt> {
        let path = self.path_var().map(OsString::as_os_str);
        let program = resolve::resolve(argv[0].as_ref(), path, &self.cwd)
            .map_err(|e| Halt::error(e.exit_code(), format!("{what}: {e}")))?;
        let spec = child::Spec {
            program: &program,
            argv,
            env: &self.env,
            foreground: terminal == Terminal::Foreground && self.foreground,
            streams,
        };
        let pid = child::spawn_process(&spec).map_err(|e| spawn_failed(what, &argv[0], &e))?;
        debug!(pid = pid.as_raw(), "{what} started: {}", cmdline::join(argv));
        Ok(pid)
    }
}
