//! initd's own log lines: stderr, one line per event, prefixed `initd:` so
//! they stand out among the child's output (or JSON for log shippers).
//! The child's own stdout/stderr never pass through here.
//!
//! PID 1 never waits on its own output: lines go out through
//! [`crate::nbout`]'s non-blocking stderr, and a line that finds the pipe
//! full is dropped and counted. The next line that gets through is
//! preceded by one warning with the count, so a gap in the log is never
//! silent.
//!
//! The subscriber is initd's own, small one: tracing's macros stay, but
//! no registry, no span storage and no formatting layers are linked for the
//! two line formats initd writes. Their output is the one
//! `tracing-subscriber`'s `fmt` layer produced for them (a test compares).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

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
    let max = match level {
        LogLevel::Off => LevelFilter::OFF,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let logger = Logger {
        max,
        json: format == LogFormat::Json,
        redactor,
    };
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(logger);
}

/// One of initd's own error lines from before [`init`] ran (a usage error, a
/// bad setting or secret), in the very prefix, level and format of every
/// later line: `initd: error: ...`, or a JSON object when INITD_LOG_FORMAT
/// says `json`. The caller redacts `message`.
pub fn early_error(message: &str) {
    let json = std::env::var("INITD_LOG_FORMAT").is_ok_and(|v| v.trim().eq_ignore_ascii_case("json"));
    let logger = Logger {
        max: LevelFilter::ERROR,
        json,
        redactor: None,
    };
    let dispatch = tracing::Dispatch::new(logger);
    tracing::dispatcher::with_default(&dispatch, || tracing::error!("{message}"));
}

/// Formats each enabled event as one line and writes it, redacted, to
/// stderr. initd opens no spans; any span is accepted and ignored.
struct Logger {
    max: LevelFilter,
    json: bool,
    redactor: Option<Arc<Redactor>>,
}

impl Subscriber for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = self.line(event, SystemTime::now());
        emit(nbout::stderr(), line.as_bytes());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

impl Logger {
    /// The line for `event`, redacted, with its newline.
    fn line(&self, event: &Event<'_>, now: SystemTime) -> String {
        let line = if self.json {
            json_line(event, now)
        } else {
            text_line(event)
        };
        match &self.redactor {
            Some(r) => r.redact(&line).into_owned(),
            None => line,
        }
    }
}

/// `initd: message key=value` for info, `initd: warning: …` and so on for
/// the other levels: short enough to read among the app's own output.
fn text_line(event: &Event<'_>) -> String {
    let mut line = String::with_capacity(128);
    line.push_str("initd: ");
    line.push_str(match *event.metadata().level() {
        Level::INFO => "",
        Level::ERROR => "error: ",
        Level::WARN => "warning: ",
        Level::DEBUG => "debug: ",
        _ => "trace: ",
    });
    let mut fields = TextFields {
        out: &mut line,
        first: true,
    };
    event.record(&mut fields);
    line.push('\n');
    line
}

/// The message as it is, then ` key=value` with each value's Debug form.
struct TextFields<'a> {
    out: &'a mut String,
    first: bool,
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match value.source() {
            Some(source) => {
                let sources = SourceList(source);
                let name = field.name();
                self.record_debug(
                    field,
                    &format_args!("{} {name}.sources={sources}", Escaped(format_args!("{value}"))),
                );
            }
            None => self.record_debug(field, &format_args!("{}", Escaped(format_args!("{value}")))),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !std::mem::take(&mut self.first) {
            self.out.push(' ');
        }
        let _ = match field.name() {
            // Control characters that steer a terminal never reach it from
            // a message.
            "message" => write!(self.out, "{:?}", Escaped(value)),
            name => write!(self.out, "{}={value:?}", name.strip_prefix("r#").unwrap_or(name)),
        };
    }
}

/// A value written with terminal control characters spelt out.
struct Escaped<T>(T);

impl<T: fmt::Debug> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{:?}", self.0)
    }
}

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

/// An error and its sources as a list: `["outer", "cause"]`.
struct SourceList<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for SourceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut current = Some(self.0);
        while let Some(err) = current {
            list.entry(&Escaped(format_args!("{err}")));
            current = err.source();
        }
        list.finish()
    }
}

/// `{"timestamp":…,"level":…,<fields>,"target":…}`: one object a line, the
/// fields at the top level, as log shippers expect.
fn json_line(event: &Event<'_>, now: SystemTime) -> String {
    let meta = event.metadata();
    let mut line = String::with_capacity(192);
    line.push_str("{\"timestamp\":\"");
    push_timestamp(&mut line, now);
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push('"');
    event.record(&mut JsonFields { out: &mut line });
    line.push_str(",\"target\":");
    push_json_str(&mut line, meta.target());
    line.push_str("}\n");
    line
}

struct JsonFields<'a> {
    out: &'a mut String,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.out.push(',');
        push_json_str(self.out, field.name());
        self.out.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // serde_json's number form, `null` for NaN and the infinities.
        self.out
            .push_str(&serde_json::to_string(&value).unwrap_or_else(|_| "null".into()));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.out, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_json_str(self.out, &format!("{value:?}"));
    }
}

