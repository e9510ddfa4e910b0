//! initd: PID 1 for containers of Python web apps.

pub mod child;
pub mod cli;
pub mod cmdline;
pub mod config;
pub mod cpus;
pub mod dev;
pub mod dns;
pub mod exit;
pub mod gunicorn;
pub mod logging;
pub mod migrate_lock;
pub mod netio;
pub mod pipeline;
pub mod prefix;
pub mod procfs;
pub mod reaper;
pub mod reload;
pub mod resolve;
pub mod secrets;
pub mod show;
pub mod signals;
pub mod status;
pub mod steps;
pub mod supervisor;
pub mod user;
pub mod waitfor;
