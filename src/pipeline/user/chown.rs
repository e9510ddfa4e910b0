//! The recursive chown root does for `INITD_CHOWN` and the app user's home,
//! on descriptors only.
//!
//! The tree belongs to the app: it can rename, swap (`renameat2` with
//! `RENAME_EXCHANGE`) and link entries while root walks it. A walk by path
//! names lets a directory swapped for a symbolic link mid-walk send root's
//! chown anywhere on the file system; a hard link to a root-owned file gets
//! that file chowned. So:
//!
//! - the configured path is opened without following any symbolic link
//!   ([`fsafe::open_no_symlinks`]) and refused naming the link otherwise;
//! - every entry is opened relative to its directory's descriptor with
//!   `O_PATH | O_NOFOLLOW`, inspected with `fstat` on that descriptor, and
//!   chowned through it (`fchownat(fd, "", AT_EMPTY_PATH)`): what is changed
//!   is exactly what was inspected, whatever happens to the names;
//! - a directory is read through a descriptor reopened from that one, so the
//!   walk descends only into the directory it inspected, never a link;
//! - entries on another file system (bind mounts, volumes) are left alone,
//!   and so is any non-directory with more than one hard link: the other
//!   name may be outside the tree (one warning says how many).

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::{Gid, Uid};
use thiserror::Error;

use crate::fsafe::{self, PathError};

/// How deep the walk goes: it holds one descriptor per level, and a tree
/// deeper than this is an attack or a mistake rather than an app's files.
pub const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChownReport {
    /// Entries whose owner was changed.
    pub changed: u64,
    /// Subtrees skipped because they are on a read-only mount.
    pub read_only: u64,
    /// Mount points not crossed.
    pub other_mounts: u64,
    /// Non-directories left alone because they have more than one link.
    pub hard_links: u64,
}

#[derive(Debug, Error)]
pub enum ChownError {
    #[error(
        "refusing to chown {}: {}, and initd follows no symbolic link when it chowns as root; \
         name the real directory instead",
        .path.display(), .source
    )]
    Link { path: PathBuf, source: PathError },
    #[error("cannot chown {}: {}", .path.display(), .source)]
    Resolve { path: PathBuf, source: PathError },
    #[error("{} does not exist", .path.display())]
    Missing { path: PathBuf },
    #[error("cannot chown {}: {}", .path.display(), .errno.desc())]
    Io { path: PathBuf, errno: Errno },
    #[error(
        "cannot chown {}: it is more than {MAX_DEPTH} directories deep at {}",
        .root.display(), .at.display()
    )]
    TooDeep { root: PathBuf, at: PathBuf },
}

/// Whose entries change, and to what.
#[derive(Debug, Clone, Copy)]
pub struct ChownPlan {
    pub uid: u32,
    pub gid: u32,
    /// `Some((uid, gid))`: only what these ids own (the renumbered app
    /// user's old ids); `None`: everything.
    pub only_if_owned_by: Option<(u32, u32)>,
}

impl ChownPlan {
    /// The ids to set (`None` = leave that id alone). With `only_if_owned_by`
    /// uid and gid are matched separately, so a file of the app user in
    /// another group keeps that group. The group root (gid 0) is the
    /// exception: only the app's own files leave it, never root's.
    pub fn new_owner(&self, uid: u32, gid: u32) -> (Option<u32>, Option<u32>) {
        let (match_uid, match_gid) = match self.only_if_owned_by {
            Some((old_uid, old_gid)) => {
                let app_owned = uid == old_uid || uid == self.uid;
                (uid == old_uid, gid == old_gid && (old_gid != 0 || app_owned))
            }
            None => (true, true),
        };
        (
            (match_uid && uid != self.uid).then_some(self.uid),
            (match_gid && gid != self.gid).then_some(self.gid),
        )
    }
}

/// Changes the owner of what `fd` (an `O_PATH` or directory descriptor)
/// refers to; `path` is for messages. A parameter so tests can stand in.
pub type ChownFn<'a> = dyn FnMut(&OwnedFd, &Path, Option<u32>, Option<u32>) -> Result<(), Errno> + 'a;

