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
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
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

use crate::cmdprobe::Channel;
use crate::config::Health;
use crate::config::human_duration as human;
use crate::health::{self, Outcome, Probe};
use crate::protocol::{self, Frame, ProbeReport, ProcessReport, Report, Request, RequestError};
use crate::secrets::Redactor;
use crate::status::Status;

/// A client has this long to send its request after connecting.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// And this long to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// After answering, what is left of an overlong request is read and
/// dropped (closing a Unix socket with unread input resets the peer, which
/// would then see an error instead of the answer's end), up to this much
/// and for at most [`READ_TIMEOUT`].
const DRAIN_LIMIT: usize = 4 << 20;
/// Connections served at once; more are closed unanswered. Far above any
/// real load (one check every few seconds), low enough that a flood cannot
/// take every descriptor initd has.
const MAX_CONNECTIONS: usize = 8192;
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

/// Opens the control socket, as root before the drop to the app user (so
/// the directory can be made and handed to the app's group). `Ok(None)`:
/// there is to be no socket here (`INITD_SOCKET=off`; not PID 1 with the
/// default path, which belongs to the container's PID 1; or another live
/// initd answers on it, as when `docker exec` runs a second initd beside
/// PID 1). An error says why there is none and how to get one; initd goes
/// on without it.
pub fn open(settings: &Health, app_gid: u32) -> Result<Option<Listener>, String> {
    let Some(path) = &settings.socket else {
        return Ok(None);
    };
    if !serves(settings) {
        debug!(
            "not PID 1: no control socket at {} (set INITD_SOCKET to serve one)",
            path.display()
        );
        return Ok(None);
    }
    let root = nix::unistd::geteuid().is_root();
    if let Some(dir) = path.parent() {
        make_dir(dir, app_gid, root)?;
    }
    if !clear_stale(path)? {
        debug!(
            "another initd answers on {}; this one serves no checks",
            path.display()
        );
        return Ok(None);
    }
    let socket = bind(path).map_err(|e| {
        let mut message = format!("cannot listen on {}: {e}", path.display());
        if e == nix::errno::Errno::EACCES {
            message.push_str(&not_root_hint(path.parent().unwrap_or(path), root));
        }
        message
    })?;
    let restrict = || -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        if root {
            std::os::unix::fs::chown(path, None, Some(app_gid))?;
        }
        Ok(())
    };
    if let Err(e) = restrict() {
        let _ = std::fs::remove_file(path);
        return Err(format!("cannot set the permissions of {}: {e}", path.display()));
    }
    Ok(Some(Listener {
        socket,
        path: path.clone(),
    }))
}

/// Whether this initd serves the control socket: PID 1 does, on the
/// default path; another initd (a `docker exec initd ...` beside it) only
/// on a path set for it.
pub fn serves(settings: &Health) -> bool {
    settings.socket.is_some() && (settings.socket_set || std::process::id() == 1)
}

/// Makes the socket's directory when it is missing: 0750, group the app
/// user's, so root and the app user may ask and nobody else. An existing
/// directory is left as it is (the image made it, or a previous run).
fn make_dir(dir: &Path, app_gid: u32, root: bool) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let fail = |e: io::Error| {
        let mut message = format!("cannot create {}: {e}", dir.display());
        if e.kind() == io::ErrorKind::PermissionDenied {
            message.push_str(&not_root_hint(dir, root));
        }
        message
    };
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::DirBuilder::new().mode(0o750).create(dir).map_err(fail)?;
    // The mode given to mkdir is cut by the umask; set it as meant.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(fail)?;
    if root {
        std::os::unix::fs::chown(dir, None, Some(app_gid)).map_err(fail)?;
    }
    Ok(())
}

/// What to do when initd, not being root, may not write where the socket
/// goes.
fn not_root_hint(dir: &Path, root: bool) -> String {
    if root {
        return String::new();
    }
    format!(
        "; initd runs as uid {}, not root: make {} writable for it in the image \
         (RUN install -d -o app {}), or set INITD_SOCKET to a writable path such as \
         /tmp/initd.sock, or INITD_SOCKET=off",
        nix::unistd::geteuid(),
        dir.display(),
        dir.display()
    )
}

/// Removes the socket file a previous initd left behind (a restarted
/// container keeps its /run); `Ok(false)` when one is there that still
/// answers: it belongs to a live initd and is left alone. Anything that is
/// not a socket is left alone too, as an error.
fn clear_stale(path: &Path) -> Result<bool, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(format!("cannot use {}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; remove it or set INITD_SOCKET to another path",
            path.display()
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map(|()| true)
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display())),
        Err(e) => Err(format!("cannot use {}: {e}", path.display())),
    }
}

fn bind(path: &Path) -> nix::Result<UnixListener> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
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
                if server.connections.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
                    server.connections.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                let server = server.clone();
                tokio::spawn(async move {
                    serve_one(stream, &server).await;
                    server.connections.fetch_sub(1, Ordering::Relaxed);
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
    let mut buf = [0u8; 8192];
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
    use crate::status::Phase;
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
        let err = open(&s, 0).err().unwrap();
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
    fn off_means_no_socket() {
        let mut s = settings(Path::new("/nonexistent"), "");
        s.socket = None;
        assert!(open(&s, 0).unwrap().is_none());
    }
}
