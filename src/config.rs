//! Settings from the environment (`INITD_*`).
//!
//! Every known setting is listed once in [`SETTINGS`]; that table drives the
//! unknown-setting check (with a "did you mean" suggestion), `--help` and the
//! README, so a setting cannot exist in one place and be missing in another.
//! Values are read with `envy` as strings and then parsed here, so that a
//! malformed value is reported with its variable, its value and the form
//! that was expected.

use std::ffi::OsString;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::signals::{SignalMap, Target};

pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "INITD_SIGNAL_TARGET",
        default: "child",
        help: "who gets forwarded signals: `child` (the main child) or `group` (its process group)",
    },
    Setting {
        name: "INITD_SIGNAL_MAP",
        default: "",
        help: "rewrite signals before forwarding, FROM:TO or FROM:none, comma-separated (TERM:QUIT)",
    },
    Setting {
        name: "INITD_STOP_TIMEOUT",
        default: "8s",
        help: "grace period after the stop signal before SIGKILL (500ms, 8s, 1m)",
    },
    Setting {
        name: "INITD_STOP_EXIT",
        default: "zero",
        help: "`zero`: a child that dies of the forwarded stop signal exits 0; `keep`: 128+N",
    },
    Setting {
        name: "INITD_LOG",
        default: "info",
        help: "initd's own log level: off, error, warn, info, debug, trace",
    },
    Setting {
        name: "INITD_LOG_FORMAT",
        default: "text",
        help: "`text` (one `initd:` line each) or `json` (one JSON object a line)",
    },
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}: unknown setting; {}", suggest(.suggestion))]
    Unknown {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("{name}={value:?}: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: String,
    },
    #[error("{name}: the value is not valid UTF-8")]
    NotUnicode { name: String },
}

fn suggest(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(known) => format!("did you mean {known}?"),
        None => "run `initd --help` for the list of settings".to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The typed, validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub signal_target: Target,
    pub signal_map: SignalMap,
    pub stop_timeout: Duration,
    /// `INITD_STOP_EXIT=keep`: report 128+N even for an honoured stop.
    pub keep_signal_status: bool,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            signal_target: Target::Child,
            signal_map: SignalMap::default(),
            stop_timeout: Duration::from_secs(8),
            keep_signal_status: false,
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
        }
    }
}

/// The raw strings, as `envy` finds them under the `INITD_` prefix.
#[derive(Debug, Default, Deserialize)]
struct Raw {
    signal_target: Option<String>,
    signal_map: Option<String>,
    stop_timeout: Option<String>,
    stop_exit: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
}

const PREFIX: &str = "INITD_";

/// Reads the settings from an environment (pass `std::env::vars_os()`).
pub fn from_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Settings, ConfigError> {
    let mut ours = Vec::new();
    for (key, value) in vars {
        let Some(key) = key.to_str() else { continue };
        if !key.starts_with(PREFIX) {
            continue;
        }
        if !SETTINGS.iter().any(|s| s.name == key) {
            return Err(ConfigError::Unknown {
                name: key.to_string(),
                suggestion: closest(key),
            });
        }
        let value = value.into_string().map_err(|_| ConfigError::NotUnicode {
            name: key.to_string(),
        })?;
        ours.push((key.to_string(), value));
    }
    // Every field is an optional string, so envy cannot fail on our input;
    // fall back to defaults rather than panic if that ever changes.
    let raw: Raw = envy::prefixed(PREFIX).from_iter(ours).unwrap_or_default();
    parse(raw)
}

fn parse(raw: Raw) -> Result<Settings, ConfigError> {
    let mut s = Settings::default();
    if let Some(v) = raw.signal_target {
        s.signal_target = v
            .parse()
            .map_err(|_| invalid("INITD_SIGNAL_TARGET", &v, "`child` or `group`"))?;
    }
    if let Some(v) = raw.signal_map {
        s.signal_map = v
            .parse()
            .map_err(|e: crate::signals::SignalMapError| invalid("INITD_SIGNAL_MAP", &v, &e.to_string()))?;
    }
    if let Some(v) = raw.stop_timeout {
        s.stop_timeout = parse_duration(&v)
            .ok_or_else(|| invalid("INITD_STOP_TIMEOUT", &v, "a duration such as 500ms, 8s or 1m"))?;
    }
    if let Some(v) = raw.stop_exit {
        s.keep_signal_status = match v.trim().to_ascii_lowercase().as_str() {
            "zero" => false,
            "keep" => true,
            _ => return Err(invalid("INITD_STOP_EXIT", &v, "`zero` or `keep`")),
        };
    }
    if let Some(v) = raw.log {
        s.log_level = match v.trim().to_ascii_lowercase().as_str() {
            "off" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => {
                return Err(invalid(
                    "INITD_LOG",
                    &v,
                    "one of off, error, warn, info, debug, trace",
                ));
            }
        };
    }
    if let Some(v) = raw.log_format {
        s.log_format = match v.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(invalid("INITD_LOG_FORMAT", &v, "`text` or `json`")),
        };
    }
    Ok(s)
}

fn invalid(name: &'static str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Parses `500ms`, `8s`, `1.5s`, `2m`, `1h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let secs = number * scale;
    (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

/// The known setting nearest to a misspelt one, if it is near enough to be a
/// typo rather than a different idea.
fn closest(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|s| (edit_distance(name, s.name), s.name))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance with adjacent transpositions counted as one edit
/// (the commonest typo: WROKERS for WORKERS).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = from_env(env(&[("PATH", "/bin"), ("HOME", "/root")])).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.stop_timeout, Duration::from_secs(8));
    }

    #[test]
    fn reads_every_setting() {
        let s = from_env(env(&[
            ("INITD_SIGNAL_TARGET", "group"),
            ("INITD_SIGNAL_MAP", "TERM:QUIT"),
            ("INITD_STOP_TIMEOUT", "500ms"),
            ("INITD_STOP_EXIT", "keep"),
            ("INITD_LOG", "debug"),
            ("INITD_LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!(s.signal_target, Target::Group);
        assert_eq!(
            s.signal_map.map(Signal::SIGTERM),
            crate::signals::Mapped::To(Signal::SIGQUIT)
        );
        assert_eq!(s.stop_timeout, Duration::from_millis(500));
        assert!(s.keep_signal_status);
        assert_eq!(s.log_level, LogLevel::Debug);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn unknown_setting_suggests_the_closest() {
        let err = from_env(env(&[("INITD_STOP_TIMEUOT", "3s")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "INITD_STOP_TIMEUOT: unknown setting; did you mean INITD_STOP_TIMEOUT?"
        );
        let err = from_env(env(&[("INITD_BANANA", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "INITD_BANANA: unknown setting; run `initd --help` for the list of settings"
        );
    }

    #[test]
    fn malformed_values_name_variable_value_and_form() {
        let err = from_env(env(&[("INITD_STOP_TIMEOUT", "8x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "INITD_STOP_TIMEOUT=\"8x\": expected a duration such as 500ms, 8s or 1m"
        );
        let err = from_env(env(&[("INITD_SIGNAL_MAP", "TERM:QUITE")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("INITD_SIGNAL_MAP=\"TERM:QUITE\": expected "),
            "{err}"
        );
        assert!(from_env(env(&[("INITD_SIGNAL_TARGET", "all")])).is_err());
        assert!(from_env(env(&[("INITD_LOG", "loud")])).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8"), Some(Duration::from_secs(8)));
        assert_eq!(parse_duration("8s"), Some(Duration::from_secs(8)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1d"), None);
        assert_eq!(parse_duration("1e99"), None);
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("WROKERS", "WORKERS"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
