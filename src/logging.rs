//! initd's own log lines: stderr, one line per event, prefixed `initd:` so
//! they stand out among the child's output (or JSON for log shippers).
//! The child's own stdout/stderr never pass through here.
//!
//! PID 1 never waits on its own output: lines go out through
//! [`crate::nbout`]'s non-blocking stderr, and a line that finds the pipe
//! full is dropped and counted. The next line that gets through is
//! preceded by one warning with the count, so a gap in the log is never
//! silent.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogFormat, LogLevel};
use crate::nbout;
use crate::pipeline::secrets::Redactor;

/// Lines dropped because stderr was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Whether the report of dropped lines is written as JSON.
static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber. Each event is formatted into one buffer
/// and written with one write(2) to unbuffered stderr, so lines from initd
/// and its children never interleave mid-line.
///
/// With a redactor, every line is passed through it before it is written:
/// a safety net, so no secret value reaches a log even if a message
/// happens to quote one.
pub fn init(level: LogLevel, format: LogFormat, redactor: Option<Arc<Redactor>>) {
    // While initd is still root and can open /proc/self/fd.
    nbout::init();
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let filter = match level {
        LogLevel::Off => LevelFilter::OFF,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let writer = RedactingStderr { redactor };
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(filter)
        .with_ansi(false);
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => tracing::subscriber::set_global_default(builder.event_format(Prefixed).finish()),
        LogFormat::Json => tracing::subscriber::set_global_default(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        ),
    };
}

/// One of initd's own error lines from before [`init`] ran (a usage error, a
/// bad setting or secret), in the very prefix, level and format of every
/// later line: `initd: error: ...`, or a JSON object when INITD_LOG_FORMAT
/// says `json`. The caller redacts `message`.
pub fn early_error(message: &str) {
    let json = std::env::var("INITD_LOG_FORMAT").is_ok_and(|v| v.trim().eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_writer(RedactingStderr { redactor: None })
        .with_max_level(LevelFilter::ERROR)
        .with_ansi(false);
    let dispatch = if json {
        tracing::Dispatch::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        )
    } else {
        tracing::Dispatch::new(builder.event_format(Prefixed).finish())
    };
    tracing::dispatcher::with_default(&dispatch, || tracing::error!("{message}"));
}

/// Hands tracing one buffer per event and writes it, redacted, to stderr in
/// one write when the event is done.
#[derive(Clone)]
struct RedactingStderr {
    redactor: Option<Arc<Redactor>>,
}

struct EventBuffer {
    redactor: Option<Arc<Redactor>>,
    buf: Vec<u8>,
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> EventBuffer {
        EventBuffer {
            redactor: self.redactor.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

impl io::Write for EventBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let line = match &self.redactor {
            Some(r) => r.redact(&text),
            None => text,
        };
        emit(nbout::stderr(), line.as_bytes());
    }
}

/// Writes one line without waiting: reports earlier losses first, counts
/// this one as lost when there is no room. A closed stderr must not take
/// initd down either; the line is lost then too.
fn emit(out: &nbout::Out, line: &[u8]) {
    if !report_dropped_to(out) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if let Ok(false) = out.write_line(line) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes the count of lines lost to a full stderr, if any were; for the
/// end of initd's run, when no later line would carry it. Never waits.
pub fn report_dropped() {
    report_dropped_to(nbout::stderr());
}

/// Whether there is nothing (left) to report: false when the report
/// itself found no room.
fn report_dropped_to(out: &nbout::Out) -> bool {
    let count = DROPPED.load(Ordering::Relaxed);
    if count == 0 {
        return true;
    }
    let line = dropped_line(count, JSON.load(Ordering::Relaxed));
    match out.write_line(line.as_bytes()) {
        Ok(false) => false,
        _ => {
            DROPPED.fetch_sub(count, Ordering::Relaxed);
            true
        }
    }
}

/// The one line that says how many lines are missing before it.
fn dropped_line(count: u64, json: bool) -> String {
    let s = if count == 1 { "" } else { "s" };
    let message = format!(
        "{count} log line{s} dropped: stderr was full (its reader is not keeping up; initd does not wait for it)"
    );
    if json {
        let value = serde_json::json!({
            "level": "WARN",
            "message": message,
            "target": module_path!(),
        });
        format!("{value}\n")
    } else {
        format!("initd: warning: {message}\n")
    }
}

/// `initd: message key=value` for info, `initd: warning: …` and so on for
/// the other levels: short enough to read among the app's own output.
struct Prefixed;

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("initd: ")?;
        let level = *event.metadata().level();
        if level != Level::INFO {
            writer.write_str(match level {
                Level::ERROR => "error: ",
                Level::WARN => "warning: ",
                Level::DEBUG => "debug: ",
                _ => "trace: ",
            })?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn lines_lost_to_a_full_pipe_are_counted_and_reported_once_it_drains() {
        let (mut read, write) = std::io::pipe().unwrap();
        let out = nbout::Out::open(write.as_raw_fd());
        let chunk = [b'x'; 512];
        let mut filled = 0;
        while let Ok(n) = out.try_write(&chunk) {
            filled += n;
        }
        emit(&out, b"initd: one\n");
        emit(&out, b"initd: two\n");
        assert_eq!(DROPPED.load(Ordering::Relaxed), 2);
        let mut buf = vec![0u8; filled];
        read.read_exact(&mut buf).unwrap();
        emit(&out, b"initd: three\n");
        drop(write);
        drop(out);
        let mut rest = String::new();
        read.read_to_string(&mut rest).unwrap();
        assert_eq!(
            rest,
            "initd: warning: 2 log lines dropped: stderr was full (its reader is not keeping up; \
             initd does not wait for it)\ninitd: three\n"
        );
        assert_eq!(DROPPED.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_report_is_json_in_json_mode() {
        let line = dropped_line(1, true);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "WARN");
        assert!(
            value["message"]
                .as_str()
                .unwrap()
                .starts_with("1 log line dropped")
        );
    }
}
