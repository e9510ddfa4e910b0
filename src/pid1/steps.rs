//! Running the pipeline's commands under the supervisor: each pre-start
//! step (migration, collectstatic, ...) to completion, then the main
//! command. A failing step or a stop ends the pipeline: nothing after it
//! starts.

use tracing::{debug, error, info};

use crate::cmdline;
use crate::pid1::child;
use crate::pid1::exit::{Fate, Halt};
use crate::pid1::launch::{Launcher, Terminal};
use crate::pid1::supervisor::{MainKind, Supervisor};

/// Runs one pre-start step to completion. Success lets the pipeline go
/// on; a failure or a stop halts it with the right exit status.
pub fn run_step(launcher: &Launcher, sup: &mut Supervisor, what: &str, argv: &[String]) -> Result<(), Halt> {
    if sup.stop_requested().is_some() {
        return Err(Halt::with(sup.finish(None)));
    }
    info!("{what}: {}", cmdline::join(argv));
    sup.status()
        .set_phase(crate::pid1::status::Phase::Starting, format!("{what} running"));
    let pid = launcher.start(what, argv, Terminal::Foreground)?;
    let fate = sup.run_step(pid);
    if launcher.foreground
        && let Err(e) = child::reclaim_terminal()
    {
        debug!("taking the terminal back after {what} failed: {e}");
    }
    if sup.stop_requested().is_some() {
        info!("{what} ended by the stop; the server will not start");
        return Err(Halt::with(sup.finish(Some(fate))));
    }
    match fate {
        Fate::Exited(0) => Ok(()),
        Fate::Exited(code) => {
            error!(
                "{what} failed with status {code}: {}; the server was not started",
                cmdline::join(argv)
            );
            Err(Halt::with(sup.finish(Some(fate))))
        }
        Fate::Signaled(_) => {
            error!(
                "{what} {fate}: {}; the server was not started",
                cmdline::join(argv)
            );
            Err(Halt::with(sup.finish(Some(fate))))
        }
    }
}

/// Starts the main command and supervises it (and what it leaves) to the
/// end; returns initd's exit status.
pub fn run_main(
    launcher: &Launcher,
    sup: &mut Supervisor,
    kind: MainKind,
    argv: &[String],
) -> Result<i32, Halt> {
    if sup.stop_requested().is_some() {
        return Ok(sup.finish(None));
    }
    let pid = launcher.start(&kind.to_string(), argv, Terminal::Foreground)?;
    Ok(sup.run_main(pid, kind))
}
