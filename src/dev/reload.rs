//! Noticing source changes for the dev server: watching the files
//! [`crate::dev::filter`] lets through (inotify, polling, or both, as
//! [`crate::dev::watchplan`] decides per root), and coalescing a burst of
//! writes into one restart.
//!
//! Both run on PID 1's loop, with no thread: the inotify descriptor is
//! polled next to the signalfd (so the loop still sleeps with no timer
//! while nothing happens), and the poller walks its trees a slice at a
//! time, each slice bounded in entries and time, so a large checkout or a
//! slow bind mount never holds up a signal.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tracing::{debug, info};

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

/// One slice of a polling round looks at this many entries (directories
/// and files) at most, and stops after this long: between slices the loop
/// handles signals, children and output.
const SLICE_ENTRIES: usize = 2000;
const SLICE_TIME: Duration = Duration::from_millis(10);

/// What a watch reports: every change to a directory's entries, and the
/// directory itself going away.
const WATCH_EVENTS: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

/// A running watcher: inotify, a poller, or both, whose news
/// [`Reloader::drain`] collects.
pub struct Reloader {
    pub mode: Mode,
    roots: Vec<PathBuf>,
    filter: Filter,
    inotify: Option<Watches>,
    polling: Option<Polling>,
    /// What inotify reported while a poller runs as well, with the files'
    /// stamps then, so the poller does not report the same change again a
    /// moment later (a second restart for one save); `None` while no
    /// poller runs alongside.
    reported: Option<HashMap<PathBuf, FileStamp>>,
}

/// A file as last reported: modification time, size and inode (`None`:
/// gone).
type FileStamp = Option<(SystemTime, u64, u64)>;

fn file_stamp(path: &Path) -> FileStamp {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

/// What one inotify event means for the reloader.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A path changed; `new_dir`: a directory appeared there (created or
    /// moved in), to be watched too.
    Changed { path: PathBuf, new_dir: bool },
    /// The watch is gone (its directory was deleted or unmounted).
    Unwatched,
    /// The kernel's queue overflowed: events were lost.
    Overflow,
}

/// Turns one event on the directory `dir` into what it means (pure: the
/// kernel's flags say whether the entry is a directory).
fn seen(dir: &Path, mask: AddWatchFlags, name: Option<&OsStr>, filter: &Filter) -> Seen {
    if mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
        return Seen::Overflow;
    }
    if mask.contains(AddWatchFlags::IN_IGNORED) {
        return Seen::Unwatched;
    }
    let path = match name {
        Some(name) => dir.join(name),
        None => dir.to_path_buf(),
    };
    let appeared = mask.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
    let new_dir = appeared
        && mask.contains(AddWatchFlags::IN_ISDIR)
        && name.is_some_and(|n| !filter.ignores_dir(&n.to_string_lossy()));
    Seen::Changed { path, new_dir }
}

/// inotify with one watch per directory, added by walking the tree, so
/// ignored trees (node_modules, .git) cost no watches; directories created
/// (or moved in) later are added as they appear.
struct Watches {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
}

impl Watches {
    fn new() -> nix::Result<Watches> {
        Ok(Watches {
            inotify: Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?,
            dirs: HashMap::new(),
        })
    }

    /// Watches one directory (a symlink is not followed: a link to /
    /// would otherwise watch the world).
    fn watch(&mut self, dir: &Path) -> nix::Result<()> {
        let flags = WATCH_EVENTS | AddWatchFlags::IN_ONLYDIR | AddWatchFlags::IN_DONT_FOLLOW;
        let wd = self.inotify.add_watch(dir, flags)?;
        self.dirs.insert(wd, dir.to_path_buf());
        Ok(())
    }

