//! The control socket: where `initd check` and `initd status` ask the
//! running supervisor how it is (protocol in `protocol`).
//!
//! This module makes the socket; `control_loop` serves it, as one of the
//! supervisor's sources, never blocking on a client.
//!
//! Who may ask is settled by the file system: the socket is mode 0660,
//! owned by root (or initd's user) and the app user's group, in a directory
//! initd creates as 0750; anyone else gets "permission denied".

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{Mode, umask};
use tracing::debug;

use crate::config::Health;
pub use crate::health::control_loop::{ControlLoop, Server};

/// The bound, listening socket, before it is served.
pub struct Listener {
    socket: UnixListener,
    path: PathBuf,
}

impl Listener {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why there is no control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// `INITD_SOCKET` points where someone other than root (and initd's
    /// own user) could swap the socket's file: refused, initd does not
    /// start.
    Unsafe(String),
    /// The socket cannot be made here (no permission, a file in the way):
    /// initd runs the app without health checks and says why.
    Unavailable(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Unsafe(m) | OpenError::Unavailable(m) => f.write_str(m),
        }
    }
}

/// Opens the control socket, as root before the drop to the app user (so
/// the directory can be made and handed to the app's group). Only the
/// entrypoint initd calls this (see `role`). `Ok(None)`: there is to be
/// no socket (`INITD_SOCKET=off`, or another live initd answers on it).
///
/// Everything happens on descriptors: the directory is reached component
/// by component without following a link anyone but root (or initd's own
/// user) owns, made there when missing (mode and group set on the
/// descriptor), checked on its open descriptor (a root initd refuses one
/// anyone but root may write), and the socket is bound, chowned and
/// chmodded through that descriptor, so no name an app user could change
/// is ever followed.
pub fn open(settings: &Health, app_gid: u32) -> Result<Option<Listener>, OpenError> {
    let Some(path) = &settings.socket else {
        return Ok(None);
    };
    let unavailable = |m: String| OpenError::Unavailable(m);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(unavailable(format!(
            "INITD_SOCKET={}: no file name",
            path.display()
        )));
    };
    let root = nix::unistd::geteuid().is_root();
    let dirfd = open_dir(path, dir, app_gid, root)?;
    if !clear_stale(path, &dirfd, name)? {
        debug!(
            "another initd answers on {}; this one serves no checks",
            path.display()
        );
        return Ok(None);
    }
    let socket = bind(&dirfd, name, path).map_err(|e| {
        let mut message = format!("cannot listen on {}: {e}", path.display());
        if e == nix::errno::Errno::EACCES {
            message.push_str(&not_root_hint(dir, root));
        }
        unavailable(message)
    })?;
    let restrict = || -> nix::Result<()> {
        if root {
            nix::unistd::fchownat(
                &dirfd,
                name,
                None,
                Some(nix::unistd::Gid::from_raw(app_gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        nix::sys::stat::fchmodat(
            &dirfd,
            name,
            Mode::from_bits_truncate(0o660),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
    };
    if let Err(e) = restrict() {
        let _ = nix::unistd::unlinkat(&dirfd, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        return Err(unavailable(format!(
            "cannot set the permissions of {}: {e}",
            path.display()
        )));
    }
    Ok(Some(Listener {
        socket,
        path: path.clone(),
    }))
}

/// The socket's directory, opened by descriptor from `/`, made when
/// missing (0750, group the app user's, so root and the app user may ask
/// and nobody else). An existing directory is kept as it is (the image
/// made it, or a previous run); for a root initd, only if nobody but root
/// can write it.
fn open_dir(socket: &Path, dir: &Path, app_gid: u32, root: bool) -> Result<OwnedFd, OpenError> {
    use nix::fcntl::{OFlag, openat};
    let me = nix::unistd::geteuid().as_raw();
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fail = |what: &str, e: nix::errno::Errno| {
        let mut message = format!("cannot {what} {}: {e}", dir.display());
        if e == nix::errno::Errno::EACCES {
            message.push_str(&not_root_hint(dir, root));
        }
        OpenError::Unavailable(message)
    };
    let unsafe_link = |at: &str, uid: u32| {
        OpenError::Unsafe(format!(
            "INITD_SOCKET={}: {at} is a symbolic link owned by uid {uid}, not root; initd follows no \
             link another user could change: point INITD_SOCKET at the real directory",
            socket.display()
        ))
    };
    let mut todo: Vec<std::ffi::OsString> = components(dir)?;
    todo.reverse();
    let mut cur: OwnedFd = nix::fcntl::open("/", flags, Mode::empty()).map_err(|e| fail("open", e))?;
    let mut shown = PathBuf::from("/");
    let mut links = 0;
    let mut created_last = false;
    while let Some(name) = todo.pop() {
        if name == ".." {
            return Err(OpenError::Unsafe(format!(
                "INITD_SOCKET={}: `..` is not allowed in the path",
                socket.display()
            )));
        }
        shown.push(&name);
        created_last = false;
        let st =
            match nix::sys::stat::fstatat(&cur, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st),
                Err(nix::errno::Errno::ENOENT) => None,
                Err(e) => return Err(fail("inspect", e)),
            };
        match st {
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                if st.st_uid != 0 && st.st_uid != me {
                    return Err(unsafe_link(&shown.display().to_string(), st.st_uid));
                }
                links += 1;
                if links > 40 {
                    return Err(fail("resolve", nix::errno::Errno::ELOOP));
                }
                let target =
                    nix::fcntl::readlinkat(&cur, name.as_os_str()).map_err(|e| fail("resolve", e))?;
                let target = PathBuf::from(target);
                shown.pop();
                let mut parts = components(&target)?;
                parts.reverse();
                todo.extend(parts);
                if target.is_absolute() {
                    cur = nix::fcntl::open("/", flags, Mode::empty()).map_err(|e| fail("open", e))?;
                    shown = PathBuf::from("/");
                }
                continue;
            }
            Some(_) => {}
            None => {
                // Born private; the last one gets its mode and group below.
                match nix::sys::stat::mkdirat(&cur, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(fail("create", e)),
                }
                created_last = true;
            }
        }
        let next = openat(&cur, name.as_os_str(), flags, Mode::empty()).map_err(|e| fail("open", e))?;
        if created_last && !todo.is_empty() {
            // A parent made on the way, as `mkdir -p` would: 0755.
            nix::sys::stat::fchmod(&next, Mode::from_bits_truncate(0o755)).map_err(|e| fail("create", e))?;
        }
        cur = next;
    }
    if created_last {
        nix::sys::stat::fchmod(&cur, Mode::from_bits_truncate(0o750)).map_err(|e| fail("create", e))?;
        if root {
            nix::unistd::fchown(&cur, None, Some(nix::unistd::Gid::from_raw(app_gid)))
                .map_err(|e| fail("create", e))?;
        }
    }
    // Only a root initd is at risk: a non-root one can change no file its
    // own user could not (Kubernetes' emptyDir volumes are world-writable).
    let st = nix::sys::stat::fstat(&cur).map_err(|e| fail("inspect", e))?;
    if root && let Some(who) = other_writers(st.st_uid, st.st_gid, st.st_mode) {
        return Err(OpenError::Unsafe(format!(
            "INITD_SOCKET={}: its directory {} is writable by {who}, who could swap the socket for a link \
             to a file of root's; use a directory only root can write (chown root {}; chmod 755 {}), or \
             leave INITD_SOCKET unset for /run/initd/initd.sock",
            socket.display(),
            dir.display(),
            dir.display(),
            dir.display(),
        )));
    }
    Ok(cur)
}

/// Who besides root may write a directory with this owner, group and
/// mode; `None` when nobody.
pub fn other_writers(uid: u32, gid: u32, mode: u32) -> Option<String> {
    if uid != 0 {
        return Some(format!("its owner, uid {uid}"));
    }
    if mode & 0o002 != 0 {
        return Some("everyone".into());
    }
    if mode & 0o020 != 0 && gid != 0 {
        return Some(format!("group gid {gid}"));
    }
    None
}

/// The normal components of a path (`.` dropped).
fn components(path: &Path) -> Result<Vec<std::ffi::OsString>, OpenError> {
    use std::path::Component;
    Ok(path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect())
}

/// What to do when initd, not being root, may not write where the socket
/// goes.
fn not_root_hint(dir: &Path, root: bool) -> String {
    if root {
        return String::new();
    }
    format!(
        "; initd runs as uid {}, not root: make {} writable for it in the image \
         (RUN install -d -o app {}), or set INITD_SOCKET to a path in a directory of its own such as \
         /tmp/initd/initd.sock, or INITD_SOCKET=off",
        nix::unistd::geteuid(),
        dir.display(),
        dir.display()
    )
}

/// A path that reaches `name` inside the open directory `dir` without
/// resolving any name above it again: bind(2) and connect(2) take only
/// paths. Without /proc, the real path (whose directory was checked to be
/// writable by root and initd alone) is the fallback.
fn at(dir: &OwnedFd, name: &std::ffi::OsStr, real: &Path) -> PathBuf {
    let via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    if Path::new("/proc/self/fd").is_dir() {
        via
    } else {
        real.to_path_buf()
    }
}

/// Removes the socket file a previous initd left behind (a restarted
/// container keeps its /run); `Ok(false)` when one is there that still
/// answers: it belongs to a live initd and is left alone. Anything that is
/// not a socket is left alone too, as an error.
fn clear_stale(path: &Path, dir: &OwnedFd, name: &std::ffi::OsStr) -> Result<bool, OpenError> {
    let unavailable = |m: String| OpenError::Unavailable(m);
    let st = match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(nix::errno::Errno::ENOENT) => return Ok(true),
        Err(e) => return Err(unavailable(format!("cannot use {}: {e}", path.display()))),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(unavailable(format!(
            "{} exists and is not a socket; remove it or set INITD_SOCKET to another path",
            path.display()
        )));
    }
    match UnixStream::connect(at(dir, name, path)) {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map(|()| true)
                .map_err(|e| unavailable(format!("cannot remove the stale socket {}: {e}", path.display())))
        }
        Err(e) => Err(unavailable(format!("cannot use {}: {e}", path.display()))),
    }
}

fn bind(dir: &OwnedFd, name: &std::ffi::OsStr, real: &Path) -> nix::Result<UnixListener> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let addr = UnixAddr::new(&at(dir, name, real))?;
    // Born 0600, so nobody can connect before the mode and group are set.
    // Only one thread runs at this point, so the process-wide umask
    // cannot surprise anyone else.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = socket::bind(fd.as_raw_fd(), &addr);
    umask(old);
    bound?;
    socket::listen(&fd, Backlog::MAXCONN)?;
    Ok(UnixListener::from(fd))
}

