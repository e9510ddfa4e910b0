//! From gathered text to typed settings: each value parsed by its kind, and
//! a malformed one reported with its name, its value and the form that was
//! expected.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::cmdline;
use crate::pid1::signals::{SignalMap, Target};
use crate::units::parse_duration;

use super::error::ConfigError;
use super::layers::{FileProblem, Layers, Raw, env_layer, file_layer, read_file, text_of};

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
    pub pipeline: Pipeline,
    pub health: Health,
}

/// Health checks: the control socket, the probe, and the drain on stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// `None`: `INITD_SOCKET=off`.
    pub socket: Option<PathBuf>,
    /// Whether `INITD_SOCKET` was set (who serves it is `role`'s rule: the
    /// entrypoint, never a guest, whether set or not).
    pub socket_set: bool,
    pub check_timeout: Duration,
    pub probe: crate::health::probe::Probe,
    pub probe_timeout: Duration,
    pub drain: Duration,
}

/// What runs before and as the server: the entrypoint pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// `INITD_USER` as given; `None` means the default, `app`, which matters
    /// when initd does not start as root (an explicit user is then an error).
    pub user: Option<String>,
    pub allow_root: bool,
    /// `INITD_NO_NEW_PRIVS`: PR_SET_NO_NEW_PRIVS in every child before exec.
    pub no_new_privs: bool,
    pub host_uid: Option<u32>,
    pub host_gid: Option<u32>,
    pub chown: Vec<PathBuf>,
    pub wait_for: Vec<crate::net::waitfor::Target>,
    pub wait_timeout: Duration,
    pub migrate: Migrate,
    pub migrate_lock: MigrateLock,
    /// `INITD_MIGRATE_LOCK_TIMEOUT`: the whole wait, connecting included.
    pub migrate_lock_timeout: Duration,
    pub prestart: Vec<Vec<String>>,
    pub server: Option<Vec<String>>,
    pub app: Option<String>,
    pub workers: Option<u32>,
    pub forwarded_allow_ips: Option<String>,
    pub port: u16,
    pub gunicorn_arguments: Option<String>,
    pub dev: Dev,
}

/// `initd dev`'s settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Dev {
    pub auto_start_server: bool,
    pub setup: Vec<SetupStep>,
    pub watchers: Vec<(String, Vec<String>)>,
    pub server: Option<Vec<String>>,
    /// Empty: the working directory.
    pub reload_paths: Vec<PathBuf>,
    pub reload_include: Option<Vec<String>>,
    pub reload_ignore: Option<Vec<String>>,
    pub reload_poll: ReloadPoll,
}

/// INITD_RELOAD_POLL: how `initd dev` notices changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReloadPoll {
    /// Unset: inotify, polling as well on file systems not known to be local.
    #[default]
    Auto,
    /// Poll at this interval, and nothing else.
    Every(Duration),
    /// `off`: inotify only, whatever the file system.
    Off,
}

/// A dev setup command, skipped when `unless` exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupStep {
    pub argv: Vec<String>,
    pub unless: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrate {
    /// `python manage.py migrate --noinput` when manage.py exists.
    Auto,
    Off,
    Command(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateLock {
    Off,
    Postgres,
}

pub const DEFAULT_USER: &str = "app";

/// Everything initd was configured with: the typed settings and the layers
/// they were parsed from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub layers: Layers,
}

/// Reads the environment, then the TOML file it names (`INITD_CONFIG`, or
/// `/etc/initd.toml` when that exists), and parses the result.
pub fn load(vars: &[(OsString, OsString)], secret_names: &[String]) -> Result<Loaded, ConfigError> {
    let env = env_layer(vars.iter().map(|(k, v)| (k, v)), secret_names)?;
    let (path, required) = match env.text("INITD_CONFIG") {
        Some(path) => (PathBuf::from(path), true),
        None => (PathBuf::from("/etc/initd.toml"), false),
    };
    let file = match read_file(&path) {
        Ok(text) => file_layer(&path, &text)?,
        Err(FileProblem::Missing) if !required => Layers::default(),
        Err(problem) => {
            return Err(ConfigError::File {
                path,
                reason: problem.to_string(),
            });
        }
    };
    let layers = file.overlaid(env);
    let settings = parse(&layers)?;
    Ok(Loaded { settings, layers })
}

/// The settings from the environment alone (no file): for tests and tools.
pub fn from_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Settings, ConfigError> {
    parse(&env_layer(vars, &[])?)
}

/// A typed reader over the layers, which knows each setting's name for its
/// error messages.
struct Reader<'a> {
    layers: &'a Layers,
}

impl Reader<'_> {
    fn value<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(text) = self.layers.text(name) else {
            return Ok(None);
        };
        parse(&text).map(Some).ok_or_else(|| ConfigError::Invalid {
            name: name.to_string(),
            value: text,
            expected: expected.to_string(),
        })
    }

    fn choice<T: Copy>(&self, name: &'static str, choices: &[(&str, T)]) -> Result<Option<T>, ConfigError> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let expected = format!("one of {}", names.join(", "));
        self.value(
            name,
            |v| {
                let v = v.trim().to_ascii_lowercase();
                choices.iter().find(|(n, _)| *n == v).map(|(_, t)| *t)
            },
            &expected,
        )
    }

    /// Commands: a TOML array of command lines, or `;`-separated text.
    fn commands(&self, name: &'static str) -> Result<Option<Vec<Vec<String>>>, ConfigError> {
        let lines = match self.layers.get(name) {
            None => return Ok(None),
            Some(Raw::Items(items)) => items.clone(),
            Some(other) => cmdline::split_commands(&text_of(other)),
        };
        let invalid = |line: &str, why: String| ConfigError::Invalid {
            name: name.to_string(),
            value: line.to_string(),
            expected: why,
        };
        let mut commands = Vec::new();
        for line in lines.iter().filter(|l| !l.trim().is_empty()) {
            let argv = cmdline::split(line).map_err(|e| invalid(line, format!("a command line ({e})")))?;
            commands.push(argv);
        }
        Ok(Some(commands))
    }
}

