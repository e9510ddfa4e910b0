//! Who the app runs as: the account `INITD_USER` names (`name`, `uid`,
//! `name:group`, `uid:gid`), the default user, or the current one when
//! initd is not root, and whether a drop is needed at all.

use std::ffi::OsString;
use std::path::PathBuf;

use super::accounts::{
    AppUser, DEFAULT_HOME, DEFAULT_SHELL, DEFAULT_USER, Db, PasswdEntry, UserError, parse_id,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who<'a> {
    Id(u32),
    Name(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec<'a> {
    user: Who<'a>,
    group: Option<Who<'a>>,
}

/// All digits means an id: POSIX and `useradd` reject all-numeric names.
fn parse_who(part: &str) -> Result<Who<'_>, &'static str> {
    if part.is_empty() {
        return Err("empty user or group");
    }
    if part.bytes().all(|b| b.is_ascii_digit()) {
        return parse_id(part.as_bytes()).map(Who::Id).ok_or("id out of range");
    }
    Ok(Who::Name(part))
}

fn parse_spec(spec: &str) -> Result<Spec<'_>, UserError> {
    let invalid = |reason| UserError::InvalidSpec {
        spec: spec.to_owned(),
        reason,
    };
    let mut parts = spec.split(':');
    let user = parse_who(parts.next().unwrap_or_default()).map_err(invalid)?;
    let group = parts.next().map(parse_who).transpose().map_err(invalid)?;
    if parts.next().is_some() {
        return Err(invalid("more than one ':'"));
    }
    Ok(Spec { user, group })
}

/// Resolves `name`, `uid`, `uid:gid` or `name:group` (mixed forms too).
///
/// As with `docker run --user` (runc/gosu), an explicit group replaces the
/// supplementary groups instead of adding to them. Unlike Docker, a uid with
/// no passwd entry gets gid = uid rather than gid 0, so the app does not
/// silently land in the root group.
pub fn resolve(spec: &str, db: &Db, allow_root: bool) -> Result<AppUser, UserError> {
    let parsed = parse_spec(spec)?;
    let mut user = match parsed.user {
        Who::Name(name) => {
            let entry = db.user_by_name(name).ok_or_else(|| UserError::UserNotFound {
                name: name.to_owned(),
                id: db.free_id(),
            })?;
            from_entry(entry, entry.gid, db)
        }
        Who::Id(uid) => match db.user_by_uid(uid) {
            Some(entry) => from_entry(entry, entry.gid, db),
            None => numeric_user(uid, uid),
        },
    };
    if let Some(group) = parsed.group {
        user.gid = resolve_group(group, spec, db)?;
        user.groups = vec![user.gid];
    }
    if user.uid == 0 && !allow_root {
        return Err(UserError::Root {
            spec: spec.to_owned(),
        });
    }
    Ok(user)
}

/// `gid` may differ from the entry's: the process may run with another one.
fn from_entry(entry: &PasswdEntry, gid: u32, db: &Db) -> AppUser {
    AppUser {
        name: entry.name.clone(),
        uid: entry.uid,
        gid,
        groups: db.groups_of(&entry.name, gid),
        home: entry.home.clone(),
        shell: entry.shell.clone(),
        in_passwd: true,
    }
}

fn numeric_user(uid: u32, gid: u32) -> AppUser {
    AppUser {
        name: uid.to_string(),
        uid,
        gid,
        groups: vec![gid],
        home: PathBuf::from(DEFAULT_HOME),
        shell: PathBuf::from(DEFAULT_SHELL),
        in_passwd: false,
    }
}

fn resolve_group(group: Who<'_>, spec: &str, db: &Db) -> Result<u32, UserError> {
    match group {
        Who::Id(gid) => Ok(gid),
        Who::Name(name) => db
            .group_by_name(name)
            .map(|g| g.gid)
            .ok_or_else(|| UserError::GroupNotFound {
                group: name.to_owned(),
                spec: spec.to_owned(),
            }),
    }
}