/// The socket as an event source, for the supervisor's loop to poll
/// alongside its own descriptors.
pub fn event_source(listener: Listener, server: Arc<Server>) -> io::Result<ControlLoop> {
    ControlLoop::new(listener.socket, server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::protocol::{self, RequestError};
    use crate::pid1::status::{Phase, Status};
    use crate::pipeline::secrets::Redactor;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn settings(dir: &Path, probe: &str) -> Health {
        Health {
            socket: Some(dir.join("initd.sock")),
            socket_set: true,
            check_timeout: Duration::from_secs(2),
            probe: probe.parse().unwrap(),
            probe_timeout: Duration::from_secs(2),
            drain: Duration::ZERO,
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("initd-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn ask(path: &Path, request: &[u8]) -> String {
        let mut conn = UnixStream::connect(path).unwrap();
        conn.write_all(request).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    }

    fn start(dir: &Path, probe: &str, status: Arc<Status>) -> PathBuf {
        let s = settings(dir, probe);
        let listener = open(&s, nix::unistd::getegid().as_raw()).unwrap().unwrap();
        let path = listener.path().to_path_buf();
        let server = Server::new(status, &s, None, Arc::new(Redactor::new(&[])));
        let mut control = event_source(listener, server).unwrap();
        // The supervisor's loop, standing in: driven on a thread here so
        // the test can be the client.
        std::thread::spawn(move || {
            loop {
                control
                    .poll_and_serve(nix::poll::PollTimeout::from(50u8))
                    .unwrap();
            }
        });
        path
    }

    #[test]
    fn answers_a_check_with_the_state() {
        let dir = scratch("state");
        let status = Status::new();
        status.set_phase(Phase::Starting, "migration running");
        let path = start(&dir, "", status.clone());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        let report = protocol::decode(ask(&path, b"initd/1 check\n").as_bytes()).unwrap();
        assert_eq!((report.state.as_str(), report.healthy), ("starting", false));
        assert_eq!(report.reason, "migration running");
        status.set_phase(Phase::Running, "server running");
        status.set_main(Some(42));
        let report = protocol::decode(ask(&path, b"initd/1 check\n").as_bytes()).unwrap();
        assert_eq!((report.state.as_str(), report.healthy), ("running", true));
        assert_eq!(report.main_pid, Some(42));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_requests_get_an_error_and_the_socket_stays_up() {
        let dir = scratch("bad");
        let path = start(&dir, "", Status::new());
        let answer = ask(&path, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            protocol::decode(answer.as_bytes()),
            Err(protocol::ReplyError::Refused(RequestError::Malformed.to_string()))
        );
        let answer = ask(&path, &[b'x'; 10_000]);
        assert!(answer.contains("longer than 256 bytes"), "{answer}");
        // A client that sends nothing does not hold up the next one.
        let _idle = UnixStream::connect(&path).unwrap();
        let report = protocol::decode(ask(&path, b"initd/1 check\n").as_bytes()).unwrap();
        assert_eq!(report.state, "starting");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
        let dir = scratch("stale");
        let path = start(&dir, "", Status::new());
        assert!(open(&settings(&dir, ""), 0).unwrap().is_none());
        assert!(path.exists());
        let stale = dir.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let mut s = settings(&dir, "");
        s.socket = Some(stale.clone());
        assert!(open(&s, nix::unistd::getegid().as_raw()).unwrap().is_some());
        std::fs::write(dir.join("file"), "").unwrap();
        s.socket = Some(dir.join("file"));
        let err = open(&s, 0).err().unwrap().to_string();
        assert!(err.contains("is not a socket"), "{err}");
        drop(path);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_directory_is_made_private() {
        let dir = scratch("dir");
        let mut s = settings(&dir, "");
        s.socket = Some(dir.join("run/initd/initd.sock"));
        let listener = open(&s, nix::unistd::getegid().as_raw()).unwrap().unwrap();
        let mode = std::fs::metadata(dir.join("run/initd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn who_else_may_write_a_directory() {
        assert_eq!(other_writers(0, 0, 0o40755), None);
        assert_eq!(other_writers(0, 0, 0o40775), None, "root's group");
        assert_eq!(other_writers(0, 1000, 0o40750), None);
        assert_eq!(other_writers(0, 1000, 0o40770).unwrap(), "group gid 1000");
        assert_eq!(other_writers(0, 0, 0o41777).unwrap(), "everyone");
        assert_eq!(other_writers(1000, 0, 0o40700).unwrap(), "its owner, uid 1000");
    }

    #[test]
    fn a_directory_others_may_write_is_refused_and_left_alone() {
        if !nix::unistd::geteuid().is_root() {
            return; // only a root initd refuses one
        }
        let dir = scratch("unsafe");
        let open_dir = dir.join("shared");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut s = settings(&dir, "");
        s.socket = Some(open_dir.join("initd.sock"));
        let err = open(&s, 0).err().unwrap();
        assert!(matches!(err, OpenError::Unsafe(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "INITD_SOCKET={}/initd.sock: its directory",
                open_dir.display()
            )) && text.contains("writable by everyone"),
            "{text}"
        );
        assert!(!open_dir.join("initd.sock").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn off_means_no_socket() {
        let mut s = settings(Path::new("/nonexistent"), "");
        s.socket = None;
        assert!(open(&s, 0).unwrap().is_none());
    }
}
