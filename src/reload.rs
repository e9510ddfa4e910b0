//! Noticing source changes for the dev server: which files count (include
//! and ignore patterns), how to watch them (inotify, or polling where
//! inotify cannot see a bind mount's changes), and coalescing a burst of
//! writes into one restart.
//!
//! Both watchers report changed paths on a channel and wake the dev loop
//! through a pipe it polls next to the signalfd, so the loop still sleeps
//! with no timer while nothing happens.

use std::collections::HashSet;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use notify::Watcher as _;
use tracing::{debug, info, warn};

use crate::config::human_duration as human;
use crate::poller::Poller;

/// Python, templates and configuration: what a change to should restart
/// the dev server.
pub const DEFAULT_INCLUDE: &[&str] = &[
    "*.py", "*.pyi", "*.html", "*.jinja", "*.jinja2", "*.j2", "*.txt", "*.toml", "*.cfg", "*.ini", "*.yaml",
    "*.yml", "*.json", "*.env", ".env",
];

/// Version control, caches, dependencies and editor droppings: changes there
/// are never the developer's edit (vim writes `4913` to test a directory).
pub const DEFAULT_IGNORE: &[&str] = &[
    ".git",
    ".hg",
    "__pycache__",
    "node_modules",
    ".venv",
    ".mypy_cache",
    ".pytest_cache",
    "*.pyc",
    "*.pyo",
    "*.swp",
    "*.swx",
    "*.swo",
    "*~",
    ".#*",
    "#*#",
    "4913",
];

/// Filesystems whose changes made on the host never reach inotify inside the
/// container: Docker Desktop's and WSL2's bind mounts, network mounts.
const BLIND_FILESYSTEMS: &[&str] = &[
    "9p",
    "virtiofs",
    "fuse.grpcfuse",
    "fuse.osxfs",
    "fakeowner",
    "fuse.sshfs",
    "vboxsf",
    "cifs",
    "smb3",
    "nfs",
    "nfs4",
];

/// `*` and `?` wildcards over one path component (`?` is one byte).
///
/// Patterns come from the user (`INITD_RELOAD_INCLUDE`), names from the
/// disk: trying every split for every `*` would take exponential time on
/// `*a*a*a*a*b` against a long name, stalling the dev loop. Only the
/// last `*` seen needs to be retried, which bounds the work by the
/// pattern's length times the name's.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // The last `*` and how much of the name it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, taken)) => {
                    star = Some((sp, taken + 1));
                    pi = sp + 1;
                    ni = taken + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Which paths count as edits.
#[derive(Debug, Clone)]
pub struct Filter {
    pub include: Vec<String>,
    pub ignore: Vec<String>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            include: DEFAULT_INCLUDE.iter().map(|s| s.to_string()).collect(),
            ignore: DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Filter {
    /// A directory (by its name) whose contents are never looked at.
    pub fn ignores_dir(&self, name: &str) -> bool {
        self.ignore.iter().any(|p| glob_match(p, name))
    }

    /// Whether a change to `path` (under one of the watched roots) should
    /// restart the server: no component ignored, and the name included.
    pub fn wants(&self, path: &Path) -> bool {
        let mut names = path.components().filter_map(|c| c.as_os_str().to_str());
        if names.clone().any(|n| self.ignores_dir(n)) {
            return false;
        }
        match names.next_back() {
            Some(name) => self.include.iter().any(|p| glob_match(p, name)),
            None => false,
        }
    }
}

/// One mount, from a line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fs_type: String,
}

/// The mounts listed in the text of /proc/self/mountinfo, in its order
/// (a later mount on the same point covers an earlier one).
pub fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let fs_type = right.split_whitespace().next()?;
            Some(Mount {
                point: PathBuf::from(unescape_mountinfo(point)),
                fs_type: fs_type.to_string(),
            })
        })
        .collect()
}

/// The filesystem type of the mount holding `path`: the longest mount
/// point that is a prefix of it.
pub fn mount_fs_type(mountinfo: &str, path: &Path) -> Option<String> {
    holding(&mounts(mountinfo), path).map(|m| m.fs_type.clone())
}

