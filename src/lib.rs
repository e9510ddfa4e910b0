//! initd: PID 1 for containers of Python web apps.

pub mod child;
pub mod cli;
pub mod config;
pub mod exec;
pub mod exit;
pub mod logging;
pub mod migrate_lock;
pub mod procfs;
pub mod reaper;
pub mod resolve;
pub mod signals;
pub mod supervisor;
