//! Gathering settings as text, with where each came from: the environment
//! over an optional TOML file, nothing parsed yet. Every setting is text
//! here, looked up by its exact name: no struct to deserialize into, so no
//! `envy` (42 kB of generated code for a map of strings).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::error::ConfigError;
use super::settings::{ENV_ONLY, Kind, PREFIX, SETTINGS, Setting};

/// Where a value came from, shown by `initd config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env,
    /// The environment, filled from a Docker secret file (`NAME_FILE`).
    Secret,
}

/// A value as gathered, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    Text(String),
    /// From a TOML array: kept apart so no separator has to be escaped.
    Items(Vec<String>),
    /// From a TOML table of strings.
    Pairs(Vec<(String, String)>),
}

/// The gathered values with their sources: what `initd config` prints.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    values: BTreeMap<&'static str, (Raw, Source)>,
    /// `INITD_*` variables that are not settings but Kubernetes service
    /// variables (a Service named `initd`), ignored.
    pub ignored: Vec<String>,
}

impl Layers {
    pub fn get(&self, name: &str) -> Option<&Raw> {
        self.values.get(name).map(|(raw, _)| raw)
    }

    pub fn source(&self, name: &str) -> Source {
        self.values
            .get(name)
            .map(|(_, s)| s.clone())
            .unwrap_or(Source::Default)
    }

    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Raw::Text(text) => Some(text.clone()),
            Raw::Items(items) => Some(items.join(",")),
            Raw::Pairs(pairs) => Some(
                pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

/// Reads the environment layer. `secret_names` are variables that were
/// filled from Docker secrets, so they are reported (and redacted) as such.
pub fn env_layer<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    vars: impl IntoIterator<Item = (K, V)>,
    secret_names: &[String],
) -> Result<Layers, ConfigError> {
    let mut layers = Layers::default();
    for (key, value) in vars {
        let value = value.as_ref();
        let Some(key) = key.as_ref().to_str() else {
            continue;
        };
        let Some(setting) = SETTINGS.iter().find(|s| s.name == key) else {
            if key.starts_with(PREFIX) && kubernetes_service_variable(key, value) {
                // A Service named `initd` (or `initd-...`) in the pod's
                // namespace: Kubernetes injects these into every pod, so
                // refusing them would stop every pod from starting.
                layers.ignored.push(key.to_string());
                continue;
            }
            if key.starts_with(PREFIX) {
                // `INITD_PORT` for `PORT`: the settings without the prefix.
                let unprefixed = SETTINGS
                    .iter()
                    .find(|s| !s.name.starts_with(PREFIX) && key[PREFIX.len()..] == *s.name)
                    .map(|s| s.name.to_string());
                return Err(ConfigError::Unknown {
                    name: key.to_string(),
                    suggestion: unprefixed
                        .or_else(|| closest(key, SETTINGS.iter().map(|s| s.name.to_string()))),
                });
            }
            continue;
        };
        let value = value
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::NotUnicode {
                name: key.to_string(),
            })?;
        let source = if secret_names.iter().any(|s| s == setting.name) {
            Source::Secret
        } else {
            Source::Env
        };
        layers.values.insert(setting.name, (Raw::Text(value), source));
    }
    Ok(layers)
}

/// Whether `name=value` is one of the variables Kubernetes injects for a
/// Service (docs: "Environment variables" under Services): for a Service
/// `initd` with a port 80/TCP named `http`,
///
/// ```text
/// INITD_SERVICE_HOST=10.0.0.11        INITD_PORT=tcp://10.0.0.11:80
/// INITD_SERVICE_PORT=80               INITD_PORT_80_TCP=tcp://10.0.0.11:80
/// INITD_SERVICE_PORT_HTTP=80          INITD_PORT_80_TCP_PROTO=tcp
///                                     INITD_PORT_80_TCP_PORT=80
///                                     INITD_PORT_80_TCP_ADDR=10.0.0.11
/// ```
///
/// (and the same with `INITD_OTHER_` for a Service `initd-other`). The value
/// must have the shape Kubernetes gives it too, so `INITD_PORT=8080` (meant
/// as `PORT`) is still refused as an unknown setting.
pub fn kubernetes_service_variable(name: &str, value: &std::ffi::OsStr) -> bool {
    let Some(value) = value.to_str() else {
        return false;
    };
    let is_port = |v: &str| v.parse::<u16>().is_ok_and(|p| p > 0);
    let is_ip = |v: &str| v.parse::<std::net::IpAddr>().is_ok();
    let is_proto = |v: &str| matches!(v, "TCP" | "UDP" | "SCTP");
    // proto://ip:port, the IPv6 address in brackets.
    let is_url = |v: &str| {
        let Some((proto, rest)) = v.split_once("://") else {
            return false;
        };
        let Some((ip, port)) = rest.rsplit_once(':') else {
            return false;
        };
        let ip = ip
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .unwrap_or(ip);
        is_proto(&proto.to_ascii_uppercase())
            && proto == proto.to_ascii_lowercase()
            && is_ip(ip)
            && is_port(port)
    };
    let words: Vec<&str> = name.split('_').collect();
    // The Service's part is at least `INITD` and comes first.
    for cut in 1..words.len() {
        if words[..cut].iter().any(|w| w.is_empty()) {
            break;
        }
        let shape = &words[cut..];
        let matched = match shape {
            ["SERVICE", "HOST"] => is_ip(value),
            ["SERVICE", "PORT"] => is_port(value),
            ["SERVICE", "PORT", port_name @ ..] if !port_name.is_empty() => {
                port_name.iter().all(|w| !w.is_empty()) && is_port(value)
            }
            ["PORT"] => is_url(value),
            ["PORT", n, proto] if is_port(n) && is_proto(proto) => is_url(value),
            ["PORT", n, proto, "PROTO"] if is_port(n) && is_proto(proto) => {
                value == proto.to_ascii_lowercase()
            }
            ["PORT", n, proto, "PORT"] if is_port(n) && is_proto(proto) => value == *n,
            ["PORT", n, proto, "ADDR"] if is_port(n) && is_proto(proto) => is_ip(value),
            _ => false,
        };
        if matched {
            return true;
        }
    }
    false
}

