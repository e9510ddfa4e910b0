//! The control socket: where `initd check` and `initd status` ask the
//! running supervisor how it is (protocol in `protocol`).
//!
//! It is served from its own thread, on a single-threaded tokio runtime,
//! so nothing a client does can hold up the supervisor's loop: each
//! connection is its own task with a deadline for the request and one for
//! the answer, and a request is at most a few hundred bytes. A check that
//! needs the probe joins the run in progress if there is one, so a
//! thousand checks at once make one probe run, not a thousand. With no
//! connection and no probe the thread sleeps in epoll with no timer.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{Mode, umask};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tracing::{debug, warn};

use crate::config::Health;
use crate::health::cmdprobe::Channel;
use crate::health::probe::{self as health, Outcome, Probe};
use crate::health::protocol::{
    self, Frame, LockHolderReport, LockReport, ProbeReport, ProcessReport, Report, Request, RequestError,
};
use crate::pid1::status::Status;
use crate::pipeline::secrets::Redactor;
use crate::units::human_duration as human;

/// A client has this long to send its request after connecting.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// And this long to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// After answering, what is left of an overlong request is read and
/// dropped (closing a Unix socket with unread input resets the peer, which
/// would then see an error instead of the answer's end), up to this much
/// and for at most [`READ_TIMEOUT`].
const DRAIN_LIMIT: usize = 4 << 20;
/// Connections served at once; more get a one-line "busy" error (which
/// `initd check` asks again after) and are closed. Far above any real load
/// (a check every few seconds, a person running `initd status`), low
/// enough that a flood holds at most a few megabytes and a thousand
/// descriptors of PID 1's.
pub const MAX_CONNECTIONS: usize = 1024;
/// After a burst of more connections than this, the memory it took is
/// handed back to the system once the last one is gone (glibc keeps freed
/// memory otherwise, and PID 1 lives as long as the container).
const TRIM_AFTER: usize = 64;
/// A probe's own timeout is enforced where it runs; this is the margin
/// after which the socket's side stops waiting for it regardless.
const PROBE_SLACK: Duration = Duration::from_secs(1);

/// The most of a probe's detail (an HTTP reason phrase, a command's last
/// line of output) an answer shows.
const DETAIL_CHARS: usize = 256;

/// The bound, listening socket, before it is served.
pub struct Listener {
    socket: UnixListener,
    path: PathBuf,
}

impl Listener {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket, for the supervisor to notice a first client.
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket)
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

/// Everything a check's answer is made of.
pub struct Server {
    status: Arc<Status>,
    probe: Probe,
    probe_timeout: Duration,
    cmd: Arc<Channel>,
    redactor: Arc<Redactor>,
    /// The probe run in progress, which new checks join.
    inflight: Mutex<Option<watch::Receiver<Option<Outcome>>>>,
    connections: AtomicUsize,
    /// The most connections open at once since the last trim.
    peak: AtomicUsize,
}

