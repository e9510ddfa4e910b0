//! Settings: from the environment and an optional TOML file, with where each
//! value came from.
//!
//! Every known setting is listed once in [`SETTINGS`]; that table drives the
//! unknown-setting check (with a "did you mean"), `--help`, `initd config`
//! and the table in docs/settings.md, so a setting cannot exist in one place and be
//! missing from another. Values are gathered as text (the environment read
//! with `envy`, the file with `toml`), the environment overriding the file,
//! and then parsed here so that a malformed value is reported with its
//! name, its value and the form that was expected.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::cmdline;
use crate::signals::{SignalMap, Target};

/// How a setting's text is read, which also decides how a TOML value is
/// turned into it and how `initd config` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Duration,
    Bool,
    Number,
    /// Comma-separated in the environment, an array in TOML.
    List,
    /// Commands separated by `;` in the environment, an array in TOML.
    Commands,
    /// `name=command` pairs separated by `;` in the environment, a table in
    /// TOML.
    Table,
}

pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub help: &'static str,
    pub example: &'static str,
}

impl Setting {
    /// The TOML key: the variable without `INITD_`, in lower case.
    pub fn key(&self) -> String {
        self.name
            .strip_prefix(PREFIX)
            .unwrap_or(self.name)
            .to_ascii_lowercase()
    }
}

const fn setting(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    help: &'static str,
    example: &'static str,
) -> Setting {
    Setting {
        name,
        kind,
        default,
        help,
        example,
    }
}