/// Recursively chowns `root` to `uid:gid` (see the module comment for how).
pub fn chown_tree(
    root: &Path,
    uid: u32,
    gid: u32,
    only_if_owned_by: Option<(u32, u32)>,
) -> Result<ChownReport, ChownError> {
    let plan = ChownPlan {
        uid,
        gid,
        only_if_owned_by,
    };
    walk(root, plan, &mut |fd, _, uid, gid| {
        nix::unistd::fchownat(
            fd,
            "",
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
            AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// A directory being read: its descriptor, its path for messages, and the
/// names still to visit.
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    names: Vec<OsString>,
}

/// What to do with an entry once it has been looked at.
enum Next {
    Descend,
    Done,
}

pub fn walk(root: &Path, plan: ChownPlan, chown: &mut ChownFn<'_>) -> Result<ChownReport, ChownError> {
    let fd = fsafe::open_no_symlinks(root).map_err(|source| match source {
        e if e.is_not_found() => ChownError::Missing {
            path: root.to_owned(),
        },
        e @ PathError::Symlink { .. } => ChownError::Link {
            path: root.to_owned(),
            source: e,
        },
        e => ChownError::Resolve {
            path: root.to_owned(),
            source: e,
        },
    })?;
    let io = |path: &Path, errno| ChownError::Io {
        path: path.to_owned(),
        errno,
    };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io(root, e))?;
    if fsafe::is_symlink(&st) {
        return Err(ChownError::Link {
            path: root.to_owned(),
            source: PathError::Symlink {
                component: root.to_owned(),
            },
        });
    }
    let mut walker = Walker {
        plan,
        dev: st.st_dev,
        report: ChownReport::default(),
        chown,
    };
    let mut stack = Vec::new();
    if let Next::Descend = walker.visit(&fd, &st, root)? {
        stack.push(walker.open_dir(&fd, root)?);
    }
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.pop() else {
            stack.pop();
            continue;
        };
        let path = frame.path.join(&name);
        let entry = match nix::fcntl::openat(
            &frame.fd,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Removed while we walked: nothing left to own.
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(io(&path, e)),
        };
        let st = nix::sys::stat::fstat(&entry).map_err(|e| io(&path, e))?;
        if let Next::Descend = walker.visit(&entry, &st, &path)? {
            if stack.len() >= MAX_DEPTH {
                return Err(ChownError::TooDeep {
                    root: root.to_owned(),
                    at: path,
                });
            }
            let frame = walker.open_dir(&entry, &path)?;
            stack.push(frame);
        }
    }
    Ok(walker.report)
}

struct Walker<'a, 'b> {
    plan: ChownPlan,
    dev: u64,
    report: ChownReport,
    chown: &'a mut ChownFn<'b>,
}

impl Walker<'_, '_> {
    /// Chowns one entry if it needs it and says whether to read it.
    fn visit(&mut self, fd: &OwnedFd, st: &FileStat, path: &Path) -> Result<Next, ChownError> {
        if st.st_dev != self.dev {
            // A mount point belongs to the other file system too.
            self.report.other_mounts += 1;
            return Ok(Next::Done);
        }
        let dir = fsafe::is_dir(st);
        if !dir && st.st_nlink > 1 {
            self.report.hard_links += 1;
            return Ok(Next::Done);
        }
        let (uid, gid) = self.plan.new_owner(st.st_uid, st.st_gid);
        if uid.is_some() || gid.is_some() {
            match (self.chown)(fd, path, uid, gid) {
                Ok(()) => self.report.changed += 1,
                Err(Errno::EROFS) => {
                    tracing::warn!(path = %path.display(), "read-only, not changing owner");
                    self.report.read_only += 1;
                    return Ok(Next::Done);
                }
                Err(Errno::ENOENT) => return Ok(Next::Done),
                Err(errno) => {
                    return Err(ChownError::Io {
                        path: path.to_owned(),
                        errno,
                    });
                }
            }
        }
        Ok(if dir { Next::Descend } else { Next::Done })
    }

    /// Reopens the directory `fd` refers to for reading (`.` relative to it
    /// is that very directory) and lists it.
    fn open_dir(&self, fd: &OwnedFd, path: &Path) -> Result<Frame, ChownError> {
        let io = |errno| ChownError::Io {
            path: path.to_owned(),
            errno,
        };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let dir_fd = nix::fcntl::openat(fd, ".", flags, Mode::empty()).map_err(io)?;
        let list_fd = nix::fcntl::openat(&dir_fd, ".", flags, Mode::empty()).map_err(io)?;
        let mut dir = nix::dir::Dir::from_fd(list_fd).map_err(io)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        // Popped from the end: reversed, the walk goes in directory order.
        names.reverse();
        Ok(Frame {
            fd: dir_fd,
            path: path.to_owned(),
            names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    use crate::testdir::{TempDir, skip_unless_root};

    #[test]
    fn new_owner_matches_uid_and_gid_separately() {
        let all = ChownPlan {
            uid: 501,
            gid: 20,
            only_if_owned_by: None,
        };
        assert_eq!(all.new_owner(0, 0), (Some(501), Some(20)));
        assert_eq!(all.new_owner(501, 20), (None, None));
        let owned = ChownPlan {
            only_if_owned_by: Some((1000, 1000)),
            ..all
        };
        assert_eq!(owned.new_owner(1000, 1000), (Some(501), Some(20)));
        assert_eq!(owned.new_owner(1000, 0), (Some(501), None));
        assert_eq!(owned.new_owner(0, 1000), (None, Some(20)));
        assert_eq!(owned.new_owner(0, 0), (None, None));
    }

    #[test]
    fn the_root_group_moves_only_with_the_apps_own_files() {
        // OpenShift-style: the app user's primary group is 0.
        let plan = ChownPlan {
            uid: 501,
            gid: 20,
            only_if_owned_by: Some((1000, 0)),
        };
        assert_eq!(plan.new_owner(1000, 0), (Some(501), Some(20)));
        assert_eq!(plan.new_owner(501, 0), (None, Some(20)));
        // Root's files in the home keep root's group.
        assert_eq!(plan.new_owner(0, 0), (None, None));
        assert_eq!(plan.new_owner(33, 0), (None, None));
    }

    /// a/, a/f, a/sub/, a/sub/g, a/out -> (a directory elsewhere, with a file)
    fn tree() -> (TempDir, TempDir) {
        let dir = TempDir::new("chown");
        let outside = TempDir::new("chown-outside");
        fs::write(outside.0.join("secret"), b"x").unwrap();
        fs::create_dir_all(dir.0.join("sub")).unwrap();
        fs::write(dir.0.join("f"), b"x").unwrap();
        fs::write(dir.0.join("sub/g"), b"x").unwrap();
        symlink(&outside.0, dir.0.join("out")).unwrap();
        (dir, outside)
    }

    fn everything() -> ChownPlan {
        ChownPlan {
            uid: 4242,
            gid: 4242,
            only_if_owned_by: None,
        }
    }

    /// Records what would be chowned, relative to `dir`.
    fn record(dir: &Path, plan: ChownPlan) -> (Vec<PathBuf>, ChownReport) {
        let mut seen = Vec::new();
        let report = walk(dir, plan, &mut |_, p, _, _| {
            seen.push(p.strip_prefix(dir).unwrap().to_owned());
            Ok(())
        })
        .unwrap();
        seen.sort();
        (seen, report)
    }

    #[test]
    fn walk_visits_the_tree_without_following_symlinks() {
        let (dir, _outside) = tree();
        let (seen, report) = record(&dir.0, everything());
        let want: Vec<PathBuf> = ["", "f", "out", "sub", "sub/g"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(seen, want);
        assert_eq!(report.changed, 5);
    }

    #[test]
    fn a_link_in_the_configured_path_is_refused_naming_it() {
        let (dir, outside) = tree();
        fs::create_dir(outside.0.join("log")).unwrap();
        let err = walk(&dir.0.join("out/log"), everything(), &mut |_, _, _, _| {
            panic!("nothing may be chowned")
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to chown {0}/out/log: {0}/out is a symbolic link, and initd follows no \
                 symbolic link when it chowns as root; name the real directory instead",
                dir.0.display()
            )
        );
        // The path itself a link: refused the same way.
        let err = walk(&dir.0.join("out"), everything(), &mut |_, _, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, ChownError::Link { .. }), "{err}");
        let err = walk(&dir.0.join("nothing"), everything(), &mut |_, _, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, ChownError::Missing { .. }), "{err}");
    }

    #[test]
    fn hard_linked_files_are_counted_not_chowned() {
        let (dir, outside) = tree();
        fs::hard_link(outside.0.join("secret"), dir.0.join("sub/linked")).unwrap();
        let (seen, report) = record(&dir.0, everything());
        assert!(!seen.contains(&PathBuf::from("sub/linked")), "{seen:?}");
        assert_eq!(report.hard_links, 1);
        assert_eq!(report.changed, 5);
    }

    #[test]
    fn walk_skips_read_only_subtrees() {
        let (dir, _outside) = tree();
        let mut seen = Vec::new();
        let report = walk(&dir.0, everything(), &mut |_, p, _, _| {
            seen.push(p.to_owned());
            if p.ends_with("sub") {
                Err(Errno::EROFS)
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert!(!seen.iter().any(|p| p.ends_with("g")));
        assert_eq!((report.changed, report.read_only), (3, 1));
    }

    #[test]
    fn walk_stops_on_other_errors() {
        let (dir, _outside) = tree();
        let err = walk(&dir.0, everything(), &mut |_, _, _, _| Err(Errno::EPERM)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot chown {}: Operation not permitted", dir.0.display())
        );
    }

    #[test]
    fn walk_refuses_a_tree_deeper_than_the_limit() {
        let dir = TempDir::new("deep");
        let mut deep = dir.0.clone();
        for _ in 0..MAX_DEPTH + 1 {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        let err = walk(&dir.0, everything(), &mut |_, _, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, ChownError::TooDeep { .. }), "{err}");
    }

    #[test]
    fn walk_does_not_cross_mounts() {
        let (dev, pts) = (Path::new("/dev"), Path::new("/dev/pts"));
        let separate = match (fs::symlink_metadata(dev), fs::symlink_metadata(pts)) {
            (Ok(a), Ok(b)) => a.dev() != b.dev(),
            _ => false,
        };
        if !separate {
            eprintln!("note: walk_does_not_cross_mounts skipped, /dev/pts is not a mount here");
            return;
        }
        let mut seen = Vec::new();
        // Records only: nothing in /dev is really chowned.
        let report = walk(dev, everything(), &mut |_, p, _, _| {
            seen.push(p.to_owned());
            Ok(())
        })
        .unwrap();
        assert!(report.other_mounts >= 1);
        assert!(seen.iter().any(|p| p == dev));
        // The mount point itself belongs to the other filesystem too.
        assert!(!seen.iter().any(|p| p.starts_with(pts)));
    }

    #[test]
    fn chown_tree_changes_owners_for_real() {
        if skip_unless_root("chown_tree_changes_owners_for_real") {
            return;
        }
        let (dir, outside) = tree();
        let owner = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        std::os::unix::fs::lchown(dir.0.join("f"), Some(7), Some(8)).unwrap();
        // Only what the old owner (root here) owns moves; `f` keeps 7:8.
        let report = chown_tree(&dir.0, 4242, 4243, Some((0, 0))).unwrap();
        assert_eq!(report.changed, 4);
        assert_eq!(owner(&dir.0.join("f")), (7, 8));
        assert_eq!(owner(&dir.0.join("sub/g")), (4242, 4243));
        assert_eq!(owner(&dir.0.join("out")), (4242, 4243));
        // The symlink's target is outside and untouched.
        assert_eq!(owner(&outside.0.join("secret")), (0, 0));
        assert_eq!(owner(&outside.0), (0, 0));
        let report = chown_tree(&dir.0, 1, 1, None).unwrap();
        assert_eq!(report.changed, 5);
        assert_eq!(owner(&dir.0.join("f")), (1, 1));
    }
}
