//! Socket I/O bounded by a deadline and cut short by a pending signal.
//!
//! Every blocking step (connect, send, receive, sleep) is a poll(2) on the
//! socket *and* an interrupt descriptor, so a `docker stop` during a slow
//! connect or DNS query ends the wait at once, not when the step times out,
//! and an idle wait costs no wake-ups.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    /// The interrupt descriptor became readable.
    #[error("interrupted")]
    Interrupted,
    #[error("timed out")]
    TimedOut,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Errno> for NetError {
    fn from(errno: Errno) -> Self {
        NetError::Io(io::Error::from(errno))
    }
}

/// A descriptor that, once readable, means "stop waiting" (initd's
/// signalfd, or a pipe in tests). It is only polled, never read: whoever
/// owns it reads the signal and decides what it means.
#[derive(Debug, Clone, Copy)]
pub struct Interrupt<'fd> {
    fd: Option<BorrowedFd<'fd>>,
}

impl<'fd> Interrupt<'fd> {
    pub fn new(fd: BorrowedFd<'fd>) -> Self {
        Interrupt { fd: Some(fd) }
    }

    /// Nothing can interrupt: only the deadline ends a wait.
    #[cfg(test)]
    pub fn none() -> Interrupt<'static> {
        Interrupt { fd: None }
    }

    /// Whether the interrupt is pending right now.
    pub fn pending(&self) -> Result<bool, NetError> {
        match self.sleep_until(Instant::now()) {
            Ok(()) => Ok(false),
            Err(NetError::Interrupted) => Ok(true),
            Err(err) => Err(err),
        }
    }

    /// Sleeps until `limit`, unless interrupted first.
    pub fn sleep_until(&self, limit: Instant) -> Result<(), NetError> {
        match self.poll(None, limit) {
            Ok(()) | Err(NetError::TimedOut) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Waits until `fd` is ready for `events` (or has an error or hang-up to
    /// report, which the following read, write or connect check will surface).
    pub fn ready(&self, fd: BorrowedFd<'_>, events: PollFlags, limit: Instant) -> Result<(), NetError> {
        self.poll(Some((fd, events)), limit)
    }

    fn poll(&self, target: Option<(BorrowedFd<'_>, PollFlags)>, limit: Instant) -> Result<(), NetError> {
        loop {
            let mut fds = Vec::with_capacity(2);
            if let Some(fd) = self.fd {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            if let Some((fd, events)) = target {
                fds.push(PollFd::new(fd, events));
            }
            match poll(&mut fds, timeout_until(limit)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
            // Checked first: a stop wins over a socket that happens to be
            // ready at the same moment. Any event counts (POLLHUP from a
            // pipe whose writer closed, POLLNVAL) so that none can spin.
            if self.fd.is_some() && fds[0].any().unwrap_or(true) {
                return Err(NetError::Interrupted);
            }
            if target.is_some() && fds.last().and_then(PollFd::any).unwrap_or(true) {
                return Ok(());
            }
            if Instant::now() >= limit {
                return Err(NetError::TimedOut);
            }
        }
    }
}

/// poll(2)'s timeout for "until `limit`", rounded up so that it does not
/// wake just before the limit and spin.
pub fn timeout_until(limit: Instant) -> PollTimeout {
    let left = limit.saturating_duration_since(Instant::now());
    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// A non-blocking connect(2) to `addr`, begun; `true` when it completed at
/// once, otherwise the socket turns writable when it ends.
pub fn start_connect(addr: SocketAddr) -> io::Result<(TcpStream, bool)> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let connected = match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) => true,
        Err(Errno::EINPROGRESS) => false,
        Err(errno) => return Err(errno.into()),
    };
    Ok((TcpStream::from(fd), connected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};
    use std::time::Duration;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe().unwrap()
    }

    #[test]
    fn sleep_runs_to_the_limit_without_an_interrupt() {
        let start = Instant::now();
        Interrupt::none()
            .sleep_until(start + Duration::from_millis(50))
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_readable_interrupt_ends_a_sleep_and_is_not_consumed() {
        let (rx, tx) = pipe();
        nix::unistd::write(&tx, b"x").unwrap();
        let interrupt = Interrupt::new(rx.as_fd());
        let start = Instant::now();
        let result = interrupt.sleep_until(start + Duration::from_secs(10));
        assert!(matches!(result, Err(NetError::Interrupted)));
        assert!(start.elapsed() < Duration::from_secs(1));
        // Still pending: the byte is left for its owner.
        assert!(interrupt.pending().unwrap());
        let mut byte = [0u8; 1];
        assert_eq!(nix::unistd::read(&rx, &mut byte).unwrap(), 1);
        assert!(!interrupt.pending().unwrap());
    }
}
