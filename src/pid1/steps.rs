//! Running the pipeline's commands under the supervisor: each pre-start
//! step (migration, collectstatic, ...) to completion, then the main
//! command. A failing step or a stop ends the pipeline: nothing after it
//! starts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use tracing::{debug, error, info};

use crate::cmdline;
use crate::pid1::child;
use crate::pid1::exit::Fate;
use crate::pid1::resolve;
use crate::pid1::supervisor::Supervisor;

/// The environment and directory every command of the pipeline runs with.
#[derive(Clone)]
pub struct Launcher {
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    /// Whether stdin is a terminal to hand to each command in turn.
    pub foreground: bool,
    /// `INITD_NO_NEW_PRIVS`: set no_new_privs in every command.
    pub no_new_privs: bool,
}

/// Logs a failed exec and gives its shell-style status.
pub fn spawn_failed(what: &str, program: &str, e: &std::io::Error) -> Halt {
    error!("{what}: cannot execute {program}: {e}");
    Halt(if e.kind() == std::io::ErrorKind::NotFound {
        crate::pid1::exit::NOT_FOUND
    } else {
        crate::pid1::exit::NOT_EXECUTABLE
    })
}

/// initd must exit with this status now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt(pub i32);

impl Launcher {
    pub fn new(env: Vec<(OsString, OsString)>, cwd: &Path) -> Launcher {
        Launcher {
            env,
            cwd: cwd.to_path_buf(),
            foreground: child::stdin_is_terminal(),
            no_new_privs: false,
        }
    }

    fn path_var(&self) -> Option<&OsString> {
        self.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v)
    }

    /// The command for `argv`, with the pipeline's environment and
    /// directory; `foreground` hands it the terminal. Lookup failures are
    /// logged naming `what` and become 127/126.
    pub fn command(&self, what: &str, argv: &[String], foreground: bool) -> Result<Command, Halt> {
        let path = self.path_var().map(OsString::as_os_str);
        let program = resolve::resolve(argv[0].as_ref(), path, &self.cwd).map_err(|e| {
            error!("{what}: {e}");
            Halt(e.exit_code())
        })?;
        let argv_os: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let setup = child::Setup {
            foreground: foreground && self.foreground,
            no_new_privs: self.no_new_privs,
        };
        let mut cmd = child::command(&program, &argv_os, setup);
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd);
        Ok(cmd)
    }

    /// Starts `argv` as the supervised child. Lookup and exec failures end
    /// the pipeline with 127/126 and a line naming `what`.
    pub fn start(&self, what: &str, argv: &[String]) -> Result<nix::unistd::Pid, Halt> {
        let cmd = self.command(what, argv, true)?;
        let pid = child::spawn(cmd).map_err(|e| spawn_failed(what, &argv[0], &e))?;
        debug!(pid = pid.as_raw(), "{what} started: {}", cmdline::join(argv));
        Ok(pid)
    }

    /// Runs one pre-start step to completion. Success lets the pipeline go
    /// on; a failure or a stop halts it with the right exit status.
    pub fn run_step(&self, sup: &mut Supervisor, what: &str, argv: &[String]) -> Result<(), Halt> {
        if sup.stop_requested().is_some() {
            return Err(Halt(sup.finish(None)));
        }
        info!("{what}: {}", cmdline::join(argv));
        sup.status()
            .set_phase(crate::pid1::status::Phase::Starting, format!("{what} running"));
        let pid = self.start(what, argv)?;
        let fate = sup.run_step(pid);
        if sup.stop_requested().is_some() {
            info!("{what} ended by the stop; the server will not start");
            return Err(Halt(sup.finish(Some(fate))));
        }
        match fate {
            Fate::Exited(0) => Ok(()),
            Fate::Exited(code) => {
                error!(
                    "{what} failed with status {code}: {}; the server was not started",
                    cmdline::join(argv)
                );
                Err(Halt(sup.finish(Some(fate))))
            }
            Fate::Signaled(sig) => {
                error!(
                    "{what} was killed by {}: {}; the server was not started",
                    crate::pid1::signals::short_name(sig),
                    cmdline::join(argv)
                );
                Err(Halt(sup.finish(Some(fate))))
            }
        }
    }

    /// Starts the main command and supervises it (and what it leaves) to the
    /// end; returns initd's exit status.
    pub fn run_main(&self, sup: &mut Supervisor, what: &str, argv: &[String]) -> i32 {
        if sup.stop_requested().is_some() {
            return sup.finish(None);
        }
        match self.start(what, argv) {
            Ok(pid) => sup.run_main(pid),
            Err(Halt(code)) => code,
        }
    }
}