pub const SETTINGS: &[Setting] = &[
    setting(
        "INITD_CONFIG",
        Kind::Text,
        "/etc/initd.toml",
        "the TOML settings file (read when it exists; environment only)",
        "/app/initd.toml",
    ),
    setting(
        "INITD_NOT_SECRETS",
        Kind::List,
        "",
        "`*_FILE` variables that are not Docker secrets, left as they are (environment only)",
        "TF_CLI_CONFIG_FILE,MY_CERT_FILE",
    ),
    setting(
        "INITD_SIGNAL_TARGET",
        Kind::Text,
        "child",
        "who gets forwarded signals: `child` (the main child) or `group` (its process group)",
        "group",
    ),
    setting(
        "INITD_SIGNAL_MAP",
        Kind::Text,
        "",
        "rewrite signals before forwarding: FROM:TO or FROM:none, comma-separated",
        "TERM:QUIT,WINCH:none",
    ),
    setting(
        "INITD_STOP_TIMEOUT",
        Kind::Duration,
        "8s",
        "grace period after the stop signal before SIGKILL",
        "25s",
    ),
    setting(
        "INITD_STOP_EXIT",
        Kind::Text,
        "zero",
        "`zero`: a child that dies of the forwarded stop signal exits 0; `keep`: 128+N",
        "keep",
    ),
    setting(
        "INITD_LOG",
        Kind::Text,
        "info",
        "initd's own log level: off, error, warn, info, debug, trace",
        "debug",
    ),
    setting(
        "INITD_LOG_FORMAT",
        Kind::Text,
        "text",
        "`text` (one `initd:` line each) or `json` (one JSON object a line)",
        "json",
    ),
    setting(
        "INITD_USER",
        Kind::Text,
        "app",
        "the user the app runs as: name, uid, uid:gid or name:group",
        "1000:1000",
    ),
    setting(
        "INITD_ALLOW_ROOT",
        Kind::Bool,
        "false",
        "allow the app to run as root (uid 0)",
        "true",
    ),
    setting(
        "INITD_NO_NEW_PRIVS",
        Kind::Bool,
        "false",
        "set no_new_privs on every command initd starts: setuid programs (sudo, su) can no longer raise privileges",
        "true",
    ),
    setting(
        "HOST_UID",
        Kind::Number,
        "",
        "give the app user this uid (rewrites /etc/passwd, chowns its home) so bind-mounted files belong to you",
        "501",
    ),
    setting(
        "HOST_GID",
        Kind::Number,
        "",
        "give the app user's group this gid (rewrites /etc/group)",
        "20",
    ),
    setting(
        "INITD_CHOWN",
        Kind::List,
        "",
        "paths chowned (recursively) to the app user before the drop, comma-separated",
        "/app/media,/app/var",
    ),
    setting(
        "INITD_WAIT_FOR",
        Kind::List,
        "",
        "wait until these answer before migrating: tcp://host:port, http://host[:port]/path",
        "tcp://db:5432",
    ),
    setting(
        "INITD_WAIT_TIMEOUT",
        Kind::Duration,
        "60s",
        "give up on INITD_WAIT_FOR after this long (exit 69)",
        "2m",
    ),
    setting(
        "INITD_MIGRATE",
        Kind::Text,
        "auto",
        "the migration command; `auto`: `python manage.py migrate --noinput` when manage.py exists; `off`: none",
        "flask db upgrade",
    ),
    setting(
        "INITD_MIGRATE_LOCK",
        Kind::Text,
        "off",
        "`postgres`: hold a PostgreSQL advisory lock (over DATABASE_URL, with PGPASSWORD when the URL has no password) while migrating, so replicas migrate one at a time",
        "postgres",
    ),
    setting(
        "INITD_PRESTART",
        Kind::Commands,
        "",
        "commands run after the migration, in order; `;`-separated (an array in TOML)",
        "python manage.py collectstatic --noinput",
    ),
    setting(
        "INITD_SERVER",
        Kind::Text,
        "",
        "the server command for `initd run`; unset: gunicorn with production defaults",
        "uvicorn app:app --host 0.0.0.0",
    ),
    setting(
        "INITD_APP",
        Kind::Text,
        "",
        "the WSGI app for gunicorn; unset: the one `*/wsgi.py` in the working directory",
        "mysite.wsgi:application",
    ),
    setting(
        "INITD_WORKERS",
        Kind::Number,
        "",
        "gunicorn workers; unset: 2 x CPUs + 1, CPUs from the container's cgroup quota",
        "4",
    ),
    setting(
        "INITD_FORWARDED_ALLOW_IPS",
        Kind::Text,
        "",
        "gunicorn --forwarded-allow-ips: proxies trusted for X-Forwarded-*",
        "10.0.0.0/8",
    ),
    setting(
        "PORT",
        Kind::Number,
        "8000",
        "the port the server binds on 0.0.0.0",
        "8080",
    ),
    setting(
        "AUTO_START_SERVER",
        Kind::Bool,
        "false",
        "`initd dev`: run migrations and start the dev server; false: idle, awaiting `docker compose exec`",
        "true",
    ),
    setting(
        "INITD_DEV_SETUP",
        Kind::Commands,
        "",
        "`initd dev`: commands run once first; `CMD unless PATH` skips CMD when PATH exists",
        "npm ci unless node_modules",
    ),
    setting(
        "INITD_WATCHERS",
        Kind::Table,
        "",
        "`initd dev`: long-running asset watchers, `name=command` separated by `;` (a table in TOML)",
        "css=npm run watch:css; js=npm run watch:js",
    ),
    setting(
        "INITD_DEV_SERVER",
        Kind::Text,
        "",
        "`initd dev`: the dev server; unset: runserver (manage.py), flask run (FLASK_APP), or gunicorn with one worker",
        "uvicorn app:app --port 8000",
    ),
    setting(
        "INITD_RELOAD_PATHS",
        Kind::List,
        "",
        "`initd dev`: where to watch for changes (default: the working directory)",
        "/app/src,/app/templates",
    ),
    setting(
        "INITD_RELOAD_INCLUDE",
        Kind::List,
        "",
        "`initd dev`: file name patterns whose change restarts the server (default: Python, template and config files)",
        "*.py,*.html",
    ),
    setting(
        "INITD_RELOAD_IGNORE",
        Kind::List,
        "",
        "`initd dev`: names never watched (default: .git, __pycache__, node_modules, .venv, *.pyc, editor swap files)",
        "*.pyc,build",
    ),
    setting(
        "INITD_RELOAD_POLL",
        Kind::Duration,
        "",
        "`initd dev`: poll for changes at this interval instead of inotify; `off`: inotify only (default: inotify, plus polling every 1s on file systems not known to be local: fuse, 9p, virtiofs, nfs, …)",
        "1s",
    ),
    setting(
        "INITD_SOCKET",
        Kind::Text,
        "/run/initd/initd.sock",
        "the control socket `initd check` and `initd status` ask (served by PID 1, or by any initd when set); `off`: none",
        "/tmp/initd.sock",
    ),
    setting(
        "INITD_CHECK_TIMEOUT",
        Kind::Duration,
        "2s",
        "`initd check`: report unhealthy when the supervisor has not answered within this long",
        "5s",
    ),
    setting(
        "INITD_HEALTH",
        Kind::Text,
        "",
        "what `initd check` tests once the server runs: http://HOST:PORT/PATH (2xx/3xx), tcp://HOST:PORT, cmd:COMMAND (exit 0, as the app user); unset: the main child is alive",
        "http://127.0.0.1:8000/healthz",
    ),
    setting(
        "INITD_HEALTH_TIMEOUT",
        Kind::Duration,
        "1s",
        "a probe that takes longer fails (keep it below INITD_CHECK_TIMEOUT)",
        "3s",
    ),
    setting(
        "INITD_DRAIN",
        Kind::Duration,
        "0s",
        "on the first stop signal, fail checks for this long before the server gets the stop signal; a second one skips the rest",
        "5s",
    ),
    setting(
        "GUNICORN_ARGUMENTS",
        Kind::Text,
        "",
        "extra gunicorn arguments, appended last (so they win)",
        "--timeout 60 --max-requests 1000",
    ),
];

