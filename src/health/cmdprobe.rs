//! `INITD_HEALTH=cmd:...`: probe commands, run by the supervisor's own loop.
//!
//! initd reaps with waitpid(-1), so only the supervisor's loop may start a
//! probe child and see it end. The control socket asks ([`Channel`]: a
//! pipe that wakes the loop's poll, and the askers' reply slots), and the
//! [`Runner`], one of the loop's sources, starts the probe, is handed its
//! end by the loop, and answers. Both sides are sources of the same loop;
//! the pipes keep them apart, so neither knows the other. The probe runs as the app user (initd
//! already is that user), with the app's environment, in its own process
//! group; its output is kept in memory for the reason of a failure, not
//! mixed into the container's log.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl};
use nix::poll::PollFlags;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::debug;

use crate::cmdline;
use crate::health::probe::Outcome;
use crate::pid1::child;
use crate::pid1::exit::Fate;
use crate::pid1::launch::Launcher;
use crate::pid1::source::Source;
use crate::pipeline::secrets::Redactor;
use crate::units::human_duration as human;

/// How much of a probe's output is kept; writing more fails (EPERM), which
/// a probe that chatty deserves.
const OUTPUT_LIMIT: i64 = 1 << 20;
/// The end of the output that may go into the reason.
const TAIL: usize = 2048;
const DETAIL_CHARS: usize = 200;

/// Requests from the control socket to the [`Runner`], and the answers
/// back. Both ways are pipes, so each side is woken by the loop's poll(2):
/// the runner for requests ([`Channel::wake_fd`]), the socket for answers
/// ([`Channel::answered_fd`]).
pub struct Channel {
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
    answered_rx: OwnedFd,
    answered_tx: Arc<OwnedFd>,
    waiting: Mutex<Vec<Waiter>>,
}

/// What an asker finds in its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    Outcome(Outcome),
    /// The supervisor let go of the request without an answer.
    Dropped,
}

type Slot = Mutex<Option<Answered>>;

/// The asker's side of one request. Dropping it withdraws the request: a
/// probe nobody waits for any more does not start.
pub struct Answer {
    slot: Arc<Slot>,
}

impl Answer {
    /// The answer, once it has come (the answered pipe turns readable).
    pub fn try_take(&self) -> Option<Answered> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The supervisor's side of one request: answers once, and says "dropped"
/// if it goes away without answering.
pub struct Waiter {
    slot: std::sync::Weak<Slot>,
    answered: Arc<OwnedFd>,
    done: bool,
}

impl Waiter {
    pub(crate) fn send(mut self, outcome: Outcome) {
        self.put(Answered::Outcome(outcome));
    }

    fn is_closed(&self) -> bool {
        self.slot.strong_count() == 0
    }

    fn put(&mut self, answer: Answered) {
        self.done = true;
        if let Some(slot) = self.slot.upgrade() {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
            // Full pipe (EAGAIN): a wake-up is pending already.
            let _ = nix::unistd::write(&*self.answered, &[1]);
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.done {
            self.put(Answered::Dropped);
        }
    }
}

impl Channel {
    pub fn new() -> nix::Result<Arc<Channel>> {
        let flags = OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let (wake_rx, wake_tx) = nix::unistd::pipe2(flags)?;
        let (answered_rx, answered_tx) = nix::unistd::pipe2(flags)?;
        Ok(Arc::new(Channel {
            wake_rx,
            wake_tx,
            answered_rx,
            answered_tx: Arc::new(answered_tx),
            waiting: Mutex::new(Vec::new()),
        }))
    }

    /// Asks for a probe run; the answer comes in the returned slot.
    pub fn request(&self) -> Answer {
        let slot = Arc::new(Mutex::new(None));
        self.lock().push(Waiter {
            slot: Arc::downgrade(&slot),
            answered: self.answered_tx.clone(),
            done: false,
        });
        // Full pipe (EAGAIN): a wake-up is pending already.
        let _ = nix::unistd::write(&self.wake_tx, &[1]);
        Answer { slot }
    }

