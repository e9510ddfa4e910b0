//! initd's own stdout and stderr, written without ever blocking PID 1.
//!
//! When the reader of initd's stderr stalls (a log driver that stopped
//! reading, `docker logs` piped into a pager that is not scrolled), the
//! pipe fills and a plain write(2) waits until there is room again: PID 1
//! would then forward no signal, reap nothing and never send SIGKILL. So
//! initd writes through its own *open file description* of the same pipe,
//! opened with `O_NONBLOCK` (re-opening `/proc/self/fd/N` yields a new
//! description of the same pipe, FIFO or terminal). Setting `O_NONBLOCK` on
//! descriptor 2 itself would change the description the children share,
//! and their writes would start failing with EAGAIN.
//!
//! Which way a descriptor is written depends on what it is:
//! - a pipe, FIFO or character device (a terminal): re-opened non-blocking;
//! - a socket (systemd's journal): `send(MSG_DONTWAIT)` on it;
//! - a regular file: written as it is (writes to files do not wait for a
//!   reader);
//! - anything that cannot be re-opened (no /proc): a zero-timeout poll for
//!   room before each write, which is as good as it gets without one.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the rest of a line that went out in part may take before it is
/// given up on: only a line longer than PIPE_BUF (4096 bytes on Linux; a
/// pipe takes a write up to that size whole or not at all), or a terminal
/// or socket, can be written in part.
const FINISH_LIMIT: Duration = Duration::from_millis(100);

#[derive(Debug)]
enum How {
    /// Our own non-blocking description of the same file.
    Reopened(OwnedFd),
    /// A socket: `send` with `MSG_DONTWAIT`.
    Socket(RawFd),
    /// A regular file, which never waits for a reader.
    File(RawFd),
    /// Poll for room, then write: the fallback.
    Polled(RawFd),
}

/// One of initd's own output streams.
#[derive(Debug)]
pub struct Out {
    how: How,
}

static STDOUT: OnceLock<Out> = OnceLock::new();
static STDERR: OnceLock<Out> = OnceLock::new();

/// Prepares both streams. Must run before initd drops root and while
/// /proc/self/fd can still be opened: initd is not dumpable, so after the
/// drop its /proc entries belong to root. Later calls do nothing.
pub fn init() {
    let _ = stdout();
    let _ = stderr();
}

pub fn stdout() -> &'static Out {
    STDOUT.get_or_init(|| Out::open(libc::STDOUT_FILENO))
}

pub fn stderr() -> &'static Out {
    STDERR.get_or_init(|| Out::open(libc::STDERR_FILENO))
}

