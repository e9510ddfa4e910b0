//! `initd exec`: run one command as the supervised main child.

use std::ffi::OsString;

use thiserror::Error;
use tracing::debug;

use crate::child;
use crate::config::Settings;
use crate::exit;
use crate::resolve::{self, ResolveError};
use crate::signals;
use crate::supervisor::{Policy, Supervisor};

#[derive(Debug, Error)]
pub enum ExecError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("cannot execute {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{what} failed: {source}")]
    System { what: &'static str, source: nix::Error },
}

impl ExecError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ExecError::Resolve(e) => e.exit_code(),
            ExecError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                exit::NOT_FOUND
            }
            ExecError::Spawn { .. } => exit::NOT_EXECUTABLE,
            ExecError::System { .. } => exit::INTERNAL,
        }
    }
}

/// Runs `argv` under supervision and returns initd's exit status.
pub fn run(argv: &[OsString], settings: &Settings) -> Result<i32, ExecError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let path = std::env::var_os("PATH");
    let program = resolve::resolve(&argv[0], path.as_deref(), &cwd)?;

    signals::block_handled().map_err(|source| ExecError::System {
        what: "blocking signals",
        source,
    })?;
    if std::process::id() != 1 {
        crate::reaper::become_subreaper().map_err(|source| ExecError::System {
            what: "becoming a child subreaper",
            source,
        })?;
        debug!("not PID 1: registered as child subreaper, so orphans are still reaped here");
    }

    let policy = Policy {
        target: settings.signal_target,
        map: settings.signal_map.clone(),
        stop_timeout: settings.stop_timeout,
        keep_signal_status: settings.keep_signal_status,
    };
    let mut supervisor = Supervisor::new(policy).map_err(|source| ExecError::System {
        what: "opening a signalfd",
        source,
    })?;

    let foreground = child::stdin_is_terminal();
    let main =
        child::spawn(child::command(&program, argv, foreground)).map_err(|source| ExecError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    debug!(pid = %main, program = %program.display(), foreground, "started main child");
    Ok(supervisor.run_main(main))
}
