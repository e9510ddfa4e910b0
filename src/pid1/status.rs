//! What the supervisor is doing, published for `initd check` and
//! `initd status`: the phase and its reason, the main child, and the other
//! supervised processes (dev-mode watchers) with their restart counts.
//!
//! The supervisor writes it at each change; readers take a snapshot. A
//! mutex is enough: writes are rare (state changes, not signals) and a
//! snapshot is a few small strings.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Secrets, the user, waiting for dependencies, migrations.
    Starting,
    /// The main child is up.
    Running,
    /// Dev mode without a server: waiting for `docker compose exec`.
    Idle,
    /// A stop arrived; checks fail so traffic moves away before the server
    /// is asked to stop.
    Draining,
    /// The stop signal went to the main child; waiting for it to end.
    Stopping,
}

/// One supervised process other than the main child (a dev-mode watcher or
/// the dev server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub name: String,
    /// `None` while it is not running (waiting to restart, or stopped).
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Why it is not running, or what it last did: `restarting in 4s`.
    pub note: String,
}

/// What a wait for the migration lock is waiting on, for `initd status`
/// and `initd check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockWait {
    /// The lock: `PostgreSQL advisory lock 6896294806788535525 on postgres://app:***@db:5432/shop`.
    pub lock: String,
    /// Still connecting (the last error), or who holds it.
    pub detail: String,
    pub holder: Option<LockHolder>,
    pub since: Option<Instant>,
}

/// The session holding the lock, from pg_locks and pg_stat_activity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    /// Empty for a local (Unix socket) session or when not visible.
    pub client_addr: String,
    /// When the holder's session started (the server's clock).
    pub since: String,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub phase: Phase,
    pub reason: String,
    pub main_pid: Option<u32>,
    pub main_restarts: u32,
    pub uptime: Duration,
    pub processes: Vec<Process>,
    /// `PID 1`, or the entrypoint under another init.
    pub role: String,
    pub lock_wait: Option<LockWait>,
}

pub struct Status {
    started: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    phase: Phase,
    reason: String,
    main_pid: Option<u32>,
    main_restarts: u32,
    processes: Vec<Process>,
    role: String,
    lock_wait: Option<LockWait>,
}

impl Status {
    pub fn new() -> Arc<Status> {
        Arc::new(Status {
            started: Instant::now(),
            inner: Mutex::new(Inner {
                phase: Phase::Starting,
                reason: "starting up".into(),
                main_pid: None,
                main_restarts: 0,
                processes: Vec::new(),
                role: String::new(),
                lock_wait: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the plain data in a
        // state worse than stale, so a poisoned lock is still used.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_phase(&self, phase: Phase, reason: impl Into<String>) {
        let mut inner = self.lock();
        inner.phase = phase;
        inner.reason = reason.into();
    }

    #[cfg(test)]
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    pub fn set_main(&self, pid: Option<u32>) {
        self.lock().main_pid = pid;
    }

    pub fn count_main_restart(&self) {
        self.lock().main_restarts += 1;
    }

    /// Adds or replaces the process with this name.
    pub fn set_process(&self, process: Process) {
        let mut inner = self.lock();
        match inner.processes.iter_mut().find(|p| p.name == process.name) {
            Some(slot) => *slot = process,
            None => inner.processes.push(process),
        }
    }

    pub fn set_role(&self, role: String) {
        self.lock().role = role;
    }

    /// While waiting for the migration lock; `None` once it is taken or
    /// given up.
    pub fn set_lock_wait(&self, wait: Option<LockWait>) {
        self.lock().lock_wait = wait;
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            phase: inner.phase,
            reason: inner.reason.clone(),
            main_pid: inner.main_pid,
            main_restarts: inner.main_restarts,
            uptime: self.started.elapsed(),
            processes: inner.processes.clone(),
            role: inner.role.clone(),
            lock_wait: inner.lock_wait.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_in_starting_and_records_changes() {
        let status = Status::new();
        assert_eq!(status.phase(), Phase::Starting);
        status.set_phase(Phase::Running, "server up");
        status.set_main(Some(42));
        status.count_main_restart();
        let snap = status.snapshot();
        assert_eq!(snap.phase, Phase::Running);
        assert_eq!(snap.reason, "server up");
        assert_eq!(snap.main_pid, Some(42));
        assert_eq!(snap.main_restarts, 1);
    }

    #[test]
    fn processes_are_replaced_by_name() {
        let status = Status::new();
        let css = |pid, restarts| Process {
            name: "css".into(),
            pid,
            restarts,
            note: String::new(),
        };
        status.set_process(css(Some(7), 0));
        status.set_process(css(None, 1));
        let snap = status.snapshot();
        assert_eq!(snap.processes, vec![css(None, 1)]);
    }
}