const PREFIX: &str = "INITD_";

/// Where a value came from, shown by `initd config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env,
    /// The environment, filled from a Docker secret file (`NAME_FILE`).
    Secret,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}: unknown setting; {}", suggest(.suggestion))]
    Unknown {
        name: String,
        suggestion: Option<String>,
    },
    #[error("{name}={value:?}: expected {expected}")]
    Invalid {
        name: String,
        value: String,
        expected: String,
    },
    #[error("{name}: the value is not valid UTF-8")]
    NotUnicode { name: String },
    #[error("{name}: {detail}")]
    Entry { name: &'static str, detail: String },
    #[error("config file {}: {reason}", .path.display())]
    File { path: PathBuf, reason: String },
}

fn suggest(suggestion: &Option<String>) -> String {
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
    pub pipeline: Pipeline,
    pub health: Health,
}

/// Health checks: the control socket, the probe, and the drain on stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// `None`: `INITD_SOCKET=off`.
    pub socket: Option<PathBuf>,
    /// Whether `INITD_SOCKET` was set: then any initd serves it, not only
    /// PID 1 (a second initd run by `docker exec` must not take over the
    /// default socket from the container's PID 1).
    pub socket_set: bool,
    pub check_timeout: Duration,
    pub probe: crate::health::Probe,
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
    pub wait_for: Vec<crate::waitfor::Target>,
    pub wait_timeout: Duration,
    pub migrate: Migrate,
    pub migrate_lock: MigrateLock,
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