/// Reads the TOML file layer from its text.
pub fn file_layer(path: &Path, text: &str) -> Result<Layers, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        file_error(e.message().to_string() + &line_hint(text, e.span().map(|s| s.start)))
    })?;
    let mut layers = Layers::default();
    for (key, value) in table {
        if let Some(name) = ENV_ONLY
            .iter()
            .find(|n| n[PREFIX.len()..].eq_ignore_ascii_case(&key))
        {
            return Err(file_error(format!(
                "`{key}` can only be set in the environment ({name}): it is read before this file"
            )));
        }
        let Some(setting) = SETTINGS.iter().find(|s| s.key() == key) else {
            return Err(ConfigError::Unknown {
                name: format!("{} key `{key}`", path.display()),
                suggestion: closest(&key, SETTINGS.iter().map(|s| s.key())),
            });
        };
        let raw = toml_raw(setting, &value).ok_or_else(|| ConfigError::Invalid {
            name: format!("{} key `{key}`", path.display()),
            value: value.to_string(),
            expected: expected_toml(setting.kind).to_string(),
        })?;
        layers
            .values
            .insert(setting.name, (raw, Source::File(path.to_path_buf())));
    }
    Ok(layers)
}

fn line_hint(text: &str, offset: Option<usize>) -> String {
    match offset {
        Some(at) => format!(" (line {})", text[..at.min(text.len())].lines().count().max(1)),
        None => String::new(),
    }
}

fn toml_raw(setting: &Setting, value: &toml::Value) -> Option<Raw> {
    use toml::Value;
    match (setting.kind, value) {
        (Kind::List | Kind::Commands, Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Raw::Items),
        (Kind::Table, Value::Table(table)) => table
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect::<Option<Vec<_>>>()
            .map(Raw::Pairs),
        (_, Value::String(s)) => Some(Raw::Text(s.clone())),
        (Kind::Number, Value::Integer(n)) => Some(Raw::Text(n.to_string())),
        (Kind::Bool, Value::Boolean(b)) => Some(Raw::Text(b.to_string())),
        (Kind::Duration, Value::Integer(n)) => Some(Raw::Text(format!("{n}s"))),
        (Kind::Duration, Value::Float(n)) => Some(Raw::Text(format!("{n}s"))),
        _ => None,
    }
}

fn expected_toml(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "a string",
        Kind::Duration => "a duration string such as \"8s\", or a number of seconds",
        Kind::Bool => "true or false",
        Kind::Number => "an integer",
        Kind::List => "an array of strings",
        Kind::Commands => "an array of command strings",
        Kind::Table => "a table of name = \"command\"",
    }
}

impl Layers {
    /// `self` with `over`'s values winning.
    pub fn overlaid(mut self, over: Layers) -> Layers {
        self.values.extend(over.values);
        self.ignored.extend(over.ignored);
        self
    }
}