pub fn parse(layers: &Layers) -> Result<Settings, ConfigError> {
    let r = Reader { layers };
    let signal_map = match layers.text("INITD_SIGNAL_MAP") {
        None => SignalMap::default(),
        Some(text) => {
            text.parse()
                .map_err(|e: crate::pid1::signals::SignalMapError| ConfigError::Refused {
                    name: "INITD_SIGNAL_MAP",
                    detail: e.to_string(),
                    value: text,
                })?
        }
    };
    Ok(Settings {
        signal_target: r
            .choice(
                "INITD_SIGNAL_TARGET",
                &[("child", Target::Child), ("group", Target::Group)],
            )?
            .unwrap_or_default(),
        signal_map,
        stop_timeout: r
            .value("INITD_STOP_TIMEOUT", parse_duration, DURATION_FORM)?
            .unwrap_or(Duration::from_secs(8)),
        keep_signal_status: r
            .choice("INITD_STOP_EXIT", &[("zero", false), ("keep", true)])?
            .unwrap_or(true),
        log_level: r
            .choice(
                "INITD_LOG",
                &[
                    ("off", LogLevel::Off),
                    ("error", LogLevel::Error),
                    ("warn", LogLevel::Warn),
                    ("info", LogLevel::Info),
                    ("debug", LogLevel::Debug),
                    ("trace", LogLevel::Trace),
                ],
            )?
            .unwrap_or(LogLevel::Info),
        log_format: r
            .choice(
                "INITD_LOG_FORMAT",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?
            .unwrap_or(LogFormat::Text),
        pipeline: parse_pipeline(&r)?,
        health: parse_health(&r)?,
    })
}

fn parse_health(r: &Reader) -> Result<Health, ConfigError> {
    let socket_text = r.layers.text("INITD_SOCKET").filter(|t| !t.trim().is_empty());
    let socket = match &socket_text {
        None => Some(PathBuf::from(crate::health::probe::DEFAULT_SOCKET)),
        Some(text) => crate::health::probe::parse_socket(text).map_err(|expected| ConfigError::Invalid {
            name: "INITD_SOCKET".into(),
            value: text.clone(),
            expected,
        })?,
    };
    let probe = match r.layers.text("INITD_HEALTH") {
        None => crate::health::probe::Probe::Alive,
        Some(text) => text.parse().map_err(|expected| ConfigError::Invalid {
            name: "INITD_HEALTH".into(),
            value: text.clone(),
            expected,
        })?,
    };
    let positive = |d: Duration| (!d.is_zero()).then_some(d);
    Ok(Health {
        socket,
        socket_set: socket_text.is_some(),
        check_timeout: r
            .value(
                "INITD_CHECK_TIMEOUT",
                |v| parse_duration(v).and_then(positive),
                POSITIVE_DURATION_FORM,
            )?
            .unwrap_or(crate::health::probe::DEFAULT_CHECK_TIMEOUT),
        probe,
        probe_timeout: r
            .value(
                "INITD_HEALTH_TIMEOUT",
                |v| parse_duration(v).and_then(positive),
                POSITIVE_DURATION_FORM,
            )?
            .unwrap_or(crate::health::probe::DEFAULT_PROBE_TIMEOUT),
        drain: r
            .value("INITD_DRAIN", parse_duration, DURATION_FORM)?
            .unwrap_or(Duration::ZERO),
    })
}

fn parse_pipeline(r: &Reader) -> Result<Pipeline, ConfigError> {
    let list = |name: &'static str| -> Vec<String> {
        match r.layers.get(name) {
            None => Vec::new(),
            Some(Raw::Items(items)) => items.clone(),
            Some(other) => text_of(other).split(',').map(|s| s.trim().to_string()).collect(),
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
    };
    let wait_for = crate::net::waitfor::parse_targets(&list("INITD_WAIT_FOR").join(",")).map_err(|e| {
        ConfigError::Entry {
            name: "INITD_WAIT_FOR",
            detail: e.to_string(),
        }
    })?;
    let migrate = match r.layers.text("INITD_MIGRATE") {
        None => Migrate::Auto,
        Some(text) => match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Migrate::Auto,
            "off" | "none" | "false" | "" => Migrate::Off,
            _ => Migrate::Command(single_command(r, "INITD_MIGRATE")?),
        },
    };
    let server = match r.layers.text("INITD_SERVER") {
        Some(text) if !text.trim().is_empty() => Some(single_command(r, "INITD_SERVER")?),
        _ => None,
    };
    let non_empty = |name: &'static str| r.layers.text(name).filter(|v| !v.trim().is_empty());
    Ok(Pipeline {
        user: non_empty("INITD_USER"),
        allow_root: r
            .value("INITD_ALLOW_ROOT", parse_bool, BOOL_FORM)?
            .unwrap_or(false),
        no_new_privs: r
            .value("INITD_NO_NEW_PRIVS", parse_bool, BOOL_FORM)?
            .unwrap_or(true),
        host_uid: host_id(r, "HOST_UID", "PUID")?,
        host_gid: host_id(r, "HOST_GID", "PGID")?,
        chown: list("INITD_CHOWN").into_iter().map(PathBuf::from).collect(),
        wait_for,
        wait_timeout: r
            .value("INITD_WAIT_TIMEOUT", parse_duration, DURATION_FORM)?
            .unwrap_or(Duration::from_secs(60)),
        migrate,
        migrate_lock: r
            .choice(
                "INITD_MIGRATE_LOCK",
                &[("off", MigrateLock::Off), ("postgres", MigrateLock::Postgres)],
            )?
            .unwrap_or(MigrateLock::Off),
        migrate_lock_timeout: r
            .value(
                "INITD_MIGRATE_LOCK_TIMEOUT",
                |v| parse_duration(v).filter(|d| !d.is_zero()),
                "a duration above zero such as 30s, 10m or 1h",
            )?
            .unwrap_or(Duration::from_secs(600)),
        prestart: r.commands("INITD_PRESTART")?.unwrap_or_default(),
        server,
        app: non_empty("INITD_APP"),
        workers: r.value(
            "INITD_WORKERS",
            |v| v.trim().parse::<u32>().ok().filter(|n| *n > 0),
            "a whole number of workers, 1 or more",
        )?,
        forwarded_allow_ips: non_empty("INITD_FORWARDED_ALLOW_IPS"),
        port: r
            .value(
                "PORT",
                |v| v.trim().parse::<u16>().ok().filter(|p| *p > 0),
                "a TCP port from 1 to 65535",
            )?
            .unwrap_or(8000),
        gunicorn_arguments: non_empty("GUNICORN_ARGUMENTS"),
        dev: parse_dev(r)?,
    })
}

