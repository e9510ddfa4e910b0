//! Watcher output: every line a watcher prints goes out whole, with the
//! watcher's name in front (padded so the columns line up, and coloured per
//! watcher when stderr is a terminal), so several watchers can share one
//! log without their lines being cut into each other.
//!
//! All of it runs on PID 1's loop: the watchers' pipes are read without
//! blocking, and lines are written through [`crate::nbout`]'s non-blocking
//! descriptors. When initd's own stdout (or stderr) is full, the lines
//! wait in a bounded queue and the pipes of the watchers writing there are
//! no longer read until it has room again: the watcher then waits on its
//! own full pipe (its output is kept, not dropped), while the loop goes on
//! forwarding signals and reaping. A closed stdout (EPIPE) loses the lines,
//! never the watcher.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::PollFlags;

use crate::nbout::Out;

/// A line longer than this is cut and sent in pieces, each prefixed, so a
/// runaway watcher cannot make initd hold unbounded memory.
const MAX_LINE: usize = 64 * 1024;
/// A watcher's pipe is read no further while this much waits for room on
/// initd's output; what is read at most in one go comes on top.
const QUEUE_LIMIT: usize = 64 * 1024;
/// Read per pipe per pass, so one chatty watcher cannot starve the others.
const READ_CHUNK: usize = 16 * 1024;

const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

/// How a watcher's lines are labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    text: String,
}

impl Label {
    /// `index` picks the colour; `width` is the longest watcher name.
    pub fn new(name: &str, index: usize, width: usize, colour: bool) -> Label {
        let padded = format!("{name:<width$} | ");
        let text = if colour {
            format!("\x1b[{}m{padded}\x1b[0m", COLOURS[index % COLOURS.len()])
        } else {
            padded
        };
        Label { text }
    }

    /// The bytes to write for one line (without its newline).
    pub fn line(&self, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + line.len() + 1);
        out.extend_from_slice(self.text.as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
        out
    }
}

/// Whether stderr is a terminal (colour the labels then).
pub fn colour_wanted() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

/// Whole lines out of bytes that arrive in pieces of any size: a line
/// split across reads is joined, one past [`MAX_LINE`] is cut into pieces,
/// and a `\r` before the newline is dropped.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Takes `bytes` and hands each line completed by them to `emit`
    /// (without its newline).
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.partial.extend_from_slice(&window[..end]);
                    bytes = &bytes[end + 1..];
                    self.emit_partial(&mut emit);
                }
                None => {
                    self.partial.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.partial.len() == MAX_LINE {
                        self.emit_partial(&mut emit);
                    }
                }
            }
        }
    }

    /// The stream ended: a last line without a newline still counts.
    pub fn finish(&mut self, emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            self.emit_partial(emit);
        }
    }

    fn emit_partial(&mut self, mut emit: impl FnMut(&[u8])) {
        let text = self.partial.strip_suffix(b"\r").unwrap_or(&self.partial);
        emit(text);
        self.partial.clear();
    }
}

/// One of initd's outputs and the labelled lines waiting for room on it.
struct Sink {
    out: &'static Out,
    queue: VecDeque<Vec<u8>>,
    /// How much of the front line already went out.
    sent: usize,
    queued: usize,
}

impl Sink {
    fn new(out: &'static Out) -> Sink {
        Sink {
            out,
            queue: VecDeque::new(),
            sent: 0,
            queued: 0,
        }
    }

    fn push(&mut self, line: Vec<u8>) {
        self.queued += line.len();
        self.queue.push_back(line);
    }

    fn full(&self) -> bool {
        self.queued >= QUEUE_LIMIT
    }

