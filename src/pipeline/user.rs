//! The app user: who `INITD_USER` names, how `HOST_UID`/`HOST_GID` renumber
//! it, and the privilege drop itself.
//!
//! initd is linked statically against glibc, where `getpwnam` & co. would
//! load NSS modules at run time (and crash or silently fail). So the account
//! files are parsed here, following `files` NSS semantics: first entry wins,
//! `+`/`-` NIS compat lines are ignored, malformed lines are skipped.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};
use thiserror::Error;

/// Setting names, used only to make error messages actionable.
pub const USER_SETTING: &str = "INITD_USER";
pub const ALLOW_ROOT_SETTING: &str = "INITD_ALLOW_ROOT";
pub const DEFAULT_USER: &str = "app";

/// What passwd(5) says to use when the fields are empty, and what an unknown
/// numeric uid gets (like `docker run --user 1234`).
const DEFAULT_HOME: &str = "/";
const DEFAULT_SHELL: &str = "/bin/sh";

/// Where `useradd` starts numbering regular users on Debian and Alpine.
const FIRST_REGULAR_ID: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFile {
    Passwd,
    Group,
}

impl DbFile {
    fn path(self) -> &'static str {
        match self {
            DbFile::Passwd => "etc/passwd",
            DbFile::Group => "etc/group",
        }
    }
}

/// A skipped line, by number only: lines may hold password hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    pub file: DbFile,
    pub line: usize,
}

/// The parsed account files.
#[derive(Debug, Clone, Default)]
pub struct Db {
    pub users: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
    pub malformed: Vec<Malformed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUser {
    pub name: String,
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Supplementary groups as `initgroups` would set them, primary first.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
    /// False for a bare numeric uid that has no passwd entry.
    pub in_passwd: bool,
}

#[derive(Debug, Error)]
pub enum UserError {
    #[error("{USER_SETTING}={spec:?} is not valid: {reason}; use a name, uid, uid:gid or name:group")]
    InvalidSpec { spec: String, reason: &'static str },
    #[error(
        "user {name:?} not found in /etc/passwd; add it in your Dockerfile: \
         RUN groupadd --gid {id} {name} && useradd --uid {id} --gid {name} --create-home {name} \
         (Alpine: RUN addgroup -g {id} {name} && adduser -D -u {id} -G {name} {name}) \
         (or set {USER_SETTING})"
    )]
    UserNotFound { name: String, id: u32 },
    #[error(
        "group {group:?} not found in /etc/group ({USER_SETTING}={spec:?}); add it in your \
         Dockerfile with groupadd (Alpine: addgroup) or give a numeric gid"
    )]
    GroupNotFound { group: String, spec: String },
    #[error(
        "{USER_SETTING}={spec:?} is uid 0 (root) and initd will not run the app as root; \
         use an unprivileged user, or set {ALLOW_ROOT_SETTING}=1 if the app really needs root"
    )]
    Root { spec: String },
    #[error(
        "{USER_SETTING}={requested} but initd runs as uid {uid} (not root), so it cannot switch \
         users; remove {USER_SETTING} or start the container as root"
    )]
    CannotSwitch { requested: String, uid: u32 },
    #[error(
        "{vars} {} initd to start as root (it renumbers the app user and chowns its files), \
         but initd runs as uid {uid}; remove {vars} or start the container as root",
        if .vars.contains(" and ") { "need" } else { "needs" }
    )]
    HostIdsNeedRoot { vars: &'static str, uid: u32 },
    #[error(
        "{var}=0 would make the app user root; leave {var} unset when the host user is root \
         (or set {ALLOW_ROOT_SETTING}=true, and the app user keeps its ids)"
    )]
    HostIdIsRoot { var: &'static str },
    #[error(
        "cannot apply HOST_UID/HOST_GID: user {user:?} is uid 0 (root), whose account initd \
         never rewrites; leave HOST_UID and HOST_GID unset or run the app as an unprivileged user"
    )]
    RemapRoot { user: String },
    #[error(
        "cannot update /etc/{file}: {source}; initd replaces it only where root alone can change the path"
    )]
    EtcPath {
        file: &'static str,
        source: crate::fsafe::PathError,
    },
    #[error("cannot update /etc/{file}: it is not a regular file")]
    EtcNotRegular { file: &'static str },
    #[error("INITD_CHOWN: {source}")]
    ChownPath {
        source: crate::pipeline::chown::ChownError,
    },
    #[error("HOST_UID/HOST_GID: cannot chown the home directory of {user:?}: {source}")]
    Home {
        user: String,
        source: crate::pipeline::chown::ChownError,
    },
    #[error("cannot apply HOST_UID/HOST_GID: user {user:?} is not in /etc/passwd")]
    RemapUserMissing { user: String },
    #[error(
        "cannot give user {user:?} uid {uid} (HOST_UID): it belongs to user {other:?} in \
         /etc/passwd; renumber {other:?} in your Dockerfile (usermod -u) or leave HOST_UID unset"
    )]
    UidTaken { user: String, uid: u32, other: String },
    #[error(
        "cannot give group {group:?} gid {gid} (HOST_GID): it belongs to group {other:?} in \
         /etc/group; renumber {other:?} in your Dockerfile (groupmod -g) or leave HOST_GID unset"
    )]
    GidTaken { group: String, gid: u32, other: String },
    #[error("cannot read {}: {}", .path.display(), describe_io(.source))]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot update {}: {}{}", .path.display(), describe_io(.source), write_hint(.source))]
    Write { path: PathBuf, source: io::Error },
}

fn describe_io(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

fn write_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EROFS) => "; HOST_UID/HOST_GID need a writable /etc (not docker run --read-only)",
        Some(libc::EBUSY) => "; is the file bind-mounted? HOST_UID/HOST_GID must rewrite it",
        _ => "",
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// The meaningful part of a line, or `None` for lines NSS `files` skips.
fn content(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let skipped = line.trim_ascii().is_empty()
        || line.starts_with(b"#")
        // NIS compat entries (`+user`, `-@netgroup`) need NIS; never ours.
        || line.starts_with(b"+")
        || line.starts_with(b"-");
    (!skipped).then_some(line)
}

/// Exactly `N` colon-separated fields, or `None`.
fn fields<const N: usize>(line: &[u8]) -> Option<[&[u8]; N]> {
    let mut out = [&line[..0]; N];
    let mut parts = line.split(|&b| b == b':');
    for slot in &mut out {
        *slot = parts.next()?;
    }
    parts.next().is_none().then_some(out)
}