fn holding<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        let longer = best.is_none_or(|b| m.point.as_os_str().len() >= b.point.as_os_str().len());
        if path.starts_with(&m.point) && longer {
            best = Some(m);
        }
    }
    best
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The mount under `root` whose changes inotify may not see, if there is
/// one: the mount holding `root`, or one mounted below it (a checkout
/// bind-mounted at /app/src while /app is the image's).
pub fn blind_mount(mountinfo: &str, root: &Path) -> Option<Mount> {
    let all = mounts(mountinfo);
    let blind = |m: &&Mount| BLIND_FILESYSTEMS.contains(&m.fs_type.as_str());
    holding(&all, root)
        .filter(blind)
        .or_else(|| {
            all.iter()
                .filter(|m| m.point.starts_with(root) && m.point != root)
                // Only if it is still the mount there, not covered by a later one.
                .filter(|m| holding(&all, &m.point) == Some(*m))
                .find(blind)
        })
        .cloned()
}

/// Trailing-edge debounce: the restart happens once the writes have been
/// quiet for `quiet`, but never later than `max` after the first one, so a
/// tool that keeps writing cannot hold the server down.
#[derive(Debug, Clone)]
pub struct Debounce {
    quiet: Duration,
    max: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    /// The file changed last, and every file changed (one save is often
    /// several events: truncate, write, rename).
    path: Option<PathBuf>,
    files: HashSet<PathBuf>,
}

impl Debounce {
    pub fn new(quiet: Duration, max: Duration) -> Debounce {
        Debounce {
            quiet,
            max,
            first: None,
            last: None,
            path: None,
            files: HashSet::new(),
        }
    }

    pub fn record(&mut self, now: Instant, path: PathBuf) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.files.insert(path.clone());
        self.path = Some(path);
    }

    /// When the pending restart is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.quiet).min(first + self.max))
    }

    /// Takes the pending change (the file changed last, and how many files
    /// changed) if it is due at `now`.
    pub fn take_if_due(&mut self, now: Instant) -> Option<(PathBuf, usize)> {
        if self.due()? > now {
            return None;
        }
        let taken = (self.path.take()?, self.files.len());
        self.first = None;
        self.last = None;
        self.files.clear();
        Some(taken)
    }
}

/// How changes are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Inotify,
    Poll(Duration),
}

/// A running watcher: changed paths arrive on a channel, and the wake pipe
/// becomes readable whenever there are some.
pub struct Reloader {
    changes: Receiver<PathBuf>,
    wake_read: OwnedFd,
    waker: Waker,
    pub mode: Mode,
    roots: Vec<PathBuf>,
    filter: Filter,
    // Kept alive for as long as the watching should go on.
    inotify: Option<notify::INotifyWatcher>,
    /// Directories created since the last look, to be watched too.
    new_dirs: NewDirs,
    stop_poller: Arc<AtomicBool>,
}

type NewDirs = Arc<Mutex<Vec<PathBuf>>>;

impl Drop for Reloader {
    fn drop(&mut self) {
        self.stop_poller.store(true, Ordering::Relaxed);
    }
}

/// Wakes the dev loop: one byte in a non-blocking pipe (a full pipe already
/// means "wake up", so a failed write is fine).
#[derive(Clone)]
struct Waker {
    fd: Arc<OwnedFd>,
    tx: Sender<PathBuf>,
}

impl Waker {
    fn send(&self, path: PathBuf) {
        if self.tx.send(path).is_ok() {
            let _ = nix::unistd::write(self.fd.as_fd(), &[1]);
        }
    }
}

impl Reloader {
    /// Starts watching `roots`. `forced_poll` (INITD_RELOAD_POLL) polls at
    /// that interval; otherwise inotify, unless a root is on (or holds) a
    /// mount inotify cannot see into or there are not watches enough, in
    /// which case it polls every second and says why.
    pub fn start(
        roots: &[PathBuf],
        filter: &Filter,
        forced_poll: Option<Duration>,
    ) -> std::io::Result<Reloader> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (tx, rx) = channel();
        let mut reloader = Reloader {
            changes: rx,
            wake_read: read,
            waker: Waker {
                fd: Arc::new(write),
                tx,
            },
            mode: Mode::Inotify,
            roots: roots.to_vec(),
            filter: filter.clone(),
            inotify: None,
            new_dirs: NewDirs::default(),
            stop_poller: Arc::new(AtomicBool::new(false)),
        };
        if let Some(every) = forced_poll {
            info!(
                "watching for changes by polling every {} (INITD_RELOAD_POLL)",
                human(every)
            );
            reloader.start_polling(every)?;
            return Ok(reloader);
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some((root, mount)) = roots
            .iter()
            .find_map(|r| blind_mount(&mountinfo, r).map(|m| (r, m)))
        {
            info!(
                "watching for changes by polling every 1s: {} is a {} mount, where inotify does not see \
                 changes made on the host",
                mount.point.display(),
                mount.fs_type
            );
            debug!(root = %root.display(), "blind mount under a reload root");
            reloader.start_polling(Duration::from_secs(1))?;
            return Ok(reloader);
        }
        match inotify_watcher(roots, filter, reloader.waker.clone(), reloader.new_dirs.clone()) {
            Ok(watcher) => reloader.inotify = Some(watcher),
            Err(e) => {
                info!("watching for changes by polling every 1s: inotify is not usable ({e})");
                reloader.start_polling(Duration::from_secs(1))?;
            }
        }
        Ok(reloader)
    }