    /// Writes what fits, one line per write so that another writer of the
    /// same stdout (the dev server) cannot land inside a line; a line
    /// taken in part is finished before the next one starts.
    fn flush(&mut self) {
        while let Some(line) = self.queue.front() {
            match self.out.try_write(&line[self.sent..]) {
                Ok(n) if self.sent + n < line.len() => {
                    self.sent += n;
                    if n == 0 {
                        return;
                    }
                }
                Ok(_) => self.pop(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Closed (EPIPE) or broken: the line is lost, the watcher
                // goes on.
                Err(_) => self.pop(),
            }
        }
    }

    fn pop(&mut self) {
        if let Some(line) = self.queue.pop_front() {
            self.queued -= line.len();
        }
        self.sent = 0;
    }
}

/// A watcher's stdout or stderr, read without blocking.
struct Stream {
    fd: OwnedFd,
    label: Label,
    to_stderr: bool,
    lines: Lines,
}

/// Every watcher stream still open, and what waits to be written.
pub struct Outputs {
    streams: Vec<Stream>,
    sinks: [Sink; 2],
}

impl Default for Outputs {
    fn default() -> Outputs {
        Outputs::new(crate::nbout::stdout(), crate::nbout::stderr())
    }
}

impl Outputs {
    pub fn new(stdout: &'static Out, stderr: &'static Out) -> Outputs {
        Outputs {
            streams: Vec::new(),
            sinks: [Sink::new(stdout), Sink::new(stderr)],
        }
    }

    /// Copies a watcher's stream, from the next [`Outputs::pump`] on, to
    /// initd's own stdout or stderr, one whole line per write, until it
    /// ends.
    pub fn forward(&mut self, input: impl Into<OwnedFd>, label: Label, to_stderr: bool) -> io::Result<()> {
        let fd: OwnedFd = input.into();
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        self.streams.push(Stream {
            fd,
            label,
            to_stderr,
            lines: Lines::default(),
        });
        Ok(())
    }

    /// The descriptors for the loop to poll: the pipes that may be read
    /// now, and initd's outputs while lines wait for room on them.
    pub fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let streams = self
            .streams
            .iter()
            .filter(|s| !self.sink(s.to_stderr).full())
            .map(|s| (s.fd.as_fd(), PollFlags::POLLIN));
        let sinks = self
            .sinks
            .iter()
            .filter(|s| !s.queue.is_empty())
            .filter_map(|s| s.out.poll_fd().map(|fd| (fd, PollFlags::POLLOUT)));
        streams.chain(sinks).collect()
    }

    /// Moves output on as far as it goes without waiting: writes what
    /// waits, reads the pipes whose output has room, writes again.
    pub fn pump(&mut self) {
        for sink in &mut self.sinks {
            sink.flush();
        }
        let mut buf = vec![0u8; READ_CHUNK];
        let sinks = &mut self.sinks;
        self.streams.retain_mut(|stream| {
            let sink = &mut sinks[usize::from(stream.to_stderr)];
            let open = read_some(stream, sink, &mut buf);
            sink.flush();
            open
        });
    }

    /// Whether every stream has ended and every line is out.
    pub fn is_done(&self) -> bool {
        self.streams.is_empty() && self.sinks.iter().all(|s| s.queue.is_empty())
    }

    fn sink(&self, to_stderr: bool) -> &Sink {
        &self.sinks[usize::from(to_stderr)]
    }
}