fn parse_name(raw: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(raw).ok()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Decimal id. `u32::MAX` is `(uid_t)-1`, which the set*id calls read as
/// "leave unchanged", so it is never a valid id.
fn parse_id(raw: &[u8]) -> Option<u32> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let id: u32 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    (id != u32::MAX).then_some(id)
}

fn path_or(raw: &[u8], default: &str) -> PathBuf {
    if raw.is_empty() {
        PathBuf::from(default)
    } else {
        PathBuf::from(OsString::from_vec(raw.to_vec()))
    }
}

/// One passwd line (already through `content`); `None` if malformed.
fn parse_passwd_line(line: &[u8]) -> Option<PasswdEntry> {
    let [name, _pw, uid, gid, _gecos, home, shell] = fields::<7>(line)?;
    Some(PasswdEntry {
        name: parse_name(name)?,
        uid: parse_id(uid)?,
        gid: parse_id(gid)?,
        home: path_or(home, DEFAULT_HOME),
        shell: path_or(shell, DEFAULT_SHELL),
    })
}

/// One group line (already through `content`); `None` if malformed.
fn parse_group_line(line: &[u8]) -> Option<GroupEntry> {
    let [name, _pw, gid, members] = fields::<4>(line)?;
    let members = members
        .split(|&b| b == b',')
        // A member that is not UTF-8 can never match a user we resolve.
        .filter_map(|m| std::str::from_utf8(m).ok())
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    Some(GroupEntry {
        name: parse_name(name)?,
        gid: parse_id(gid)?,
        members,
    })
}

fn parse_file<T>(
    text: &[u8],
    file: DbFile,
    parse: fn(&[u8]) -> Option<T>,
    malformed: &mut Vec<Malformed>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let Some(line) = content(line) else { continue };
        match parse(line) {
            Some(entry) => out.push(entry),
            None => malformed.push(Malformed { file, line: i + 1 }),
        }
    }
    out
}

impl Db {
    /// Parses passwd and group contents; bytes because GECOS fields and
    /// home paths need not be UTF-8.
    pub fn parse(passwd: &[u8], group: &[u8]) -> Db {
        let mut malformed = Vec::new();
        let users = parse_file(passwd, DbFile::Passwd, parse_passwd_line, &mut malformed);
        let groups = parse_file(group, DbFile::Group, parse_group_line, &mut malformed);
        Db {
            users,
            groups,
            malformed,
        }
    }

    /// Reads `root/etc/passwd` and `root/etc/group`. A missing file reads as
    /// empty: `FROM scratch` images have none, and numeric users still work.
    pub fn load(root: &Path) -> Result<Db, UserError> {
        let passwd = read_optional(&root.join(DbFile::Passwd.path()))?;
        let group = read_optional(&root.join(DbFile::Group.path()))?;
        let db = Db::parse(&passwd, &group);
        db.log_malformed();
        Ok(db)
    }

    fn log_malformed(&self) {
        for file in [DbFile::Passwd, DbFile::Group] {
            let lines: Vec<usize> = self
                .malformed
                .iter()
                .filter(|m| m.file == file)
                .map(|m| m.line)
                .collect();
            if !lines.is_empty() {
                tracing::warn!(
                    file = %format_args!("/{}", file.path()),
                    count = lines.len(),
                    first_lines = ?&lines[..lines.len().min(5)],
                    "skipped malformed lines"
                );
            }
        }
    }

    pub fn user_by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.uid == uid)
    }

    pub fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.gid == gid)
    }

    /// What `initgroups(name, primary)` computes: the primary gid, then every
    /// group listing `name` as a member, in file order, without repeats.
    pub fn groups_of(&self, name: &str, primary: u32) -> Vec<u32> {
        let mut out = vec![primary];
        for g in &self.groups {
            if g.members.iter().any(|m| m == name) && !out.contains(&g.gid) {
                out.push(g.gid);
            }
        }
        out
    }

    /// The lowest id from 1000 up that is free as both a uid and a gid, so
    /// a suggested `groupadd`/`useradd` pair works as pasted.
    pub fn free_id(&self) -> u32 {
        // A set keeps this linear even for huge files with dense ids.
        let used: HashSet<u32> = self
            .users
            .iter()
            .map(|u| u.uid)
            .chain(self.groups.iter().map(|g| g.gid))
            .collect();
        (FIRST_REGULAR_ID..u32::MAX)
            .find(|id| !used.contains(id))
            .unwrap_or(FIRST_REGULAR_ID)
    }
}

/// Far above any real account file, and a bound on what PID 1 reads.
const MAX_DB_BYTES: u64 = 64 * 1024 * 1024;

/// Reads an account file that may be missing; never blocks on a FIFO nor
/// reads a device.
fn read_optional(path: &Path) -> Result<Vec<u8>, UserError> {
    use crate::fsafe::ReadProblem;
    let read_err = |source| UserError::Read {
        path: path.to_owned(),
        source,
    };
    match crate::fsafe::read_regular(path, MAX_DB_BYTES) {
        Ok(bytes) => Ok(bytes),
        Err(ReadProblem::Missing) => Ok(Vec::new()),
        Err(ReadProblem::Io(e)) => Err(read_err(e)),
        Err(ReadProblem::NotRegular(what)) => Err(read_err(io::Error::other(format!("it is {what}")))),
        Err(ReadProblem::TooLarge) => Err(read_err(io::Error::other("it is larger than 64 MiB"))),
    }
}

// ---------------------------------------------------------------------------
// Resolving INITD_USER

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

// ---------------------------------------------------------------------------
// HOST_UID / HOST_GID

/// The highest id `HOST_UID`/`HOST_GID` accept: ids above `i32::MAX` are
/// read as negative by many tools (and `(uid_t)-1` means "no change"), so
/// they would make /etc/passwd unusable rather than renumber anything.
pub const MAX_HOST_ID: u32 = i32::MAX as u32;

/// Why a `HOST_UID`/`HOST_GID` value is not an id; the value itself is
/// named by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HostIdError {
    #[error("not a decimal number")]
    NotDecimal,
    #[error("above {MAX_HOST_ID}")]
    TooLarge,
}

/// Parses a `HOST_UID`/`HOST_GID` value, the output of `id -u`: ASCII
/// digits only (no sign, spaces, hex or exponent), 0 to [`MAX_HOST_ID`].
/// Whether 0 is allowed is for [`host_ids`] to decide.
pub fn parse_host_id(value: &str) -> Result<u32, HostIdError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostIdError::NotDecimal);
    }
    // All digits: only the size can fail, whatever the number of them.
    match value.parse::<u32>() {
        Ok(id) if id <= MAX_HOST_ID => Ok(id),
        _ => Err(HostIdError::TooLarge),
    }
}

