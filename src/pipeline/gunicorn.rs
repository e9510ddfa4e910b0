//! The production server command for `initd run`.
//!
//! `INITD_SERVER` runs as given. Otherwise gunicorn, with what a container
//! needs and gunicorn does not do by default: listen on every interface,
//! size the workers to the CPU quota, log to stdout and stderr, and finish a
//! graceful stop before initd's SIGKILL.
//!
//! The user's own gunicorn configuration wins wherever it sets the same
//! thing, from any of the places gunicorn reads: `GUNICORN_ARGUMENTS` (our
//! variable, appended to the command line), `GUNICORN_CMD_ARGS` and the
//! config file. Appending alone would not do that. Most of gunicorn's
//! options are argparse `store` actions, where the last occurrence wins
//! (`-w 5 ... -w 3` runs 3), but `--bind` is an `append` action: a second
//! `--bind` adds an address next to ours instead of replacing it
//! (`--bind A --bind B` listens on both; checked with gunicorn 20.1 and 27,
//! see tests/gunicorn.rs). And gunicorn ranks its command line above
//! `GUNICORN_CMD_ARGS` and the config file, so our defaults there would
//! silently beat the user's. So each default is left out when the user sets
//! that setting anywhere.
//!
//! [`plan`] is pure; [`ServerInputs::gather`] reads what it needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::pipeline::cpus;
use crate::pipeline::wsgi::{self, WsgiError};

