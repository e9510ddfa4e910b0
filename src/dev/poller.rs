//! Noticing changes by looking: next to inotify on file systems not known to
//! be local (Docker Desktop's and WSL2's bind mounts, FUSE, network mounts:
//! see [`crate::dev::watchplan`]), or alone when INITD_RELOAD_POLL asks for it.
//! It runs every second for as long as the developer works, on checkouts of
//! 10,000 files, so a poll does as little as it can (`cargo bench --bench
//! poll_round` and benches/poll.sh measure it):
//!
//! - one `fstatat` per wanted file, relative to its directory's descriptor
//!   (no path walk, no allocation), compared with the last stamp in place;
//! - a directory is listed again (and its names filtered again) only when
//!   its own mtime moved, which every create, delete and rename does;
//! - ignored trees (node_modules, .git) are never entered.
//!
//! Two guards keep the shortcut honest. A directory changed within the
//! last two seconds is listed again on every poll: a file created in the
//! same clock tick as the last listing leaves the directory's mtime as it
//! was. And every [`FULL_LIST_EVERY`]-th poll lists everything, for
//! filesystems that do not keep directory mtimes (some FUSE mounts).

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::fcntl::{AtFlags, OFlag, open};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};

use crate::dev::filter::Filter;

/// Every this many polls each directory is listed whatever its mtime says.
pub const FULL_LIST_EVERY: u32 = 10;
/// A directory whose mtime is this recent may still change within the
/// same mtime, so it is listed again at the next poll.
const RACY_SECS: i64 = 2;

/// What a poll compares for a file: modification time, size, and inode
/// (an editor's atomic save replaces the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: (i64, i64),
    size: i64,
    ino: u64,
}

impl From<FileStat> for Stamp {
    fn from(st: FileStat) -> Stamp {
        Stamp {
            mtime: (st.st_mtime, st.st_mtime_nsec),
            size: st.st_size,
            ino: st.st_ino,
        }
    }
}

/// One directory as last seen.
struct Listing {
    mtime: (i64, i64),
    /// List it again at the next poll whatever its mtime.
    racy: bool,
    /// The wanted files in it, with their last stamps (`None`: not seen yet,
    /// or could not be stat'ed).
    files: Vec<(CString, Option<Stamp>)>,
    subdirs: Vec<PathBuf>,
}

/// The state of a polled tree between polls.
pub struct Poller {
    roots: Vec<PathBuf>,
    filter: Filter,
    dirs: HashMap<PathBuf, Listing>,
    polls: u32,
    round: Option<Round>,
}

/// A poll under way, taken a slice at a time by [`Poller::step`].
struct Round {
    /// The first look: it learns the tree and reports nothing.
    first: bool,
    full: bool,
    now: i64,
    changed: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
    stack: Vec<(usize, PathBuf)>,
}

impl Poller {
    /// Takes the first look; the next [`Poller::poll`] reports what changed
    /// since.
    pub fn new(roots: &[PathBuf], filter: &Filter) -> Poller {
        let mut poller = Poller::unlooked(roots, filter);
        poller.poll();
        poller
    }

    /// A poller that has not looked yet: its first round, however it is
    /// taken, learns the tree and reports nothing.
    pub fn unlooked(roots: &[PathBuf], filter: &Filter) -> Poller {
        Poller {
            roots: roots.to_vec(),
            filter: filter.clone(),
            dirs: HashMap::new(),
            polls: 0,
            round: None,
        }
    }

    /// How many files are watched.
    pub fn files(&self) -> usize {
        self.dirs.values().map(|l| l.files.len()).sum()
    }

    /// Looks at every wanted file once and returns those that changed,
    /// appeared or disappeared since the last poll, sorted.
    pub fn poll(&mut self) -> Vec<PathBuf> {
        loop {
            if let Some(changed) = self.step(usize::MAX, None) {
                return changed;
            }
        }
    }

    /// Goes on with the poll under way, or starts one, and stops after
    /// the directory that brings the entries looked at to `budget` or ends
    /// past `until`, so that a large tree or a slow mount is polled in
    /// slices between which the caller does other work. The poll's result
    /// (as [`Poller::poll`]'s) once its last slice is done.
    pub fn step(&mut self, budget: usize, until: Option<Instant>) -> Option<Vec<PathBuf>> {
        let mut round = match self.round.take() {
            Some(round) => round,
            None => self.begin(),
        };
        let mut spent = 0usize;
        while let Some((root, dir)) = round.stack.pop() {
            if !round.seen.insert(dir.clone()) {
                continue;
            }
            if let Some((subdirs, files)) = self.visit(root, &dir, round.full, round.now, &mut round.changed)
            {
                spent = spent.saturating_add(1 + files);
                round.stack.extend(subdirs.into_iter().map(|d| (root, d)));
            }
            let over = spent >= budget || until.is_some_and(|t| Instant::now() >= t);
            if over && !round.stack.is_empty() {
                self.round = Some(round);
                return None;
            }
        }
        Some(self.end(round))
    }

