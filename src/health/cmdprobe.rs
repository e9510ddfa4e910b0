//! `INITD_HEALTH=cmd:...`: probe commands, started by the control socket
//! as a source of the supervisor's loop.
//!
//! initd reaps with waitpid(-1), so nobody but the loop may wait for a
//! child: the socket starts a [`Run`], hands its pid to the loop, and is
//! given its end back among the children the loop reaps. The probe runs
//! as the app user (initd already is that user), with the app's
//! environment, in its own process group; its output is kept in memory for
//! the reason of a failure, not mixed into the container's log.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::debug;

use crate::cmdline;
use crate::pid1::child::Stream;
use crate::pid1::exit::Fate;
use crate::pid1::launch::{Launcher, Terminal};
use crate::pipeline::secrets::Redactor;

/// How much of a probe's output is kept; writing more fails (EPERM), which
/// a probe that chatty deserves.
const OUTPUT_LIMIT: i64 = 1 << 20;
/// The end of the output that may go into the reason.
const TAIL: usize = 2048;
const DETAIL_CHARS: usize = 200;

/// The probe command and what it runs with.
pub struct Spec {
    pub argv: Vec<String>,
    pub launcher: Launcher,
}

/// One probe command, running.
pub struct Run {
    pid: Pid,
    output: File,
}

impl Run {
    /// Starts the probe; why it could not, as the probe's failure.
    pub fn start(spec: &Spec) -> Result<Run, String> {
        let (pid, output) = start(spec)?;
        debug!(
            pid = pid.as_raw(),
            "health probe started: {}",
            cmdline::join(&spec.argv)
        );
        Ok(Run { pid, output })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Ran out of time: killed with its group (whatever it started goes
    /// too), reaped later as any orphan.
    pub fn kill(&self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
    }

    /// Whether it passed, and what the check shows: how it ended and,
    /// for a failure, the last line it wrote, secrets masked.
    pub fn ended(mut self, fate: Fate, redactor: &Redactor) -> (bool, String) {
        let (output, cut) = read_output(&mut self.output);
        let tail = last_line(&output, cut, redactor);
        let ok = fate == Fate::Exited(0);
        let mut detail = fate.to_string();
        if !ok && !tail.is_empty() {
            detail = format!("{detail}: {tail}");
        }
        (ok, detail)
    }
}

/// Starts the probe with stdout and stderr in a memory file.
fn start(spec: &Spec) -> Result<(Pid, File), String> {
    let output = output_file().map_err(|e| format!("cannot make room for the probe's output: {e}"))?;
    let into_output = Stream::Fd(output.as_fd());
    let pid = spec
        .launcher
        .start_with(
            "health probe",
            &spec.argv,
            Terminal::Background,
            [Stream::Null, into_output, into_output],
        )
        .map_err(|halt| {
            halt.message
                .unwrap_or_else(|| format!("health probe: cannot execute {}", spec.argv[0]))
        })?;
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
}