    /// Readable while requests wait.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake_rx.as_fd()
    }

    /// Readable once an answer has been put in a slot; [`Channel::clear_answered`]
    /// empties it before the slots are looked at.
    pub fn answered_fd(&self) -> BorrowedFd<'_> {
        self.answered_rx.as_fd()
    }

    pub fn clear_answered(&self) {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.answered_rx, &mut buf), Ok(n) if n > 0) {}
    }

    /// The requests waiting, taken (the wake-up with them).
    pub(crate) fn take(&self) -> Vec<Waiter> {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake_rx, &mut buf), Ok(n) if n > 0) {}
        let mut waiting = self.lock();
        // An asker that gave up needs no probe.
        waiting.retain(|tx| !tx.is_closed());
        std::mem::take(&mut *waiting)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiter>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The probe command and what it runs with.
pub struct Spec {
    pub argv: Vec<String>,
    pub launcher: Launcher,
    pub timeout: Duration,
    pub redactor: Arc<Redactor>,
}

struct Run {
    pid: Pid,
    started: Instant,
    deadline: Instant,
    output: File,
    waiters: Vec<Waiter>,
}

/// The loop's side: at most one probe runs at a time, and every request
/// that arrives while it runs gets its result. Made once initd runs as the
/// app user with the app's environment; requests made before wait in the
/// channel.
pub struct Runner {
    channel: Arc<Channel>,
    spec: Spec,
    running: Option<Run>,
}

impl Source for Runner {
    fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        vec![(self.channel.wake_fd(), PollFlags::POLLIN)]
    }

    fn deadline(&self) -> Option<Instant> {
        Runner::deadline(self)
    }

    fn on_ready(&mut self, now: Instant, _revents: &[PollFlags], started: &mut Vec<Pid>) {
        // The channel is looked at on every pass, ready or not: taking
        // its requests is what empties the wake-up pipe.
        started.extend(self.service(now));
    }

    fn reaped(&mut self, pid: Pid, fate: Fate) {
        Runner::reaped(self, pid, fate);
    }
}

impl Runner {
    pub fn new(channel: Arc<Channel>, spec: Spec) -> Runner {
        Runner {
            channel,
            spec,
            running: None,
        }
    }

    /// When the running probe is due to be killed.
    pub fn deadline(&self) -> Option<Instant> {
        self.running.as_ref().map(|r| r.deadline)
    }

    /// Starts a probe for new requests and ends one that ran out of time;
    /// the pid of a probe it started, for the supervisor's table.
    pub fn service(&mut self, now: Instant) -> Option<Pid> {
        if let Some(run) = self.running.as_ref()
            && now >= run.deadline
        {
            let run = self.running.take().expect("checked above");
            // Its own group: whatever the probe started goes too. Reaped
            // later as any orphan.
            let _ = killpg(run.pid, Signal::SIGKILL);
            let timeout = self.spec.timeout;
            let detail = format!("no answer within {} (INITD_HEALTH_TIMEOUT)", human(timeout));
            reply(run.waiters, false, detail, now - run.started);
        }
        let new = self.channel.take();
        if new.is_empty() {
            return None;
        }
        if let Some(run) = self.running.as_mut() {
            run.waiters.extend(new);
            return None;
        }
        let spec = &self.spec;
        match start(spec) {
            Ok((pid, output)) => {
                debug!(
                    pid = pid.as_raw(),
                    "health probe started: {}",
                    cmdline::join(&spec.argv)
                );
                self.running = Some(Run {
                    pid,
                    started: now,
                    deadline: now + spec.timeout,
                    output,
                    waiters: new,
                });
                Some(pid)
            }
            Err(detail) => {
                reply(new, false, detail, Duration::ZERO);
                None
            }
        }
    }