impl Server {
    pub fn new(
        status: Arc<Status>,
        settings: &Health,
        cmd: Arc<Channel>,
        redactor: Arc<Redactor>,
    ) -> Arc<Server> {
        Arc::new(Server {
            status,
            probe: settings.probe.clone(),
            probe_timeout: settings.probe_timeout,
            cmd,
            redactor,
            inflight: Mutex::new(None),
            connections: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// The answer to `check`.
    pub async fn report(self: &Arc<Self>) -> Report {
        let before = self.status.snapshot();
        let outcome = if health::wants_probe(&before, &self.probe) {
            Some(self.shared_probe().await)
        } else {
            None
        };
        // A stop may have come while the probe ran: answer for now.
        let snap = if outcome.is_some() {
            self.status.snapshot()
        } else {
            before
        };
        let redact = |text: &str| self.redactor.redact(text).into_owned();
        // Masked before it is cut: a cut could leave a piece of a secret
        // that would no longer be recognised.
        let outcome = outcome.map(|o| Outcome {
            detail: shorten(&redact(&o.detail)),
            ..o
        });
        let verdict = health::assess(&snap, &self.probe, outcome.as_ref());
        Report {
            protocol: protocol::VERSION,
            healthy: verdict.healthy,
            state: verdict.state.to_string(),
            reason: redact(&verdict.reason),
            uptime_ms: snap.uptime.as_millis() as u64,
            main_pid: snap.main_pid,
            main_restarts: snap.main_restarts,
            probe: outcome.map(|o| ProbeReport {
                probe: redact(&self.probe.to_string()),
                ok: o.ok,
                detail: o.detail,
                took_ms: o.took.as_millis() as u64,
            }),
            processes: snap
                .processes
                .iter()
                .map(|p| ProcessReport {
                    name: p.name.clone(),
                    pid: p.pid,
                    restarts: p.restarts,
                    note: redact(&p.note),
                })
                .collect(),
            role: snap.role.clone(),
            lock: snap.lock_wait.as_ref().map(|w| LockReport {
                lock: redact(&w.lock),
                detail: redact(&w.detail),
                waited_ms: w.since.map_or(0, |t| t.elapsed().as_millis() as u64),
                holder: w.holder.as_ref().map(|h| LockHolderReport {
                    pid: h.pid,
                    application_name: h.application_name.clone(),
                    client_addr: h.client_addr.clone(),
                    since: h.since.clone(),
                }),
            }),
        }
    }

    /// The outcome of the probe run in progress, or of a new one.
    async fn shared_probe(self: &Arc<Self>) -> Outcome {
        let mut rx = {
            let mut slot = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    *slot = Some(rx.clone());
                    let server = self.clone();
                    tokio::spawn(async move {
                        let outcome = server.run_probe().await;
                        // Checks arriving from now on start a new run.
                        *server.inflight.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().expect("waited for Some"),
            Err(_) => failed("the probe was lost", Duration::ZERO),
        }
    }

    async fn run_probe(&self) -> Outcome {
        let start = Instant::now();
        let limit = self.probe_timeout + PROBE_SLACK;
        let late = || {
            failed(
                &format!("no answer within {}", human(self.probe_timeout)),
                start.elapsed(),
            )
        };
        match &self.probe {
            Probe::Alive => Outcome {
                ok: true,
                detail: "alive".into(),
                took: Duration::ZERO,
            },
            Probe::Http(target) | Probe::Tcp(target) if health::literal_addr(target).is_some() => {
                let addr = health::literal_addr(target).expect("checked by the guard");
                let result = tokio::time::timeout(self.probe_timeout, health::probe_addr(target, addr)).await;
                let (ok, detail) = match result {
                    Ok(Ok(seen)) => (true, seen),
                    Ok(Err(reason)) => (false, reason),
                    Err(_) => (false, format!("no answer within {}", human(self.probe_timeout))),
                };
                Outcome {
                    ok,
                    detail,
                    took: start.elapsed(),
                }
            }
            Probe::Http(target) | Probe::Tcp(target) => {
                // A host name needs initd's resolver, which blocks (it is
                // the start-up wait's); it gets a thread of its own per run.
                let (tx, rx) = oneshot::channel();
                let target = target.clone();
                let timeout = self.probe_timeout;
                let spawned = std::thread::Builder::new()
                    .name("initd-probe".into())
                    .spawn(move || {
                        let _ = tx.send(health::probe_net(&target, timeout));
                    });
                if let Err(e) = spawned {
                    return failed(&format!("cannot start the probe: {e}"), Duration::ZERO);
                }
                match tokio::time::timeout(limit, rx).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => failed("the probe was lost", start.elapsed()),
                    Err(_) => late(),
                }
            }
            Probe::Cmd(_) => match tokio::time::timeout(limit, self.cmd.request()).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => failed("the supervisor dropped the probe", start.elapsed()),
                Err(_) => late(),
            },
        }
    }
}

/// A probe's detail cut to [`DETAIL_CHARS`].
fn shorten(detail: &str) -> String {
    match detail.char_indices().nth(DETAIL_CHARS) {
        Some((end, _)) => format!("{}...", &detail[..end]),
        None => detail.to_string(),
    }
}

fn failed(detail: &str, took: Duration) -> Outcome {
    Outcome {
        ok: false,
        detail: detail.into(),
        took,
    }
}

/// Serves the socket on a thread of its own until initd exits. The
/// runtime is built there too, off the path to starting the app.
pub fn serve(listener: Listener, server: Arc<Server>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("initd-control".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build();
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(e) => {
                    warn!("no health checks: the control socket cannot be served: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::UnixListener::from_std(listener.socket) {
                    Ok(socket) => accept_loop(socket, server).await,
                    Err(e) => warn!("no health checks: the control socket cannot be served: {e}"),
                }
            })
        })?;
    Ok(())
}

async fn accept_loop(socket: tokio::net::UnixListener, server: Arc<Server>) {
    let mut warned = false;
    loop {
        match socket.accept().await {
            Ok((stream, _)) => {
                let open = server.connections.fetch_add(1, Ordering::Relaxed);
                if open >= MAX_CONNECTIONS {
                    server.connections.fetch_sub(1, Ordering::Relaxed);
                    // One try, never a wait: the line fits the socket's
                    // empty buffer, and the stream is dropped at once.
                    // Written on the plain (non-blocking) descriptor:
                    // tokio would not know yet that it is writable.
                    if let Ok(std_stream) = stream.into_std() {
                        let _ = io::Write::write(&mut &std_stream, &busy_line());
                    }
                    continue;
                }
                server.peak.fetch_max(open + 1, Ordering::Relaxed);
                let server = server.clone();
                tokio::spawn(async move {
                    serve_one(stream, &server).await;
                    if server.connections.fetch_sub(1, Ordering::Relaxed) == 1
                        && server.peak.swap(0, Ordering::Relaxed) > TRIM_AFTER
                    {
                        give_back_memory();
                    }
                });
            }
            Err(e) => {
                // Out of descriptors, most likely: wait for connections to
                // finish rather than spin on the error.
                if !warned {
                    warn!("the control socket cannot accept a connection: {e}");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn busy_line() -> Vec<u8> {
    protocol::encode_error(&format!(
        "{}: {MAX_CONNECTIONS} connections are open, the most initd serves at once; ask again",
        protocol::BUSY
    ))
}

/// Returns the free memory of initd's heaps to the system.
fn give_back_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One connection: one request, one answer. Too slow, and it is dropped
/// unanswered; too long or not understood, and the answer is an error.
async fn serve_one(mut stream: tokio::net::UnixStream, server: &Arc<Server>) {
    let line = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(line)) => line,
        Ok(Err(_)) | Err(_) => return,
    };
    let answer = match line.and_then(|l| protocol::parse_request(&l)) {
        Ok(Request::Check) => protocol::encode(&server.report().await),
        Err(e) => protocol::encode_error(&e.to_string()),
    };
    let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        let _ = tokio::time::timeout(READ_TIMEOUT, discard_input(&mut stream)).await;
    }
}

async fn discard_input(stream: &mut tokio::net::UnixStream) -> io::Result<()> {
    // Small: every open connection's task holds this buffer.
    let mut buf = [0u8; 512];
    let mut total = 0;
    while total < DRAIN_LIMIT {
        match stream.read(&mut buf).await? {
            0 => break,
            n => total += n,
        }
    }
    Ok(())
}

/// Reads up to the first newline. End of input also ends the request (a
/// client that sent no newline but closed its side).
async fn read_request(stream: &mut tokio::net::UnixStream) -> io::Result<Result<Vec<u8>, RequestError>> {
    let mut buf = vec![0u8; protocol::MAX_REQUEST];
    let mut len = 0;
    loop {
        match protocol::frame(&buf[..len]) {
            Frame::Line(line) => return Ok(Ok(line.to_vec())),
            Frame::TooLong => return Ok(Err(RequestError::TooLong)),
            Frame::Incomplete => {}
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            if len == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.truncate(len);
            return Ok(Ok(buf));
        }
        len += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pid1::status::Phase;
    use std::io::{Read, Write};

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
        let server = Server::new(status, &s, Channel::new().unwrap(), Arc::new(Redactor::new(&[])));
        serve(listener, server).unwrap();
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
