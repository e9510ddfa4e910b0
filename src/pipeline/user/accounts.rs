//! The account files: `/etc/passwd` and `/etc/group`, parsed here rather
//! than through `getpwnam`, because initd is linked statically against
//! glibc, where NSS modules would be loaded at run time (and crash or
//! silently fail). `files` NSS semantics: first entry wins, `+`/`-` NIS
//! compat lines are ignored, malformed lines are skipped.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Setting names, used only to make error messages actionable.
pub const USER_SETTING: &str = "INITD_USER";
pub const ALLOW_ROOT_SETTING: &str = "INITD_ALLOW_ROOT";
pub const DEFAULT_USER: &str = "app";

/// What passwd(5) says to use when the fields are empty, and what an unknown
/// numeric uid gets (like `docker run --user 1234`).
pub(super) const DEFAULT_HOME: &str = "/";
pub(super) const DEFAULT_SHELL: &str = "/bin/sh";

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
    pub(super) fn path(self) -> &'static str {
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
        source: crate::pipeline::user::chown::ChownError,
    },
    #[error("HOST_UID/HOST_GID: cannot chown the home directory of {user:?}: {source}")]
    Home {
        user: String,
        source: crate::pipeline::user::chown::ChownError,
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
    #[error("cannot read {}: {}", .path.display(), crate::fsafe::io_reason(.source))]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot update {}: {}{}", .path.display(), crate::fsafe::io_reason(.source), write_hint(.source))]
    Write { path: PathBuf, source: io::Error },
}

fn write_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EROFS) => "; HOST_UID/HOST_GID need a writable /etc (not docker run --read-only)",
        Some(libc::EBUSY) => "; is the file bind-mounted? HOST_UID/HOST_GID must rewrite it",
        _ => "",
    }
}

// Parsing

/// The meaningful part of a line, or `None` for lines NSS `files` skips.
pub(super) fn content(line: &[u8]) -> Option<&[u8]> {
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
pub(super) fn parse_id(raw: &[u8]) -> Option<u32> {
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
pub(super) fn parse_passwd_line(line: &[u8]) -> Option<PasswdEntry> {
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
pub(super) fn parse_group_line(line: &[u8]) -> Option<GroupEntry> {
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

/// Account files shared by the user module's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::Db;

    pub(crate) const PASSWD: &str = "\
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

    pub(crate) const GROUP: &str = "\
root:x:0:
daemon:x:1:
app:x:1000:
bob:x:1001:
audio:x:29:bob,app
video:x:44:app
www:x:33:,app,
+:::
";

    pub(crate) fn db() -> Db {
        Db::parse(PASSWD.as_bytes(), GROUP.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{GROUP, PASSWD, db};
    use super::*;
    use crate::testdir::TempDir;
    use std::fs;

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
}