/// Everything that decides the server command, as read from the
/// environment, the working directory and the cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerInputs {
    /// `INITD_SERVER`: a whole command, run instead of gunicorn.
    pub server: Option<String>,
    /// `INITD_APP`: the WSGI target, `mysite.wsgi:application`.
    pub app: Option<String>,
    /// `PORT`
    pub port: Option<String>,
    /// `INITD_WORKERS`
    pub workers: Option<String>,
    /// `WEB_CONCURRENCY`: gunicorn's own default for `--workers`, which
    /// platforms such as Heroku set from the machine's memory.
    pub web_concurrency: Option<String>,
    /// `INITD_STOP_TIMEOUT`
    pub stop_timeout: Duration,
    /// `INITD_FORWARDED_ALLOW_IPS`
    pub forwarded_allow_ips: Option<String>,
    /// `GUNICORN_ARGUMENTS`: appended to gunicorn's command line.
    pub gunicorn_arguments: Option<String>,
    /// `GUNICORN_CMD_ARGS`: gunicorn reads it itself; initd only looks.
    pub gunicorn_cmd_args: Option<String>,
    /// The config file gunicorn will load, if there is one.
    pub config_file: Option<ConfigFile>,
    /// The container's CPUs, from [`cpus::container_cpus`].
    pub cpus: f64,
    /// The working directory, for messages.
    pub cwd: PathBuf,
    /// The app found in `cwd` when INITD_APP does not name one, from
    /// [`wsgi::discover`]; None: not looked for yet.
    pub found_app: Option<Result<wsgi::Found, WsgiError>>,
    /// Whether /dev/shm exists.
    pub dev_shm: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPlan {
    /// The command, `argv[0]` still to be looked up in PATH.
    pub argv: Vec<String>,
    /// Which rule chose the WSGI app, for `initd config`; None when
    /// INITD_SERVER runs.
    pub app_rule: Option<String>,
    /// For the caller to log; none of them stops the start.
    pub warnings: Vec<String>,
    /// The `--workers` initd passes; None when INITD_SERVER runs or the
    /// user's gunicorn configuration sets it.
    pub workers: Option<u32>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ServerError {
    #[error("{name}={value:?}: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{name}={value:?}: {reason}; quote the way a shell does, e.g. --name 'my app'")]
    Quoting {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "INITD_SERVER={value:?} holds no command; set it to one such as `uvicorn main:app`, \
         or unset it to run gunicorn"
    )]
    EmptyServer { value: String },
    #[error(transparent)]
    App(#[from] WsgiError),
}

impl ServerInputs {
    /// Reads what [`plan`] needs: variables through `env` (such as
    /// `|name| std::env::var(name).ok()`), then the CPU quota, the WSGI
    /// modules in `cwd`, gunicorn's config file and /dev/shm.
    pub fn gather(env: impl Fn(&str) -> Option<String>, stop_timeout: Duration, cwd: &Path) -> ServerInputs {
        let gunicorn_arguments = env("GUNICORN_ARGUMENTS");
        let gunicorn_cmd_args = env("GUNICORN_CMD_ARGS");
        let config_file = config_path(gunicorn_arguments.as_deref(), gunicorn_cmd_args.as_deref())
            .map(|path| cwd.join(path))
            .and_then(|path| {
                // Read as root, before the drop: no FIFO, no link followed.
                let name = Path::new(path.file_name()?);
                wsgi::read_source(path.parent()?, name)
                    .ok()
                    .map(|text| ConfigFile { path, text })
            });
        ServerInputs {
            server: env("INITD_SERVER"),
            app: env("INITD_APP"),
            port: env("PORT"),
            workers: env("INITD_WORKERS"),
            web_concurrency: env("WEB_CONCURRENCY"),
            stop_timeout,
            forwarded_allow_ips: env("INITD_FORWARDED_ALLOW_IPS"),
            gunicorn_arguments,
            gunicorn_cmd_args,
            config_file,
            cpus: cpus::container_cpus(),
            cwd: cwd.to_path_buf(),
            found_app: Some(wsgi::discover(env("FLASK_APP").as_deref(), cwd)),
            dev_shm: Path::new("/dev/shm").is_dir(),
        }
    }
}

/// The server command and what the caller should warn about.
pub fn plan(inputs: &ServerInputs) -> Result<ServerPlan, ServerError> {
    if let Some(server) = given(&inputs.server) {
        return custom_server(server, inputs);
    }
    let arguments = split("GUNICORN_ARGUMENTS", &inputs.gunicorn_arguments)?;
    let cmd_args = split("GUNICORN_CMD_ARGS", &inputs.gunicorn_cmd_args)?;
    let user = UserConfig::new(&arguments, &cmd_args, inputs.config_file.as_ref());
    let mut argv = vec!["gunicorn".to_string()];
    let mut warnings = Vec::new();
    let mut default = |setting: &str, flag: &str, value: String| {
        if user.sets(setting).is_none() {
            argv.extend([flag.to_string(), value]);
        }
    };

    // Validated even when unused: gunicorn itself dies on a malformed
    // WEB_CONCURRENCY, and INITD_WORKERS is a setting of ours.
    let initd_workers = positive("INITD_WORKERS", &inputs.workers)?;
    let web_concurrency = positive("WEB_CONCURRENCY", &inputs.web_concurrency)?;
    // WEB_CONCURRENCY is passed on explicitly (gunicorn would read it
    // anyway) so that the logged command shows the worker count.
    let count = match (user.sets("workers"), initd_workers) {
        (Some((source, _)), Some(n)) => {
            warnings.push(format!(
                "INITD_WORKERS={n} is not used: {source} sets the number of workers"
            ));
            None
        }
        (Some(_), None) => None,
        (None, Some(n)) => Some(n),
        (None, None) => Some(web_concurrency.unwrap_or_else(|| workers(inputs.cpus))),
    };

    // PORT only matters when initd binds: platforms set it for other
    // servers too, and a user's own --bind may not use it.
    if user.sets("bind").is_none() {
        default("bind", "--bind", format!("0.0.0.0:{}", port(&inputs.port)?));
    }
    if let Some(n) = count {
        default("workers", "--workers", n.to_string());
    }
    // `-` is stdout for the access log and stderr for the error log; the
    // container runtime collects both.
    default("accesslog", "--access-logfile", "-".to_string());
    default("errorlog", "--error-logfile", "-".to_string());

    let graceful = graceful_timeout(inputs.stop_timeout);
    default("graceful_timeout", "--graceful-timeout", graceful.to_string());
    if let Some((source, Some(value))) = user.sets("graceful_timeout")
        && let Ok(theirs) = value.trim().parse::<u64>()
        && theirs > graceful
    {
        warnings.push(format!(
            "{source} sets the graceful timeout to {theirs}s, but initd sends SIGKILL \
             INITD_STOP_TIMEOUT={} after the stop signal; lower it to {graceful} or raise \
             INITD_STOP_TIMEOUT above {theirs}s (and the runtime's stop timeout above that)",
            crate::units::human_duration(inputs.stop_timeout)
        ));
    }

    // Workers prove they are alive by touching a file in this directory
    // every few seconds; on an overlay or disk-backed /tmp that can stall
    // long enough for the master to kill healthy workers (gunicorn's FAQ
    // recommends /dev/shm in containers).
    if inputs.dev_shm {
        default("worker_tmp_dir", "--worker-tmp-dir", "/dev/shm".to_string());
    }

    if let Some(ips) = given(&inputs.forwarded_allow_ips) {
        match user.sets("forwarded_allow_ips") {
            Some((source, _)) => warnings.push(format!(
                "INITD_FORWARDED_ALLOW_IPS is not used: {source} sets forwarded_allow_ips"
            )),
            None => default("forwarded_allow_ips", "--forwarded-allow-ips", ips.to_string()),
        }
    }

    // The app goes before the user's arguments: gunicorn takes the first
    // positional, and an option with an optional value at the end of
    // GUNICORN_ARGUMENTS (--proxy-protocol) would swallow it.
    let app_rule = match (given(&inputs.app), user.sets("wsgi_app").or(user.sets("paste"))) {
        (Some(app), _) => {
            argv.push(app.to_string());
            "INITD_APP".to_string()
        }
        (None, Some((source, _))) => format!("the app named in {source}"),
        (None, None) => {
            let found = match &inputs.found_app {
                Some(found) => found.clone()?,
                None => wsgi::discover(None, &inputs.cwd)?,
            };
            argv.push(found.target);
            found.rule
        }
    };
    argv.extend(arguments);
    Ok(ServerPlan {
        argv,
        app_rule: Some(app_rule),
        warnings,
        workers: count,
    })
}

fn custom_server(server: &str, inputs: &ServerInputs) -> Result<ServerPlan, ServerError> {
    let argv = split("INITD_SERVER", &inputs.server)?;
    if argv.first().is_none_or(|program| program.is_empty()) {
        return Err(ServerError::EmptyServer {
            value: server.to_string(),
        });
    }
    let unused: Vec<&str> = [
        ("INITD_APP", &inputs.app),
        ("INITD_WORKERS", &inputs.workers),
        ("INITD_FORWARDED_ALLOW_IPS", &inputs.forwarded_allow_ips),
        ("GUNICORN_ARGUMENTS", &inputs.gunicorn_arguments),
    ]
    .into_iter()
    .filter(|(_, value)| given(value).is_some())
    .map(|(name, _)| name)
    .collect();
    let warnings = if unused.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "INITD_SERVER is set, so {} not used",
            match unused.as_slice() {
                [one] => format!("the gunicorn setting {one} is"),
                many => format!("the gunicorn settings {} are", many.join(", ")),
            }
        )]
    };
    Ok(ServerPlan {
        argv,
        app_rule: None,
        warnings,
        workers: None,
    })
}

