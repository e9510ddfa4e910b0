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
use crate::pid1::signals::{SignalMap, Target};
use crate::units::parse_duration;

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
        "INITD_SECRETS_DIRS",
        Kind::List,
        "/run/secrets",
        "NAME_FILE is a Docker secret when its path is inside one of these directories (environment only)",
        "/run/secrets,/etc/app-secrets",
    ),
    setting(
        "INITD_SECRETS",
        Kind::List,
        "",
        "NAMEs whose NAME_FILE is a secret wherever it points (environment only)",
        "DB_PASSWORD,API_KEY",
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
        "keep",
        "a child that dies of the stop signal initd forwarded: `keep` reports 128+N (143 after docker stop), as shells do; `zero` reports 0",
        "zero",
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
        "true",
        "set no_new_privs on every command initd starts: setuid programs (sudo, su) cannot raise privileges; `false` lets them",
        "false",
    ),
    setting(
        "HOST_UID",
        Kind::Number,
        "",
        "give the app user this uid (rewrites /etc/passwd, chowns its home) so bind-mounted files belong to you: 1 to 2147483647 (0 only with INITD_ALLOW_ROOT: then nothing changes)",
        "501",
    ),
    setting(
        "PUID",
        Kind::Number,
        "",
        "another name for HOST_UID (the linuxserver.io images' name); setting both to different values is an error",
        "501",
    ),
    setting(
        "HOST_GID",
        Kind::Number,
        "",
        "give the app user's group this gid (rewrites /etc/group; a primary group 0 is never renumbered, the user leaves it): 1 to 2147483647 (0 only with INITD_ALLOW_ROOT)",
        "20",
    ),
    setting(
        "PGID",
        Kind::Number,
        "",
        "another name for HOST_GID (the linuxserver.io images' name); setting both to different values is an error",
        "20",
    ),
    setting(
        "INITD_CHOWN",
        Kind::List,
        "",
        "paths chowned (recursively) to the app user before the drop, comma-separated; no symbolic link is followed, files with several hard links and other mounts are left alone",
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
        "INITD_MIGRATE_LOCK_TIMEOUT",
        Kind::Duration,
        "10m",
        "with INITD_MIGRATE_LOCK=postgres: give up (exit 69, naming the lock and its holder) when PostgreSQL cannot be reached or the lock not taken within this long",
        "30m",
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
        "the WSGI app for gunicorn; unset: from FLASK_APP, the one `*/wsgi.py`, or `wsgi.py`/`app.py` in the working directory",
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
        "the control socket `initd check` and `initd status` ask, served by the container's entrypoint initd (PID 1 or under another init, never a guest); when initd starts as root, its directory must be writable by root only; `off`: none",
        "/tmp/initd/initd.sock",
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
    setting(
        "PYTHONUNBUFFERED",
        Kind::Text,
        "1",
        "passed to every command unless set: Python's output reaches the logs as it is written; set it empty to turn it off",
        "",
    ),
    setting(
        "PYTHONDONTWRITEBYTECODE",
        Kind::Text,
        "1",
        "`initd dev`: passed to its commands unless set, so no stale `__pycache__` is served after a quick edit; set it empty to turn it off",
        "",
    ),
];

const PREFIX: &str = "INITD_";