    fn begin(&mut self) -> Round {
        let full = self.polls.is_multiple_of(FULL_LIST_EVERY);
        self.polls = self.polls.wrapping_add(1);
        Round {
            first: self.dirs.is_empty(),
            full,
            now: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            changed: Vec::new(),
            seen: HashSet::new(),
            stack: self.roots.iter().cloned().enumerate().collect(),
        }
    }

    fn end(&mut self, round: Round) -> Vec<PathBuf> {
        let Round {
            first,
            mut changed,
            seen,
            ..
        } = round;
        // Directories that are gone take their files with them.
        self.dirs.retain(|dir, listing| {
            let keep = seen.contains(dir);
            if !keep {
                changed.extend(listing.files.iter().map(|(name, _)| join(dir, name)));
            }
            keep
        });
        if first {
            return Vec::new();
        }
        changed.sort();
        changed.dedup();
        changed
    }

    /// Polls one directory; returns its subdirectories and how many files
    /// it has, or `None` when it cannot be opened (gone, or not a directory
    /// any more).
    fn visit(
        &mut self,
        root: usize,
        dir: &Path,
        full: bool,
        now: i64,
        changed: &mut Vec<PathBuf>,
    ) -> Option<(Vec<PathBuf>, usize)> {
        let fd: OwnedFd = open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let st = fstat(&fd).ok()?;
        let mtime = (st.st_mtime, st.st_mtime_nsec);
        let stale = self
            .dirs
            .get(dir)
            .is_none_or(|l| full || l.racy || l.mtime != mtime);
        if stale {
            let listing = self.list(root, dir, mtime, now, changed);
            self.dirs.insert(dir.to_path_buf(), listing);
        }
        let listing = self.dirs.get_mut(dir)?;
        for (name, stamp) in &mut listing.files {
            let now_stamp = fstatat(&fd, name.as_c_str(), AtFlags::empty())
                .ok()
                .map(Stamp::from);
            if *stamp != now_stamp {
                changed.push(join(dir, name));
                *stamp = now_stamp;
            }
        }
        Some((listing.subdirs.clone(), listing.files.len()))
    }

    /// Reads `dir` afresh, keeping the stamps of files it already had;
    /// files no longer there count as changed.
    fn list(
        &mut self,
        root: usize,
        dir: &Path,
        mtime: (i64, i64),
        now: i64,
        changed: &mut Vec<PathBuf>,
    ) -> Listing {
        let mut old: HashMap<CString, Option<Stamp>> = self
            .dirs
            .remove(dir)
            .map(|l| l.files.into_iter().collect())
            .unwrap_or_default();
        let mut files = Vec::new();
        let mut subdirs = Vec::new();
        let root = &self.roots[root];
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            let name = entry.file_name();
            if kind.is_dir() {
                if !self.filter.ignores_dir(&name.to_string_lossy()) {
                    subdirs.push(entry.path());
                }
                continue;
            }
            let path = entry.path();
            if !self.filter.wants(path.strip_prefix(root).unwrap_or(&path)) {
                continue;
            }
            let Ok(c_name) = CString::new(name.as_bytes()) else {
                continue;
            };
            let stamp = old.remove(&c_name).flatten();
            files.push((c_name, stamp));
        }
        changed.extend(old.keys().map(|name| join(dir, name)));
        Listing {
            mtime,
            racy: mtime.0 >= now - RACY_SECS,
            files,
            subdirs,
        }
    }
}