/// gunicorn's suggested 2 × cores + 1, from the CPU quota rounded up (a
/// quota of 1.5 still runs two workers at once), and never fewer than two
/// so one slow request or restarting worker does not stall the rest.
pub fn workers(cpus: f64) -> u32 {
    // `as` saturates: NaN and negatives give 0, absurd quotas u32::MAX.
    let cpus = cpus.ceil() as u32;
    cpus.saturating_mul(2).saturating_add(1).max(2)
}

/// One second less than initd's stop timeout, so gunicorn's own shutdown
/// (which kills workers still busy after it) finishes before initd's
/// SIGKILL reaches the master. Whole seconds, as gunicorn takes them.
pub fn graceful_timeout(stop_timeout: Duration) -> u64 {
    stop_timeout
        .saturating_sub(Duration::from_secs(1))
        .as_secs()
        .max(1)
}

/// The config file gunicorn will load, relative to the working directory:
/// `-c`/`--config` from GUNICORN_ARGUMENTS, else from GUNICORN_CMD_ARGS,
/// else `gunicorn.conf.py` (which gunicorn loads when it exists). None for
/// a `python:module` config, which initd cannot read.
pub fn config_path(gunicorn_arguments: Option<&str>, gunicorn_cmd_args: Option<&str>) -> Option<PathBuf> {
    let named = |words: Option<&str>| {
        let words = shell_words::split(words?).ok()?;
        scan_arguments(&words)
            .into_iter()
            .rev()
            .find(|(name, _)| *name == "config")?
            .1
    };
    let location = named(gunicorn_arguments)
        .or_else(|| named(gunicorn_cmd_args))
        .unwrap_or_else(|| "gunicorn.conf.py".to_string());
    if location.starts_with("python:") {
        return None;
    }
    let file = location.strip_prefix("file:").unwrap_or(&location);
    Some(PathBuf::from(file))
}

/// A gunicorn setting initd sets or needs to know about, with the names
/// gunicorn accepts for it.
struct Setting {
    /// Its name in a config file.
    name: &'static str,
    /// Each long option with the length of its shortest accepted spelling:
    /// argparse takes any unambiguous prefix (`--bi` for `--bind`), and these
    /// are the shortest unambiguous ones among gunicorn 27's options.
    long: &'static [(&'static str, usize)],
    short: Option<char>,
}