/// The environment, as `envy` reads it: every known variable as text. The
/// field list is generated from the same names as [`SETTINGS`].
macro_rules! env_fields {
    ($($field:ident => $name:literal),* $(,)?) => {
        #[derive(Debug, Default, Deserialize)]
        struct EnvValues {
            $(#[serde(rename = $name)] $field: Option<String>,)*
        }

        impl EnvValues {
            fn into_pairs(self) -> Vec<(&'static str, String)> {
                let mut pairs = Vec::new();
                $(if let Some(v) = self.$field {
                    pairs.push((env_name($name), v));
                })*
                pairs
            }
        }
    };
}

env_fields! {
    config => "initd_config",
    not_secrets => "initd_not_secrets",
    user => "initd_user",
    allow_root => "initd_allow_root",
    no_new_privs => "initd_no_new_privs",
    host_uid => "host_uid",
    host_gid => "host_gid",
    chown => "initd_chown",
    wait_for => "initd_wait_for",
    wait_timeout => "initd_wait_timeout",
    migrate => "initd_migrate",
    migrate_lock => "initd_migrate_lock",
    prestart => "initd_prestart",
    server => "initd_server",
    app => "initd_app",
    workers => "initd_workers",
    forwarded_allow_ips => "initd_forwarded_allow_ips",
    port => "port",
    auto_start_server => "auto_start_server",
    dev_setup => "initd_dev_setup",
    watchers => "initd_watchers",
    dev_server => "initd_dev_server",
    reload_paths => "initd_reload_paths",
    reload_include => "initd_reload_include",
    reload_ignore => "initd_reload_ignore",
    reload_poll => "initd_reload_poll",
    gunicorn_arguments => "gunicorn_arguments",
    signal_target => "initd_signal_target",
    signal_map => "initd_signal_map",
    stop_timeout => "initd_stop_timeout",
    stop_exit => "initd_stop_exit",
    log => "initd_log",
    log_format => "initd_log_format",
    socket => "initd_socket",
    check_timeout => "initd_check_timeout",
    health => "initd_health",
    health_timeout => "initd_health_timeout",
    drain => "initd_drain",
}

/// The `SETTINGS` entry for an envy field name (envy lower-cases keys).
fn env_name(lower: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(lower))
        .map(|s| s.name)
        .expect("every env field is a known setting")
}

/// Reads the environment layer. `secret_names` are variables that were
/// filled from Docker secrets, so they are reported (and redacted) as such.
pub fn env_layer(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    secret_names: &[String],
) -> Result<Layers, ConfigError> {
    let mut known = Vec::new();
    for (key, value) in vars {
        let Some(key) = key.to_str() else { continue };
        let is_setting = SETTINGS.iter().any(|s| s.name == key);
        if !is_setting {
            if key.starts_with(PREFIX) {
                return Err(ConfigError::Unknown {
                    name: key.to_string(),
                    suggestion: closest(key, SETTINGS.iter().map(|s| s.name.to_string())),
                });
            }
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::NotUnicode {
            name: key.to_string(),
        })?;
        known.push((key.to_ascii_lowercase(), value));
    }
    // Every field is an optional string, so envy cannot fail on this input.
    let values: EnvValues = envy::from_iter(known).unwrap_or_default();
    let mut layers = Layers::default();
    for (name, value) in values.into_pairs() {
        let source = if secret_names.iter().any(|s| s == name) {
            Source::Secret
        } else {
            Source::Env
        };
        layers.values.insert(name, (Raw::Text(value), source));
    }
    Ok(layers)
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
        let Some(setting) = SETTINGS
            .iter()
            .find(|s| s.key() == key && s.name != "INITD_CONFIG")
        else {
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
        self
    }
}

/// Everything initd was configured with: the typed settings and the layers
/// they were parsed from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    pub layers: Layers,
}

