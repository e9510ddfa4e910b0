//! Dropping privileges to the app user: groups, then gid, then uid, then a
//! check that root cannot be regained.

use std::fmt;

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};
use thiserror::Error;

use super::accounts::AppUser;

/// Why a drop failed. `Copy` and allocation-free, so it can be produced and
/// handled between fork and exec. Any error means the process must not run
/// the app: exit instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DropError {
    #[error("setgroups failed: {0}")]
    SetGroups(Errno),
    #[error("setresgid failed: {0}")]
    SetGid(Errno),
    #[error("setresuid failed: {0}")]
    SetUid(Errno),
    #[error("cannot read back the process ids: {0}")]
    Query(Errno),
    #[error("the process ids are not the requested ones after the drop")]
    Mismatch,
    #[error("could regain root after dropping privileges")]
    RegainedRoot,
}

/// Everything a drop needs, allocated up front so [`DropPlan::apply`] only
/// makes syscalls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropPlan {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

impl fmt::Display for DropPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let groups: Vec<u32> = self.groups.iter().map(|g| g.as_raw()).collect();
        write!(f, "uid={} gid={} groups={groups:?}", self.uid, self.gid)
    }
}

pub fn prepare(user: &AppUser) -> DropPlan {
    let mut groups: Vec<Gid> = user.groups.iter().copied().map(Gid::from_raw).collect();
    if groups.is_empty() {
        groups.push(Gid::from_raw(user.gid));
    }
    DropPlan {
        uid: Uid::from_raw(user.uid),
        gid: Gid::from_raw(user.gid),
        groups,
    }
}

impl DropPlan {
    /// Groups, then gid, then uid: after setuid the other two are no longer
    /// permitted. All three saved ids change too, so root cannot come back;
    /// that is then checked rather than assumed.
    pub fn apply(&self) -> Result<(), DropError> {
        use nix::unistd::{setgroups, setresgid, setresuid};
        setgroups(&self.groups).map_err(DropError::SetGroups)?;
        setresgid(self.gid, self.gid, self.gid).map_err(DropError::SetGid)?;
        setresuid(self.uid, self.uid, self.uid).map_err(DropError::SetUid)?;
        self.verify()
    }

    fn verify(&self) -> Result<(), DropError> {
        let u = nix::unistd::getresuid().map_err(DropError::Query)?;
        let g = nix::unistd::getresgid().map_err(DropError::Query)?;
        let uid_ok = [u.real, u.effective, u.saved].iter().all(|&x| x == self.uid);
        let gid_ok = [g.real, g.effective, g.saved].iter().all(|&x| x == self.gid);
        if !uid_ok || !gid_ok {
            return Err(DropError::Mismatch);
        }
        // A kept capability (SECBIT_KEEP_CAPS, ambient caps) would let these
        // succeed even though every id looks right.
        if !self.uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(DropError::RegainedRoot);
        }
        if !self.uid.is_root() && self.gid.as_raw() != 0 && nix::unistd::setgid(Gid::from_raw(0)).is_ok() {
            return Err(DropError::RegainedRoot);
        }
        Ok(())
    }
}

/// Drops to `user` in the calling process. Between fork and exec, call
/// [`prepare`] before forking and [`DropPlan::apply`] after instead.
pub fn drop_privileges(user: &AppUser) -> Result<(), DropError> {
    prepare(user).apply()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::user::accounts::fixtures::db;
    use crate::pipeline::user::resolve::resolve;
    use crate::testdir::skip_unless_root;

    #[test]
    fn prepare_keeps_groups_and_never_sends_an_empty_list() {
        let mut user = resolve("app", &db(), false).unwrap();
        let plan = prepare(&user);
        assert_eq!(plan.to_string(), "uid=1000 gid=1000 groups=[1000, 29, 44, 33]");
        user.groups.clear();
        // An empty setgroups would keep none, but root's groups must not leak.
        assert_eq!(prepare(&user).groups, [Gid::from_raw(1000)]);
    }

    #[test]
    fn drop_errors_say_what_failed() {
        assert_eq!(
            DropError::RegainedRoot.to_string(),
            "could regain root after dropping privileges"
        );
    }

    /// Runs `check` in a forked child and returns its exit code. The child
    /// only makes syscalls (no allocation, no panics) before `_exit`.
    fn in_child(check: impl FnOnce() -> i32) -> i32 {
        use nix::sys::wait::{WaitStatus, waitpid};
        use nix::unistd::{ForkResult, fork};
        // SAFETY: the child runs `check`, which only makes syscalls, then
        // `_exit`s without returning into the test harness.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = check();
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, code) => code,
                other => panic!("child ended with {other:?}"),
            },
        }
    }

    fn nobody() -> AppUser {
        AppUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![65534, 4242],
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
            in_passwd: true,
        }
    }

    #[test]
    fn drop_in_a_forked_child_cannot_regain_root() {
        if skip_unless_root("drop_in_a_forked_child_cannot_regain_root") {
            return;
        }
        let plan = prepare(&nobody());
        let code = in_child(|| {
            if plan.apply().is_err() {
                return 10;
            }
            // SAFETY: plain syscalls on a stack buffer.
            unsafe {
                if libc::setuid(0) == 0 || libc::seteuid(0) == 0 || libc::setgid(0) == 0 {
                    return 11;
                }
                if libc::getuid() != 65534 || libc::geteuid() != 65534 || libc::getegid() != 65534 {
                    return 12;
                }
                let mut groups = [0 as libc::gid_t; 8];
                let n = libc::getgroups(8, groups.as_mut_ptr());
                // The kernel keeps the list sorted.
                if n != 2 || groups[..2] != [4242, 65534] {
                    return 13;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn drop_from_non_root_fails_with_setgroups() {
        if skip_unless_root("drop_from_non_root_fails_with_setgroups") {
            return;
        }
        let first = prepare(&nobody());
        let mut other = nobody();
        other.uid = 1000;
        let second = prepare(&other);
        let code = in_child(|| {
            if first.apply().is_err() {
                return 10;
            }
            match second.apply() {
                Err(DropError::SetGroups(Errno::EPERM)) => 0,
                Err(_) => 20,
                Ok(()) => 21,
            }
        });
        assert_eq!(code, 0);
    }

    #[test]
    fn drop_privileges_to_root_is_allowed_when_root() {
        if skip_unless_root("drop_privileges_to_root_is_allowed_when_root") {
            return;
        }
        let root = resolve("root", &db(), true).unwrap();
        let plan = prepare(&root);
        let code = in_child(|| match plan.apply() {
            Ok(()) => 0,
            Err(_) => 1,
        });
        assert_eq!(code, 0);
    }
}