/// The highest id `HOST_UID`/`HOST_GID` accept: ids above `i32::MAX` are
/// read as negative by many tools (and `(uid_t)-1` means "no change"), so
/// they would make /etc/passwd unusable rather than renumber anything.
pub const MAX_HOST_ID: u32 = i32::MAX as u32;

/// Why a `HOST_UID`/`HOST_GID` value is not an id; the value itself is
/// named by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HostIdError {
    #[error("not a decimal number")]
    NotDecimal,
    #[error("above {MAX_HOST_ID}")]
    TooLarge,
}

/// Parses a `HOST_UID`/`HOST_GID` value, the output of `id -u`: ASCII
/// digits only (no sign, spaces, hex or exponent), 0 to [`MAX_HOST_ID`].
/// Whether 0 is allowed is for the renumbering to decide.
pub fn parse_host_id(value: &str) -> Result<u32, HostIdError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostIdError::NotDecimal);
    }
    // All digits: only the size can fail, whatever the number of them.
    match value.parse::<u32>() {
        Ok(id) if id <= MAX_HOST_ID => Ok(id),
        _ => Err(HostIdError::TooLarge),
    }
}

const HOST_ID_FORM: &str =
    "a decimal id from 1 to 2147483647 such as the output of `id -u` (0 only with INITD_ALLOW_ROOT)";

/// `HOST_UID` or its alias `PUID` (the same for the gids). Empty counts as
/// unset, as Compose's `HOST_UID: ${HOST_UID:-}` gives when the host has
/// none; anything but digits (a sign, spaces, hex) is refused here, before
/// any file is changed.
fn host_id(r: &Reader, name: &'static str, alias: &'static str) -> Result<Option<u32>, ConfigError> {
    let read = |var: &'static str| -> Result<Option<u32>, ConfigError> {
        match r.layers.text(var) {
            None => Ok(None),
            Some(text) if text.is_empty() => Ok(None),
            Some(text) => parse_host_id(&text).map(Some).map_err(|_| ConfigError::Invalid {
                name: var.to_string(),
                value: text,
                expected: HOST_ID_FORM.to_string(),
            }),
        }
    };
    match (read(name)?, read(alias)?) {
        (Some(a), Some(b)) if a != b => Err(ConfigError::Entry {
            name,
            detail: format!(
                "{name}={a} and {alias}={b} disagree; {alias} is another name for {name}, set one of them"
            ),
        }),
        (a, b) => Ok(a.or(b)),
    }
}