/// A JSON string literal, escaped as serde_json escapes it.
fn push_json_str(out: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// RFC 3339 in UTC with microseconds: `2026-12-02T21:08:34.123456Z`.
fn push_timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_date((secs / 86_400) as i64);
    let rest = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    );
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (the
/// "days from civil" inverse, in 400-year eras of 146,097 days).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

    /// Collects [`Logger`]'s lines instead of writing them.
    struct Capture {
        logger: Logger,
        now: SystemTime,
        lines: Arc<std::sync::Mutex<String>>,
    }

    impl Subscriber for Capture {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            self.logger.enabled(metadata)
        }
        fn max_level_hint(&self) -> Option<LevelFilter> {
            self.logger.max_level_hint()
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            self.logger.new_span(span)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let line = self.logger.line(event, self.now);
            self.lines.lock().unwrap().push_str(&line);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn ours(json: bool, redactor: Option<Arc<Redactor>>, events: fn()) -> String {
        let lines = Arc::new(std::sync::Mutex::new(String::new()));
        let capture = Capture {
            logger: Logger {
                max: LevelFilter::INFO,
                json,
                redactor,
            },
            now: UNIX_EPOCH + std::time::Duration::from_micros(1_796_246_914_123_456),
            lines: Arc::clone(&lines),
        };
        tracing::dispatcher::with_default(&tracing::Dispatch::new(capture), events);
        lines.lock().unwrap().clone()
    }

    /// The lines tracing-subscriber's fmt layer wrote for initd until it
    /// was replaced: the reference the own logger must match.
    mod reference {
        use std::fmt;
        use std::io;
        use std::sync::{Arc, Mutex};

        use tracing::{Event, Level, Subscriber};
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
        use tracing_subscriber::registry::LookupSpan;

        #[derive(Clone, Default)]
        pub struct Sink(pub Arc<Mutex<Vec<u8>>>);

        impl io::Write for Sink {
            fn write(&mut self, data: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl<'a> MakeWriter<'a> for Sink {
            type Writer = Sink;
            fn make_writer(&'a self) -> Sink {
                self.clone()
            }
        }

        /// The former text format, as it was.
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

        pub fn lines(json: bool, events: fn()) -> String {
            let sink = Sink::default();
            let builder = tracing_subscriber::fmt()
                .with_writer(sink.clone())
                .with_max_level(tracing::level_filters::LevelFilter::INFO)
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
            tracing::dispatcher::with_default(&dispatch, events);
            String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn events() {
        let pid = 42;
        tracing::info!("starting server: gunicorn app:app");
        tracing::warn!(pid, signal = "SIGTERM", forced = true, "stop: {} left", 3);
        tracing::error!(code = 3u64, ratio = 0.5, "a \"quoted\" line\nwith\ttabs");
        tracing::info!(path = %"/srv/app.py", list = ?vec!["a", "b"], target = %"child", "change");
        tracing::warn!("control characters: \x1b[31mred\x1b[0m \u{9b} \x07\x7f");
        tracing::info!(r#type = "web", "raw field name");
        tracing::debug!("below the level: never shown");
        tracing::info!(empty = "", "");
    }

    #[test]
    fn text_lines_are_those_of_the_former_fmt_layer() {
        let expected = reference::lines(false, events);
        assert_eq!(ours(false, None, events), expected);
        assert!(
            expected
                .starts_with("initd: starting server: gunicorn app:app\ninitd: warning: stop: 3 left pid=42")
        );
    }

    #[test]
    fn json_lines_are_those_of_the_former_fmt_layer() {
        let expected = reference::lines(true, events);
        let ours = ours(true, None, events);
        // The reference stamps the wall clock: compare with the stamps cut.
        let unstamped = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| {
                    let value: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert!(value["timestamp"].as_str().unwrap().ends_with('Z'), "{l}");
                    let at = l.find("\"level\"").unwrap();
                    l[at..].to_string()
                })
                .collect()
        };
        assert_eq!(unstamped(&ours), unstamped(&expected));
        assert_eq!(ours.lines().count(), 7);
        assert!(
            ours.starts_with("{\"timestamp\":\"2026-12-02T21:28:34.123456Z\",\"level\":\"INFO\",\"message\":\"starting server"),
            "{ours}"
        );
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let at = |micros: u64| {
            let mut out = String::new();
            push_timestamp(&mut out, UNIX_EPOCH + std::time::Duration::from_micros(micros));
            out
        };
        assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400_500_000), "2000-02-29T00:00:00.500000Z");
        assert_eq!(at(951_868_799_999_999), "2000-02-29T23:59:59.999999Z");
        assert_eq!(at(4_107_542_399_000_001), "2100-02-28T23:59:59.000001Z");
        assert_eq!(at(4_107_542_400_000_000), "2100-03-01T00:00:00.000000Z");
        assert_eq!(at(1_798_761_599_000_000), "2026-12-31T23:59:59.000000Z");
    }

    #[test]
    fn the_redactor_sees_every_line() {
        fn secret_event() {
            tracing::info!("connecting with hunter2-secret");
        }
        let secret = crate::pipeline::secrets::Secret::for_test("API_KEY", "hunter2-secret");
        let redactor = Arc::new(Redactor::new(&[secret]));
        let expected = format!("initd: connecting with {}\n", redactor.redact("hunter2-secret"));
        let out = ours(false, Some(redactor), secret_event);
        assert_eq!(out, expected);
        assert!(!out.contains("hunter2"), "{out}");
    }
}
