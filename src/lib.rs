//! initd: PID 1 for containers of Python web apps.

// The layers, each a folder whose `mod.rs` says what it holds; see
// docs/architecture.md for what may import what.
pub mod config;
pub(crate) mod dev;
pub(crate) mod health;
pub(crate) mod net;
pub(crate) mod pid1;
pub(crate) mod pipeline;

// Leaves: small modules with one job that import nothing above them.
pub mod cli;
pub mod cmdline;
pub(crate) mod fsafe;
pub mod logging;
pub(crate) mod nbout;
#[cfg(test)]
mod testdir;
#[cfg(test)]
mod testnet;
pub(crate) mod units;

// What src/main.rs, tests/ and benches/ use, under short paths that do not
// change when a module moves between folders.
pub use dev::{filter, poller, watchplan};
pub use health::check;
pub use pid1::procfs;
pub use pipeline::{entrypoint, gunicorn, migrate_lock, show};

/// Settings shared by the property tests next to the parsers.
#[cfg(test)]
pub(crate) mod props {
    use proptest::test_runner::{Config, FileFailurePersistence};

    /// proptest's defaults (which honour `PROPTEST_CASES`), with failing
    /// seeds kept next to the source file they test (`src/pipeline/secrets.rs` →
    /// `src/pipeline/secrets.regressions`) rather than in a directory of their own
    /// at the top of the project, and replayed first on every run.
    pub fn config() -> Config {
        Config {
            failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
            ..Config::default()
        }
    }
}