fn parse_dev(r: &Reader) -> Result<Dev, ConfigError> {
    let list = |name: &'static str| -> Option<Vec<String>> {
        let items: Vec<String> = match r.layers.get(name)? {
            Raw::Items(items) => items.clone(),
            other => text_of(other).split(',').map(|s| s.trim().to_string()).collect(),
        };
        Some(items.into_iter().filter(|s| !s.is_empty()).collect())
    };
    let setup = r
        .commands("INITD_DEV_SETUP")?
        .unwrap_or_default()
        .into_iter()
        .map(|mut argv| {
            // `npm ci unless node_modules`: the command makes that path.
            let n = argv.len();
            let unless = (n >= 3 && argv[n - 2] == "unless").then(|| PathBuf::from(argv[n - 1].clone()));
            if unless.is_some() {
                argv.truncate(n - 2);
            }
            SetupStep { argv, unless }
        })
        .collect();
    let mut watchers = Vec::new();
    if let Some(raw) = r.layers.get("INITD_WATCHERS") {
        let pairs: Vec<(String, String)> = match raw {
            Raw::Pairs(pairs) => pairs.clone(),
            other => cmdline::split_commands(&text_of(other))
                .into_iter()
                .map(|entry| match entry.split_once('=') {
                    Some((name, cmd)) => Ok((name.trim().to_string(), cmd.trim().to_string())),
                    None => Err(ConfigError::Invalid {
                        name: "INITD_WATCHERS".into(),
                        value: entry.clone(),
                        expected: "name=command entries separated by ; (css=npm run watch:css)".into(),
                    }),
                })
                .collect::<Result<_, _>>()?,
        };
        for (name, cmd) in pairs {
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !valid_name {
                return Err(ConfigError::Invalid {
                    name: "INITD_WATCHERS".into(),
                    value: name,
                    expected: "a watcher name of letters, digits, - _ or .".into(),
                });
            }
            let argv = cmdline::split(&cmd).map_err(|e| ConfigError::Invalid {
                name: "INITD_WATCHERS".into(),
                value: cmd.clone(),
                expected: format!("a command line ({e})"),
            })?;
            if watchers.iter().any(|(n, _)| *n == name) {
                return Err(ConfigError::Entry {
                    name: "INITD_WATCHERS",
                    detail: format!("the watcher name {name:?} is used twice"),
                });
            }
            watchers.push((name, argv));
        }
    }
    let server = match r.layers.text("INITD_DEV_SERVER") {
        Some(text) if !text.trim().is_empty() => Some(single_command(r, "INITD_DEV_SERVER")?),
        _ => None,
    };
    Ok(Dev {
        auto_start_server: r
            .value("AUTO_START_SERVER", parse_bool, BOOL_FORM)?
            .unwrap_or(false),
        setup,
        watchers,
        server,
        reload_paths: list("INITD_RELOAD_PATHS")
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        reload_include: list("INITD_RELOAD_INCLUDE"),
        reload_ignore: list("INITD_RELOAD_IGNORE"),
        reload_poll: r
            .value(
                "INITD_RELOAD_POLL",
                |v| match v.trim() {
                    "off" => Some(ReloadPoll::Off),
                    v => parse_duration(v).filter(|d| !d.is_zero()).map(ReloadPoll::Every),
                },
                "a duration above zero such as 500ms or 2s, or off",
            )?
            .unwrap_or_default(),
    })
}

/// A setting that holds exactly one command line.
fn single_command(r: &Reader, name: &'static str) -> Result<Vec<String>, ConfigError> {
    let text = r.layers.text(name).unwrap_or_default();
    cmdline::split(&text).map_err(|e| ConfigError::Invalid {
        name: name.to_string(),
        value: text.clone(),
        expected: format!("a command line ({e})"),
    })
}

const BOOL_FORM: &str = "true or false (also 1/0, yes/no, on/off)";

const DURATION_FORM: &str = "a duration such as 500ms, 8s or 1m";

const POSITIVE_DURATION_FORM: &str = "a duration above zero such as 500ms, 2s or 1m";