    /// Takes a reaped child's status if it is the running probe.
    pub fn reaped(&mut self, pid: Pid, fate: Fate) -> bool {
        if self.running.as_ref().is_none_or(|r| r.pid != pid) {
            return false;
        }
        let mut run = self.running.take().expect("checked above");
        let took = run.started.elapsed();
        let redactor = &*self.spec.redactor;
        let (output, cut) = read_output(&mut run.output);
        let tail = last_line(&output, cut, redactor);
        let ok = fate == Fate::Exited(0);
        let mut detail = fate.to_string();
        if !ok && !tail.is_empty() {
            detail = format!("{detail}: {tail}");
        }
        reply(run.waiters, ok, detail, took);
        true
    }
}

fn reply(waiters: Vec<Waiter>, ok: bool, detail: String, took: Duration) {
    for tx in waiters {
        tx.send(Outcome {
            ok,
            detail: detail.clone(),
            took,
        });
    }
}

/// Starts the probe with stdout and stderr in a memory file.
fn start(spec: &Spec) -> Result<(Pid, File), String> {
    let output = output_file().map_err(|e| format!("cannot make room for the probe's output: {e}"))?;
    let dup = |f: &File| f.try_clone().map(Stdio::from);
    let mut cmd = spec
        .launcher
        .command("health probe", &spec.argv, false)
        .map_err(|_| format!("{}: not found or not executable", spec.argv[0]))?;
    cmd.stdin(Stdio::null())
        .stdout(dup(&output).map_err(|e| e.to_string())?)
        .stderr(dup(&output).map_err(|e| e.to_string())?);
    let pid = child::spawn(cmd).map_err(|e| format!("cannot execute {}: {e}", spec.argv[0]))?;
    Ok((pid, output))
}

/// A memory file that cannot grow past [`OUTPUT_LIMIT`]: sparse, so only
/// what the probe writes takes memory.
fn output_file() -> nix::Result<File> {
    let fd = memfd_create("initd-probe", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let file = File::from(fd);
    file.set_len(OUTPUT_LIMIT as u64)
        .map_err(|e| e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO))?;
    fcntl(
        &file,
        FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK),
    )?;
    Ok(file)
}

/// The end of what the probe wrote. Its stdout and stderr share this
/// file's offset, which therefore marks the end of the output.
/// The last [`TAIL`] bytes of the output, and whether that is less than
/// all of it.
fn read_output(file: &mut File) -> (Vec<u8>, bool) {
    let Ok(end) = file.stream_position() else {
        return (Vec::new(), false);
    };
    let start = end.saturating_sub(TAIL as u64);
    let mut buf = vec![0u8; (end - start) as usize];
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_exact(&mut buf).is_err() {
        return (Vec::new(), false);
    }
    (buf, start > 0)
}