/// Reads the environment, then the TOML file it names (`INITD_CONFIG`, or
/// `/etc/initd.toml` when that exists), and parses the result.
pub fn load(vars: Vec<(OsString, OsString)>, secret_names: &[String]) -> Result<Loaded, ConfigError> {
    let env = env_layer(vars, secret_names)?;
    let (path, required) = match env.text("INITD_CONFIG") {
        Some(path) => (PathBuf::from(path), true),
        None => (PathBuf::from("/etc/initd.toml"), false),
    };
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => file_layer(&path, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Layers::default(),
        Err(e) => {
            return Err(ConfigError::File {
                path,
                reason: format!("{e}; fix the path in INITD_CONFIG or unset it"),
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
    let signal_map_error = |text: &str| text.parse::<SignalMap>().err().map(|e| e.to_string());
    let signal_map = match layers.text("INITD_SIGNAL_MAP") {
        None => SignalMap::default(),
        Some(text) => text.parse().map_err(|_| ConfigError::Invalid {
            name: "INITD_SIGNAL_MAP".into(),
            expected: signal_map_error(&text).unwrap_or_default(),
            value: text,
        })?,
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
            .unwrap_or(false),
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
        None => Some(PathBuf::from(crate::health::DEFAULT_SOCKET)),
        Some(text) => crate::health::parse_socket(text).map_err(|expected| ConfigError::Invalid {
            name: "INITD_SOCKET".into(),
            value: text.clone(),
            expected,
        })?,
    };
    let probe = match r.layers.text("INITD_HEALTH") {
        None => crate::health::Probe::Alive,
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
            .unwrap_or(crate::health::DEFAULT_CHECK_TIMEOUT),
        probe,
        probe_timeout: r
            .value(
                "INITD_HEALTH_TIMEOUT",
                |v| parse_duration(v).and_then(positive),
                POSITIVE_DURATION_FORM,
            )?
            .unwrap_or(crate::health::DEFAULT_PROBE_TIMEOUT),
        drain: r
            .value("INITD_DRAIN", parse_duration, DURATION_FORM)?
            .unwrap_or(Duration::ZERO),
    })
}

fn parse_pipeline(r: &Reader) -> Result<Pipeline, ConfigError> {
    let id = |v: &str| v.trim().parse::<u32>().ok();
    const ID_FORM: &str = "a numeric id such as 1000";
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
    let wait_for =
        crate::waitfor::parse_targets(&list("INITD_WAIT_FOR").join(",")).map_err(|e| ConfigError::Entry {
            name: "INITD_WAIT_FOR",
            detail: e.to_string(),
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
            .unwrap_or(false),
        host_uid: r.value("HOST_UID", id, ID_FORM)?,
        host_gid: r.value("HOST_GID", id, ID_FORM)?,
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

/// A duration as initd writes it in messages: whole seconds as `8s`,
/// anything finer in milliseconds (`1500ms`), both forms
/// [`parse_duration`] reads back.
pub fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
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

/// `true/1/yes/on` and `false/0/no/off` (and empty for false), as the
/// scripts initd replaces accepted them.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
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
        assert_eq!(s.stop_timeout, Duration::from_secs(8));
        assert_eq!(s.signal_target, Target::Child);
        assert!(s.signal_map.is_empty());
        assert!(!s.keep_signal_status);
        assert_eq!(s.log_level, LogLevel::Info);
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn reads_every_core_setting() {
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
    fn secrets_are_marked_as_such() {
        let layers = env_layer(env(&[("INITD_LOG", "warn")]), &["INITD_LOG".to_string()]).unwrap();
        assert_eq!(layers.source("INITD_LOG"), Source::Secret);
    }

    #[test]
    fn a_missing_named_config_file_is_an_error() {
        let err = load(env(&[("INITD_CONFIG", "/nonexistent/initd.toml")]), &[]).unwrap_err();
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
        assert!(!p.no_new_privs);
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
    fn pipeline_errors_name_the_setting() {
        let err = |k: &str, v: &str| from_env(env(&[(k, v)])).unwrap_err().to_string();
        assert_eq!(
            err("PORT", "80000"),
            "PORT=\"80000\": expected a TCP port from 1 to 65535"
        );
        assert_eq!(
            err("HOST_UID", "me"),
            "HOST_UID=\"me\": expected a numeric id such as 1000"
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
    fn the_settings_page_documents_every_setting() {
        let readme = include_str!("../docs/settings.md");
        for s in SETTINGS {
            assert!(
                readme.contains(&format!("| `{}` |", s.name)),
                "{} is missing from docs/settings.md",
                s.name
            );
        }
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
        assert_eq!(h.probe, crate::health::Probe::Alive);
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
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("WROKERS", "WORKERS"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

/// Property tests: settings arrive from the environment and a TOML file
/// that anyone building an image writes; no value may panic initd or make
/// it hang, and every rejection names the setting at fault.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

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
        fn durations_never_panic_and_read_back(text in any::<String>(), n in 0u64..1_000_000) {
            let _ = parse_duration(&text);
            prop_assert_eq!(parse_duration(&format!("{n}ms")), Some(Duration::from_millis(n)));
            prop_assert_eq!(parse_duration(&format!(" {n}s ")), Some(Duration::from_secs(n)));
            prop_assert_eq!(parse_duration(&format!("{n}m")), Some(Duration::from_secs(n * 60)));
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
    }
}