    /// Every event waiting, without blocking, as what it means.
    fn read(&mut self, filter: &Filter) -> Vec<Seen> {
        let mut out = Vec::new();
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) if !events.is_empty() => events,
                Err(Errno::EINTR) => continue,
                // EAGAIN: all read. Anything else is not worth a busy loop.
                _ => return out,
            };
            for event in events {
                let Some(dir) = self.dirs.get(&event.wd) else {
                    if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                        out.push(Seen::Overflow);
                    }
                    continue;
                };
                let seen = seen(dir, event.mask, event.name.as_deref(), filter);
                if seen == Seen::Unwatched {
                    self.dirs.remove(&event.wd);
                }
                out.push(seen);
            }
        }
    }
}

/// The poller on the loop: a round every so often, taken in slices.
struct Polling {
    poller: Poller,
    pace: Pace,
    /// When the next round starts; `None` while one is under way.
    next: Option<Instant>,
    /// The time the round under way has taken so far, slices added up.
    work: Duration,
    said_slow: bool,
    /// What inotify reported during the round before this one: a write
    /// made while a round runs is seen by the next one.
    before: HashMap<PathBuf, FileStamp>,
}

impl Reloader {
    /// Starts watching `roots`, each as the file system it is on calls for
    /// (see [`crate::dev::watchplan`]): inotify alone on local file systems,
    /// polling as well elsewhere, or as INITD_RELOAD_POLL forces. Says in
    /// one line which method watches which root, and why.
    pub fn start(roots: &[PathBuf], filter: &Filter, setting: ReloadPoll) -> Reloader {
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

    fn with_plans(roots: &[PathBuf], filter: &Filter, plans: Vec<RootPlan>) -> Reloader {
        let mut reloader = Reloader {
            mode: Mode::Inotify,
            roots: roots.to_vec(),
            filter: filter.clone(),
            inotify: None,
            polling: None,
            reported: None,
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
            match watch_roots(&inotify_roots, filter) {
                Ok(watches) => reloader.inotify = Some(watches),
                Err(e) => {
                    info!(
                        "watching for changes by polling every {} instead: inotify is not usable ({})",
                        human(DEFAULT_POLL),
                        e.desc()
                    );
                    poll_at = roots.to_vec();
                    every = DEFAULT_POLL;
                }
            }
        }
        if !poll_at.is_empty() {
            reloader.start_polling(poll_at, every, !forced);
        }
        reloader
    }

    /// Polls `dirs` from now on, in place of any poller before; `stretch`:
    /// waits longer after an expensive round (see [`STRETCH`]). The first
    /// round, taken in slices like the others, learns the trees.
    fn start_polling(&mut self, dirs: Vec<PathBuf>, every: Duration, stretch: bool) {
        self.mode = if self.inotify.is_some() {
            Mode::InotifyAndPoll(every)
        } else {
            Mode::Poll(every)
        };
        self.reported = self.inotify.is_some().then(HashMap::new);
        self.polling = Some(Polling {
            poller: Poller::unlooked(&dirs, &self.filter),
            pace: Pace { every, stretch },
            next: None,
            work: Duration::ZERO,
            said_slow: false,
            before: HashMap::new(),
        });
    }

    /// inotify gave up (out of watches, lost events): everything is polled
    /// from now on, at the default interval.
    fn poll_instead(&mut self, why: &str) {
        info!(
            "watching for changes by polling every {} from now on: {why}",
            human(DEFAULT_POLL)
        );
        self.inotify = None;
        self.start_polling(self.roots.clone(), DEFAULT_POLL, true);
    }

    /// The descriptor to poll for inotify's events.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inotify.as_ref().map(|w| w.inotify.as_fd())
    }

    /// When the poller has work: the next round, or at once while a round
    /// is under way.
    pub fn due(&self) -> Option<Instant> {
        let polling = self.polling.as_ref()?;
        Some(polling.next.unwrap_or_else(Instant::now))
    }

    /// The changed paths so far, unfiltered, without blocking: inotify's
    /// events, and a slice of the poller's round when it is due.
    /// Directories that appeared are watched from now on, and the files
    /// already in them count as changed: they were written before the
    /// watch existed, so no event told of them (`git checkout` of a new
    /// package, `mkdir -p a/b && touch a/b/c.py`).
    pub fn drain(&mut self) -> Vec<PathBuf> {
        let mut changes = self.inotify_changes();
        if let Some(polled) = self.poll_slice(Instant::now()) {
            changes.extend(polled);
        }
        changes
    }

