//! Opening paths as root without letting anyone else steer where they lead.
//!
//! initd starts as root and works on files the app user can write (its home,
//! `/app`, volumes). A path name is only a promise about what it names at
//! the moment it is resolved; a symbolic link or a swapped directory planted
//! by the app turns root's `chown`, `open` or `rename` onto a file of the
//! app's choosing (the systemd-tmpfiles lesson, CVE-2017-18078). So every
//! root operation here starts from a descriptor obtained one of two ways:
//!
//! - [`open_no_symlinks`]: no symbolic link anywhere in the path is followed
//!   (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` where the
//!   kernel has it, one `openat(O_NOFOLLOW)` per component otherwise), for
//!   paths initd changes (`INITD_CHOWN`, the app user's home);
//! - [`resolve_trusted`]: links are followed, but only links and directories
//!   owned by a trusted user (root), for paths initd reads or replaces that
//!   root legitimately links (Kubernetes' `..data` secret links, `/etc`).
//!
//! Both refuse with the component at fault, so the message can name it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use thiserror::Error;

/// The kernel's own limit on links followed in one lookup (MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Why a path was not opened. `component` is the path up to and including
/// the part at fault, as it was reached (links already replaced).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("{} is a symbolic link", .component.display())]
    Symlink { component: PathBuf },
    #[error("{} is not a directory", .component.display())]
    NotDir { component: PathBuf },
    #[error("{} is a {what} owned by uid {uid}, not by root", .component.display())]
    Untrusted {
        component: PathBuf,
        what: &'static str,
        uid: u32,
    },
    #[error("{} is a directory anyone can write to (mode {mode:o}, no sticky bit)", .component.display())]
    WorldWritable { component: PathBuf, mode: u32 },
    #[error("{} has more than {MAX_LINKS} symbolic links in a row", .component.display())]
    TooManyLinks { component: PathBuf },
    #[error("{}: {}", .component.display(), .errno.desc())]
    Io { component: PathBuf, errno: Errno },
}

impl PathError {
    /// Nothing at that path: callers treat a missing path differently (a
    /// missing `INITD_CHOWN` path is a warning, not a failure).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PathError::Io {
                errno: Errno::ENOENT,
                ..
            }
        )
    }

    #[cfg(test)]
    pub fn component(&self) -> &Path {
        match self {
            PathError::Symlink { component }
            | PathError::NotDir { component }
            | PathError::Untrusted { component, .. }
            | PathError::WorldWritable { component, .. }
            | PathError::TooManyLinks { component }
            | PathError::Io { component, .. } => component,
        }
    }
}

fn io_err(component: impl Into<PathBuf>, errno: Errno) -> PathError {
    PathError::Io {
        component: component.into(),
        errno,
    }
}

/// What kind of file a stat describes.
pub fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

pub fn is_dir(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFDIR
}

pub fn is_symlink(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFLNK
}

/// An `O_PATH` descriptor for `path` (the link itself if the last component
/// is one), reached without following any symbolic link on the way. Only
/// `.`, `..` and plain names are walked; a link anywhere is refused.
pub fn open_no_symlinks(path: &Path) -> Result<OwnedFd, PathError> {
    match openat2_no_symlinks(path) {
        Some(Ok(fd)) => Ok(fd),
        // openat2 says only ELOOP; the walk finds which component it was.
        Some(Err(Errno::ELOOP)) | None => open_per_component(path),
        Some(Err(errno)) => Err(locate(path, errno)),
    }
}

/// `None` when the kernel has no openat2 (before 5.6, or a seccomp profile
/// that answers ENOSYS or EPERM for syscalls it does not know).
fn openat2_no_symlinks(path: &Path) -> Option<nix::Result<OwnedFd>> {
    use nix::fcntl::{OpenHow, ResolveFlag, openat2};
    if !OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(AT_FDCWD, path, how) {
        Err(Errno::ENOSYS | Errno::EPERM | Errno::E2BIG) => None,
        other => Some(other),
    }
}

/// Whether [`open_no_symlinks`] may use openat2; off in tests of the
/// per-component walk that older kernels get.
static OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

#[cfg(test)]
pub(crate) fn use_openat2(on: bool) -> bool {
    OPENAT2.swap(on, std::sync::atomic::Ordering::Relaxed)
}