/// `true/1/yes/on` and `false/0/no/off` (and empty for false), as the
/// scripts initd replaces accepted them.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layers::Source;
    use nix::sys::signal::Signal;
    use std::path::Path;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = from_env(env(&[("PATH", "/bin"), ("HOME", "/root")])).unwrap();
        assert_eq!(s.stop_timeout, Duration::from_secs(8));
        assert_eq!(s.signal_target, Target::Child);
        assert!(s.signal_map.is_empty());
        assert!(s.keep_signal_status);
        assert_eq!(s.log_level, LogLevel::Info);
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn reads_every_core_setting() {
        let s = from_env(env(&[
            ("INITD_SIGNAL_TARGET", "group"),
            ("INITD_SIGNAL_MAP", "TERM:QUIT"),
            ("INITD_STOP_TIMEOUT", "500ms"),
            ("INITD_STOP_EXIT", "zero"),
            ("INITD_LOG", "debug"),
            ("INITD_LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!(s.signal_target, Target::Group);
        assert_eq!(
            s.signal_map.map(Signal::SIGTERM),
            crate::pid1::signals::Mapped::To(Signal::SIGQUIT)
        );
        assert_eq!(s.stop_timeout, Duration::from_millis(500));
        assert!(!s.keep_signal_status);
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
    fn kubernetes_service_variables_are_ignored() {
        // What Kubernetes injects for Services `initd` and `initd-metrics`.
        let k8s = [
            ("INITD_SERVICE_HOST", "10.96.0.11"),
            ("INITD_SERVICE_PORT", "80"),
            ("INITD_SERVICE_PORT_HTTP", "80"),
            ("INITD_SERVICE_PORT_HTTP_ALT", "8080"),
            ("INITD_PORT", "tcp://10.96.0.11:80"),
            ("INITD_PORT_80_TCP", "tcp://10.96.0.11:80"),
            ("INITD_PORT_80_TCP_PROTO", "tcp"),
            ("INITD_PORT_80_TCP_PORT", "80"),
            ("INITD_PORT_80_TCP_ADDR", "10.96.0.11"),
            ("INITD_PORT_53_UDP", "udp://[fd00::11]:53"),
            ("INITD_PORT_53_UDP_ADDR", "fd00::11"),
            ("INITD_METRICS_SERVICE_HOST", "10.96.0.12"),
            ("INITD_METRICS_PORT_9090_TCP_PROTO", "tcp"),
        ];
        let layers = env_layer(env(&k8s), &[]).unwrap();
        assert_eq!(layers.ignored.len(), k8s.len());
        assert!(parse(&layers).is_ok());
        // Typos of real settings, and these names with values Kubernetes
        // would never give them, are still refused.
        for (name, value, suggestion) in [
            ("INITD_STOP_TIMEUOT", "3s", Some("INITD_STOP_TIMEOUT")),
            ("INITD_PORT", "8080", Some("PORT")),
            ("INITD_SERVICE_HOST", "db.example.com", None),
            ("INITD_SERVICE_HSOT", "10.96.0.11", None),
            ("INITD_PORT_80_TCP_PROTO", "udp", None),
            ("INITD_PORT_80_TCP_PORT", "81", None),
            ("INITD_PORT_80_HTTP", "tcp://10.96.0.11:80", None),
            ("INITD__SERVICE_HOST", "10.96.0.11", None),
            ("INITD_SOCKT", "/tmp/x", Some("INITD_SOCKET")),
        ] {
            match env_layer(env(&[(name, value)]), &[]) {
                Err(ConfigError::Unknown {
                    name: n,
                    suggestion: s,
                }) => {
                    assert_eq!(n, name);
                    assert_eq!(s.as_deref(), suggestion, "{name}");
                }
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_values_name_variable_value_and_form() {
        let err = from_env(env(&[("INITD_STOP_TIMEOUT", "8x")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "INITD_STOP_TIMEOUT=\"8x\": expected a duration such as 500ms, 8s or 1m"
        );
        let err = from_env(env(&[("INITD_SIGNAL_MAP", "TERM:QUITE")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "INITD_SIGNAL_MAP=\"TERM:QUITE\": \"QUITE\" is not a signal name or number (e.g. TERM, SIGUSR1, 10)"
        );
        let err = from_env(env(&[("INITD_SIGNAL_MAP", "WINCH:none,CHLD:TERM")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "INITD_SIGNAL_MAP=\"WINCH:none,CHLD:TERM\": entry \"CHLD:TERM\": initd reaps children on CHLD; it is never forwarded"
        );
        let err = from_env(env(&[("INITD_SIGNAL_TARGET", "all")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "INITD_SIGNAL_TARGET=\"all\": expected one of child, group"
        );
        assert!(from_env(env(&[("INITD_LOG", "loud")])).is_err());
    }

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let path = Path::new("/etc/initd.toml");
        let file = file_layer(path, "stop_timeout = 3\nlog = \"debug\"\n").unwrap();
        let env = env_layer(env(&[("INITD_STOP_TIMEOUT", "5s")]), &[]).unwrap();
        let layers = file.overlaid(env);
        let s = parse(&layers).unwrap();
        assert_eq!(s.stop_timeout, Duration::from_secs(5));
        assert_eq!(s.log_level, LogLevel::Debug);
        assert_eq!(layers.source("INITD_STOP_TIMEOUT"), Source::Env);
        assert_eq!(layers.source("INITD_LOG"), Source::File(path.into()));
        assert_eq!(layers.source("INITD_LOG_FORMAT"), Source::Default);
    }

    #[test]
    fn a_missing_named_config_file_is_an_error() {
        let err = load(&env(&[("INITD_CONFIG", "/nonexistent/initd.toml")]), &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config file /nonexistent/initd.toml: "),
            "{err}"
        );
        assert!(err.to_string().contains("INITD_CONFIG"), "{err}");
    }

    #[test]
    fn pipeline_defaults() {
        let p = from_env(env(&[])).unwrap().pipeline;
        assert_eq!(p.user, None);
        assert!(!p.allow_root);
        // On unless turned off: setuid helpers cannot give the app root.
        assert!(p.no_new_privs);
        assert!(
            !from_env(env(&[("INITD_NO_NEW_PRIVS", "false")]))
                .unwrap()
                .pipeline
                .no_new_privs
        );
        assert_eq!(p.wait_timeout, Duration::from_secs(60));
        assert!(p.wait_for.is_empty());
        assert_eq!(p.migrate, Migrate::Auto);
        assert_eq!(p.migrate_lock, MigrateLock::Off);
        assert!(p.prestart.is_empty());
        assert_eq!(p.server, None);
        assert_eq!(p.port, 8000);
    }

    #[test]
    fn pipeline_settings_from_env() {
        let p = from_env(env(&[
            ("INITD_USER", "web"),
            ("INITD_ALLOW_ROOT", "yes"),
            ("INITD_NO_NEW_PRIVS", "on"),
            ("HOST_UID", "501"),
            ("HOST_GID", "20"),
            ("INITD_CHOWN", "/app/media, /app/var"),
            ("INITD_WAIT_FOR", "tcp://db:5432,http://search:9200/health"),
            ("INITD_WAIT_TIMEOUT", "2m"),
            ("INITD_MIGRATE", "flask db upgrade"),
            ("INITD_MIGRATE_LOCK", "postgres"),
            (
                "INITD_PRESTART",
                "python manage.py collectstatic --noinput; echo 'a;b'",
            ),
            ("INITD_SERVER", "uvicorn app:app --port 9000"),
            ("INITD_WORKERS", "3"),
            ("PORT", "9000"),
            ("GUNICORN_ARGUMENTS", "--timeout 60"),
        ]))
        .unwrap()
        .pipeline;
        assert_eq!(p.user.as_deref(), Some("web"));
        assert!(p.allow_root);
        assert!(p.no_new_privs);
        assert_eq!((p.host_uid, p.host_gid), (Some(501), Some(20)));
        assert_eq!(p.chown, [PathBuf::from("/app/media"), PathBuf::from("/app/var")]);
        assert_eq!(p.wait_for.len(), 2);
        assert_eq!(p.wait_for[0].to_string(), "tcp://db:5432");
        assert_eq!(p.wait_timeout, Duration::from_secs(120));
        assert_eq!(
            p.migrate,
            Migrate::Command(vec!["flask".into(), "db".into(), "upgrade".into()])
        );
        assert_eq!(p.migrate_lock, MigrateLock::Postgres);
        assert_eq!(p.prestart.len(), 2);
        assert_eq!(p.prestart[1], ["echo", "a;b"]);
        assert_eq!(p.server.unwrap()[0], "uvicorn");
        assert_eq!(p.workers, Some(3));
        assert_eq!(p.port, 9000);
        assert_eq!(p.gunicorn_arguments.as_deref(), Some("--timeout 60"));
        assert_eq!(
            from_env(env(&[("INITD_MIGRATE", "off")]))
                .unwrap()
                .pipeline
                .migrate,
            Migrate::Off
        );
    }

    #[test]
    fn pipeline_arrays_in_toml() {
        let path = Path::new("/etc/initd.toml");
        let text =
            "prestart = [\"echo 'one; two'\", \"echo three\"]\nwait_for = [\"tcp://db:5432\"]\nport = 8080\n";
        let p = parse(&file_layer(path, text).unwrap()).unwrap().pipeline;
        assert_eq!(p.prestart, [vec!["echo", "one; two"], vec!["echo", "three"]]);
        assert_eq!(p.wait_for.len(), 1);
        assert_eq!(p.port, 8080);
    }

    #[test]
    fn host_ids_are_strict_and_puid_pgid_are_aliases() {
        let ids =
            |vars: &[(&str, &str)]| from_env(env(vars)).map(|s| (s.pipeline.host_uid, s.pipeline.host_gid));
        assert_eq!(ids(&[("PUID", "501"), ("PGID", "20")]), Ok((Some(501), Some(20))));
        assert_eq!(
            ids(&[("HOST_UID", "501"), ("PUID", "501")]),
            Ok((Some(501), None))
        );
        // Compose's `HOST_UID: ${HOST_UID:-}` on a host without it.
        assert_eq!(ids(&[("HOST_UID", ""), ("HOST_GID", "")]), Ok((None, None)));
        assert_eq!(
            ids(&[("HOST_GID", "20"), ("PGID", "1000")])
                .unwrap_err()
                .to_string(),
            "HOST_GID: HOST_GID=20 and PGID=1000 disagree; PGID is another name for HOST_GID, set one of them"
        );
        for bad in ["+5", "4294967295", "2147483648", " 5", "5 ", "0x10", "-1", "1e3"] {
            for var in ["HOST_UID", "HOST_GID", "PUID", "PGID"] {
                let err = ids(&[(var, bad)]).unwrap_err();
                assert!(
                    matches!(&err, ConfigError::Invalid { name, .. } if name == var),
                    "{var}={bad:?}: {err}"
                );
            }
        }
        // From TOML: an integer or a string, with the same rules.
        let file = |text: &str| file_layer(Path::new("/etc/initd.toml"), text).and_then(|l| parse(&l));
        assert_eq!(
            file("host_uid = 501\npgid = \"20\"\n").unwrap().pipeline.host_uid,
            Some(501)
        );
        assert!(file("host_uid = 4294967295\n").is_err());
        assert!(file("host_gid = -5\n").is_err());
    }

    #[test]
    fn pipeline_errors_name_the_setting() {
        let err = |k: &str, v: &str| from_env(env(&[(k, v)])).unwrap_err().to_string();
        assert_eq!(
            err("PORT", "80000"),
            "PORT=\"80000\": expected a TCP port from 1 to 65535"
        );
        assert_eq!(
            err("HOST_UID", "me"),
            "HOST_UID=\"me\": expected a decimal id from 1 to 2147483647 such as the output of \
             `id -u` (0 only with INITD_ALLOW_ROOT)"
        );
        assert_eq!(
            err("INITD_WORKERS", "0"),
            "INITD_WORKERS=\"0\": expected a whole number of workers, 1 or more"
        );
        assert!(
            err("INITD_WAIT_FOR", "https://x")
                .starts_with("INITD_WAIT_FOR: \"https://x\": https is not supported")
        );
        assert!(
            err("INITD_PRESTART", "echo 'open")
                .starts_with("INITD_PRESTART=\"echo 'open\": expected a command line")
        );
        assert!(err("INITD_MIGRATE_LOCK", "mysql").ends_with("expected one of off, postgres"));
        assert!(
            err("INITD_ALLOW_ROOT", "sure").starts_with("INITD_ALLOW_ROOT=\"sure\": expected true or false")
        );
    }

    #[test]
    fn dev_settings() {
        let d = from_env(env(&[
            ("AUTO_START_SERVER", "yes"),
            ("INITD_DEV_SETUP", "npm ci unless node_modules; echo hi"),
            ("INITD_WATCHERS", "css=npm run watch:css; js=sh -c 'a;b'"),
            ("INITD_DEV_SERVER", "python app.py"),
            ("INITD_RELOAD_PATHS", "/app/src,/app/templates"),
            ("INITD_RELOAD_POLL", "500ms"),
        ]))
        .unwrap()
        .pipeline
        .dev;
        assert!(d.auto_start_server);
        assert_eq!(d.setup[0].argv, ["npm", "ci"]);
        assert_eq!(d.setup[0].unless, Some(PathBuf::from("node_modules")));
        assert_eq!(d.setup[1].unless, None);
        assert_eq!(
            d.watchers[0],
            (
                "css".to_string(),
                vec!["npm".into(), "run".into(), "watch:css".into()]
            )
        );
        assert_eq!(d.watchers[1].1, ["sh", "-c", "a;b"]);
        assert_eq!(d.server.unwrap(), ["python", "app.py"]);
        assert_eq!(d.reload_paths.len(), 2);
        assert_eq!(d.reload_poll, ReloadPoll::Every(Duration::from_millis(500)));
        let off = from_env(env(&[("INITD_RELOAD_POLL", "off")]))
            .unwrap()
            .pipeline
            .dev;
        assert_eq!(off.reload_poll, ReloadPoll::Off);
        let zero = from_env(env(&[("INITD_RELOAD_POLL", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            zero.contains("INITD_RELOAD_POLL") && zero.contains("or off"),
            "{zero}"
        );
        let defaults = from_env(env(&[])).unwrap().pipeline.dev;
        assert!(!defaults.auto_start_server);
        assert!(defaults.watchers.is_empty());
        assert_eq!(defaults.reload_include, None);
    }

    #[test]
    fn watchers_from_a_toml_table() {
        let text = "[watchers]\ncss = \"npm run watch:css\"\n";
        let d = parse(&file_layer(Path::new("/etc/initd.toml"), text).unwrap())
            .unwrap()
            .pipeline
            .dev;
        assert_eq!(d.watchers[0].0, "css");
    }

    #[test]
    fn bad_watchers_are_named() {
        let err = |v: &str| from_env(env(&[("INITD_WATCHERS", v)])).unwrap_err().to_string();
        assert!(
            err("npm run watch").contains("expected name=command"),
            "{}",
            err("npm run watch")
        );
        assert!(err("a b=x").contains("a watcher name"), "{}", err("a b=x"));
        assert_eq!(
            err("a=x; a=y"),
            "INITD_WATCHERS: the watcher name \"a\" is used twice"
        );
    }

    #[test]
    fn health_settings() {
        let h = from_env(env(&[])).unwrap().health;
        assert_eq!(h.socket, Some(PathBuf::from("/run/initd/initd.sock")));
        assert!(!h.socket_set);
        assert_eq!(h.check_timeout, Duration::from_secs(2));
        assert_eq!(h.probe, crate::health::probe::Probe::Alive);
        assert_eq!(h.probe_timeout, Duration::from_secs(1));
        assert_eq!(h.drain, Duration::ZERO);
        let h = from_env(env(&[
            ("INITD_SOCKET", "/tmp/i.sock"),
            ("INITD_CHECK_TIMEOUT", "5s"),
            ("INITD_HEALTH", "tcp://127.0.0.1:8000"),
            ("INITD_HEALTH_TIMEOUT", "250ms"),
            ("INITD_DRAIN", "5s"),
        ]))
        .unwrap()
        .health;
        assert_eq!(h.socket, Some(PathBuf::from("/tmp/i.sock")));
        assert!(h.socket_set);
        assert_eq!(h.check_timeout, Duration::from_secs(5));
        assert_eq!(h.probe.to_string(), "tcp://127.0.0.1:8000");
        assert_eq!(h.probe_timeout, Duration::from_millis(250));
        assert_eq!(h.drain, Duration::from_secs(5));
        assert_eq!(
            from_env(env(&[("INITD_SOCKET", "off")])).unwrap().health.socket,
            None
        );
        let err = |k: &str, v: &str| from_env(env(&[(k, v)])).unwrap_err().to_string();
        assert!(
            err("INITD_HEALTH", "localhost:8000")
                .starts_with("INITD_HEALTH=\"localhost:8000\": expected http://"),
            "{}",
            err("INITD_HEALTH", "localhost:8000")
        );
        assert!(err("INITD_SOCKET", "run/initd.sock").contains("expected an absolute path"));
        assert_eq!(
            err("INITD_CHECK_TIMEOUT", "0"),
            "INITD_CHECK_TIMEOUT=\"0\": expected a duration above zero such as 500ms, 2s or 1m"
        );
        assert!(err("INITD_DRAIN", "soon").starts_with("INITD_DRAIN=\"soon\": expected a duration"));
    }

    #[test]
    fn bools() {
        for t in ["true", "1", "yes", "ON"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "0", "no", "off", ""] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn host_ids_parse() {
        assert_eq!(parse_host_id("501"), Ok(501));
        assert_eq!(parse_host_id("0"), Ok(0));
        assert_eq!(parse_host_id("2147483647"), Ok(2147483647));
        assert_eq!(parse_host_id("000501"), Ok(501));
        for bad in ["", " 501", "501\n", "+5", "-1", "0x10", "1e3", "1.5", "abc", "٣"] {
            assert_eq!(parse_host_id(bad), Err(HostIdError::NotDecimal), "{bad:?}");
        }
        for big in [
            "2147483648",
            "4294967295",
            "4294967296",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_host_id(big), Err(HostIdError::TooLarge), "{big:?}");
        }
    }
}

/// Property tests: settings arrive from the environment and a TOML file
/// that anyone building an image writes; no value may panic initd or make
/// it hang, and every rejection names the setting at fault.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use crate::config::layers::kubernetes_service_variable;
    use crate::config::settings::SETTINGS;
    use proptest::prelude::*;
    use std::path::Path;

    /// Values in the shapes settings take, and garbage.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,6}(ms|s|m|h)?",
            "[0-9]{0,3}\\.[0-9]{0,3}[a-z]{0,2}",
            "(true|false|yes|no|on|off|1|0|maybe)",
            "(TERM|INT|QUIT|HUP|USR1|KILL|9|none|x)(:(TERM|QUIT|none|STOP|99))?(,[A-Z]{1,5}:[a-z]{1,4}){0,2}",
            "(tcp|http|https)://[a-z]{0,5}(:[0-9]{0,6})?(/[a-z]{0,3})?",
            "[a-z]{1,4}=[a-z ]{0,8}(; [a-z]{1,4}=[a-z' ]{0,8}){0,3}",
            "[ -~]{0,24}",
            any::<String>(),
        ]
    }

    fn setting_name() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(SETTINGS.iter().map(|s| s.name).collect::<Vec<_>>())
    }

    fn toml_value() -> impl Strategy<Value = String> {
        prop_oneof![
            value().prop_map(|v| format!("{v:?}")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| format!("{n:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            proptest::collection::vec(value(), 0..3).prop_map(|v| format!("{v:?}")),
            Just("{ a = \"b\" }".to_string()),
            "[ -~]{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_environment_parses_or_names_the_culprit(
            vars in proptest::collection::vec((setting_name(), value()), 0..6),
        ) {
            let env: Vec<(OsString, OsString)> =
                vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect();
            if let Err(e) = from_env(env) {
                let text = e.to_string();
                prop_assert!(
                    vars.iter().any(|(k, _)| text.contains(k)),
                    "{text} names none of {:?}",
                    vars
                );
            }
        }

        #[test]
        fn unknown_variables_are_named_with_a_known_suggestion(name in "INITD_[A-Z_]{0,40}") {
            prop_assume!(!SETTINGS.iter().any(|s| s.name == name));
            prop_assume!(!kubernetes_service_variable(&name, "1".as_ref()));
            let env = vec![(OsString::from(&name), OsString::from("1"))];
            match from_env(env) {
                Err(ConfigError::Unknown { name: n, suggestion }) => {
                    prop_assert_eq!(n, name);
                    if let Some(s) = suggestion {
                        prop_assert!(SETTINGS.iter().any(|k| k.name == s));
                    }
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn any_text_as_the_toml_file_never_panics(text in any::<String>()) {
            let _ = file_layer(Path::new("/etc/initd.toml"), &text).map(|l| parse(&l));
        }

        #[test]
        fn toml_shaped_files_parse_or_name_the_key(
            entries in proptest::collection::vec((setting_name(), toml_value()), 0..6),
        ) {
            let text: String = entries
                .iter()
                .map(|(name, v)| format!("{} = {v}\n", SETTINGS.iter().find(|s| s.name == *name).unwrap().key()))
                .collect();
            match file_layer(Path::new("/etc/initd.toml"), &text) {
                Ok(layers) => {
                    if let Err(e) = parse(&layers) {
                        let text = e.to_string();
                        prop_assert!(entries.iter().any(|(k, _)| text.contains(k)), "{}", text);
                    }
                }
                Err(e) => prop_assert!(e.to_string().contains("/etc/initd.toml"), "{}", e),
            }
        }

        #[test]
        fn bools_are_exactly_the_documented_words(text in "[ -~]{0,8}") {
            let word = text.trim().to_ascii_lowercase();
            let expected = match word.as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" | "" => Some(false),
                _ => None,
            };
            prop_assert_eq!(parse_bool(&text), expected);
        }

    /// `HOST_UID`/`HOST_GID`: exactly the decimal numbers 0 to
    /// 2147483647 are ids, whatever else is typed.
    #[test]
    fn host_ids_are_exactly_the_small_decimal_numbers(text in prop_oneof![
        "[0-9]{1,12}",
        "[ +-]?[0-9]{1,10}[ \n]?",
        "0x[0-9a-f]{1,8}",
        "\\PC{0,12}",
    ]) {
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let value = text.parse::<u64>().ok().filter(|_| digits);
        match parse_host_id(&text) {
            Ok(id) => {
                prop_assert!(digits);
                prop_assert_eq!(Some(u64::from(id)), value);
                prop_assert!(id <= MAX_HOST_ID);
            }
            Err(HostIdError::TooLarge) => prop_assert!(digits && value.is_none_or(|v| v > u64::from(MAX_HOST_ID))),
            Err(HostIdError::NotDecimal) => prop_assert!(!digits),
        }
    }
    }
}