/// The largest settings file read: a real one is a few hundred bytes, and
/// `/dev/zero` or a multi-gigabyte log must not be read into PID 1.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why the settings file cannot be used (the path is named by the caller).
#[derive(Debug, Error)]
pub enum FileProblem {
    #[error("No such file or directory; fix the path in INITD_CONFIG or unset it")]
    Missing,
    #[error("{0}; fix the path in INITD_CONFIG or unset it")]
    Io(std::io::Error),
    #[error("is {0}, not a regular file; point INITD_CONFIG at the TOML file itself")]
    NotRegular(&'static str),
    #[error("is larger than 1 MiB; a settings file is a few lines of TOML")]
    TooLarge,
    #[error("is not UTF-8 text")]
    NotUtf8,
}

/// Reads the settings file: a regular file (a symbolic link to one is
/// fine: Kubernetes ConfigMaps are links) of at most [`MAX_FILE_BYTES`].
/// It is looked at before it is opened (a device would see the open) and
/// opened non-blocking (a FIFO swapped in meanwhile must not hang start-up
/// or `initd check`); then the descriptor is checked again.
pub fn read_file(path: &Path) -> Result<String, FileProblem> {
    use crate::fsafe::ReadProblem;
    let bytes = crate::fsafe::read_regular(path, MAX_FILE_BYTES).map_err(|p| match p {
        ReadProblem::Missing => FileProblem::Missing,
        ReadProblem::Io(e) => FileProblem::Io(e),
        ReadProblem::NotRegular(what) => FileProblem::NotRegular(what),
        ReadProblem::TooLarge => FileProblem::TooLarge,
    })?;
    String::from_utf8(bytes).map_err(|_| FileProblem::NotUtf8)
}

/// A gathered value as the text the environment would have held.
pub fn text_of(raw: &Raw) -> String {
    match raw {
        Raw::Text(t) => t.clone(),
        Raw::Items(items) => items.join(","),
        Raw::Pairs(pairs) => pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// The known name nearest to a misspelt one, if it is near enough to be a
/// typo rather than a different idea.
fn closest(name: &str, known: impl Iterator<Item = String>) -> Option<String> {
    known
        .map(|k| (edit_distance(name, &k), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
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
    use std::ffi::OsString;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn every_setting_has_an_env_field() {
        let all: Vec<(OsString, OsString)> = SETTINGS
            .iter()
            .map(|s| (OsString::from(s.name), OsString::from("x")))
            .collect();
        let layers = env_layer(all, &[]).unwrap();
        for s in SETTINGS {
            assert!(
                layers.get(s.name).is_some(),
                "{} is not read from the environment",
                s.name
            );
        }
    }

    #[test]
    fn file_errors_name_the_file_and_key() {
        let path = Path::new("/etc/initd.toml");
        let err = file_layer(path, "stop_timeuot = \"3s\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/initd.toml key `stop_timeuot`: unknown setting; did you mean stop_timeout?"
        );
        let err = file_layer(path, "log = 3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/initd.toml key `log`=\"3\": expected a string"
        );
        let err = file_layer(path, "log = \n").unwrap_err();
        assert!(
            err.to_string().starts_with("config file /etc/initd.toml: "),
            "{err}"
        );
        assert!(err.to_string().ends_with("(line 1)"), "{err}");
        // The file cannot name another file.
        assert!(file_layer(path, "config = \"/x\"\n").is_err());
    }

    #[test]
    fn settings_read_before_the_file_are_refused_in_it() {
        let path = Path::new("/etc/initd.toml");
        for (key, name) in [
            ("secrets_dirs", "INITD_SECRETS_DIRS"),
            ("secrets", "INITD_SECRETS"),
            ("config", "INITD_CONFIG"),
        ] {
            let err = file_layer(path, &format!("{key} = \"/x\"\n")).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "config file /etc/initd.toml: `{key}` can only be set in the environment \
                     ({name}): it is read before this file"
                )
            );
        }
    }

    #[test]
    fn secrets_are_marked_as_such() {
        let layers = env_layer(env(&[("INITD_LOG", "warn")]), &["INITD_LOG".to_string()]).unwrap();
        assert_eq!(layers.source("INITD_LOG"), Source::Secret);
    }

    #[test]
    fn the_settings_file_must_be_a_small_regular_file() {
        let dir = std::env::temp_dir().join(format!("initd-config-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let big = dir.join("big.toml");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let real = dir.join("real.toml");
        std::fs::write(&real, "log = \"debug\"\n").unwrap();
        std::os::unix::fs::symlink(&real, dir.join("link.toml")).unwrap();
        let problem = |p: &Path| read_file(p).unwrap_err().to_string();
        assert_eq!(
            problem(&fifo),
            "is a FIFO, not a regular file; point INITD_CONFIG at the TOML file itself"
        );
        assert!(problem(Path::new("/dev/zero")).starts_with("is a character device"));
        assert!(problem(&dir).starts_with("is a directory"));
        assert!(problem(&big).starts_with("is larger than 1 MiB"));
        assert!(matches!(read_file(&dir.join("none")), Err(FileProblem::Missing)));
        assert_eq!(read_file(&dir.join("link.toml")).unwrap(), "log = \"debug\"\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("WROKERS", "WORKERS"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