/// Settings read before the file (the file's own name, and which variables
/// are secrets: a setting may itself come from a secret).
pub const ENV_ONLY: [&str; 3] = ["INITD_CONFIG", "INITD_SECRETS_DIRS", "INITD_SECRETS"];

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
    /// A value of the right form that cannot be used, with the reason.
    #[error("{name}={value:?}: {detail}")]
    Refused {
        name: &'static str,
        value: String,
        detail: String,
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
    secrets_dirs => "initd_secrets_dirs",
    secrets => "initd_secrets",
    user => "initd_user",
    allow_root => "initd_allow_root",
    no_new_privs => "initd_no_new_privs",
    host_uid => "host_uid",
    puid => "puid",
    host_gid => "host_gid",
    pgid => "pgid",
    chown => "initd_chown",
    wait_for => "initd_wait_for",
    wait_timeout => "initd_wait_timeout",
    migrate => "initd_migrate",
    migrate_lock => "initd_migrate_lock",
    migrate_lock_timeout => "initd_migrate_lock_timeout",
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
    python_unbuffered => "pythonunbuffered",
    python_dont_write_bytecode => "pythondontwritebytecode",
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
    let mut layers = Layers::default();
    for (key, value) in vars {
        let Some(key) = key.to_str() else { continue };
        let is_setting = SETTINGS.iter().any(|s| s.name == key);
        if !is_setting {
            if key.starts_with(PREFIX) && kubernetes_service_variable(key, &value) {
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
        }
        let value = value.into_string().map_err(|_| ConfigError::NotUnicode {
            name: key.to_string(),
        })?;
        known.push((key.to_ascii_lowercase(), value));
    }
    // Every field is an optional string, so envy cannot fail on this input.
    let values: EnvValues = envy::from_iter(known).unwrap_or_default();
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
            Some(text) => crate::pipeline::user::parse_host_id(&text)
                .map(Some)
                .map_err(|_| ConfigError::Invalid {
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
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("WROKERS", "WORKERS"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

/// docs/settings.md's table is generated from [`SETTINGS`]: this test fails
/// when the two drift apart, and `INITD_BLESS=1 cargo test --lib
/// settings_page` writes the table anew (run it after adding or changing a
/// setting, and after merging branches that did).
#[cfg(test)]
mod settings_page {
    use super::*;

    const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md");
    const BEGIN: &str = "<!-- BEGIN settings table: generated from SETTINGS in src/config.rs by `INITD_BLESS=1 cargo test --lib settings_page`; do not edit -->\n";
    const END: &str = "<!-- END settings table -->\n";

    /// Markdown table cells cannot hold a `|` or a line break.
    fn cell(text: &str) -> String {
        text.replace('|', "\\|").replace('\n', " ")
    }

    pub fn table() -> String {
        let mut out = String::from("| Variable | Default | Meaning | Example |\n|---|---|---|---|\n");
        for s in SETTINGS {
            let default = if s.default.is_empty() {
                "unset".to_string()
            } else {
                format!("`{}`", s.default)
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | `{}` |\n",
                s.name,
                cell(&default),
                cell(s.help),
                cell(s.example)
            ));
        }
        out
    }

    /// The page with its table replaced by a fresh one.
    fn regenerated(page: &str) -> Option<String> {
        let start = page.find(BEGIN)? + BEGIN.len();
        let end = start + page[start..].find(END)?;
        Some(format!("{}{}{}", &page[..start], table(), &page[end..]))
    }

    #[test]
    fn the_settings_page_matches_the_settings_table() {
        let page = std::fs::read_to_string(PAGE).unwrap();
        let fresh = regenerated(&page).expect("docs/settings.md has lost its BEGIN/END markers");
        if std::env::var_os("INITD_BLESS").is_some() {
            if fresh != page {
                std::fs::write(PAGE, &fresh).unwrap();
            }
            return;
        }
        assert!(
            fresh == page,
            "docs/settings.md's table differs from SETTINGS in src/config.rs; \
             regenerate it with: INITD_BLESS=1 cargo test --lib settings_page"
        );
        for s in SETTINGS {
            assert!(page.contains(&format!("| `{}` |", s.name)), "{}", s.name);
        }
    }

    #[test]
    fn the_table_has_one_row_per_setting_and_escapes_pipes() {
        let table = table();
        assert_eq!(table.lines().count(), SETTINGS.len() + 2);
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        let page = format!("intro\n{BEGIN}| old |\n{END}after\n");
        assert_eq!(
            regenerated(&page).unwrap(),
            format!("intro\n{BEGIN}{table}{END}after\n")
        );
        assert_eq!(regenerated("no markers"), None);
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
    }
}