    fn start_polling(&mut self, every: Duration) -> std::io::Result<()> {
        self.mode = Mode::Poll(every);
        let (roots, filter) = (self.roots.clone(), self.filter.clone());
        let (waker, stop) = (self.waker.clone(), self.stop_poller.clone());
        std::thread::Builder::new()
            .name("initd-poll".into())
            .spawn(move || poll_loop(&roots, &filter, every, &waker, &stop))?;
        Ok(())
    }

    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }

    /// Empties the wake pipe and returns the changed paths so far, unfiltered.
    /// Directories that appeared are watched from now on, and the files
    /// already in them count as changed: they were written before the
    /// watch existed, so no event told of them (`git checkout` of a new
    /// package, `mkdir -p a/b && touch a/b/c.py`).
    pub fn drain(&mut self) -> Vec<PathBuf> {
        let mut buf = [0u8; 256];
        while matches!(nix::unistd::read(&self.wake_read, &mut buf), Ok(n) if n > 0) {}
        let mut changes: Vec<PathBuf> = self.changes.try_iter().collect();
        let new_dirs = std::mem::take(&mut *self.new_dirs.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(watcher) = self.inotify.as_mut() {
            for root in new_dirs {
                if let Err(e) = watch_tree(watcher, &root, &self.filter, &mut changes) {
                    // Out of watches: what is not watched would go unseen,
                    // so poll everything from here on.
                    info!(
                        "watching for changes by polling every 1s from now on: inotify cannot watch {} ({e}); \
                         raising fs.inotify.max_user_watches on the host would allow inotify",
                        root.display()
                    );
                    self.inotify = None;
                    if let Err(e) = self.start_polling(Duration::from_secs(1)) {
                        warn!("cannot start polling for changes ({e}); the server will not reload");
                    }
                    break;
                }
            }
        }
        changes.extend(self.changes.try_iter());
        changes
    }
}

/// inotify with one watch per directory, added by walking the tree, so
/// ignored trees (node_modules, .git) cost no watches; directories created
/// (or moved in) later are added as they appear.
fn inotify_watcher(
    roots: &[PathBuf],
    filter: &Filter,
    waker: Waker,
    pending: NewDirs,
) -> notify::Result<notify::INotifyWatcher> {
    let filter_in_handler = filter.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let may_add_dir = matches!(
            event.kind,
            notify::EventKind::Create(_) | notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
        );
        for path in event.paths {
            if may_add_dir && path.is_dir() {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !filter_in_handler.ignores_dir(name) {
                    pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(path.clone());
                }
            }
            waker.send(path);
        }
    };
    let mut watcher = notify::INotifyWatcher::new(handler, notify::Config::default())?;
    let mut count = 0usize;
    for root in roots {
        for dir in directories(root, filter) {
            watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
            count += 1;
        }
    }
    debug!(directories = count, "inotify watches set");
    Ok(watcher)
}