/// The last non-blank line, secrets masked, without control characters,
/// cut to a length that fits a health log. Secrets are masked before the
/// cut, which could leave a piece of one that no longer matches, and both
/// before and after control characters go (a secret may hold one, and
/// taking them out may join a secret's pieces). For the same reason, a
/// tail `cut` at its start shows nothing of the line it begins inside.
fn last_line(output: &[u8], cut: bool, redactor: &Redactor) -> String {
    let text = String::from_utf8_lossy(output);
    let whole = match (cut, text.split_once('\n')) {
        (false, _) => &text[..],
        (true, Some((_, rest))) => rest,
        (true, None) => "",
    };
    let line = whole
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.is_empty() && cut {
        return format!("(its last line is longer than the {TAIL} bytes kept)");
    }
    let clean: String = redactor
        .redact(line)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let clean = redactor.redact(&clean);
    if clean.chars().count() > DETAIL_CHARS {
        let cut: String = clean.chars().take(DETAIL_CHARS).collect();
        format!("{cut}...")
    } else {
        clean.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn plain(output: &[u8]) -> String {
        last_line(output, false, &Redactor::new(&[]))
    }

    #[test]
    fn the_last_line_is_the_reason() {
        assert_eq!(
            plain(b"connecting\nError: No nodes replied\n\n"),
            "Error: No nodes replied"
        );
        assert_eq!(plain(b""), "");
        assert_eq!(plain(b"\x1b[31mred\x1b[0m\n"), "[31mred[0m");
        let long = "x".repeat(500);
        assert_eq!(plain(long.as_bytes()).len(), DETAIL_CHARS + 3);
    }

    #[test]
    fn no_piece_of_a_secret_survives_a_cut() {
        let secret = "s3cr3t-planted-value";
        let redactor = Redactor::new(&[crate::pipeline::secrets::Secret::for_test("DB_PASSWORD", secret)]);
        let shown = |output: &str, cut| last_line(output.as_bytes(), cut, &redactor);
        // Whole, across the length cut, with a control character inside
        // it, or with one that joins its pieces once taken out.
        assert_eq!(
            shown(&format!("login as {secret} refused\n"), false),
            "login as *** refused"
        );
        let across = format!("{}{secret}\n", "0".repeat(DETAIL_CHARS - 10));
        assert_eq!(
            shown(&across, false),
            format!("{}***", "0".repeat(DETAIL_CHARS - 10))
        );
        assert_eq!(shown("pw s3cr3t-\x01planted-value\n", false), "pw ***");
        // The kept tail starts inside a line: only whole lines are shown.
        assert_eq!(shown("anted-value 0000\nlast words\n", true), "last words");
        assert_eq!(
            shown("anted-value 0000\n", true),
            format!("(its last line is longer than the {TAIL} bytes kept)")
        );
        assert_eq!(
            shown("anted-value 0000", true),
            format!("(its last line is longer than the {TAIL} bytes kept)")
        );
    }

    #[test]
    fn the_output_file_keeps_the_end_and_refuses_to_grow() {
        let mut file = output_file().unwrap();
        let mut writer = file.try_clone().unwrap();
        writer.write_all(b"first\n").unwrap();
        writer.write_all(&vec![b'.'; 5000]).unwrap();
        writer.write_all(b"\nlast words\n").unwrap();
        let (tail, cut) = read_output(&mut file);
        assert!(cut);
        assert_eq!(tail.len(), TAIL);
        assert!(tail.ends_with(b"\nlast words\n"));
        writer.seek(SeekFrom::Start(OUTPUT_LIMIT as u64 - 2)).unwrap();
        assert!(writer.write_all(b"overflow").is_err());
    }

    #[test]
    fn requests_wait_until_taken_and_closed_ones_are_dropped() {
        let channel = Channel::new().unwrap();
        let kept = channel.request();
        drop(channel.request());
        let taken = channel.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(kept.try_take(), None);
        reply(taken, true, "exited with status 0".into(), Duration::ZERO);
        // The answer wakes the asker's poll and is in its slot.
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(&channel.answered_rx, &mut buf), Ok(1));
        match kept.try_take() {
            Some(Answered::Outcome(outcome)) => assert!(outcome.ok),
            other => panic!("expected an outcome, got {other:?}"),
        }
        assert!(channel.take().is_empty());
        // The wake-up was read: the pipe is empty again.
        assert_eq!(nix::unistd::read(&channel.wake_rx, &mut buf), Err(Errno::EAGAIN));
    }

    #[test]
    fn a_request_the_supervisor_lets_go_of_is_answered_dropped() {
        let channel = Channel::new().unwrap();
        let asked = channel.request();
        drop(channel.take());
        assert_eq!(asked.try_take(), Some(Answered::Dropped));
        channel.clear_answered();
        let mut buf = [0u8; 1];
        assert_eq!(
            nix::unistd::read(&channel.answered_rx, &mut buf),
            Err(Errno::EAGAIN)
        );
    }
}
