//! initd's own log lines: stderr, one line per event, prefixed `initd:` so
//! they stand out among the child's output (or JSON for log shippers).
//! The child's own stdout/stderr never pass through here.

use std::fmt;
use std::io::{self, Write as _};
use std::sync::Arc;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{LogFormat, LogLevel};
use crate::secrets::Redactor;

/// Installs the global subscriber. Each event is formatted into one buffer
/// and written with one write(2) to unbuffered stderr, so lines from initd
/// and its children never interleave mid-line.
///
/// With a redactor, every line is passed through it before it is written:
/// a safety net, so no secret value reaches a log even if a message
/// happens to quote one.
pub fn init(level: LogLevel, format: LogFormat, redactor: Option<Arc<Redactor>>) {
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
        // A closed stderr must not take initd down; the line is lost.
        let _ = io::stderr().write_all(line.as_bytes());
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