/// An errno from openat2 with the component it concerns: the path itself
/// unless a parent is missing or not a directory.
fn locate(path: &Path, errno: Errno) -> PathError {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => match open_per_component(path) {
            Err(e) => e,
            Ok(_) => io_err(path, errno),
        },
        _ => io_err(path, errno),
    }
}

/// The fallback: `openat(dirfd, name, O_PATH | O_NOFOLLOW)` one component
/// at a time, each checked with `fstat` on what was opened.
fn open_per_component(path: &Path) -> Result<OwnedFd, PathError> {
    let (mut dir, mut reached) = start(path)?;
    let parts: Vec<Component> = path.components().collect();
    for (i, part) in parts.iter().enumerate() {
        let name: &OsStr = match part {
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir => OsStr::new(".."),
            Component::Normal(name) => name,
            Component::Prefix(_) => unreachable!("no prefixes on Unix"),
        };
        reached.push(name);
        let fd = nix::fcntl::openat(
            &dir,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(&reached, e))?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| io_err(&reached, e))?;
        let more = parts[i + 1..].iter().any(|p| !matches!(p, Component::CurDir));
        if more && is_symlink(&st) {
            return Err(PathError::Symlink { component: reached });
        }
        if more && !is_dir(&st) {
            return Err(PathError::NotDir { component: reached });
        }
        dir = fd;
    }
    // For `/` or `.`, the starting directory itself.
    Ok(dir)
}

/// The directory a path starts from, and how its name is shown.
fn start(path: &Path) -> Result<(OwnedFd, PathBuf), PathError> {
    let (from, shown) = if path.is_absolute() {
        ("/", PathBuf::from("/"))
    } else {
        (".", PathBuf::new())
    };
    let fd = nix::fcntl::open(
        from,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(from, e))?;
    Ok((fd, shown))
}

/// The last component of a path reached by [`resolve_trusted`]: the
/// directory that holds it (trusted, so its entries cannot be swapped by
/// anyone else) and its name there.
#[derive(Debug)]
pub struct Found {
    pub dir: OwnedFd,
    pub name: OsString,
    /// The path with every link replaced (what `realpath` would print).
    pub real: PathBuf,
}

/// Whose links and directories [`resolve_trusted`] follows: root, and the
/// user initd runs as when that is not root (it can read its own files
/// anyway, so its own links give it nothing new).
///
/// In a user namespace (rootless Podman, `unshare --user`), files whose
/// owner is not mapped into it show as the overflow uid (65534): their
/// owner is outside, where nobody inside can reach, so that uid is trusted
/// too, but only while it is not mapped (else it is `nobody`, an account
/// an app may run as).
pub fn trusted_owners() -> Vec<u32> {
    let me = nix::unistd::geteuid().as_raw();
    let mut trusted = vec![0];
    if me != 0 {
        trusted.push(me);
    }
    let read = |path| std::fs::read_to_string(path).ok();
    let overflow = read("/proc/sys/kernel/overflowuid").and_then(|t| t.trim().parse::<u32>().ok());
    if let (Some(overflow), Some(map)) = (overflow, read("/proc/self/uid_map"))
        && !is_mapped(&map, overflow)
    {
        trusted.push(overflow);
    }
    trusted
}

/// Whether `id` is inside one of the ranges of a `/proc/PID/uid_map`
/// (`inside outside count` per line).
pub fn is_mapped(map: &str, id: u32) -> bool {
    map.lines().any(|line| {
        let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        matches!(fields[..], [inside, _, count] if (inside..inside.saturating_add(count)).contains(&u64::from(id)))
    })
}