/// Reads `stream` until it would block, ends, or its output is backed
/// up; whether it is still open.
fn read_some(stream: &mut Stream, sink: &mut Sink, buf: &mut [u8]) -> bool {
    let mut taken = 0;
    while !sink.full() && taken < 4 * READ_CHUNK {
        match nix::unistd::read(&stream.fd, buf) {
            Ok(0) => {
                stream.lines.finish(|l| sink.push(stream.label.line(l)));
                return false;
            }
            Ok(n) => {
                taken += n;
                stream.lines.feed(&buf[..n], |l| sink.push(stream.label.line(l)));
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return true,
            Err(_) => {
                stream.lines.finish(|l| sink.push(stream.label.line(l)));
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    fn collect(pieces: &[&[u8]]) -> Vec<String> {
        let label = Label::new("css", 0, 3, false);
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for piece in pieces {
            lines.feed(piece, |l| {
                out.push(String::from_utf8_lossy(&label.line(l)).into_owned())
            });
        }
        lines.finish(|l| out.push(String::from_utf8_lossy(&label.line(l)).into_owned()));
        out
    }

    #[test]
    fn labels_are_padded_and_optionally_coloured() {
        assert_eq!(Label::new("js", 0, 4, false).line(b"built"), b"js   | built\n");
        assert_eq!(
            Label::new("css", 0, 3, true).line(b"x"),
            b"\x1b[36mcss | \x1b[0mx\n"
        );
    }

    #[test]
    fn every_line_is_whole_and_prefixed() {
        assert_eq!(
            collect(&[b"one\ntwo\r\nlast without newline"]),
            ["css | one\n", "css | two\n", "css | last without newline\n"]
        );
        assert!(collect(&[b""]).is_empty());
        assert_eq!(collect(&[b"\n"]), ["css | \n"]);
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        assert_eq!(
            collect(&[b"bui", b"lt in 3", b"ms\r", b"\nnext", b"\n"]),
            ["css | built in 3ms\n", "css | next\n"]
        );
    }

    #[test]
    fn very_long_lines_come_in_bounded_pieces() {
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        let lines = collect(&[&long[..1000], &long[1000..]]);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE + 10));
        assert_eq!(lines.iter().map(|l| l.len() - 7).sum::<usize>(), long.len());
    }

    fn leaked_out(fd: &impl AsRawFd) -> &'static Out {
        Box::leak(Box::new(Out::open(fd.as_raw_fd())))
    }

    #[test]
    fn a_full_output_stops_the_reading_and_nothing_is_lost() {
        let (mut out_read, out_write) = std::io::pipe().unwrap();
        let out = leaked_out(&out_write);
        let mut outputs = Outputs::new(out, out);
        let (watcher_read, mut watcher_write) = std::io::pipe().unwrap();
        outputs
            .forward(watcher_read, Label::new("w", 0, 1, false), false)
            .unwrap();
        let line = [b'x'; 99];
        let mut written = 0;
        // Write until the watcher's own pipe is full: initd's output fills
        // first, then it stops reading.
        let fd = watcher_write.as_raw_fd();
        // SAFETY: F_SETFL on a descriptor this test owns.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
        loop {
            outputs.pump();
            match watcher_write.write(&[&line[..], b"\n"].concat()) {
                Ok(100) => written += 1,
                Ok(n) => panic!("a pipe took {n} bytes of a short line"),
                Err(_) => break,
            }
        }
        assert!(!outputs.fds().iter().any(|(_, ev)| *ev == PollFlags::POLLIN));
        assert!(outputs.fds().iter().any(|(_, ev)| *ev == PollFlags::POLLOUT));
        drop(watcher_write);
        // The reader catches up: every line arrives, whole and prefixed.
        // SAFETY: F_SETFL on a descriptor this test owns.
        unsafe { libc::fcntl(out_read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            outputs.pump();
            match out_read.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && outputs.is_done() => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        drop(out_write);
        let text = String::from_utf8(got).unwrap();
        assert_eq!(text.lines().count(), written);
        assert!(text.lines().all(|l| l == format!("w | {}", "x".repeat(99))));
    }

    #[test]
    fn a_closed_output_drops_lines_and_keeps_reading() {
        let (out_read, out_write) = std::io::pipe().unwrap();
        let out = leaked_out(&out_write);
        drop(out_read);
        let mut outputs = Outputs::new(out, out);
        let (watcher_read, mut watcher_write) = std::io::pipe().unwrap();
        outputs
            .forward(watcher_read, Label::new("w", 0, 1, false), true)
            .unwrap();
        for _ in 0..2000 {
            watcher_write.write_all(b"nobody reads this line\n").unwrap();
            outputs.pump();
        }
        drop(watcher_write);
        outputs.pump();
        assert!(outputs.is_done());
    }
}
