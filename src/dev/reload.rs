//! Noticing source changes for the dev server: watching the files
//! [`crate::dev::filter`] lets through (inotify, polling, or both, as
//! [`crate::dev::watchplan`] decides per root), and coalescing a burst of
//! writes into one restart.
//!
//! Both watchers report changed paths on a channel and wake the dev loop
//! through a pipe it polls next to the signalfd, so the loop still sleeps
//! with no timer while nothing happens.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::OFlag;
use notify::Watcher as _;
use tracing::{debug, info, warn};

use crate::config::ReloadPoll;
use crate::dev::filter::Filter;
use crate::dev::poller::Poller;
use crate::dev::watchplan::{DEFAULT_POLL, Method, RootPlan, describe, plan_root};
use crate::units::human_duration as human;

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

/// How changes are noticed (for all roots together).
pub type Mode = Method;

/// When the poller runs at the default interval, it waits at least this
/// many times as long as its last round took, so a tree large enough (or a
/// file system slow enough) to make a round expensive still costs under 1%
/// of a core while idle.
const STRETCH: u32 = 100;

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
    /// What inotify reported while a poller runs as well, so the poller
    /// does not report the same change again a moment later (a second
    /// restart for one save).
    reported: Reported,
}

type NewDirs = Arc<Mutex<Vec<PathBuf>>>;

/// A file as last reported: modification time, size and inode (`None`:
/// gone).
type FileStamp = Option<(SystemTime, u64, u64)>;

