//! initd: PID 1 for containers of Python web apps.

pub mod check;
pub mod child;
pub mod chown;
pub mod cli;
pub mod cmdline;
pub mod cmdprobe;
pub mod config;
pub mod control;
pub mod control_loop;
pub mod cpus;
pub mod dev;
pub mod dns;
pub mod exit;
pub mod fsafe;
pub mod gunicorn;
pub mod handover;
pub mod health;
pub mod logging;
pub mod migrate_lock;
pub mod nbout;
pub mod netio;
pub mod netprobe;
pub mod pipeline;
pub mod poller;
pub mod prefix;
pub mod procfs;
pub mod protocol;
pub mod reaper;
pub mod reload;
pub mod resolve;
pub mod role;
pub mod secrets;
pub mod show;
pub mod signals;
pub mod status;
pub mod steps;
pub mod supervisor;
#[cfg(test)]
mod testdir;
pub mod user;
pub mod waitfor;
pub mod watchplan;
pub mod wsgi;

/// Settings shared by the property tests next to the parsers.
#[cfg(test)]
pub(crate) mod props {
    use proptest::test_runner::{Config, FileFailurePersistence};

    /// proptest's defaults (which honour `PROPTEST_CASES`), with failing
    /// seeds kept next to the source file they test (`src/secrets.rs` →
    /// `src/secrets.regressions`) rather than in a directory of their own
    /// at the top of the project, and replayed first on every run.
    pub fn config() -> Config {
        Config {
            failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
            ..Config::default()
        }
    }
}