fn check_dir(st: &FileStat, component: &Path, trusted: &[u32]) -> Result<(), PathError> {
    if !trusted.contains(&st.st_uid) {
        return Err(PathError::Untrusted {
            component: component.to_owned(),
            what: "directory",
            uid: st.st_uid,
        });
    }
    let mode = st.st_mode & 0o7777;
    // Anyone could rename or replace entries: the owner is no promise then.
    // A sticky directory (/tmp) keeps others from touching root's entries.
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(PathError::WorldWritable {
            component: component.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Resolves `path` like the kernel would, but follows a symbolic link only
/// when the link is owned by one of `trusted`, and walks only through
/// directories owned by one of `trusted` that not everyone can write to.
/// The last component is not opened (it may be a FIFO or a device), and
/// need not exist: the caller gets its directory and name, and checks it
/// with `fstatat`.
pub fn resolve_trusted(path: &Path, trusted: &[u32]) -> Result<Found, PathError> {
    let (root_fd, root_shown) = start(path)?;
    let root_st = nix::sys::stat::fstat(&root_fd).map_err(|e| io_err(&root_shown, e))?;
    let root_real = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().map_err(|e| io_err(".", Errno::from_raw(e.raw_os_error().unwrap_or(0))))?
    };
    check_dir(&root_st, &root_real, trusted)?;
    // The directories walked so far, so that `..` goes back the way it came.
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(root_fd, root_real)];
    let mut queue: VecDeque<OsString> = components(path.as_os_str());
    let mut links = 0;
    while let Some(name) = queue.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let (dir, real) = stack.last().expect("the start is never popped");
        let here = real.join(&name);
        let last = queue.is_empty();
        let st =
            match nix::sys::stat::fstatat(dir, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // A missing last component is the caller's to report (a missing
                // /etc/group is fine; a missing secret is not).
                Err(Errno::ENOENT) if last => {
                    let (dir, _) = stack.pop().expect("non-empty");
                    return Ok(Found {
                        dir,
                        name,
                        real: here,
                    });
                }
                Err(e) => return Err(io_err(&here, e)),
            };
        if is_symlink(&st) {
            if !trusted.contains(&st.st_uid) {
                return Err(PathError::Untrusted {
                    component: here,
                    what: "symbolic link",
                    uid: st.st_uid,
                });
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(PathError::TooManyLinks { component: here });
            }
            let target = nix::fcntl::readlinkat(dir, name.as_os_str()).map_err(|e| io_err(&here, e))?;
            if target.as_bytes().starts_with(b"/") {
                stack.truncate(1);
                if stack[0].1 != Path::new("/") {
                    let (fd, shown) = start(Path::new("/"))?;
                    let st = nix::sys::stat::fstat(&fd).map_err(|e| io_err(&shown, e))?;
                    check_dir(&st, &shown, trusted)?;
                    stack[0] = (fd, shown);
                }
            }
            for part in components(&target).into_iter().rev() {
                queue.push_front(part);
            }
            continue;
        }
        if last {
            let (dir, _) = stack.pop().expect("non-empty");
            return Ok(Found {
                dir,
                name,
                real: here,
            });
        }
        if !is_dir(&st) {
            return Err(PathError::NotDir { component: here });
        }
        check_dir(&st, &here, trusted)?;
        let fd = nix::fcntl::openat(
            dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(&here, e))?;
        // The directory is trusted, so this is the entry just checked; the
        // owner is checked once more on what was really opened anyway.
        let opened = nix::sys::stat::fstat(&fd).map_err(|e| io_err(&here, e))?;
        check_dir(&opened, &here, trusted)?;
        stack.push((fd, here));
    }
    // The path ended in `/`, `.` or `..`: it names a directory, not a file
    // in one. Report it as such.
    let (_, real) = stack.pop().expect("non-empty");
    Err(io_err(real, Errno::EISDIR))
}

/// The non-empty, non-`.` parts of a path, in order.
fn components(path: &OsStr) -> VecDeque<OsString> {
    path.as_bytes()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .map(|p| OsStr::from_bytes(p).to_os_string())
        .collect()
}

/// Why [`read_regular`] or [`read_regular_beneath`] read nothing.
#[derive(Debug)]
pub enum ReadProblem {
    Missing,
    Io(std::io::Error),
    /// What it is instead: "a FIFO", "a directory"...
    NotRegular(&'static str),
    TooLarge,
}

/// Reads a small file initd needs at start-up (its settings file, the
/// app's gunicorn.conf.py) without ever blocking on it or reading it
/// forever: it must be a regular file (links to one are followed) of at
/// most `max` bytes. It is looked at before it is opened (a device would
/// see the open), opened non-blocking (a FIFO swapped in meanwhile must not
/// hang PID 1), checked again on the descriptor, and read up to `max + 1`.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadProblem> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ReadProblem::NotRegular("a directory"));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    read_regular_beneath(dir, Path::new(name), max, true)
}