const SETTINGS: &[Setting] = &[
    Setting {
        name: "bind",
        long: &[("--bind", 4)],
        short: Some('b'),
    },
    Setting {
        name: "workers",
        long: &[("--workers", 9)],
        short: Some('w'),
    },
    Setting {
        name: "accesslog",
        long: &[("--access-logfile", 14)],
        short: None,
    },
    Setting {
        name: "errorlog",
        long: &[("--error-logfile", 4), ("--log-file", 7)],
        short: None,
    },
    Setting {
        name: "graceful_timeout",
        long: &[("--graceful-timeout", 5)],
        short: None,
    },
    Setting {
        name: "worker_tmp_dir",
        long: &[("--worker-tmp-dir", 10)],
        short: None,
    },
    Setting {
        name: "forwarded_allow_ips",
        long: &[("--forwarded-allow-ips", 11)],
        short: None,
    },
    Setting {
        name: "config",
        long: &[("--config", 6)],
        short: Some('c'),
    },
    // An app given as a PasteDeploy file needs no WSGI module.
    Setting {
        name: "paste",
        long: &[("--paste", 7), ("--paster", 8)],
        short: None,
    },
    // Config files only: the app, when it is not on the command line.
    Setting {
        name: "wsgi_app",
        long: &[],
        short: None,
    },
];

/// gunicorn's short options that take no value, so may precede one that
/// does in the same word (`-Dw 3`).
const FLAG_SHORTS: [char; 2] = ['D', 'R'];

type Found = Vec<(&'static str, Option<String>)>;

/// The settings of [`SETTINGS`] that a gunicorn command line sets, in order,
/// each with its value when there is one.
fn scan_arguments(words: &[String]) -> Found {
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let next = || words.get(i + 1).cloned();
        if word == "--" {
            break;
        } else if let Some(body) = word.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (body, None),
            };
            let spelt =
                |&(long, shortest): &(&str, usize)| long[2..].starts_with(name) && name.len() + 2 >= shortest;
            if let Some(setting) = SETTINGS.iter().find(|s| s.long.iter().any(spelt)) {
                found.push((setting.name, inline.or_else(next)));
            }
        } else if let Some(shorts) = word.strip_prefix('-') {
            for (at, c) in shorts.char_indices() {
                if FLAG_SHORTS.contains(&c) {
                    continue;
                }
                if let Some(setting) = SETTINGS.iter().find(|s| s.short == Some(c)) {
                    let attached = &shorts[at + c.len_utf8()..];
                    let value = if attached.is_empty() {
                        next()
                    } else {
                        Some(attached.to_string())
                    };
                    found.push((setting.name, value));
                }
                break;
            }
        }
    }
    found
}

/// The settings of [`SETTINGS`] that a config file assigns at top level
/// (`workers = 4`), with the value as written. A setting assigned in a way
/// this does not see (inside an `if`, through `globals()`) is overridden by
/// initd's default, as every setting would be without this look.
fn scan_config(text: &str) -> Found {
    text.lines()
        .filter(|line| !line.starts_with(char::is_whitespace))
        .filter_map(|line| {
            let (target, value) = line.split_once('=')?;
            if value.starts_with('=') {
                return None;
            }
            let setting = SETTINGS.iter().find(|s| s.name == target.trim_end())?;
            let value = value.split('#').next().unwrap_or("").trim();
            Some((setting.name, Some(value.to_string())))
        })
        .collect()
}

/// The settings the user's gunicorn configuration makes, by source, in
/// gunicorn's order of precedence.
struct UserConfig {
    sources: Vec<(String, Found)>,
}

impl UserConfig {
    fn new(arguments: &[String], cmd_args: &[String], config_file: Option<&ConfigFile>) -> UserConfig {
        let mut sources = vec![
            ("GUNICORN_ARGUMENTS".to_string(), scan_arguments(arguments)),
            ("GUNICORN_CMD_ARGS".to_string(), scan_arguments(cmd_args)),
        ];
        if let Some(file) = config_file {
            sources.push((file.path.display().to_string(), scan_config(&file.text)));
        }
        UserConfig { sources }
    }

    /// Where `setting` is set with the value that wins: the first source in
    /// precedence, and the last occurrence in it.
    fn sets(&self, setting: &str) -> Option<(&str, Option<&str>)> {
        self.sources.iter().find_map(|(source, found)| {
            let (_, value) = found.iter().rev().find(|(name, _)| *name == setting)?;
            Some((source.as_str(), value.as_deref()))
        })
    }
}

/// A variable's value, with unset, empty and blank all meaning unset, as
/// `${PORT:-8000}` does in a shell (compose files often pass `VAR=`).
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn split(name: &'static str, value: &Option<String>) -> Result<Vec<String>, ServerError> {
    let Some(text) = given(value) else {
        return Ok(Vec::new());
    };
    shell_words::split(text).map_err(|e| ServerError::Quoting {
        name,
        value: text.to_string(),
        reason: e.to_string(),
    })
}

