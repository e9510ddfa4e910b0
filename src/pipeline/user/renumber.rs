//! `HOST_UID`/`HOST_GID`: renumbering the app user (and its primary group)
//! to the host's ids, like `usermod -u`/`groupmod -g`, by rewriting the
//! account files through descriptors, atomically.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::accounts::{Db, DbFile, UserError, content, parse_group_line, parse_passwd_line};

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
/// directories only root owns ([`crate::fsafe::resolve_trusted`]), read and written
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::user::resolve::resolve;
    use crate::testdir::{TempDir, skip_unless_root};
    use std::os::unix::fs::{PermissionsExt, symlink};

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
}