/// The ids to renumber to: 0 (the host user is root) is refused unless
/// `INITD_ALLOW_ROOT`, and then means "nothing to match", since root on
/// the host can use the files whatever their owner.
pub fn host_ids(
    host_uid: Option<u32>,
    host_gid: Option<u32>,
    allow_root: bool,
) -> Result<(Option<u32>, Option<u32>), UserError> {
    for (var, id) in [("HOST_UID", host_uid), ("HOST_GID", host_gid)] {
        if id == Some(0) && !allow_root {
            return Err(UserError::HostIdIsRoot { var });
        }
    }
    let nonzero = |id: Option<u32>| id.filter(|&id| id != 0);
    Ok((nonzero(host_uid), nonzero(host_gid)))
}

/// Renumbering needs root; fail early and say so rather than at `rename`.
pub fn check_host_ids(
    current_uid: u32,
    host_uid: Option<u32>,
    host_gid: Option<u32>,
) -> Result<(), UserError> {
    let vars = match (host_uid, host_gid) {
        (None, None) => return Ok(()),
        (Some(_), None) => "HOST_UID",
        (None, Some(_)) => "HOST_GID",
        (Some(_), Some(_)) => "HOST_UID and HOST_GID",
    };
    if current_uid == 0 {
        Ok(())
    } else {
        Err(UserError::HostIdsNeedRoot {
            vars,
            uid: current_uid,
        })
    }
}

/// New passwd/group contents plus the ids before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    pub passwd: Vec<u8>,
    pub group: Vec<u8>,
    pub old_uid: u32,
    pub old_gid: u32,
    pub new_uid: u32,
    pub new_gid: u32,
}

impl Remap {
    pub fn changed(&self) -> bool {
        self.old_uid != self.new_uid || self.old_gid != self.new_gid
    }
}

/// Gives `user` a new uid and/or primary gid, editing only the lines that
/// must change; every other byte is preserved.
///
/// The gid change renumbers the user's primary group like `groupmod -g`:
/// the first group with the old gid gets the new one, and every passwd
/// entry whose primary gid was the old one follows it. Ids already used by
/// another user or group are refused: sharing them would give the app that
/// account's files.
pub fn remap(
    passwd: &[u8],
    group: &[u8],
    user: &str,
    new_uid: Option<u32>,
    new_gid: Option<u32>,
) -> Result<Remap, UserError> {
    for (var, id) in [("HOST_UID", new_uid), ("HOST_GID", new_gid)] {
        if id == Some(0) {
            return Err(UserError::HostIdIsRoot { var });
        }
    }
    let db = Db::parse(passwd, group);
    let entry = db.user_by_name(user).ok_or_else(|| UserError::RemapUserMissing {
        user: user.to_owned(),
    })?;
    let (old_uid, old_gid) = (entry.uid, entry.gid);
    let uid = new_uid.unwrap_or(old_uid);
    let gid = new_gid.unwrap_or(old_gid);
    // Root's own line is never rewritten, not even its group.
    if old_uid == 0 && (uid != 0 || gid != old_gid) {
        return Err(UserError::RemapRoot {
            user: user.to_owned(),
        });
    }
    check_uid_free(&db, user, old_uid, uid)?;
    check_gid_free(&db, old_gid, gid)?;
    // Group 0 is root's (OpenShift gives apps it as their primary group):
    // it is never renumbered, only the app user's own line moves.
    let group_renumbered = gid != old_gid && old_gid != 0 && db.group_by_gid(old_gid).is_some();
    Ok(Remap {
        passwd: rewrite_passwd(passwd, user, (old_uid, uid), (old_gid, gid), group_renumbered),
        group: if group_renumbered {
            rewrite_group(group, old_gid, gid)
        } else {
            group.to_vec()
        },
        old_uid,
        old_gid,
        new_uid: uid,
        new_gid: gid,
    })
}

fn check_uid_free(db: &Db, user: &str, old: u32, new: u32) -> Result<(), UserError> {
    if old == new {
        return Ok(());
    }
    match db.users.iter().find(|u| u.uid == new && u.name != user) {
        Some(other) => Err(UserError::UidTaken {
            user: user.to_owned(),
            uid: new,
            other: other.name.clone(),
        }),
        None => Ok(()),
    }
}

