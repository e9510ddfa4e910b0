//! Watcher output: every line a watcher prints goes out whole, with the
//! watcher's name in front (padded so the columns line up, and coloured per
//! watcher when stderr is a terminal), so several watchers can share one
//! log without their lines being cut into each other.
//!
//! The copying threads write through [`crate::nbout`]'s non-blocking
//! descriptors: when initd's own output is full they wait for room, which
//! makes the watcher wait on its own pipe (its output is kept, not
//! dropped), while PID 1's loop, which never takes part in this, goes on
//! forwarding signals and reaping.

use std::io::{BufRead, BufReader, Read};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One write at a time, so two watchers' lines never interleave mid-line.
static OUTPUT: Mutex<()> = Mutex::new(());

/// A line longer than this is cut and sent in pieces, each prefixed, so a
/// runaway watcher cannot make initd hold unbounded memory.
const MAX_LINE: usize = 64 * 1024;

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

/// Copies `input` to `out` line by line with `label` in front, until EOF.
/// A last line without a newline is still written, with one.
pub fn copy_lines(input: impl Read, label: &Label, mut out: impl FnMut(&[u8])) {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                out(&label.line(text));
            }
        }
    }
}

/// The threads copying watchers' output, kept so that initd can let them
/// write out the last lines (what a watcher prints as it stops) before it
/// exits: the process ending would cut them off.
#[derive(Default)]
pub struct Outputs {
    threads: Vec<JoinHandle<()>>,
}

impl Outputs {
    /// Spawns a thread that copies a watcher's stream to initd's own stdout
    /// or stderr, one whole line per write, until the stream ends.
    pub fn forward(&mut self, input: impl Read + Send + 'static, label: Label, to_stderr: bool) {
        // Streams of watchers that exited end on their own.
        self.threads.retain(|t| !t.is_finished());
        let spawned = std::thread::Builder::new()
            .name("initd-output".into())
            .spawn(move || {
                copy_lines(input, &label, |bytes| {
                    let _guard = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
                    // A closed stdout/stderr loses the line; it must not
                    // stop the watcher (which would then block on a full
                    // pipe).
                    let out = if to_stderr {
                        crate::nbout::stderr()
                    } else {
                        crate::nbout::stdout()
                    };
                    let _ = out.write_all_waiting(bytes);
                })
            });
        match spawned {
            Ok(thread) => self.threads.push(thread),
            Err(e) => tracing::warn!("cannot start an output thread: {e}"),
        }
    }

    /// Waits until every stream has ended and been written out, for at most
    /// `limit` (a stream whose writer lives on elsewhere would never end).
    /// Whether all ended.
    pub fn finish(self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.threads.iter().any(|t| !t.is_finished()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], label: &Label) -> Vec<String> {
        let mut lines = Vec::new();
        copy_lines(input, label, |b| {
            lines.push(String::from_utf8_lossy(b).into_owned())
        });
        lines
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
        let label = Label::new("css", 0, 3, false);
        assert_eq!(
            collect(b"one\ntwo\r\nlast without newline", &label),
            ["css | one\n", "css | two\n", "css | last without newline\n"]
        );
        assert!(collect(b"", &label).is_empty());
    }

    #[test]
    fn finish_waits_for_the_last_lines_and_gives_up_on_a_stream_that_stays_open() {
        // A stream that ends after a while: finish returns once it has.
        let (read, write) = std::io::pipe().unwrap();
        let mut outputs = Outputs::default();
        outputs.forward(read, Label::new("t", 0, 1, false), true);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(write);
        });
        assert!(outputs.finish(Duration::from_secs(10)));

        // One that never ends: finish gives up at the limit.
        let (read, write) = std::io::pipe().unwrap();
        let mut outputs = Outputs::default();
        outputs.forward(read, Label::new("t", 0, 1, false), true);
        assert!(!outputs.finish(Duration::from_millis(20)));
        drop(write);
    }

    #[test]
    fn very_long_lines_come_in_bounded_pieces() {
        let label = Label::new("x", 0, 1, false);
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        let lines = collect(&long, &label);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE + 10));
    }
}