fn join(dir: &Path, name: &CString) -> PathBuf {
    dir.join(OsStr::from_bytes(name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;

    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            let dir = std::env::temp_dir().join(format!("initd-poller-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Tree(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }

        fn poller(&self) -> Poller {
            Poller::new(std::slice::from_ref(&self.0), &Filter::default())
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Sets a directory's mtime (as a filesystem that does not keep it
    /// would leave it).
    fn set_mtime(path: &Path, secs: i64) {
        let t = TimeSpec::new(secs, 0);
        utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::FollowSymlink).unwrap();
    }

    use nix::fcntl::AT_FDCWD;

    #[test]
    fn polls_see_changes_additions_and_removals_but_not_ignored_files() {
        let t = Tree::new("basic");
        let views = t.write("app/views.py", "a");
        t.write("app/__pycache__/views.pyc", "a");
        t.write("node_modules/x/y.py", "a");
        t.write("static/site.css", "a");
        let mut p = t.poller();
        assert_eq!(p.files(), 1);
        assert!(p.poll().is_empty());

        fs::write(&views, "changed").unwrap();
        let models = t.write("app/models.py", "new");
        t.write("node_modules/x/y.py", "ignored");
        t.write("static/site.css", "not wanted");
        assert_eq!(p.poll(), vec![models.clone(), views.clone()]);
        assert!(p.poll().is_empty());

        fs::remove_file(&models).unwrap();
        assert_eq!(p.poll(), vec![models]);
        // A new directory's files, and a removed directory's.
        let deep = t.write("pkg/sub/deep.py", "x");
        assert_eq!(p.poll(), vec![deep.clone()]);
        fs::remove_dir_all(t.0.join("pkg")).unwrap();
        assert_eq!(p.poll(), vec![deep]);
        assert!(p.poll().is_empty());
    }

    #[test]
    fn an_atomic_save_with_the_same_size_and_mtime_is_seen_by_its_inode() {
        let t = Tree::new("atomic");
        let views = t.write("views.py", "a");
        let mut p = t.poller();
        let stamp = fs::metadata(&views).unwrap();
        let tmp = t.write(".views.py.tmp", "b");
        let mtime = stamp.modified().unwrap().duration_since(UNIX_EPOCH).unwrap();
        let ts = TimeSpec::new(mtime.as_secs() as i64, mtime.subsec_nanos() as i64);
        utimensat(AT_FDCWD, &tmp, &ts, &ts, UtimensatFlags::FollowSymlink).unwrap();
        fs::rename(&tmp, &views).unwrap();
        assert_eq!(p.poll(), vec![views]);
    }

    #[test]
    fn a_directory_whose_mtime_does_not_move_is_still_listed_now_and_then() {
        let t = Tree::new("stuck-mtime");
        t.write("pkg/a.py", "a");
        let pkg = t.0.join("pkg");
        // Long ago: not racy, so only its mtime decides.
        set_mtime(&pkg, 1_000_000_000);
        let mut p = t.poller();
        let b = t.write("pkg/b.py", "b");
        set_mtime(&pkg, 1_000_000_000);
        let mut polls = 0;
        let found = loop {
            polls += 1;
            let changed = p.poll();
            if !changed.is_empty() {
                break changed;
            }
            assert!(polls <= FULL_LIST_EVERY, "never listed again");
        };
        assert_eq!(found, vec![b]);
    }

    #[test]
    fn a_recently_changed_directory_is_listed_at_every_poll() {
        let t = Tree::new("racy");
        t.write("pkg/a.py", "a");
        let mut p = t.poller();
        p.poll();
        // The directory changed just now: its mtime cannot be trusted to
        // move again within the same clock tick, so it is listed again
        // even though the mtime is put back as it was.
        let pkg = t.0.join("pkg");
        let before = fs::metadata(&pkg).unwrap().modified().unwrap();
        let c = t.write("pkg/c.py", "c");
        let d = before.duration_since(UNIX_EPOCH).unwrap();
        let ts = TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64);
        utimensat(AT_FDCWD, &pkg, &ts, &ts, UtimensatFlags::FollowSymlink).unwrap();
        assert_eq!(p.poll(), vec![c]);
    }

    #[test]
    fn a_poll_taken_in_slices_sees_what_a_whole_one_sees() {
        let t = Tree::new("slices");
        for d in 0..20 {
            for f in 0..5 {
                t.write(&format!("d{d}/f{f}.py"), "a");
            }
        }
        let mut p = Poller::unlooked(std::slice::from_ref(&t.0), &Filter::default());
        // The first round, in slices of about one directory, learns the tree.
        let mut slices = 1;
        while p.step(3, None).is_none() {
            slices += 1;
        }
        assert!(slices >= 20, "{slices} slices");
        assert_eq!(p.files(), 100);
        let a = t.write("d3/f1.py", "changed");
        let b = t.write("d17/new.py", "new");
        fs::remove_file(t.0.join("d9/f0.py")).unwrap();
        let mut slices = 1;
        let changed = loop {
            if let Some(changed) = p.step(6, None) {
                break changed;
            }
            slices += 1;
        };
        assert!(slices >= 10, "{slices} slices");
        let mut want = vec![a, b, t.0.join("d9/f0.py")];
        want.sort();
        assert_eq!(changed, want);
        // A slice also ends when its time is up.
        assert!(p.step(usize::MAX, Some(Instant::now())).is_none());
        assert_eq!(p.poll(), Vec::<PathBuf>::new());
    }
}