    fn inotify_changes(&mut self) -> Vec<PathBuf> {
        let Some(watches) = self.inotify.as_mut() else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        let mut new_dirs = Vec::new();
        let mut overflow = false;
        for seen in watches.read(&self.filter) {
            match seen {
                Seen::Changed { path, new_dir } => {
                    if new_dir {
                        new_dirs.push(path.clone());
                    }
                    changes.push(path);
                }
                Seen::Unwatched => {}
                Seen::Overflow => overflow = true,
            }
        }
        let mut unwatchable = None;
        for root in new_dirs {
            if let Err(e) = watch_tree(watches, &root, &self.filter, &mut changes) {
                unwatchable = Some((root, e));
                break;
            }
        }
        if let Some((root, e)) = unwatchable {
            // Out of watches: what is not watched would go unseen, so poll
            // everything from here on.
            self.poll_instead(&format!(
                "inotify cannot watch {} ({}); raising fs.inotify.max_user_watches on the host would allow \
                 inotify",
                root.display(),
                e.desc()
            ));
            return changes;
        }
        if overflow {
            self.poll_instead(
                "inotify lost events (its queue overflowed); raising fs.inotify.max_queued_events on the host \
                 would allow inotify",
            );
            return changes;
        }
        if let Some(reported) = self.reported.as_mut() {
            for path in &changes {
                reported.insert(path.clone(), file_stamp(path));
            }
        }
        changes
    }

    /// A slice of the polling round, if one is due; what the round found
    /// once its last slice is done.
    fn poll_slice(&mut self, now: Instant) -> Option<Vec<PathBuf>> {
        let polling = self.polling.as_mut()?;
        if polling.next.is_some_and(|next| now < next) {
            return None;
        }
        polling.next = None;
        let changed = polling.poller.step(SLICE_ENTRIES, Some(now + SLICE_TIME));
        polling.work += now.elapsed();
        let changed = changed?;
        let took = std::mem::take(&mut polling.work);
        let pause = polling.pace.pause(took);
        polling.next = Some(Instant::now() + pause);
        let reported = self.reported.as_mut().map(std::mem::take).unwrap_or_default();
        let fresh = changed
            .into_iter()
            .filter(|path| {
                let seen = reported.get(path).or_else(|| polling.before.get(path));
                seen.is_none_or(|stamp| *stamp != file_stamp(path))
            })
            .collect();
        polling.before = reported;
        if pause >= 2 * polling.pace.every && !polling.said_slow {
            // Once: a reload that takes many seconds should say why.
            polling.said_slow = true;
            let every = polling.pace.every;
            info!(
                "polling {} files took {} a round: polling every {} rather than every {}, to stay under 1% \
                 of a core; INITD_RELOAD_PATHS can narrow what is watched, INITD_RELOAD_POLL={} polls at that \
                 interval whatever it costs",
                polling.poller.files(),
                human(Duration::from_millis(took.as_millis() as u64)),
                human(pause),
                human(every),
                human(every)
            );
        }
        Some(fresh)
    }
}

/// Watches every directory of `roots` that is not ignored.
fn watch_roots(roots: &[PathBuf], filter: &Filter) -> nix::Result<Watches> {
    let mut watches = Watches::new()?;
    for root in roots {
        for dir in directories(root, filter) {
            watches.watch(&dir)?;
        }
    }
    debug!(directories = watches.dirs.len(), "inotify watches set");
    Ok(watches)
}