fn check_gid_free(db: &Db, old: u32, new: u32) -> Result<(), UserError> {
    if old == new {
        return Ok(());
    }
    match db.group_by_gid(new) {
        Some(other) => Err(UserError::GidTaken {
            group: db
                .group_by_gid(old)
                .map_or_else(|| old.to_string(), |g| g.name.clone()),
            gid: new,
            other: other.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Splits off the line ending so a rewritten line keeps `\n`, `\r\n` or none.
fn split_ending(line: &[u8]) -> (&[u8], &[u8]) {
    let cut = if line.ends_with(b"\r\n") {
        2
    } else {
        usize::from(line.ends_with(b"\n"))
    };
    line.split_at(line.len() - cut)
}

/// Replaces the given colon-separated fields with new ids.
fn with_fields(line: &[u8], changes: &[(usize, u32)]) -> Vec<u8> {
    let (body, ending) = split_ending(line);
    let mut out = Vec::with_capacity(line.len() + 8);
    for (i, field) in body.split(|&b| b == b':').enumerate() {
        if i > 0 {
            out.push(b':');
        }
        match changes.iter().find(|(idx, _)| *idx == i) {
            Some((_, id)) => out.extend_from_slice(id.to_string().as_bytes()),
            None => out.extend_from_slice(field),
        }
    }
    out.extend_from_slice(ending);
    out
}

fn rewrite_passwd(
    text: &[u8],
    user: &str,
    (old_uid, uid): (u32, u32),
    (old_gid, gid): (u32, u32),
    group_renumbered: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut user_done = false;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let entry = content(line).and_then(parse_passwd_line);
        let mut changes = Vec::new();
        if let Some(e) = entry {
            let is_user = !user_done && e.name == user;
            user_done |= is_user;
            if is_user && uid != old_uid {
                changes.push((2, uid));
            }
            // Root's lines are never rewritten, whatever group they are in.
            let follows = group_renumbered && e.uid != 0;
            if e.gid == old_gid && gid != old_gid && (is_user || follows) {
                changes.push((3, gid));
            }
        }
        if changes.is_empty() {
            out.extend_from_slice(line);
        } else {
            out.extend(with_fields(line, &changes));
        }
    }
    out
}

fn rewrite_group(text: &[u8], old_gid: u32, gid: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut done = old_gid == gid;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let hit = !done
            && content(line)
                .and_then(parse_group_line)
                .is_some_and(|g| g.gid == old_gid);
        if hit {
            done = true;
            out.extend(with_fields(line, &[(2, gid)]));
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Applies [`remap`] to `root/etc/passwd` and `root/etc/group`, with
/// `before_commit` (the home's chown) as part of the same unit.
///
/// Both files are written and synced next to the originals first; then
/// `before_commit` runs; only when it succeeds are they renamed into place.
/// So a start that cannot finish the chown leaves the account files as they
/// were, and the next start computes the same renumbering and finishes it
/// (the chown skips what it already did: it moves only the old ids). A
/// write failure (full disk, read-only /etc) leaves everything untouched;
/// only a failing rename, rare by then, could leave one file updated.
///
/// All of it on descriptors: the files are reached through links and
/// directories only root owns ([`fsafe::resolve_trusted`]), read and written
/// relative to the directory's descriptor, and never through a link at the
/// temporary name.
pub fn apply_remap(
    root: &Path,
    user: &str,
    new_uid: Option<u32>,
    new_gid: Option<u32>,
    before_commit: impl FnOnce(&Remap) -> Result<(), UserError>,
) -> Result<Remap, UserError> {
    let passwd_at = locate(root, DbFile::Passwd)?;
    let group_at = locate(root, DbFile::Group)?;
    let passwd = passwd_at.read()?.ok_or_else(|| UserError::Read {
        path: PathBuf::from("/etc/passwd"),
        source: io::Error::from_raw_os_error(libc::ENOENT),
    })?;
    let group = group_at.read()?.unwrap_or_default();
    let remap = remap(&passwd, &group, user, new_uid, new_gid)?;
    if !remap.changed() {
        return Ok(remap);
    }
    let mut staged = Vec::new();
    for (at, old, new) in [
        (&passwd_at, &passwd, &remap.passwd),
        (&group_at, &group, &remap.group),
    ] {
        if old != new {
            match at.stage(new) {
                Ok(s) => staged.push(s),
                Err(e) => {
                    staged.iter().for_each(Staged::discard);
                    return Err(e);
                }
            }
        }
    }
    if let Err(e) = before_commit(&remap) {
        staged.iter().for_each(Staged::discard);
        return Err(e);
    }
    let mut staged = staged.into_iter();
    while let Some(s) = staged.next() {
        if let Err(e) = s.commit() {
            staged.for_each(|s| s.discard());
            return Err(e);
        }
    }
    Ok(remap)
}

/// Where an account file lives: its directory (reached through root's links
/// and directories only) and its name there.
struct DbAt {
    file: &'static str,
    dir: std::os::fd::OwnedFd,
    name: OsString,
}

fn locate(root: &Path, file: DbFile) -> Result<DbAt, UserError> {
    let name = match file {
        DbFile::Passwd => "passwd",
        DbFile::Group => "group",
    };
    // A symlinked /etc/passwd stays a symlink: what it points to is replaced.
    let found = crate::fsafe::resolve_trusted(&root.join(file.path()), &crate::fsafe::trusted_owners())
        .map_err(|source| UserError::EtcPath { file: name, source })?;
    Ok(DbAt {
        file: name,
        dir: found.dir,
        name: found.name,
    })
}

impl DbAt {
    fn shown(&self) -> PathBuf {
        PathBuf::from("/etc").join(self.file)
    }

    fn write_err(&self, errno: Errno) -> UserError {
        UserError::Write {
            path: self.shown(),
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }

    /// The content, or `None` when there is no such file.
    fn read(&self) -> Result<Option<Vec<u8>>, UserError> {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::openat(
            &self.dir,
            self.name.as_os_str(),
            flags,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => {
                return Err(UserError::Read {
                    path: self.shown(),
                    source: io::Error::from_raw_os_error(e as i32),
                });
            }
        };
        let file = fs::File::from(fd);
        let meta = file.metadata().map_err(|source| UserError::Read {
            path: self.shown(),
            source,
        })?;
        if !meta.is_file() {
            return Err(UserError::EtcNotRegular { file: self.file });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        io::Read::read_to_end(&mut &file, &mut bytes).map_err(|source| UserError::Read {
            path: self.shown(),
            source,
        })?;
        Ok(Some(bytes))
    }

    /// Writes and syncs `content` to a temporary file next to the original,
    /// with the original's owner and mode.
    fn stage(&self, content: &[u8]) -> Result<Staged<'_>, UserError> {
        use nix::fcntl::{AtFlags, OFlag};
        use nix::sys::stat::{Mode, fstatat};
        let like = fstatat(&self.dir, self.name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| self.write_err(e))?;
        // A fixed name rather than a pid (initd is always PID 1): a crashed
        // earlier start leaves at most this file, and it is cleared here.
        let mut tmp = OsString::from(".");
        tmp.push(&self.name);
        tmp.push(".initd-tmp");
        let _ = nix::unistd::unlinkat(
            &self.dir,
            tmp.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        let fd = nix::fcntl::openat(
            &self.dir,
            tmp.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| self.write_err(e))?;
        let staged = Staged { at: self, tmp };
        let mut file = fs::File::from(fd);
        let written = file
            .write_all(content)
            .and_then(|()| std::os::unix::fs::fchown(&file, Some(like.st_uid), Some(like.st_gid)))
            // After chown, which may clear mode bits.
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(fs::Permissions::from_mode(like.st_mode & 0o7777))
            })
            .and_then(|()| file.sync_all());
        if let Err(source) = written {
            staged.discard();
            return Err(UserError::Write {
                path: self.shown(),
                source,
            });
        }
        Ok(staged)
    }
}

/// A fully written and synced temporary file next to its destination.
struct Staged<'a> {
    at: &'a DbAt,
    tmp: OsString,
}

impl Staged<'_> {
    fn discard(&self) {
        let _ = nix::unistd::unlinkat(
            &self.at.dir,
            self.tmp.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }

    fn commit(self) -> Result<(), UserError> {
        let at = self.at;
        if let Err(e) = nix::fcntl::renameat(&at.dir, self.tmp.as_os_str(), &at.dir, at.name.as_os_str()) {
            self.discard();
            return Err(at.write_err(e));
        }
        // The rename is only durable once the directory entry is. The
        // descriptor is O_PATH: reopen the very directory to sync it.
        let dir = nix::fcntl::openat(
            &at.dir,
            ".",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| at.write_err(e))?;
        nix::unistd::fsync(&dir).map_err(|e| at.write_err(e))
    }
}

// ---------------------------------------------------------------------------
// Dropping privileges

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
    use std::os::unix::fs::{PermissionsExt, symlink};

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

+nisuser::::::
-@badguys::::::
app:x:1000:1000:App,,,:/home/app:/bin/bash
broken line
bob:x:1001:1001::/home/bob:
toor:x:0:0:evil twin:/root:/bin/sh
";

    const GROUP: &str = "\
root:x:0:
daemon:x:1:
app:x:1000:
bob:x:1001:
audio:x:29:bob,app
video:x:44:app
www:x:33:,app,
+:::
";

    fn db() -> Db {
        Db::parse(PASSWD.as_bytes(), GROUP.as_bytes())
    }

    use crate::testdir::{TempDir, skip_unless_root};

    // --- parsing ---------------------------------------------------------

    #[test]
    fn comments_blank_and_nis_lines_are_ignored() {
        let db = db();
        let names: Vec<&str> = db.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["root", "daemon", "app", "bob", "toor"]);
        // Only the genuinely broken line counts, by number.
        assert_eq!(
            db.malformed,
            [Malformed {
                file: DbFile::Passwd,
                line: 8
            }]
        );
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let passwd = "\
a:x:1:1::/:/bin/sh:extra
b:x:1:1::/
c:x:-1:1::/:/bin/sh
d:x:1a:1::/:/bin/sh
:x:5:5::/:/bin/sh
e:x:4294967295:1::/:/bin/sh
f:x:4294967296:1::/:/bin/sh
g:x::1::/:/bin/sh
ok:x:7:7::/:/bin/sh
";
        let group = "g1:x:notanumber:\ng2:x:5\ng3:x:6:a\n";
        let db = Db::parse(passwd.as_bytes(), group.as_bytes());
        assert_eq!(db.users.len(), 1);
        assert_eq!(db.users[0].name, "ok");
        assert_eq!(db.groups.len(), 1);
        let lines: Vec<(DbFile, usize)> = db.malformed.iter().map(|m| (m.file, m.line)).collect();
        let mut want: Vec<(DbFile, usize)> = (1..=8).map(|l| (DbFile::Passwd, l)).collect();
        want.extend([(DbFile::Group, 1), (DbFile::Group, 2)]);
        assert_eq!(lines, want);
    }

    #[test]
    fn crlf_and_empty_fields_are_handled() {
        let db = Db::parse(b"a:x:5:6:::\r\nb:x:7:7::/home/b:/bin/zsh\r\n", b"");
        let a = db.user_by_name("a").unwrap();
        assert_eq!(a.home, Path::new("/"));
        assert_eq!(a.shell, Path::new("/bin/sh"));
        assert_eq!(db.user_by_name("b").unwrap().shell, Path::new("/bin/zsh"));
    }

    #[test]
    fn non_utf8_gecos_and_home_are_fine() {
        let db = Db::parse(b"a:x:5:5:Jos\xe9:/home/\xe9:/bin/sh\n", b"");
        let a = db.user_by_name("a").unwrap();
        assert_eq!(
            std::os::unix::ffi::OsStrExt::as_bytes(a.home.as_os_str()),
            b"/home/\xe9"
        );
        assert!(db.malformed.is_empty());
    }

    #[test]
    fn first_entry_wins() {
        let db = Db::parse(
            b"app:x:1000:1000::/a:/bin/sh\napp:x:2000:2000::/b:/bin/sh\n",
            b"g:x:5:\ng:x:6:\n",
        );
        assert_eq!(db.user_by_name("app").unwrap().uid, 1000);
        assert_eq!(db.group_by_name("g").unwrap().gid, 5);
    }

    #[test]
    fn group_members_skip_empty_entries() {
        let db = db();
        assert_eq!(db.group_by_name("www").unwrap().members, ["app"]);
        assert!(db.group_by_name("app").unwrap().members.is_empty());
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

    #[test]
    fn load_reads_root_etc_and_tolerates_missing_files() {
        let dir = TempDir::new("user");
        assert!(Db::load(&dir.0).unwrap().users.is_empty());
        fs::create_dir(dir.0.join("etc")).unwrap();
        fs::write(dir.0.join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.0.join("etc/group"), GROUP).unwrap();
        let db = Db::load(&dir.0).unwrap();
        assert_eq!(db.user_by_uid(1000).unwrap().name, "app");
        assert_eq!(db.group_by_gid(44).unwrap().name, "video");
    }

    #[test]
    fn load_reports_unreadable_files() {
        let dir = TempDir::new("user");
        fs::create_dir_all(dir.0.join("etc/passwd")).unwrap();
        let err = Db::load(&dir.0).unwrap_err();
        assert!(
            err.to_string().ends_with("etc/passwd: it is a directory"),
            "{err}"
        );
        // A FIFO is refused at once, not waited on.
        fs::remove_dir(dir.0.join("etc/passwd")).unwrap();
        nix::unistd::mkfifo(
            &dir.0.join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let err = Db::load(&dir.0).unwrap_err();
        assert!(err.to_string().ends_with("etc/passwd: it is a FIFO"), "{err}");
    }

    // --- resolve -----------------------------------------------------------

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

    // --- plan_drop ---------------------------------------------------------

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

    // --- HOST_UID / HOST_GID -------------------------------------------------

    #[test]
    fn host_ids_need_root() {
        assert!(check_host_ids(1000, None, None).is_ok());
        assert!(check_host_ids(0, Some(501), Some(20)).is_ok());
        let err = check_host_ids(1000, Some(501), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "HOST_UID needs initd to start as root (it renumbers the app user and chowns its \
             files), but initd runs as uid 1000; remove HOST_UID or start the container as root"
        );
        let err = check_host_ids(1000, Some(1), Some(1)).unwrap_err();
        assert!(err.to_string().starts_with("HOST_UID and HOST_GID need initd"));
    }

    #[test]
    fn host_ids_parse() {
        assert_eq!(parse_host_id("501"), Ok(501));
        assert_eq!(parse_host_id("0"), Ok(0));
        assert_eq!(parse_host_id("2147483647"), Ok(2147483647));
        assert_eq!(parse_host_id("000501"), Ok(501));
        for bad in ["", " 501", "501\n", "+5", "-1", "0x10", "1e3", "1.5", "abc", "٣"] {
            assert_eq!(parse_host_id(bad), Err(HostIdError::NotDecimal), "{bad:?}");
        }
        for big in [
            "2147483648",
            "4294967295",
            "4294967296",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_host_id(big), Err(HostIdError::TooLarge), "{big:?}");
        }
    }

    #[test]
    fn host_id_zero_needs_allow_root_and_then_changes_nothing() {
        assert!(matches!(
            host_ids(Some(0), Some(20), false),
            Err(UserError::HostIdIsRoot { var: "HOST_UID" })
        ));
        assert!(matches!(
            host_ids(None, Some(0), false),
            Err(UserError::HostIdIsRoot { var: "HOST_GID" })
        ));
        assert_eq!(host_ids(Some(0), Some(20), true).unwrap(), (None, Some(20)));
        assert_eq!(host_ids(Some(501), None, false).unwrap(), (Some(501), None));
    }

    #[test]
    fn a_primary_group_0_is_never_renumbered_and_root_lines_stay() {
        let passwd =
            b"root:x:0:0:root:/root:/bin/sh\nsync:x:4:0::/bin:/bin/sync\napp:x:1000:0::/app:/bin/sh\n";
        let group = b"root:x:0:\napp:x:1000:\n";
        let r = remap(passwd, group, "app", Some(501), Some(501)).unwrap();
        assert_eq!(
            diff(passwd, &r.passwd),
            [(2, "app:x:501:501::/app:/bin/sh\n".to_owned())]
        );
        assert_eq!(r.group, group);
        assert_eq!((r.old_gid, r.new_gid), (0, 501));
        // A group shared with a uid-0 account: root's line keeps its gid.
        let passwd = b"toor:x:0:1000::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n";
        let r = remap(passwd, group, "app", None, Some(501)).unwrap();
        assert_eq!(
            diff(passwd, &r.passwd),
            [(1, "app:x:1000:501::/app:/bin/sh\n".to_owned())]
        );
        // A uid-0 app user is never renumbered.
        let err = remap(passwd, group, "toor", Some(501), None).unwrap_err();
        assert!(matches!(err, UserError::RemapRoot { .. }), "{err}");
    }

    const REMAP_PASSWD: &[u8] = b"\
root:x:0:0:root:/root:/bin/bash\n\
# keep me   exactly\n\
+nis::::::\n\
garbage\n\
app:x:1000:1000:J\xe9r\xf4me:/home/app:/bin/bash\r\n\
other:x:1002:1000::/home/other:/bin/sh\n\
bob:x:1001:1001::/home/bob:\n\
app:x:1000:1000:dup:/x:/bin/sh";

    const REMAP_GROUP: &[u8] = b"\
root:x:0:\n\
app:x:1000:\n\
bob:x:1001:\n\
audio:x:29:app\n";

    fn lines(b: &[u8]) -> Vec<&[u8]> {
        b.split_inclusive(|&c| c == b'\n').collect()
    }

    /// The (index, new content) of every line that differs.
    fn diff(old: &[u8], new: &[u8]) -> Vec<(usize, String)> {
        let (a, b) = (lines(old), lines(new));
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .map(|(i, (_, y))| (i, String::from_utf8_lossy(y).into_owned()))
            .collect()
    }

    #[test]
    fn remap_uid_touches_only_the_user_line() {
        let r = remap(REMAP_PASSWD, REMAP_GROUP, "app", Some(501), None).unwrap();
        assert_eq!(
            diff(REMAP_PASSWD, &r.passwd),
            [(
                4,
                "app:x:501:1000:J\u{fffd}r\u{fffd}me:/home/app:/bin/bash\r\n".to_owned()
            )]
        );
        assert_eq!(r.group, REMAP_GROUP);
        assert_eq!(
            (r.old_uid, r.new_uid, r.old_gid, r.new_gid),
            (1000, 501, 1000, 1000)
        );
        assert!(r.changed());
    }

    #[test]
    fn remap_gid_renumbers_the_group_like_groupmod() {
        let r = remap(REMAP_PASSWD, REMAP_GROUP, "app", None, Some(20)).unwrap();
        // `other` shares the primary group, so it follows the renumbering.
        assert_eq!(
            diff(REMAP_PASSWD, &r.passwd),
            [
                (
                    4,
                    "app:x:1000:20:J\u{fffd}r\u{fffd}me:/home/app:/bin/bash\r\n".to_owned()
                ),
                (5, "other:x:1002:20::/home/other:/bin/sh\n".to_owned()),
                (7, "app:x:1000:20:dup:/x:/bin/sh".to_owned()),
            ]
        );
        assert_eq!(diff(REMAP_GROUP, &r.group), [(1, "app:x:20:\n".to_owned())]);
    }

    #[test]
    fn remap_without_a_group_line_changes_only_the_user() {
        let group = b"root:x:0:\n";
        let r = remap(REMAP_PASSWD, group, "app", None, Some(20)).unwrap();
        assert_eq!(diff(REMAP_PASSWD, &r.passwd).len(), 1);
        assert_eq!(r.group, group);
    }

    #[test]
    fn remap_to_the_same_ids_changes_nothing() {
        let r = remap(REMAP_PASSWD, REMAP_GROUP, "app", Some(1000), Some(1000)).unwrap();
        assert_eq!(
            (r.passwd.as_slice(), r.group.as_slice()),
            (REMAP_PASSWD, REMAP_GROUP)
        );
        assert!(!r.changed());
    }

    #[test]
    fn remap_refuses_ids_of_other_accounts() {
        let err = remap(REMAP_PASSWD, REMAP_GROUP, "app", Some(1001), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot give user \"app\" uid 1001 (HOST_UID): it belongs to user \"bob\" in \
             /etc/passwd; renumber \"bob\" in your Dockerfile (usermod -u) or leave HOST_UID unset"
        );
        let err = remap(REMAP_PASSWD, REMAP_GROUP, "app", None, Some(29)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot give group \"app\" gid 29 (HOST_GID): it belongs to group \"audio\" in \
             /etc/group; renumber \"audio\" in your Dockerfile (groupmod -g) or leave HOST_GID unset"
        );
    }

    #[test]
    fn remap_refuses_root_and_missing_users() {
        let err = remap(REMAP_PASSWD, REMAP_GROUP, "app", Some(0), None).unwrap_err();
        assert!(matches!(err, UserError::HostIdIsRoot { var: "HOST_UID" }));
        let err = remap(REMAP_PASSWD, REMAP_GROUP, "app", None, Some(0)).unwrap_err();
        assert!(matches!(err, UserError::HostIdIsRoot { var: "HOST_GID" }));
        let err = remap(REMAP_PASSWD, REMAP_GROUP, "nobody", Some(5), None).unwrap_err();
        assert!(matches!(err, UserError::RemapUserMissing { .. }));
    }

    #[test]
    fn apply_remap_writes_both_files_atomically() {
        let dir = TempDir::new("user");
        let etc = dir.0.join("etc");
        fs::create_dir(&etc).unwrap();
        fs::write(etc.join("passwd"), REMAP_PASSWD).unwrap();
        fs::write(etc.join("group"), REMAP_GROUP).unwrap();
        fs::set_permissions(etc.join("passwd"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(etc.join("group"), fs::Permissions::from_mode(0o640)).unwrap();

        let r = apply_remap(&dir.0, "app", Some(501), Some(20), |_| Ok(())).unwrap();
        assert_eq!(fs::read(etc.join("passwd")).unwrap(), r.passwd);
        assert_eq!(fs::read(etc.join("group")).unwrap(), r.group);
        let mode = |f: &str| fs::metadata(etc.join(f)).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode("passwd"), mode("group")), (0o644, 0o640));
        let mut left: Vec<_> = fs::read_dir(&etc)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["group", "passwd"]);
        let db = Db::load(&dir.0).unwrap();
        assert_eq!(resolve("app", &db, false).unwrap().uid, 501);
    }

    #[test]
    fn apply_remap_keeps_a_symlinked_passwd() {
        let dir = TempDir::new("user");
        let etc = dir.0.join("etc");
        fs::create_dir(&etc).unwrap();
        fs::write(etc.join("passwd.real"), REMAP_PASSWD).unwrap();
        symlink("passwd.real", etc.join("passwd")).unwrap();
        apply_remap(&dir.0, "app", Some(501), None, |_| Ok(())).unwrap();
        assert!(
            fs::symlink_metadata(etc.join("passwd"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(fs::read(etc.join("passwd.real")).unwrap().starts_with(b"root"));
        assert_eq!(Db::load(&dir.0).unwrap().user_by_name("app").unwrap().uid, 501);
    }

    #[test]
    fn apply_remap_without_passwd_is_an_error() {
        let dir = TempDir::new("user");
        fs::create_dir(dir.0.join("etc")).unwrap();
        let err = apply_remap(&dir.0, "app", Some(501), None, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("No such file or directory"), "{err}");
    }

    #[test]
    fn a_failed_home_chown_leaves_the_account_files_for_the_next_start() {
        let dir = TempDir::new("user");
        let etc = dir.0.join("etc");
        fs::create_dir(&etc).unwrap();
        fs::write(etc.join("passwd"), REMAP_PASSWD).unwrap();
        fs::write(etc.join("group"), REMAP_GROUP).unwrap();
        let err = apply_remap(&dir.0, "app", Some(501), Some(20), |r| {
            assert_eq!((r.old_uid, r.new_uid), (1000, 501));
            Err(UserError::RemapUserMissing { user: "x".into() })
        })
        .unwrap_err();
        assert!(matches!(err, UserError::RemapUserMissing { .. }));
        assert_eq!(fs::read(etc.join("passwd")).unwrap(), REMAP_PASSWD);
        assert_eq!(fs::read(etc.join("group")).unwrap(), REMAP_GROUP);
        assert_eq!(fs::read_dir(&etc).unwrap().count(), 2, "no temporary file left");
        // The next start is asked to do the same chown again, and commits.
        let mut asked = None;
        apply_remap(&dir.0, "app", Some(501), Some(20), |r| {
            asked = Some((r.old_uid, r.old_gid));
            Ok(())
        })
        .unwrap();
        assert_eq!(asked, Some((1000, 1000)));
        // Once done, a start with the same ids has nothing to do.
        let mut called = false;
        let r = apply_remap(&dir.0, "app", Some(501), Some(20), |_| {
            called = true;
            Ok(())
        })
        .unwrap();
        assert!(!r.changed() && !called);
    }

    #[test]
    fn apply_remap_refuses_a_passwd_link_someone_else_owns() {
        if skip_unless_root("apply_remap_refuses_a_passwd_link_someone_else_owns") {
            return;
        }
        let dir = TempDir::new("user");
        let etc = dir.0.join("etc");
        fs::create_dir(&etc).unwrap();
        fs::write(dir.0.join("elsewhere"), REMAP_PASSWD).unwrap();
        symlink(dir.0.join("elsewhere"), etc.join("passwd")).unwrap();
        std::os::unix::fs::lchown(etc.join("passwd"), Some(1000), None).unwrap();
        let err = apply_remap(&dir.0, "app", Some(501), None, |_| Ok(())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot update /etc/passwd: {}/passwd is a symbolic link owned by uid 1000, not by \
                 root; initd replaces it only where root alone can change the path",
                etc.display()
            )
        );
        assert_eq!(fs::read(dir.0.join("elsewhere")).unwrap(), REMAP_PASSWD);
    }

    #[test]
    fn write_errors_explain_read_only_etc() {
        let err = UserError::Write {
            path: "/etc/passwd".into(),
            source: io::Error::from_raw_os_error(libc::EROFS),
        };
        assert_eq!(
            err.to_string(),
            "cannot update /etc/passwd: Read-only file system; HOST_UID/HOST_GID need a \
             writable /etc (not docker run --read-only)"
        );
    }

    // --- dropping privileges -------------------------------------------------

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

/// Property tests: the account files and `INITD_USER` come from the image
/// and its configuration, so arbitrary bytes must never panic the parser,
/// and no input may make initd run the app as root without permission.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// An account-file field: mostly plausible, sometimes hostile.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_][a-z0-9_.-]{0,8}",
            "[0-9]{1,11}",
            Just(String::new()),
            "[ -~]{0,12}",
            Just("4294967295".to_string()),
            Just("0".to_string()),
        ]
    }

    fn id() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..3000).prop_map(|n| n.to_string()),
            Just("0".to_string()),
            Just("4294967295".to_string()),
            Just("4294967296".to_string()),
            "[0-9]{0,12}",
            "-?[0-9a-z]{0,4}",
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("app".to_string()),
            Just("root".to_string()),
            Just("toor".to_string()),
            "[a-z]{1,6}",
            field(),
        ]
    }

    fn passwd_line() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (name(), id(), id(), field(), field(), field())
                .prop_map(|(n, u, g, gecos, home, shell)| format!("{n}:x:{u}:{g}:{gecos}:/{home}:{shell}")),
            1 => proptest::collection::vec(field(), 0..10).prop_map(|f| f.join(":")),
            1 => "[#+-][ -~]{0,20}",
        ]
    }

    fn group_line() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (name(), id(), proptest::collection::vec(name(), 0..4))
                .prop_map(|(n, g, m)| format!("{n}:x:{g}:{}", m.join(","))),
            1 => proptest::collection::vec(field(), 0..6).prop_map(|f| f.join(":")),
        ]
    }

    fn file(line: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(line, 0..12),
            prop_oneof![Just("\n"), Just("\r\n")],
        )
            .prop_map(|(lines, end)| lines.join(end).into_bytes())
    }

    /// What a user types into INITD_USER.
    fn spec() -> impl Strategy<Value = String> {
        prop_oneof![
            name(),
            id(),
            (name(), name()).prop_map(|(u, g)| format!("{u}:{g}")),
            (id(), id()).prop_map(|(u, g)| format!("{u}:{g}")),
            "[ -~]{0,16}",
        ]
    }

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn arbitrary_bytes_never_panic_the_parser(
            passwd in proptest::collection::vec(any::<u8>(), 0..512),
            group in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let db = Db::parse(&passwd, &group);
            let lines = passwd.split(|&b| b == b'\n').count() + group.split(|&b| b == b'\n').count();
            prop_assert!(db.users.len() + db.groups.len() + db.malformed.len() <= lines);
            for u in &db.users {
                prop_assert!(!u.name.is_empty() && !u.name.contains([':', '\n']));
                prop_assert!(u.uid != u32::MAX && u.gid != u32::MAX);
            }
        }

        #[test]
        fn well_formed_lines_read_back_as_written(
            entries in proptest::collection::vec(("[a-z_][a-z0-9_]{0,8}", 0u32..u32::MAX, 0u32..u32::MAX), 0..8),
        ) {
            let text: String = entries
                .iter()
                .map(|(n, u, g)| format!("{n}:x:{u}:{g}:gecos:/home/{n}:/bin/sh\n"))
                .collect();
            let db = Db::parse(text.as_bytes(), b"");
            prop_assert!(db.malformed.is_empty());
            let got: Vec<(String, u32, u32)> = db.users.iter().map(|u| (u.name.clone(), u.uid, u.gid)).collect();
            prop_assert_eq!(got, entries);
        }

        /// The one rule that matters most: started as root without
        /// INITD_ALLOW_ROOT, whatever the files and INITD_USER say, initd
        /// either refuses or drops to a uid other than 0.
        #[test]
        fn the_app_never_runs_as_root_unless_allowed(
            passwd in file(passwd_line()),
            group in file(group_line()),
            requested in proptest::option::of(spec()),
        ) {
            let db = Db::parse(&passwd, &group);
            match plan_drop(0, 0, requested.as_deref(), &db, false) {
                Ok(decision) => {
                    let user = match &decision {
                        DropDecision::Skip(u) | DropDecision::Drop(u) => u,
                    };
                    prop_assert_ne!(user.uid, 0, "{:?} -> {:?}", requested, decision);
                    prop_assert!(matches!(decision, DropDecision::Drop(_)));
                }
                Err(e) => {
                    // Every refusal reads as a sentence naming what to fix.
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }

        #[test]
        fn remapping_changes_only_the_app_user(
            passwd in file(passwd_line()),
            group in file(group_line()),
            new_uid in proptest::option::of(0u32..5000),
            new_gid in proptest::option::of(0u32..5000),
        ) {
            let before = Db::parse(&passwd, &group);
            let Ok(r) = remap(&passwd, &group, "app", new_uid, new_gid) else {
                return Ok(());
            };
            prop_assert!(r.new_uid != 0 || new_uid.is_none());
            let after = Db::parse(&r.passwd, &r.group);
            prop_assert_eq!(after.users.len(), before.users.len());
            prop_assert_eq!(after.groups.len(), before.groups.len());
            prop_assert_eq!(
                r.passwd.iter().filter(|&&b| b == b'\n').count(),
                passwd.iter().filter(|&&b| b == b'\n').count()
            );
            let app = after.user_by_name("app").unwrap();
            prop_assert_eq!(app.uid, r.new_uid);
            prop_assert_eq!(app.gid, r.new_gid);
            // Nobody else got or lost a uid, and nobody shares the new one.
            for (b, a) in before.users.iter().zip(&after.users) {
                prop_assert_eq!(&b.name, &a.name);
                if b.name != "app" {
                    prop_assert_eq!(b.uid, a.uid);
                    prop_assert!(a.uid != r.new_uid || r.new_uid == r.old_uid);
                }
                // Root's accounts keep their lines whole, group included.
                if b.uid == 0 {
                    prop_assert_eq!(b, a);
                }
            }
            // Group 0 is never renumbered.
            for (b, a) in before.groups.iter().zip(&after.groups) {
                if b.gid == 0 {
                    prop_assert_eq!(b, a);
                }
            }
        }

        /// `HOST_UID`/`HOST_GID`: exactly the decimal numbers 0 to
        /// 2147483647 are ids, whatever else is typed.
        #[test]
        fn host_ids_are_exactly_the_small_decimal_numbers(text in prop_oneof![
            "[0-9]{1,12}",
            "[ +-]?[0-9]{1,10}[ \n]?",
            "0x[0-9a-f]{1,8}",
            "\\PC{0,12}",
        ]) {
            let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
            let value = text.parse::<u64>().ok().filter(|_| digits);
            match parse_host_id(&text) {
                Ok(id) => {
                    prop_assert!(digits);
                    prop_assert_eq!(Some(u64::from(id)), value);
                    prop_assert!(id <= MAX_HOST_ID);
                }
                Err(HostIdError::TooLarge) => prop_assert!(digits && value.is_none_or(|v| v > u64::from(MAX_HOST_ID))),
                Err(HostIdError::NotDecimal) => prop_assert!(!digits),
            }
        }

        #[test]
        fn every_id_in_range_reads_back_and_none_above(id in any::<u32>()) {
            let parsed = parse_host_id(&id.to_string());
            if id <= MAX_HOST_ID {
                prop_assert_eq!(parsed, Ok(id));
                // And what remap writes, initd reads back.
                if id != 0 {
                    let r = remap(b"app:x:1000:1000::/app:/bin/sh\n", b"app:x:1000:\n", "app", Some(id), Some(id)).unwrap();
                    let db = Db::parse(&r.passwd, &r.group);
                    prop_assert!(db.malformed.is_empty());
                    prop_assert_eq!(db.user_by_name("app").map(|u| (u.uid, u.gid)), Some((id, id)));
                }
            } else {
                prop_assert_eq!(parsed, Err(HostIdError::TooLarge));
            }
        }
    }
}
