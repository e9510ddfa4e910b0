//! What else the supervisor's loop serves besides its signals and
//! children: the control socket, `cmd:` health probes. A source names the
//! descriptors it wants polled and the next moment it has something to do;
//! the loop sleeps until one of them is ready or that moment comes, then
//! hands the source what poll reported. A source that starts children
//! (a probe command) says so, and the loop gives it back their end: only
//! the loop reaps, with waitpid(-1), so nobody else may wait for them.
//!
//! A source never blocks: PID 1 waits only in its own poll(2).

use std::os::fd::BorrowedFd;
use std::time::Instant;

use nix::poll::PollFlags;
use nix::unistd::Pid;

use crate::pid1::exit::Fate;

pub trait Source {
    /// The descriptors to poll and for what. [`Source::on_ready`] gets
    /// their events in the same order.
    fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)>;
    /// The earliest moment something times out without an event; `None`:
    /// nothing does.
    fn deadline(&self) -> Option<Instant>;
    /// Called on every pass of the loop, with what poll reported for
    /// [`Source::fds`] (all empty when the pass was not woken by them), so
    /// that what has timed out by `now` is handled too. The children it
    /// started go into `started`; the loop supervises them and hands
    /// their end to [`Source::reaped`].
    fn on_ready(&mut self, now: Instant, revents: &[PollFlags], started: &mut Vec<Pid>);
    /// A child this source started ended.
    fn reaped(&mut self, _pid: Pid, _fate: Fate) {}
}