/// Watches `root` and the directories below it, adding the files found in
/// them to `found`. Each directory is listed only after its watch is set, so
/// a file or directory created in it meanwhile is listed, reported by the
/// watch, or both; listing first would lose what appears in between (a
/// `mkdir -p a/b` racing this walk).
fn watch_tree(
    watches: &mut Watches,
    root: &Path,
    filter: &Filter,
    found: &mut Vec<PathBuf>,
) -> nix::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Err(e) = watches.watch(&dir) {
            // Gone again before it could be watched, or not a directory
            // after all: nothing to see there.
            if matches!(e, Errno::ENOENT | Errno::ENOTDIR) || fs::symlink_metadata(&dir).is_err() {
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

    #[test]
    fn inotify_events_become_changed_paths_and_new_directories() {
        let f = Filter::default();
        let dir = Path::new("/app/proj");
        let name = |n: &'static str| Some(OsStr::new(n));
        let changed = |path: &str, new_dir| Seen::Changed {
            path: PathBuf::from(path),
            new_dir,
        };
        assert_eq!(
            seen(dir, AddWatchFlags::IN_CLOSE_WRITE, name("views.py"), &f),
            changed("/app/proj/views.py", false)
        );
        let mkdir = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ISDIR;
        assert_eq!(seen(dir, mkdir, name("pkg"), &f), changed("/app/proj/pkg", true));
        let moved_in = AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ISDIR;
        assert_eq!(
            seen(dir, moved_in, name("pkg"), &f),
            changed("/app/proj/pkg", true)
        );
        // An ignored tree appearing costs no watch; a directory removed is
        // a change, not a new directory.
        assert_eq!(
            seen(dir, mkdir, name("node_modules"), &f),
            changed("/app/proj/node_modules", false)
        );
        let rmdir = AddWatchFlags::IN_DELETE | AddWatchFlags::IN_ISDIR;
        assert_eq!(seen(dir, rmdir, name("pkg"), &f), changed("/app/proj/pkg", false));
        assert_eq!(
            seen(dir, AddWatchFlags::IN_DELETE_SELF, None, &f),
            changed("/app/proj", false)
        );
        assert_eq!(seen(dir, AddWatchFlags::IN_IGNORED, None, &f), Seen::Unwatched);
        assert_eq!(seen(dir, AddWatchFlags::IN_Q_OVERFLOW, None, &f), Seen::Overflow);
    }

    #[test]
    fn lost_inotify_events_fall_back_to_polling() {
        let tmp = crate::testdir::TempDir::new("reload-overflow");
        let dir = tmp.0.clone();
        let mut reloader = Reloader::start(std::slice::from_ref(&dir), &Filter::default(), ReloadPoll::Off);
        assert_eq!(reloader.mode, Mode::Inotify);
        assert!(reloader.due().is_none());
        reloader.poll_instead("a test says so");
        assert_eq!(reloader.mode, Mode::Poll(DEFAULT_POLL));
        assert!(reloader.fd().is_none());
        // The first round learns the tree; the next one sees the edit.
        collect_for(&mut reloader, Duration::from_millis(100));
        fs::write(dir.join("views.py"), "x").unwrap();
        let seen = collect_for(&mut reloader, DEFAULT_POLL * 3);
        assert!(seen.contains(&dir.join("views.py")), "{seen:?}");
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
        let tmp = crate::testdir::TempDir::new("reload-both");
        let dir = tmp.0.clone();
        fs::write(dir.join("views.py"), "a").unwrap();
        let every = Duration::from_millis(200);
        let plan = RootPlan {
            root: dir.clone(),
            method: Method::InotifyAndPoll(every),
            poll: vec![dir.clone()],
            reason: crate::dev::watchplan::Reason::Unknown,
        };
        let mut reloader = Reloader::with_plans(std::slice::from_ref(&dir), &Filter::default(), vec![plan]);
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
    }

    #[test]
    fn files_written_into_a_new_directory_before_its_watch_are_reported() {
        let tmp = crate::testdir::TempDir::new("reload-newdir");
        let dir = tmp.0.clone();
        let mut reloader = Reloader::start(std::slice::from_ref(&dir), &Filter::default(), ReloadPoll::Off);
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
    }
}