/// [`read_regular`] for `relative` beneath the directory `base` (trusted,
/// e.g. the working directory the image set). Unless `follow`, no symbolic
/// link below `base` is followed: each component is opened from its
/// parent's descriptor with O_NOFOLLOW, as root must for files the app owns
/// (its project, its gunicorn.conf.py), where a link could lead anywhere.
pub fn read_regular_beneath(
    base: &Path,
    relative: &Path,
    max: u64,
    follow: bool,
) -> Result<Vec<u8>, ReadProblem> {
    use nix::fcntl::{AtFlags, openat};
    use std::io::Read;
    let problem = |e: Errno| match e {
        Errno::ENOENT => ReadProblem::Missing,
        // O_NOFOLLOW met a link (ELOOP), or a link where a directory was
        // expected (ENOTDIR, as the kernel reports it with O_DIRECTORY).
        Errno::ELOOP | Errno::ENOTDIR if !follow => ReadProblem::NotRegular("a symbolic link"),
        e => ReadProblem::Io(e.into()),
    };
    let parts: Vec<&OsStr> = relative.iter().collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(ReadProblem::NotRegular("a directory"));
    };
    let mut flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    // `base` itself is trusted: links to it are followed.
    let base_flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY;
    let mut dir = nix::fcntl::open(base, base_flags, Mode::empty()).map_err(problem)?;
    for part in dirs {
        dir = openat(&dir, *part, flags | OFlag::O_DIRECTORY, Mode::empty()).map_err(problem)?;
    }
    // Looked at before it is opened: a device would see the open.
    let at = if follow {
        AtFlags::empty()
    } else {
        AtFlags::AT_SYMLINK_NOFOLLOW
    };
    let check = |st: &FileStat| {
        if kind(st) != SFlag::S_IFREG {
            Err(ReadProblem::NotRegular(describe_mode(st)))
        } else if st.st_size as u64 > max {
            Err(ReadProblem::TooLarge)
        } else {
            Ok(())
        }
    };
    check(&nix::sys::stat::fstatat(&dir, *last, at).map_err(problem)?)?;
    let fd = openat(&dir, *last, flags, Mode::empty()).map_err(problem)?;
    let st = nix::sys::stat::fstat(&fd).map_err(problem)?;
    check(&st)?;
    // Room for the whole file and one byte more, so it is read in one call
    // and the end seen in a second (an empty Vec grows from 32 bytes: eight
    // reads for a 1 kB /etc/passwd on every start).
    let mut bytes = Vec::with_capacity((st.st_size as u64).min(max) as usize + 1);
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadProblem::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadProblem::TooLarge);
    }
    Ok(bytes)
}

/// "a FIFO", "a directory"... for a file that is not a regular file.
fn describe_mode(st: &FileStat) -> &'static str {
    match kind(st) {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "a special file",
    }
}