fn port(value: &Option<String>) -> Result<u16, ServerError> {
    let Some(text) = given(value) else {
        return Ok(8000);
    };
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ServerError::Invalid {
            name: "PORT",
            value: text.to_string(),
            expected: "a TCP port number from 1 to 65535",
        }),
    }
}

fn positive(name: &'static str, value: &Option<String>) -> Result<Option<u32>, ServerError> {
    let Some(text) = given(value) else {
        return Ok(None);
    };
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(ServerError::Invalid {
            name,
            value: text.to_string(),
            expected: "a positive whole number of worker processes, such as 4",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn django() -> ServerInputs {
        ServerInputs {
            stop_timeout: Duration::from_secs(8),
            cpus: 2.0,
            cwd: PathBuf::from("/app"),
            found_app: Some(Ok(wsgi::Found {
                target: "mysite.wsgi:application".to_string(),
                rule: "the one */wsgi.py, mysite/wsgi.py (Django's layout)".to_string(),
            })),
            dev_shm: true,
            ..ServerInputs::default()
        }
    }

    fn no_app() -> WsgiError {
        WsgiError::NoApp {
            cwd: PathBuf::from("/app"),
            detail: String::new(),
        }
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    fn argv(inputs: &ServerInputs) -> String {
        plan(inputs).unwrap().argv.join(" ")
    }

    fn error(inputs: &ServerInputs) -> String {
        plan(inputs).unwrap_err().to_string()
    }

    #[test]
    fn production_defaults_for_a_django_project() {
        let p = plan(&django()).unwrap();
        assert_eq!(
            p.argv.join(" "),
            "gunicorn --bind 0.0.0.0:8000 --workers 5 --access-logfile - --error-logfile - \
             --graceful-timeout 7 --worker-tmp-dir /dev/shm mysite.wsgi:application"
        );
        assert_eq!(p.workers, Some(5));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn port_app_proxies_and_no_dev_shm() {
        let inputs = ServerInputs {
            port: some("8080"),
            app: some("app:create_app()"),
            forwarded_allow_ips: some("10.0.0.0/8"),
            dev_shm: false,
            found_app: Some(Err(no_app())),
            ..django()
        };
        assert_eq!(
            argv(&inputs),
            "gunicorn --bind 0.0.0.0:8080 --workers 5 --access-logfile - --error-logfile - \
             --graceful-timeout 7 --forwarded-allow-ips 10.0.0.0/8 app:create_app()"
        );
    }

    #[test]
    fn blank_variables_count_as_unset() {
        let inputs = ServerInputs {
            server: some("  "),
            app: some(""),
            port: some(""),
            workers: some(" "),
            forwarded_allow_ips: some(""),
            gunicorn_arguments: some(""),
            ..django()
        };
        assert_eq!(plan(&inputs).unwrap(), plan(&django()).unwrap());
    }

    #[test]
    fn port_is_validated() {
        for bad in ["0", "65536", "http", "-1", "80 81"] {
            let inputs = ServerInputs {
                port: some(bad),
                ..django()
            };
            assert_eq!(
                error(&inputs),
                format!("PORT={bad:?}: expected a TCP port number from 1 to 65535")
            );
        }
        let inputs = ServerInputs {
            port: some("65535"),
            ..django()
        };
        assert!(argv(&inputs).contains("--bind 0.0.0.0:65535 "));
    }

    #[test]
    fn workers_from_cpus() {
        assert_eq!(workers(0.5), 3);
        assert_eq!(workers(1.0), 3);
        assert_eq!(workers(1.5), 5);
        assert_eq!(workers(2.0), 5);
        assert_eq!(workers(16.0), 33);
        assert_eq!(workers(0.0), 2);
        assert_eq!(workers(-1.0), 2);
        assert_eq!(workers(f64::NAN), 2);
        assert_eq!(workers(1e300), u32::MAX);
    }

    #[test]
    fn worker_count_overrides() {
        let with = |initd: Option<&str>, web: Option<&str>| {
            plan(&ServerInputs {
                workers: initd.map(str::to_string),
                web_concurrency: web.map(str::to_string),
                ..django()
            })
        };
        assert_eq!(with(Some("3"), None).unwrap().workers, Some(3));
        assert!(
            with(Some("3"), None)
                .unwrap()
                .argv
                .join(" ")
                .contains("--workers 3 ")
        );
        assert_eq!(with(None, Some("6")).unwrap().workers, Some(6));
        assert_eq!(with(Some("3"), Some("6")).unwrap().workers, Some(3));
        for bad in ["0", "two", "-2", "1.5"] {
            assert_eq!(
                with(Some(bad), None).unwrap_err().to_string(),
                format!(
                    "INITD_WORKERS={bad:?}: expected a positive whole number of worker processes, such as 4"
                )
            );
        }
        assert!(
            with(None, Some("x"))
                .unwrap_err()
                .to_string()
                .starts_with("WEB_CONCURRENCY=\"x\": ")
        );
    }

    #[test]
    fn users_flags_replace_the_defaults() {
        let inputs = ServerInputs {
            gunicorn_arguments: some(
                "-w 3 -b unix:/run/app.sock --access-logfile=/var/log/access.log -k gevent",
            ),
            ..django()
        };
        let p = plan(&inputs).unwrap();
        assert_eq!(
            p.argv.join(" "),
            "gunicorn --error-logfile - --graceful-timeout 7 --worker-tmp-dir /dev/shm \
             mysite.wsgi:application -w 3 -b unix:/run/app.sock --access-logfile=/var/log/access.log -k gevent"
        );
        assert_eq!(p.workers, None);
    }

    #[test]
    fn every_spelling_of_a_flag_counts() {
        let sets = |args: &str, setting: &str| {
            let words = shell_words::split(args).unwrap();
            scan_arguments(&words).iter().any(|(name, _)| *name == setting)
        };
        for args in ["--workers 3", "--workers=3", "-w 3", "-w3", "-Dw 3", "-RD -w 3"] {
            assert!(sets(args, "workers"), "{args}");
        }
        for args in ["--bind x", "--bind=x", "--bin x", "--bi x", "-b x", "-bx"] {
            assert!(sets(args, "bind"), "{args}");
        }
        assert!(sets("--log-file x", "errorlog"));
        assert!(sets("--er=x", "errorlog"));
        assert!(sets("--gra 3", "graceful_timeout"));
        assert!(sets("--paster dev.ini", "paste"));
        // Other options, ambiguous prefixes, values and everything after `--`.
        for args in [
            "--worker-class gevent",
            "--work 3",
            "--backlog 10",
            "--b x",
            "-k gevent",
            "--threads 4",
            "--",
            "-- -w 3",
            "--name -",
            "--access-logformat '%(h)s -w'",
        ] {
            assert!(!sets(args, "workers") && !sets(args, "bind"), "{args}");
        }
    }

    #[test]
    fn values_of_flags() {
        let words = shell_words::split("--graceful-timeout 30 -c conf.py --graceful-timeout=40 -b").unwrap();
        assert_eq!(
            scan_arguments(&words),
            vec![
                ("graceful_timeout", some("30")),
                ("config", some("conf.py")),
                ("graceful_timeout", some("40")),
                ("bind", None),
            ]
        );
    }

    #[test]
    fn user_bind_makes_port_irrelevant() {
        let inputs = ServerInputs {
            port: some("not-a-port"),
            gunicorn_arguments: some("--bind 127.0.0.1:9000"),
            ..django()
        };
        assert!(!argv(&inputs).contains("0.0.0.0"));
    }

    #[test]
    fn initd_settings_the_user_overrides_are_reported() {
        let inputs = ServerInputs {
            workers: some("4"),
            forwarded_allow_ips: some("*"),
            gunicorn_arguments: some("--workers 3 --forwarded-allow-ips 10.0.0.1"),
            ..django()
        };
        let p = plan(&inputs).unwrap();
        assert_eq!(
            p.warnings,
            vec![
                "INITD_WORKERS=4 is not used: GUNICORN_ARGUMENTS sets the number of workers",
                "INITD_FORWARDED_ALLOW_IPS is not used: GUNICORN_ARGUMENTS sets forwarded_allow_ips",
            ]
        );
        assert_eq!(p.argv.iter().filter(|a| a.starts_with("--forwarded")).count(), 1);
    }

    #[test]
    fn graceful_timeout_ends_before_the_kill() {
        let secs = |ms| graceful_timeout(Duration::from_millis(ms));
        assert_eq!(secs(8000), 7);
        assert_eq!(secs(8500), 7);
        assert_eq!(secs(30_000), 29);
        assert_eq!(secs(2000), 1);
        assert_eq!(secs(1500), 1);
        assert_eq!(secs(500), 1);
        assert_eq!(secs(0), 1);
    }

    #[test]
    fn a_longer_user_graceful_timeout_is_warned_about() {
        for args in ["--graceful-timeout 30", "--graceful-timeout=30"] {
            let p = plan(&ServerInputs {
                gunicorn_arguments: some(args),
                ..django()
            })
            .unwrap();
            assert!(!p.argv.contains(&"7".to_string()), "{:?}", p.argv);
            assert_eq!(
                p.warnings,
                vec![
                    "GUNICORN_ARGUMENTS sets the graceful timeout to 30s, but initd sends SIGKILL \
                     INITD_STOP_TIMEOUT=8s after the stop signal; lower it to 7 or raise \
                     INITD_STOP_TIMEOUT above 30s (and the runtime's stop timeout above that)"
                ]
            );
        }
        for args in [
            "--graceful-timeout 7",
            "--graceful-timeout 2",
            "--graceful-timeout soon",
        ] {
            let p = plan(&ServerInputs {
                gunicorn_arguments: some(args),
                ..django()
            })
            .unwrap();
            assert!(p.warnings.is_empty(), "{args}: {:?}", p.warnings);
        }
    }

    #[test]
    fn gunicorn_cmd_args_and_the_config_file_count_as_the_users() {
        let config = ConfigFile {
            path: PathBuf::from("/app/gunicorn.conf.py"),
            text: "import os\n\
                   workers = 4\n\
                   bind = f\"0.0.0.0:{os.environ.get('PORT', 8000)}\"\n\
                   graceful_timeout = 60  # long requests\n\
                   if os.environ.get('DEBUG'):\n    accesslog = None\n\
                   wsgi_app = 'mysite.wsgi'\n"
                .to_string(),
        };
        let inputs = ServerInputs {
            gunicorn_cmd_args: some("--worker-tmp-dir /tmp"),
            config_file: Some(config),
            found_app: Some(Err(no_app())),
            ..django()
        };
        let p = plan(&inputs).unwrap();
        // The app comes from the config file's wsgi_app.
        assert_eq!(p.argv.join(" "), "gunicorn --access-logfile - --error-logfile -");
        assert_eq!(p.workers, None);
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].starts_with("/app/gunicorn.conf.py sets the graceful timeout to 60s"),
            "{}",
            p.warnings[0]
        );
        // The command line outranks the config file, as in gunicorn.
        let inputs = ServerInputs {
            gunicorn_arguments: some("--graceful-timeout 5"),
            ..inputs
        };
        assert!(plan(&inputs).unwrap().warnings.is_empty());
    }

    #[test]
    fn config_file_scan_sees_top_level_assignments_only() {
        let found = scan_config(
            "workers = 2\nworkers=3\n  bind = 'x'\nif workers == 3: pass\naccesslog: str = '-'\n\
             # errorlog = '-'\nthreads = 8\nworker_tmp_dir = '/dev/shm'  # fast\n",
        );
        assert_eq!(
            found,
            vec![
                ("workers", some("2")),
                ("workers", some("3")),
                ("worker_tmp_dir", some("'/dev/shm'")),
            ]
        );
    }

    #[test]
    fn config_path_follows_gunicorn() {
        let path = |args: Option<&str>, env: Option<&str>| config_path(args, env);
        assert_eq!(path(None, None), Some(PathBuf::from("gunicorn.conf.py")));
        assert_eq!(path(Some("-c conf/g.py"), None), Some(PathBuf::from("conf/g.py")));
        assert_eq!(
            path(Some("--config=file:g.py"), None),
            Some(PathBuf::from("g.py"))
        );
        assert_eq!(path(None, Some("--conf e.py")), Some(PathBuf::from("e.py")));
        assert_eq!(
            path(Some("-c a.py"), Some("-c e.py")),
            Some(PathBuf::from("a.py"))
        );
        assert_eq!(path(Some("-c python:mysite.gunicorn"), None), None);
        assert_eq!(
            path(Some("'unclosed"), None),
            Some(PathBuf::from("gunicorn.conf.py"))
        );
    }

    #[test]
    fn bad_quoting_names_the_variable() {
        let inputs = ServerInputs {
            gunicorn_arguments: some("--name 'my app"),
            ..django()
        };
        assert_eq!(
            error(&inputs),
            "GUNICORN_ARGUMENTS=\"--name 'my app\": missing closing quote; \
             quote the way a shell does, e.g. --name 'my app'"
        );
        let inputs = ServerInputs {
            gunicorn_cmd_args: some("\"x"),
            ..django()
        };
        assert!(error(&inputs).starts_with("GUNICORN_CMD_ARGS="));
    }

    #[test]
    fn initd_server_runs_as_given() {
        let inputs = ServerInputs {
            server: some(
                "uvicorn main:app --host 0.0.0.0 --forwarded-allow-ips '*' --log-config \"my log.ini\"",
            ),
            port: some("not checked"),
            ..django()
        };
        let p = plan(&inputs).unwrap();
        assert_eq!(
            p.argv,
            [
                "uvicorn",
                "main:app",
                "--host",
                "0.0.0.0",
                "--forwarded-allow-ips",
                "*",
                "--log-config",
                "my log.ini"
            ]
        );
        assert_eq!(p.workers, None);
        assert!(p.warnings.is_empty());
        let inputs = ServerInputs {
            app: some("x.wsgi"),
            gunicorn_arguments: some("-w 2"),
            ..inputs
        };
        assert_eq!(
            plan(&inputs).unwrap().warnings,
            vec!["INITD_SERVER is set, so the gunicorn settings INITD_APP, GUNICORN_ARGUMENTS are not used"]
        );
    }

    #[test]
    fn initd_server_must_hold_a_command() {
        let inputs = ServerInputs {
            server: some("''"),
            ..django()
        };
        assert_eq!(
            error(&inputs),
            "INITD_SERVER=\"''\" holds no command; set it to one such as `uvicorn main:app`, \
             or unset it to run gunicorn"
        );
        let inputs = ServerInputs {
            server: some("uvicorn 'main:app"),
            ..django()
        };
        assert!(error(&inputs).starts_with("INITD_SERVER=\"uvicorn 'main:app\": missing closing quote"));
    }

    #[test]
    fn app_detection_explains_what_it_found() {
        let inputs = ServerInputs {
            found_app: Some(Err(no_app())),
            ..django()
        };
        assert_eq!(
            error(&inputs),
            "no WSGI app to run: INITD_APP and FLASK_APP are unset and /app has no */wsgi.py, \
             wsgi.py or app.py; set INITD_APP to the app, e.g. INITD_APP=mysite.wsgi:application \
             or INITD_APP=app:app"
        );
        let inputs = ServerInputs {
            found_app: Some(Err(WsgiError::Several {
                cwd: PathBuf::from("/app"),
                found: vec![
                    ("api.wsgi:application".into(), "api/wsgi.py".into()),
                    ("admin.wsgi:application".into(), "admin/wsgi.py".into()),
                ],
            })),
            ..django()
        };
        assert_eq!(
            error(&inputs),
            "INITD_APP is unset and /app holds several WSGI apps (api.wsgi:application in \
             api/wsgi.py, admin.wsgi:application in admin/wsgi.py); set INITD_APP to the one to \
             run, e.g. INITD_APP=api.wsgi:application"
        );
        // An explicit app, or a paste config, needs no detection.
        let inputs = ServerInputs {
            app: some("admin.wsgi"),
            ..inputs
        };
        assert!(argv(&inputs).ends_with(" admin.wsgi"));
        let inputs = ServerInputs {
            app: None,
            gunicorn_arguments: some("--paste production.ini"),
            ..inputs
        };
        assert!(argv(&inputs).ends_with(" --paste production.ini"));
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("initd-gunicorn-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn gather_reads_the_environment_and_the_directory() {
        let dir = scratch("gather");
        fs::create_dir_all(dir.join("shop")).unwrap();
        fs::write(dir.join("shop").join("wsgi.py"), "").unwrap();
        fs::write(dir.join("gunicorn.conf.py"), "workers = 2\n").unwrap();
        let env = |name: &str| match name {
            "PORT" => some("5000"),
            "GUNICORN_ARGUMENTS" => some("--timeout 60"),
            _ => None,
        };
        let inputs = ServerInputs::gather(env, Duration::from_secs(8), &dir);
        assert_eq!(inputs.port, some("5000"));
        assert_eq!(
            inputs.found_app.as_ref().unwrap().as_ref().unwrap().target,
            "shop.wsgi:application"
        );
        assert_eq!(
            inputs.config_file.as_ref().unwrap().path,
            dir.join("gunicorn.conf.py")
        );
        assert!(inputs.cpus > 0.0);
        let p = plan(&inputs).unwrap();
        assert_eq!(p.workers, None);
        assert!(
            p.argv
                .join(" ")
                .starts_with("gunicorn --bind 0.0.0.0:5000 --access-logfile"),
            "{:?}",
            p.argv
        );
        assert!(p.argv.join(" ").ends_with(" shop.wsgi:application --timeout 60"));
        // A config file named on the command line replaces the default one.
        let env = |name: &str| (name == "GUNICORN_ARGUMENTS").then(|| "-c missing.py".to_string());
        assert_eq!(
            ServerInputs::gather(env, Duration::from_secs(8), &dir).config_file,
            None
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