/// The user initd already runs as, described from passwd when possible.
/// `gid` is the real one: it may differ from passwd (`--user 1000:0`).
pub fn current_user(uid: u32, gid: u32, db: &Db) -> AppUser {
    match db.user_by_uid(uid) {
        Some(entry) => from_entry(entry, gid, db),
        None => numeric_user(uid, gid),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropDecision {
    /// Already running as the app user (or as root by permission): no drop.
    Skip(AppUser),
    /// Root now; become this user before exec.
    Drop(AppUser),
}

/// Decides whether and to whom to drop. `requested` is `INITD_USER` if the
/// user set it; `None` means the default (`app`).
///
/// - Not root (image `USER app`, `docker run --user`): the current user is
///   the app user. An explicit `INITD_USER` naming someone else is an error,
///   since switching is impossible and ignoring it would hide a mistake.
/// - Root: resolve and drop. Only the *default* user may be missing under
///   `allow_root` (then the app stays root); a missing user that was asked
///   for by name is always an error, so a typo never means "run as root".
pub fn plan_drop(
    current_uid: u32,
    current_gid: u32,
    requested: Option<&str>,
    db: &Db,
    allow_root: bool,
) -> Result<DropDecision, UserError> {
    if current_uid != 0 {
        return stay(current_uid, current_gid, requested, db).map(DropDecision::Skip);
    }
    match resolve(requested.unwrap_or(DEFAULT_USER), db, allow_root) {
        Ok(user) if user.uid == current_uid && user.gid == current_gid => Ok(DropDecision::Skip(user)),
        Ok(user) => Ok(DropDecision::Drop(user)),
        Err(UserError::UserNotFound { .. }) if requested.is_none() && allow_root => {
            Ok(DropDecision::Skip(current_user(current_uid, current_gid, db)))
        }
        Err(e) => Err(e),
    }
}

fn stay(uid: u32, gid: u32, requested: Option<&str>, db: &Db) -> Result<AppUser, UserError> {
    let current = current_user(uid, gid, db);
    let Some(spec) = requested else {
        return Ok(current);
    };
    let group_given = parse_spec(spec)?.group.is_some();
    match resolve(spec, db, true) {
        Ok(u) if u.uid == uid && (!group_given || u.gid == gid) => Ok(current),
        _ => Err(UserError::CannotSwitch {
            requested: spec.to_owned(),
            uid,
        }),
    }
}

/// Effective uid and gid of this process.
pub fn current_ids() -> (u32, u32) {
    (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `HOME`, `USER` and `LOGNAME` for the app, as `login` would set them.
pub fn user_env(user: &AppUser) -> [(&'static str, OsString); 3] {
    [
        ("HOME", user.home.clone().into_os_string()),
        ("USER", OsString::from(&user.name)),
        ("LOGNAME", OsString::from(&user.name)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::user::accounts::fixtures::{GROUP, PASSWD, db};
    use std::path::Path;

    #[test]
    fn name_resolves_with_supplementary_groups() {
        let user = resolve("app", &db(), false).unwrap();
        assert_eq!(
            user,
            AppUser {
                name: "app".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 29, 44, 33],
                home: "/home/app".into(),
                shell: "/bin/bash".into(),
                in_passwd: true,
            }
        );
    }

    #[test]
    fn numeric_uid_in_passwd_is_that_user() {
        assert_eq!(
            resolve("1000", &db(), false).unwrap(),
            resolve("app", &db(), false).unwrap()
        );
    }

    #[test]
    fn numeric_uid_not_in_passwd_is_allowed() {
        let user = resolve("1234", &db(), false).unwrap();
        assert_eq!(user.name, "1234");
        assert_eq!((user.uid, user.gid), (1234, 1234));
        assert_eq!(user.groups, [1234]);
        assert_eq!(user.home, Path::new("/"));
        assert!(!user.in_passwd);
    }

    #[test]
    fn explicit_group_replaces_supplementary_groups() {
        for spec in ["1000:44", "app:44", "app:video", "1000:video"] {
            let user = resolve(spec, &db(), false).unwrap();
            assert_eq!(
                (user.uid, user.gid, &user.groups[..]),
                (1000, 44, &[44][..]),
                "{spec}"
            );
        }
        let user = resolve("1234:5678", &db(), false).unwrap();
        assert_eq!((user.uid, user.gid, user.groups), (1234, 5678, vec![5678]));
    }

    #[test]
    fn root_group_is_allowed_for_a_non_root_user() {
        // The OpenShift convention: arbitrary uid, group 0.
        assert_eq!(resolve("1234:0", &db(), false).unwrap().gid, 0);
    }

    #[test]
    fn missing_group_is_an_error() {
        let err = resolve("app:nogroup", &db(), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "group \"nogroup\" not found in /etc/group (INITD_USER=\"app:nogroup\"); add it in \
             your Dockerfile with groupadd (Alpine: addgroup) or give a numeric gid"
        );
    }

    #[test]
    fn missing_user_says_how_to_add_it() {
        let db = Db::parse(b"root:x:0:0::/root:/bin/sh\n", b"root:x:0:\n");
        let err = resolve("app", &db, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "user \"app\" not found in /etc/passwd; add it in your Dockerfile: \
             RUN groupadd --gid 1000 app && useradd --uid 1000 --gid app --create-home app \
             (Alpine: RUN addgroup -g 1000 app && adduser -D -u 1000 -G app app) \
             (or set INITD_USER)"
        );
    }

    #[test]
    fn suggested_id_is_free_as_uid_and_gid() {
        // 1000 and 1001 are users, 1002 is a group: 1003 is the first free pair.
        let db = Db::parse(
            b"a:x:1000:1000::/:/bin/sh\nb:x:1001:1001::/:/bin/sh\n",
            b"c:x:1002:\n",
        );
        let err = resolve("web", &db, false).unwrap_err();
        assert!(matches!(err, UserError::UserNotFound { id: 1003, .. }));
    }

    #[test]
    fn root_is_refused_under_any_name() {
        for spec in ["root", "toor", "0", "0:0", "toor:1000"] {
            let err = resolve(spec, &db(), false).unwrap_err();
            assert!(matches!(err, UserError::Root { .. }), "{spec}");
            assert!(err.to_string().contains("INITD_ALLOW_ROOT=1"));
        }
        assert_eq!(resolve("toor", &db(), true).unwrap().uid, 0);
    }

    #[test]
    fn invalid_specs_are_refused() {
        for spec in [
            "",
            ":",
            "app:",
            ":app",
            "a:b:c",
            "4294967295",
            "99999999999",
            "1:4294967295",
        ] {
            let err = resolve(spec, &db(), false).unwrap_err();
            assert!(matches!(err, UserError::InvalidSpec { .. }), "{spec:?}: {err}");
        }
    }

    #[test]
    fn user_env_has_home_user_logname() {
        let env = user_env(&resolve("app", &db(), false).unwrap());
        assert_eq!(
            env,
            [
                ("HOME", OsString::from("/home/app")),
                ("USER", OsString::from("app")),
                ("LOGNAME", OsString::from("app")),
            ]
        );
    }

    #[test]
    fn non_root_without_request_skips_as_current_user() {
        let d = plan_drop(1000, 0, None, &db(), false).unwrap();
        let DropDecision::Skip(user) = d else {
            panic!("{d:?}")
        };
        assert_eq!((user.name.as_str(), user.uid, user.gid), ("app", 1000, 0));
        let d = plan_drop(4321, 4321, None, &db(), false).unwrap();
        assert!(matches!(d, DropDecision::Skip(AppUser { uid: 4321, .. })));
    }

    #[test]
    fn non_root_with_matching_request_skips() {
        for spec in ["app", "1000", "1000:1000", "app:app"] {
            let d = plan_drop(1000, 1000, Some(spec), &db(), false).unwrap();
            assert!(matches!(d, DropDecision::Skip(_)), "{spec}");
        }
    }

    #[test]
    fn non_root_with_other_request_is_an_error() {
        let db = Db::parse(
            format!("{PASSWD}web:x:1002:1002::/:/bin/sh\n").as_bytes(),
            GROUP.as_bytes(),
        );
        let err = plan_drop(1000, 1000, Some("web"), &db, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "INITD_USER=web but initd runs as uid 1000 (not root), so it cannot switch users; \
             remove INITD_USER or start the container as root"
        );
        for spec in ["nosuch", "1000:44", "root"] {
            let err = plan_drop(1000, 1000, Some(spec), &db, true).unwrap_err();
            assert!(matches!(err, UserError::CannotSwitch { .. }), "{spec}");
        }
    }

    #[test]
    fn root_drops_to_the_default_user() {
        let d = plan_drop(0, 0, None, &db(), false).unwrap();
        assert!(matches!(d, DropDecision::Drop(AppUser { uid: 1000, .. })));
    }

    #[test]
    fn missing_default_user_falls_back_to_root_only_if_allowed() {
        let db = Db::parse(b"root:x:0:0::/root:/bin/sh\n", b"");
        let err = plan_drop(0, 0, None, &db, false).unwrap_err();
        assert!(matches!(err, UserError::UserNotFound { .. }));
        let d = plan_drop(0, 0, None, &db, true).unwrap();
        assert!(matches!(d, DropDecision::Skip(AppUser { uid: 0, .. })));
        // A name asked for explicitly is never silently replaced by root.
        let err = plan_drop(0, 0, Some("app"), &db, true).unwrap_err();
        assert!(matches!(err, UserError::UserNotFound { .. }));
    }

    #[test]
    fn root_as_root_is_a_skip_when_allowed() {
        assert!(matches!(
            plan_drop(0, 0, Some("root"), &db(), true).unwrap(),
            DropDecision::Skip(_)
        ));
        assert!(plan_drop(0, 0, Some("root"), &db(), false).is_err());
    }

    #[test]
    fn huge_files_are_fine() {
        // Dense ids from 1000 up also exercise the free-id search.
        let mut passwd = String::from("app:x:1000:1000::/home/app:/bin/sh\n");
        let mut group = String::from("team:x:999:app\n");
        for i in 1001..201_001u32 {
            passwd.push_str(&format!("u{i}:x:{i}:{i}::/home/u{i}:/bin/sh\n"));
            group.push_str(&format!("g{i}:x:{i}:u{i}\n"));
        }
        let db = Db::parse(passwd.as_bytes(), group.as_bytes());
        assert_eq!(resolve("app", &db, false).unwrap().groups, [1000, 999]);
        assert_eq!(resolve("u200000", &db, false).unwrap().groups, [200000]);
        let err = resolve("web", &db, false).unwrap_err();
        assert!(matches!(err, UserError::UserNotFound { id: 201_001, .. }));
    }
}