/// An I/O error in the words of strerror: `No such file or directory`
/// reads better in a one-line error than std's `... (os error 2)`.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use crate::testdir::{TempDir, skip_unless_root};

    /// a/b/file, a/link -> b, up -> a (a parent link), dangling -> nowhere
    fn tree() -> TempDir {
        let t = TempDir::new("tree");
        fs::create_dir_all(t.0.join("a/b")).unwrap();
        fs::write(t.0.join("a/b/file"), "x").unwrap();
        symlink("b", t.0.join("a/link")).unwrap();
        symlink("a", t.0.join("up")).unwrap();
        t
    }

    /// The same answers with openat2 and with the per-component walk.
    fn both(check: impl Fn()) {
        let _guard = OPENAT2_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        check();
        let before = use_openat2(false);
        check();
        use_openat2(before);
    }

    static OPENAT2_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn plain_paths_open_and_links_anywhere_are_refused_by_name() {
        let t = tree();
        both(|| {
            let fd = open_no_symlinks(&t.0.join("a/b/file")).unwrap();
            assert!(!is_dir(&nix::sys::stat::fstat(&fd).unwrap()));
            assert!(is_dir(
                &nix::sys::stat::fstat(open_no_symlinks(&t.0.join("a/./b/../b")).unwrap()).unwrap()
            ));
            // A link in a parent component: refused, naming that component.
            assert_eq!(
                open_no_symlinks(&t.0.join("up/b/file")).unwrap_err(),
                PathError::Symlink {
                    component: t.0.join("up")
                }
            );
            assert_eq!(
                open_no_symlinks(&t.0.join("a/link/file")).unwrap_err(),
                PathError::Symlink {
                    component: t.0.join("a/link")
                }
            );
            // The last component may be a link: the fd is the link itself.
            let fd = open_no_symlinks(&t.0.join("a/link")).unwrap();
            assert!(is_symlink(&nix::sys::stat::fstat(&fd).unwrap()));
            let missing = open_no_symlinks(&t.0.join("a/nope/x")).unwrap_err();
            assert!(missing.is_not_found(), "{missing:?}");
            assert_eq!(missing.component(), t.0.join("a/nope"));
            assert_eq!(
                open_no_symlinks(&t.0.join("a/b/file/x")).unwrap_err().component(),
                t.0.join("a/b/file")
            );
        });
    }

    #[test]
    fn the_overflow_uid_counts_as_outside_only_when_unmapped() {
        // The initial namespace maps everything.
        assert!(is_mapped("         0          0 4294967295\n", 65534));
        // `unshare --user --map-root-user` as uid 1000: only 0 inside.
        assert!(!is_mapped("         0       1000          1\n", 65534));
        // Rootless Podman: 0 and a subordinate range that covers 65534.
        assert!(is_mapped("0 1000 1\n1 100000 65536\n", 65534));
        assert!(!is_mapped("0 1000 1\n1 100000 1000\n", 65534));
        assert!(!is_mapped("garbage\n", 0));
    }

    #[test]
    fn trusted_resolution_follows_root_links_and_reports_the_real_path() {
        let t = tree();
        let me = nix::unistd::geteuid().as_raw();
        let found = resolve_trusted(&t.0.join("up/link/file"), &[0, me]).unwrap();
        let real = fs::canonicalize(t.0.join("a/b/file")).unwrap();
        assert_eq!(found.real, real);
        assert_eq!(found.name, "file");
        let st =
            nix::sys::stat::fstatat(&found.dir, "file", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        assert_eq!(st.st_size, 1);
        // `..` after a link goes back up from where the link led.
        let found = resolve_trusted(&t.0.join("a/link/../b/file"), &[0, me]).unwrap();
        assert_eq!(found.real, real);
        // A loop ends.
        symlink("loop", t.0.join("loop")).unwrap();
        assert!(matches!(
            resolve_trusted(&t.0.join("loop/x"), &[0, me]),
            Err(PathError::TooManyLinks { .. })
        ));
    }

    #[test]
    fn trusted_resolution_refuses_links_and_directories_of_others() {
        if skip_unless_root("trusted_resolution_refuses_links_and_directories_of_others") {
            return;
        }
        let t = tree();
        std::os::unix::fs::lchown(t.0.join("up"), Some(1000), None).unwrap();
        assert_eq!(
            resolve_trusted(&t.0.join("up/b/file"), &[0]).unwrap_err(),
            PathError::Untrusted {
                component: t.0.join("up"),
                what: "symbolic link",
                uid: 1000
            }
        );
        std::os::unix::fs::lchown(t.0.join("a/b"), Some(1000), None).unwrap();
        assert_eq!(
            resolve_trusted(&t.0.join("a/b/file"), &[0]).unwrap_err(),
            PathError::Untrusted {
                component: t.0.join("a/b"),
                what: "directory",
                uid: 1000
            }
        );
        // The same user is trusted when initd runs as it.
        assert!(resolve_trusted(&t.0.join("a/b/file"), &[0, 1000]).is_ok());
        std::os::unix::fs::lchown(t.0.join("a/b"), Some(0), None).unwrap();
        fs::set_permissions(t.0.join("a"), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            resolve_trusted(&t.0.join("a/b/file"), &[0]),
            Err(PathError::WorldWritable { mode: 0o777, .. })
        ));
        fs::set_permissions(t.0.join("a"), fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(resolve_trusted(&t.0.join("a/b/file"), &[0]).is_ok());
    }
}