impl Out {
    /// The non-blocking way to write `fd` (see the module's comment).
    pub fn open(fd: RawFd) -> Out {
        // SAFETY: fstat fills the struct for any open descriptor and fails
        // cleanly for a closed one.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Out { how: How::Polled(fd) };
        }
        let how = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => How::File(fd),
            libc::S_IFSOCK => How::Socket(fd),
            _ => match reopen(fd) {
                Some(own) => How::Reopened(own),
                None => How::Polled(fd),
            },
        };
        Out { how }
    }

    fn fd(&self) -> RawFd {
        match &self.how {
            How::Reopened(own) => own.as_raw_fd(),
            How::Socket(fd) | How::File(fd) | How::Polled(fd) => *fd,
        }
    }

    /// One attempt at writing `buf`, never waiting for room:
    /// `ErrorKind::WouldBlock` when there is none.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.fd();
        loop {
            let n = match &self.how {
                // SAFETY: a valid buffer and its length.
                How::Socket(_) => unsafe {
                    libc::send(
                        fd,
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                },
                How::Polled(_) => {
                    if !writable(fd, Duration::ZERO)? {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    // SAFETY: as above.
                    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
                }
                // SAFETY: as above.
                How::Reopened(_) | How::File(_) => unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) },
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Writes one line whole or not at all, as far as the kernel allows:
    /// `Ok(false)` when there was no room and nothing was written (the
    /// caller counts it as dropped). A line that went out in part (only
    /// possible past PIPE_BUF bytes, or on a terminal or socket) is
    /// finished within [`FINISH_LIMIT`], or cut there.
    pub fn write_line(&self, line: &[u8]) -> io::Result<bool> {
        let first = match self.try_write(line) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        if first == line.len() {
            return Ok(true);
        }
        self.finish(&line[first..], Instant::now() + FINISH_LIMIT)?;
        Ok(true)
    }

    /// The descriptor to poll for room, when writing it can be refused
    /// for the lack of it (not for a regular file, which always has room).
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.how {
            How::File(_) => None,
            // SAFETY: the descriptor stays open for as long as `self`
            // (stdout and stderr for initd's whole life).
            _ => Some(unsafe { BorrowedFd::borrow_raw(self.fd()) }),
        }
    }

    fn finish(&self, mut rest: &[u8], deadline: Instant) -> io::Result<()> {
        while !rest.is_empty() {
            match self.try_write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !writable(self.fd(), left)? {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether this stream got a non-blocking description of its own.
    #[cfg(test)]
    pub fn is_reopened(&self) -> bool {
        matches!(self.how, How::Reopened(_))
    }
}

/// A new open file description of whatever `fd` refers to, non-blocking.
/// The access mode and `O_APPEND` are kept; `O_NOCTTY` so that re-opening
/// a terminal never makes it initd's controlling one.
fn reopen(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFL on any descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return None;
    }
    let access = flags & libc::O_ACCMODE;
    if access == libc::O_RDONLY {
        return None;
    }
    let path = format!("/proc/self/fd/{fd}\0");
    let open_flags =
        libc::O_WRONLY | (flags & libc::O_APPEND) | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: a NUL-terminated path.
    let new = unsafe { libc::open(path.as_ptr().cast(), open_flags) };
    if new < 0 {
        return None;
    }
    // SAFETY: a descriptor just opened and owned by nobody else.
    let own = unsafe { OwnedFd::from_raw_fd(new) };
    // The same file? /proc/self/fd/N of an anonymous pipe re-opens that
    // pipe; make sure nothing else was reached (a mount over /proc).
    let (mut a, mut b): (libc::stat, libc::stat) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: fstat on two open descriptors.
    let same = unsafe { libc::fstat(fd, &mut a) == 0 && libc::fstat(own.as_raw_fd(), &mut b) == 0 }
        && a.st_dev == b.st_dev
        && a.st_ino == b.st_ino
        && a.st_rdev == b.st_rdev;
    same.then_some(own)
}

/// Waits up to `timeout` for room to write on `fd`.
fn writable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            // An error or hang-up counts as "ready": the write reports it.
            return Ok(n > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
        std::io::pipe().unwrap()
    }

    fn fill(out: &Out) -> usize {
        let chunk = [b'x'; 512];
        let mut total = 0;
        while let Ok(n) = out.try_write(&chunk) {
            total += n;
        }
        total
    }

    #[test]
    fn a_full_pipe_is_reported_not_waited_on() {
        let (mut read, write) = pipe();
        let out = Out::open(write.as_raw_fd());
        assert!(out.is_reopened());
        let filled = fill(&out);
        assert!(filled >= 4096, "{filled}");
        // The blocking descriptor the children share is untouched.
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        let started = Instant::now();
        assert!(!out.write_line(b"dropped\n").unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
        // Once a reader makes room, lines go out again.
        let mut buf = vec![0u8; filled];
        read.read_exact(&mut buf).unwrap();
        assert!(out.write_line(b"kept\n").unwrap());
        let mut line = [0u8; 5];
        read.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"kept\n");
    }

    #[test]
    fn a_regular_file_is_written_in_place_and_keeps_append() {
        let path = std::env::temp_dir().join(format!("initd-nbout-{}", std::process::id()));
        std::fs::write(&path, "first\n").unwrap();
        let file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let out = Out::open(file.as_raw_fd());
        assert!(!out.is_reopened());
        assert!(out.write_line(b"second\n").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
        let _ = std::fs::remove_file(&path);
    }
}
