//! The PID-1 core: the supervisor's loop, signals, reaping, starting
//! children, exit codes, the process table and the published status.
//! It builds only on the leaf modules at the top of the crate.

pub(crate) mod child;
pub(crate) mod exit;
pub(crate) mod launch;
pub mod procfs;
pub(crate) mod reaper;
pub(crate) mod resolve;
pub(crate) mod signals;
pub(crate) mod source;
pub(crate) mod status;
pub(crate) mod steps;
pub(crate) mod stopseq;
pub(crate) mod supervisor;
