//! Entrypoint or guest: whether this initd is the one that started the
//! container, or one started beside it (`docker exec`, `kubectl exec`,
//! `docker compose exec`).
//!
//! The rule, one for every set-up (initd as PID 1; under tini,
//! `docker run --init` or compose `init: true`; in a pod that shares its
//! process namespace):
//!
//! - PID 1 is the entrypoint: nothing can have started before it.
//! - Otherwise initd is a **guest** when another initd already supervises
//!   this container, which it sees in one of two ways: a supervisor
//!   answers on the control socket, or, when there is no socket to ask
//!   (`INITD_SOCKET=off`, a socket initd could not create), the process
//!   table holds an older `initd run|exec|dev` of the same cgroup that is
//!   PID 1 or was started as a container's first process (its parent is
//!   PID 1, or outside the namespace).
//! - Anything else, a missing socket or a stale one that refuses
//!   connections (a restarted container keeps /run), means **entrypoint**.
//!
//! The entrypoint serves the control socket, renumbers the app user and
//! chowns; a guest does none of these.

use std::fs;
use std::io;
use std::path::Path;

/// What this initd is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// PID 1 of the container.
    Pid1,
    /// The container's first initd, beneath another init (`init` is what
    /// PID 1 calls itself: tini, docker-init, pause).
    UnderInit { init: String },
    /// Started beside a running entrypoint; `why` names how that was seen.
    Guest { why: String },
}

impl Role {
    pub fn is_entrypoint(&self) -> bool {
        !matches!(self, Role::Guest { .. })
    }

    /// How `initd status` shows it.
    pub fn describe(&self) -> String {
        match self {
            Role::Pid1 => "PID 1".into(),
            Role::UnderInit { init } => format!("entrypoint under another init (PID 1 is {init})"),
            Role::Guest { why } => format!("guest ({why})"),
        }
    }
}

/// Decides the role of this process, asking `socket` (the control socket
/// path, `None` when off) and /proc.
pub fn decide(socket: Option<&Path>) -> Role {
    if std::process::id() == 1 {
        return Role::Pid1;
    }
    if let Some(path) = socket
        && answers(path)
    {
        return Role::Guest {
            why: format!("a supervisor answers on {}", path.display()),
        };
    }
    if let Some(me) = Proc::read(std::process::id() as i32) {
        let others = all_processes();
        if let Some(pid) = older_entrypoint(&me, &others) {
            return Role::Guest {
                why: format!("initd pid {pid} already supervises this container"),
            };
        }
    }
    let init = fs::read_to_string("/proc/1/comm")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "another process".into());
    Role::UnderInit { init }
}

/// Whether a live supervisor accepts a connection on `path`. The connect
/// never waits: a full accept queue (`EAGAIN`) is a live one too.
fn answers(path: &Path) -> bool {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let Ok(fd) = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    ) else {
        return false;
    };
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) => true,
        Err(e) => io::Error::from(e).kind() == io::ErrorKind::WouldBlock,
    }
}

/// What the rule needs to know about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
    /// Clock ticks after boot (field 22 of /proc/PID/stat).
    pub start: u64,
    /// The first argument after the program: the subcommand.
    pub verb: String,
    pub cgroup: String,
}

impl Proc {
    fn read(pid: i32) -> Option<Proc> {
        let dir = format!("/proc/{pid}");
        let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
        // After the name: state is field 3, ppid 4, starttime 22.
        let ppid = fields.get(1)?.parse().ok()?;
        let start = fields.get(19)?.parse().ok()?;
        let cmdline = fs::read(format!("{dir}/cmdline")).ok()?;
        let verb = cmdline
            .split(|b| *b == 0)
            .nth(1)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let cgroup = fs::read_to_string(format!("{dir}/cgroup")).unwrap_or_default();
        Some(Proc {
            pid,
            ppid,
            comm,
            start,
            verb,
            cgroup,
        })
    }
}

fn all_processes() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(Proc::read)
        .collect()
}

/// The pid of an older initd supervisor of this container, if one runs:
/// same program name and cgroup as `me`, a supervising subcommand, and
/// started as the container's first process (PID 1, a child of PID 1, or
/// a child of nothing in this namespace). A guest started by `docker exec`
/// also has no parent here, but is always younger than the entrypoint.
pub fn older_entrypoint(me: &Proc, others: &[Proc]) -> Option<i32> {
    others
        .iter()
        .filter(|p| p.pid != me.pid && p.comm == me.comm && p.cgroup == me.cgroup)
        .filter(|p| matches!(p.verb.as_str(), "run" | "exec" | "dev"))
        .filter(|p| p.pid == 1 || p.ppid == 0 || p.ppid == 1)
        .filter(|p| (p.start, p.pid) < (me.start, me.pid))
        .map(|p| p.pid)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, comm: &str, start: u64, verb: &str) -> Proc {
        Proc {
            pid,
            ppid,
            comm: comm.into(),
            start,
            verb: verb.into(),
            cgroup: "0::/\n".into(),
        }
    }

    #[test]
    fn an_older_entrypoint_makes_a_guest() {
        let me = p(40, 0, "initd", 500, "exec");
        // Under tini: the entrypoint is PID 1's child.
        let table = [p(1, 0, "tini", 10, "--"), p(7, 1, "initd", 11, "run"), me.clone()];
        assert_eq!(older_entrypoint(&me, &table), Some(7));
        // As PID 1.
        let table = [p(1, 0, "initd", 10, "run"), me.clone()];
        assert_eq!(older_entrypoint(&me, &table), Some(1));
        // A shared pod namespace: the pause process is PID 1, the
        // container's first process has no parent in the namespace.
        let table = [p(1, 0, "pause", 10, ""), p(9, 0, "initd", 12, "run"), me.clone()];
        assert_eq!(older_entrypoint(&me, &table), Some(9));
    }

    #[test]
    fn nothing_else_makes_a_guest() {
        let me = p(7, 1, "initd", 11, "run");
        // Alone beneath tini.
        assert_eq!(
            older_entrypoint(&me, &[p(1, 0, "tini", 10, "--"), me.clone()]),
            None
        );
        // A health check, younger or older, is no supervisor.
        let check = p(5, 0, "initd", 5, "check");
        assert_eq!(older_entrypoint(&me, &[check, me.clone()]), None);
        // A younger guest does not turn the entrypoint into one.
        let guest = p(40, 0, "initd", 500, "exec");
        assert_eq!(older_entrypoint(&me, &[guest, me.clone()]), None);
        // An initd deep in some other process tree (a test harness, an
        // initd started by the app) is not a container's first process.
        let nested = p(3, 2, "initd", 1, "exec");
        assert_eq!(older_entrypoint(&me, &[nested, me.clone()]), None);
        // Another container of the pod (another cgroup).
        let mut sidecar = p(9, 0, "initd", 1, "run");
        sidecar.cgroup = "0::/../sidecar\n".into();
        assert_eq!(older_entrypoint(&me, &[sidecar, me.clone()]), None);
    }

    #[test]
    fn descriptions() {
        assert_eq!(Role::Pid1.describe(), "PID 1");
        let under = Role::UnderInit { init: "tini".into() };
        assert_eq!(under.describe(), "entrypoint under another init (PID 1 is tini)");
        assert!(under.is_entrypoint());
        assert!(!Role::Guest { why: "x".into() }.is_entrypoint());
    }
}