fn file_stamp(path: &Path) -> FileStamp {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// Paths inotify reported, with their stamps then; `None` while no poller
/// runs (nothing would take them out again).
#[derive(Clone, Default)]
struct Reported(Arc<Mutex<Option<HashMap<PathBuf, FileStamp>>>>);

impl Reported {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<PathBuf, FileStamp>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, path: &Path) {
        if let Some(map) = self.lock().as_mut() {
            map.insert(path.to_path_buf(), file_stamp(path));
        }
    }

    fn enable(&self) {
        self.lock().get_or_insert_with(HashMap::new);
    }

    fn take(&self) -> HashMap<PathBuf, FileStamp> {
        self.lock().as_mut().map(std::mem::take).unwrap_or_default()
    }
}

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
    /// Starts watching `roots`, each as the file system it is on calls for
    /// (see [`crate::dev::watchplan`]): inotify alone on local file systems,
    /// polling as well elsewhere, or as INITD_RELOAD_POLL forces. Says in
    /// one line which method watches which root, and why.
    pub fn start(roots: &[PathBuf], filter: &Filter, setting: ReloadPoll) -> std::io::Result<Reloader> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let ignores = |name: &str| filter.ignores_dir(name);
        let plans = roots
            .iter()
            .map(|root| {
                // mountinfo has the real paths; the dev loop knows the
                // roots as given.
                let real = fs::canonicalize(root).unwrap_or_else(|_| root.clone());
                let mut plan = plan_root(&mountinfo, &real, setting, &ignores);
                plan.root = root.clone();
                for at in &mut plan.poll {
                    *at = root.join(at.strip_prefix(&real).unwrap_or(Path::new("")));
                }
                plan
            })
            .collect();
        Reloader::with_plans(roots, filter, plans)
    }

    fn with_plans(roots: &[PathBuf], filter: &Filter, plans: Vec<RootPlan>) -> std::io::Result<Reloader> {
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
            reported: Reported::default(),
        };
        info!("{}", describe(&plans, human));
        let mut poll_at: Vec<PathBuf> = plans.iter().flat_map(|p| p.poll.iter().cloned()).collect();
        let (mut every, forced) = plans
            .iter()
            .find_map(|p| match p.method {
                Method::Poll(every) => Some((every, true)),
                Method::InotifyAndPoll(every) => Some((every, false)),
                Method::Inotify => None,
            })
            .unwrap_or((DEFAULT_POLL, false));
        let inotify_roots: Vec<PathBuf> = plans
            .iter()
            .filter(|p| !matches!(p.method, Method::Poll(_)))
            .map(|p| p.root.clone())
            .collect();
        if !inotify_roots.is_empty() {
            let (waker, pending) = (reloader.waker.clone(), reloader.new_dirs.clone());
            match inotify_watcher(&inotify_roots, filter, waker, pending, reloader.reported.clone()) {
                Ok(watcher) => reloader.inotify = Some(watcher),
                Err(e) => {
                    info!(
                        "watching for changes by polling every {} instead: inotify is not usable ({e})",
                        human(DEFAULT_POLL)
                    );
                    poll_at = roots.to_vec();
                    every = DEFAULT_POLL;
                }
            }
        }
        if !poll_at.is_empty() {
            reloader.start_polling(poll_at, every, !forced)?;
        }
        Ok(reloader)
    }

    /// Polls `dirs` on a thread of its own, in place of any poller before;
    /// `stretch`: waits longer after an expensive round (see [`STRETCH`]).
    fn start_polling(&mut self, dirs: Vec<PathBuf>, every: Duration, stretch: bool) -> std::io::Result<()> {
        self.mode = if self.inotify.is_some() {
            Mode::InotifyAndPoll(every)
        } else {
            Mode::Poll(every)
        };
        self.stop_poller.store(true, Ordering::Relaxed);
        self.stop_poller = Arc::new(AtomicBool::new(false));
        if self.inotify.is_some() {
            self.reported.enable();
        }
        let filter = self.filter.clone();
        let (waker, stop, reported) = (
            self.waker.clone(),
            self.stop_poller.clone(),
            self.reported.clone(),
        );
        let pace = Pace { every, stretch };
        std::thread::Builder::new()
            .name("initd-poll".into())
            .spawn(move || poll_loop(&dirs, &filter, pace, &waker, &stop, &reported))?;
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
                let mut found = Vec::new();
                let watched = watch_tree(watcher, &root, &self.filter, &mut found);
                for path in &found {
                    self.reported.record(path);
                }
                changes.extend(found);
                if let Err(e) = watched {
                    // Out of watches: what is not watched would go unseen,
                    // so poll everything from here on.
                    info!(
                        "watching for changes by polling every {} from now on: inotify cannot watch {} ({e}); \
                         raising fs.inotify.max_user_watches on the host would allow inotify",
                        human(DEFAULT_POLL),
                        root.display()
                    );
                    self.inotify = None;
                    if let Err(e) = self.start_polling(self.roots.clone(), DEFAULT_POLL, true) {
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
    reported: Reported,
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
            reported.record(&path);
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

/// How often the poller looks.
#[derive(Debug, Clone, Copy)]
struct Pace {
    every: Duration,
    stretch: bool,
}

impl Pace {
    /// The pause after a round that took `took`.
    fn pause(&self, took: Duration) -> Duration {
        if self.stretch {
            let millis = took.saturating_mul(STRETCH).as_millis() as u64;
            // Long pauses in whole seconds (rounded up): `46s`, not `45919ms`.
            let stretched = if millis >= 2000 {
                Duration::from_secs(millis.div_ceil(1000))
            } else {
                Duration::from_millis(millis)
            };
            self.every.max(stretched)
        } else {
            self.every
        }
    }
}

fn poll_loop(
    dirs: &[PathBuf],
    filter: &Filter,
    pace: Pace,
    waker: &Waker,
    stop: &AtomicBool,
    reported: &Reported,
) {
    let mut poller = Poller::new(dirs, filter);
    debug!(files = poller.files(), "polling for changes");
    let mut pause = pace.every;
    let mut said_slow = false;
    // What inotify reported during this round and the one before: a write
    // made while a round runs is seen by the next one.
    let mut before = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(pause);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let changed = poller.poll();
        let took = started.elapsed();
        let now = reported.take();
        for path in changed {
            let seen = now.get(&path).or_else(|| before.get(&path));
            if seen.is_some_and(|stamp| *stamp == file_stamp(&path)) {
                continue;
            }
            waker.send(path);
        }
        before = now;
        pause = pace.pause(took);
        if pause >= 2 * pace.every && !said_slow {
            // Once: a reload that takes many seconds should say why.
            said_slow = true;
            info!(
                "polling {} files took {} a round: polling every {} rather than every {}, to stay under 1% \
                 of a core; INITD_RELOAD_PATHS can narrow what is watched, INITD_RELOAD_POLL={} polls at that \
                 interval whatever it costs",
                poller.files(),
                human(Duration::from_millis(took.as_millis() as u64)),
                human(pause),
                human(pace.every),
                human(pace.every)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn polling_stretches_after_an_expensive_round_unless_the_interval_was_set() {
        let ms = Duration::from_millis;
        let auto = Pace {
            every: ms(1000),
            stretch: true,
        };
        assert_eq!(auto.pause(ms(2)), ms(1000));
        // A 20 ms round waits 2 s: polling stays under 1% of a core.
        assert_eq!(auto.pause(ms(20)), ms(2000));
        assert_eq!(auto.pause(Duration::from_micros(12_345)), ms(1234));
        assert_eq!(auto.pause(ms(459)), Duration::from_secs(46));
        let forced = Pace {
            every: ms(200),
            stretch: false,
        };
        assert_eq!(forced.pause(ms(20)), ms(200));
    }

    /// Drains `reloader` until `until` passes, returning everything reported.
    fn collect_for(reloader: &mut Reloader, until: Duration) -> Vec<PathBuf> {
        let deadline = Instant::now() + until;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            seen.extend(reloader.drain());
        }
        seen
    }

    #[test]
    fn a_change_inotify_saw_is_not_reported_again_by_the_poller() {
        let dir = std::env::temp_dir().join(format!("initd-reload-both-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("views.py"), "a").unwrap();
        let every = Duration::from_millis(200);
        let plan = RootPlan {
            root: dir.clone(),
            method: Method::InotifyAndPoll(every),
            poll: vec![dir.clone()],
            reason: crate::dev::watchplan::Reason::Unknown,
        };
        let mut reloader =
            Reloader::with_plans(std::slice::from_ref(&dir), &Filter::default(), vec![plan]).unwrap();
        assert_eq!(reloader.mode, Mode::InotifyAndPoll(every));
        // Let the poller take its first look.
        collect_for(&mut reloader, every * 2);
        let views = dir.join("views.py");
        fs::write(&views, "changed").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut first = Vec::new();
        while !first.contains(&views) {
            assert!(Instant::now() < deadline, "not reported: {first:?}");
            std::thread::sleep(Duration::from_millis(5));
            first.extend(reloader.drain());
        }
        // The poller's next rounds find the same change: not news.
        let later = collect_for(&mut reloader, every * 4);
        assert!(!later.contains(&views), "reported again: {later:?}");
        // A change inotify cannot see (here: none is made through inotify's
        // eyes, so fake one by forgetting the watch) still comes from the poller.
        reloader.inotify = None;
        fs::write(&views, "changed again, longer").unwrap();
        let polled = collect_for(&mut reloader, every * 4);
        assert!(polled.contains(&views), "the poller missed it: {polled:?}");
        drop(reloader);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn files_written_into_a_new_directory_before_its_watch_are_reported() {
        let dir = std::env::temp_dir().join(format!("initd-reload-newdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut reloader =
            Reloader::start(std::slice::from_ref(&dir), &Filter::default(), ReloadPoll::Off).unwrap();
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