/// Watches `root` and the directories below it, adding the files found in
/// them to `found`. Each directory is listed only after its watch is set, so
/// a file or directory created in it meanwhile is listed, reported by the
/// watch, or both; listing first would lose what appears in between (a
/// `mkdir -p a/b` racing this walk).
fn watch_tree(
    watcher: &mut notify::INotifyWatcher,
    root: &Path,
    filter: &Filter,
    found: &mut Vec<PathBuf>,
) -> notify::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            // Gone again before it could be watched: nothing to see there.
            if fs::symlink_metadata(&dir).is_err() {
                continue;
            }
            return Err(e);
        }
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if !kind.is_dir() {
                found.push(entry.path());
            } else if !filter.ignores_dir(&entry.file_name().to_string_lossy()) {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// `root` and every directory below it that is not ignored (symlinks are
/// not followed: a link to / would otherwise watch the world).
fn directories(root: &Path, filter: &Filter) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        out.push(dir);
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            let name = entry.file_name();
            if kind.is_dir() && !filter.ignores_dir(&name.to_string_lossy()) {
                stack.push(entry.path());
            }
        }
    }
    out
}

fn poll_loop(roots: &[PathBuf], filter: &Filter, every: Duration, waker: &Waker, stop: &AtomicBool) {
    let mut poller = Poller::new(roots, filter);
    debug!(files = poller.files(), "polling for changes");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(every);
        for path in poller.poll() {
            waker.send(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.py", "views.py"));
        assert!(!glob_match("*.py", "views.pyc"));
        assert!(glob_match("*.py?", "views.pyc"));
        assert!(glob_match(".#*", ".#views.py"));
        assert!(glob_match("*~", "views.py~"));
        assert!(glob_match("__pycache__", "__pycache__"));
        assert!(!glob_match("__pycache__", "pycache"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn the_default_filter_wants_code_and_templates_only() {
        let f = Filter::default();
        assert!(f.wants(Path::new("app/views.py")));
        assert!(f.wants(Path::new("templates/index.html")));
        assert!(f.wants(Path::new("pyproject.toml")));
        assert!(!f.wants(Path::new("app/__pycache__/views.cpython-311.pyc")));
        assert!(!f.wants(Path::new("node_modules/x/index.js")));
        assert!(!f.wants(Path::new(".git/HEAD")));
        assert!(!f.wants(Path::new("app/.views.py.swp")));
        assert!(!f.wants(Path::new("app/4913")));
        assert!(!f.wants(Path::new("static/app.css")));
        assert!(!f.wants(Path::new(".venv/lib/site.py")));
    }

    #[test]
    fn mount_types_come_from_the_longest_mount_point() {
        let info = "\
22 1 0:21 / / rw,relatime - overlay overlay rw
30 22 0:40 / /app rw,relatime - fuse.grpcfuse grpcfuse rw
31 30 0:41 / /app/node_modules rw - ext4 /dev/vda rw
32 22 0:42 / /my\\040dir rw - 9p host rw
";
        assert_eq!(
            mount_fs_type(info, Path::new("/app/views.py")).as_deref(),
            Some("fuse.grpcfuse")
        );
        assert_eq!(
            mount_fs_type(info, Path::new("/app/node_modules/x")).as_deref(),
            Some("ext4")
        );
        assert_eq!(mount_fs_type(info, Path::new("/srv")).as_deref(), Some("overlay"));
        assert_eq!(mount_fs_type(info, Path::new("/my dir/x")).as_deref(), Some("9p"));
        let blind_type = |root: &str| blind_mount(info, Path::new(root)).map(|m| m.fs_type);
        assert_eq!(blind_type("/app").as_deref(), Some("fuse.grpcfuse"));
        assert_eq!(blind_type("/app/src").as_deref(), Some("fuse.grpcfuse"));
        assert_eq!(blind_type("/srv"), None);
        // /application is not under /app.
        assert_eq!(
            mount_fs_type(info, Path::new("/application")).as_deref(),
            Some("overlay")
        );
    }

    #[test]
    fn a_blind_mount_below_the_root_counts_unless_covered() {
        let info = "\
22 1 0:21 / / rw - overlay overlay rw
40 22 0:50 / /app/src rw - virtiofs host rw
41 22 0:51 / /app/cache rw - 9p cache rw
42 41 0:52 / /app/cache rw - tmpfs tmpfs rw
43 22 0:53 / /application rw - 9p other rw
";
        let found = blind_mount(info, Path::new("/app")).unwrap();
        assert_eq!(found.point, PathBuf::from("/app/src"));
        assert_eq!(found.fs_type, "virtiofs");
        // The 9p mount at /app/cache is covered by tmpfs; /application is
        // not below /app.
        let info_without_src = info.replace("virtiofs", "ext4");
        assert_eq!(blind_mount(&info_without_src, Path::new("/app")), None);
        assert_eq!(
            mounts(info)[1],
            Mount {
                point: PathBuf::from("/app/src"),
                fs_type: "virtiofs".into()
            }
        );
    }

    #[test]
    fn a_burst_is_one_restart_after_it_goes_quiet() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(100), ms(1000));
        assert_eq!(d.due(), None);
        for i in 0..50 {
            d.record(t0 + ms(i * 5), PathBuf::from(format!("f{i}.py")));
        }
        assert_eq!(d.due(), Some(t0 + ms(245 + 100)));
        assert_eq!(d.take_if_due(t0 + ms(300)), None);
        assert_eq!(d.take_if_due(t0 + ms(345)), Some((PathBuf::from("f49.py"), 50)));
        assert_eq!(d.due(), None);
        // One file saved in several steps is one file.
        for i in 0..3 {
            d.record(t0 + ms(400 + i), PathBuf::from("views.py"));
        }
        assert_eq!(d.take_if_due(t0 + ms(600)), Some((PathBuf::from("views.py"), 1)));
    }

    #[test]
    fn endless_writes_still_restart_after_the_maximum() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut d = Debounce::new(ms(100), ms(1000));
        for i in 0..100 {
            d.record(t0 + ms(i * 50), PathBuf::from("busy.py"));
        }
        assert_eq!(d.due(), Some(t0 + ms(1000)));
    }

    #[test]
    fn files_written_into_a_new_directory_before_its_watch_are_reported() {
        let dir = std::env::temp_dir().join(format!("initd-reload-newdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut reloader = Reloader::start(std::slice::from_ref(&dir), &Filter::default(), None).unwrap();
        assert_eq!(reloader.mode, Mode::Inotify);
        // Written at once, before initd can have watched the new directories.
        fs::create_dir_all(dir.join("pkg/sub")).unwrap();
        fs::write(dir.join("pkg/sub/views.py"), "x").unwrap();
        let wanted = dir.join("pkg/sub/views.py");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while !seen.contains(&wanted) {
            assert!(Instant::now() < deadline, "not reported: {seen:?}");
            std::thread::sleep(Duration::from_millis(10));
            seen.extend(reloader.drain());
        }
        // Later writes there come as events.
        seen.clear();
        fs::write(dir.join("pkg/sub/models.py"), "y").unwrap();
        while !seen.contains(&dir.join("pkg/sub/models.py")) {
            assert!(Instant::now() < deadline, "not reported: {seen:?}");
            std::thread::sleep(Duration::from_millis(10));
            seen.extend(reloader.drain());
        }
        drop(reloader);
        fs::remove_dir_all(dir).unwrap();
    }
}

/// Property tests for the reload patterns, which come from the user
/// (`INITD_RELOAD_INCLUDE`/`_IGNORE`): the matcher agrees with the
/// textbook definition and stays fast on any pattern.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// The definition, as a table over (pattern prefix, name prefix).
    fn reference(p: &[u8], n: &[u8]) -> bool {
        let mut m = vec![vec![false; n.len() + 1]; p.len() + 1];
        m[0][0] = true;
        for i in 1..=p.len() {
            for j in 0..=n.len() {
                m[i][j] = match p[i - 1] {
                    b'*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                    b'?' => j > 0 && m[i - 1][j - 1],
                    c => j > 0 && n[j - 1] == c && m[i - 1][j - 1],
                };
            }
        }
        m[p.len()][n.len()]
    }

    #[test]
    fn many_stars_against_a_long_name_answer_at_once() {
        // Exponential for a matcher that retries every star: 2^40 steps.
        let pattern = "*a".repeat(40) + "b";
        let name = "a".repeat(200);
        assert!(!glob_match(&pattern, &name));
        assert!(glob_match(&("*a".repeat(40) + "*"), &name));
    }

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn glob_agrees_with_the_definition(p in "[ab*?]{0,10}", n in "[ab]{0,12}") {
            prop_assert_eq!(glob_match(&p, &n), reference(p.as_bytes(), n.as_bytes()));
        }

        #[test]
        fn any_pattern_and_name_never_panic(p in any::<String>(), n in any::<String>()) {
            let _ = glob_match(&p, &n);
            prop_assert!(glob_match("*", &n));
            prop_assert!(glob_match(&n.replace(['*', '?'], ""), &n.replace(['*', '?'], "")));
        }
    }
}
