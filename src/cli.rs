//! The command line: parsing (pure) and help texts.
//!
//! initd is configured through the environment, as containers are; the
//! command line only says what to do. Anything that is not a subcommand is
//! the command to run, so `ENTRYPOINT ["initd"]` works with any
//! `docker run IMAGE python manage.py shell`.

use std::ffi::OsString;
use std::fmt::Write;

use thiserror::Error;

use crate::config::SETTINGS;
use crate::pid1::exit;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help(Topic),
    Version,
    Exec(Vec<OsString>),
    Run,
    Dev,
    Config,
    /// `initd check [--live] [--json]`.
    Check {
        json: bool,
        /// Liveness rather than readiness.
        live: bool,
    },
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Main,
    Exec,
    Run,
    Dev,
    Config,
    Check,
    Status,
    Version,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("no command given; usage: initd [exec --] CMD [ARGS...] (see initd --help)")]
    NoCommand,
    #[error("unknown option {0}; to run a command whose name starts with '-', use: initd exec -- {0}")]
    UnknownOption(String),
    #[error("{0} takes no arguments (see initd --help)")]
    Unexpected(&'static str),
    #[error("initd check takes only --live and --json (see initd check --help)")]
    CheckArgs,
    /// A flag of tini or dumb-init: what to do instead.
    #[error("{0}")]
    Migrating(String),
    #[error("no help on {0:?}; the subcommands are {list}", list = SUBCOMMANDS.join(", "))]
    HelpTopic(String),
}

impl UsageError {
    /// 2 for a bad command line, but 1 for `initd check`'s: Docker reserves
    /// 2 in a health check, and any failure of a check means unhealthy.
    pub fn exit_code(&self) -> i32 {
        match self {
            UsageError::CheckArgs => crate::health::check::UNHEALTHY,
            _ => exit::USAGE,
        }
    }
}

const SUBCOMMANDS: [&str; 8] = [
    "exec", "run", "dev", "config", "check", "status", "version", "help",
];

pub fn parse(args: Vec<OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Err(UsageError::NoCommand);
    };
    let rest: Vec<OsString> = args.collect();
    match first.to_str() {
        Some("-h" | "--help") => Ok(Command::Help(Topic::Main)),
        Some("help") => help_topic(&rest).map(Command::Help),
        Some("-V" | "--version") => Ok(Command::Version),
        Some("version") => no_args(&rest, Command::Version, Topic::Version, "initd version"),
        Some("run") => no_args(&rest, Command::Run, Topic::Run, "initd run"),
        Some("dev") => no_args(&rest, Command::Dev, Topic::Dev, "initd dev"),
        Some("config") => no_args(&rest, Command::Config, Topic::Config, "initd config"),
        Some("status") => no_args(&rest, Command::Status, Topic::Status, "initd status"),
        Some("check") => parse_check(&rest),
        Some("exec") => parse_exec(rest),
        Some("--") => exec(rest),
        Some(opt) if opt.starts_with('-') => Err(unknown_option(opt)),
        _ => exec(std::iter::once(first).chain(rest).collect()),
    }
}

fn unknown_option(opt: &str) -> UsageError {
    match migrating(opt) {
        Some(line) => UsageError::Migrating(line),
        None => UsageError::UnknownOption(opt.to_string()),
    }
}

/// What a tini or dumb-init flag is in initd, for people who swap their
/// `ENTRYPOINT ["tini", "-g", "--"]` for initd: one line naming initd's
/// setting, or saying why there is none. Short flags may be bundled
/// (`-sg`) and take their value attached (`-e143`, `-r15:3`), as getopt
/// allows.
pub fn migrating(opt: &str) -> Option<String> {
    const DEBUG: &str = "set INITD_LOG=debug (trace for more)";
    let long = |name: &str| -> Option<&'static str> {
        Some(match name {
            "--single-child" => "c",
            "--rewrite" => "r",
            "--verbose" => "v",
            _ => return None,
        })
    };
    let letters: Vec<char> = match opt.strip_prefix("--") {
        Some(_) => {
            let name = opt.split_once('=').map_or(opt, |(n, _)| n);
            long(name)?.chars().collect()
        }
        None => {
            let bundle = opt.strip_prefix('-')?;
            let mut letters = Vec::new();
            for c in bundle.chars() {
                if !"sgpvwelcr".contains(c) {
                    return None;
                }
                letters.push(c);
                // The rest of the word is this flag's value.
                if "per".contains(c) {
                    break;
                }
            }
            letters
        }
    };
    if letters.is_empty() {
        return None;
    }
    let mut answers: Vec<String> = Vec::new();
    for c in letters {
        let answer = match c {
            's' => "tini's -s (become a subreaper): initd does that by itself whenever it is not PID 1".to_string(),
            'g' => "tini's -g (signal the child's process group): set INITD_SIGNAL_TARGET=group".to_string(),
            'p' => "tini's -p SIGNAL (a signal when tini's parent dies): initd has no equivalent; as PID 1 it has no parent, and elsewhere whoever started it stops it with a signal, which initd forwards".to_string(),
            'v' => format!("tini's and dumb-init's -v/--verbose: {DEBUG}"),
            'w' => format!("tini's -w (warn when zombies are reaped): {DEBUG}, which logs the orphans initd reaps"),
            'e' => "tini's -e CODE (report exit status CODE as 0): initd has no per-code remap; INITD_STOP_EXIT=zero reports 0 when the child dies of the stop signal initd forwarded (what -e 143 is used for)".to_string(),
            'l' => "tini's -l (print the license): initd prints none; its license is in its source, and `initd version` shows the version and build".to_string(),
            'c' => "dumb-init's -c/--single-child (signal only the child): that is initd's default (INITD_SIGNAL_TARGET=child)".to_string(),
            'r' => "dumb-init's -r/--rewrite FROM:TO: set INITD_SIGNAL_MAP=FROM:TO (names or numbers: TERM:QUIT, 15:3; FROM:none drops FROM)".to_string(),
            _ => unreachable!("only the letters above are collected"),
        };
        if !answers.contains(&answer) {
            answers.push(answer);
        }
    }
    Some(format!(
        "{opt}: {}; initd takes its settings from the environment, so drop the flag and run `initd CMD [ARGS...]`",
        answers.join("; ")
    ))
}

/// Subcommands configured only through the environment take no arguments
/// but --help.
fn no_args(
    rest: &[OsString],
    command: Command,
    topic: Topic,
    name: &'static str,
) -> Result<Command, UsageError> {
    match rest.first().and_then(|a| a.to_str()) {
        None if rest.is_empty() => Ok(command),
        Some("-h" | "--help") => Ok(Command::Help(topic)),
        _ => Err(UsageError::Unexpected(name)),
    }
}

/// `initd help [SUBCOMMAND]`: anything else is a usage error, so a typo
/// (`initd help chek`) is not answered with the general help as if it
/// were understood.
fn help_topic(rest: &[OsString]) -> Result<Topic, UsageError> {
    let topic = match rest {
        [] => return Ok(Topic::Main),
        [one] => one.to_string_lossy(),
        [_, extra, ..] => return Err(UsageError::HelpTopic(extra.to_string_lossy().into_owned())),
    };
    Ok(match topic.as_ref() {
        "exec" => Topic::Exec,
        "run" => Topic::Run,
        "dev" => Topic::Dev,
        "config" => Topic::Config,
        "check" => Topic::Check,
        "status" => Topic::Status,
        "version" => Topic::Version,
        "help" => Topic::Main,
        other => return Err(UsageError::HelpTopic(other.to_string())),
    })
}

fn parse_check(rest: &[OsString]) -> Result<Command, UsageError> {
    let (mut json, mut live) = (false, false);
    for arg in rest {
        let flag = match arg.to_str() {
            Some("-h" | "--help") => return Ok(Command::Help(Topic::Check)),
            Some("--json") => &mut json,
            Some("--live") => &mut live,
            _ => return Err(UsageError::CheckArgs),
        };
        if std::mem::replace(flag, true) {
            return Err(UsageError::CheckArgs);
        }
    }
    Ok(Command::Check { json, live })
}

fn parse_exec(rest: Vec<OsString>) -> Result<Command, UsageError> {
    match rest.first().and_then(|a| a.to_str()) {
        Some("--") => exec(rest.into_iter().skip(1).collect()),
        Some("-h" | "--help") => Ok(Command::Help(Topic::Exec)),
        Some(opt) if opt.starts_with('-') => Err(unknown_option(opt)),
        _ => exec(rest),
    }
}

fn exec(argv: Vec<OsString>) -> Result<Command, UsageError> {
    if argv.is_empty() {
        Err(UsageError::NoCommand)
    } else {
        Ok(Command::Exec(argv))
    }
}

pub fn is_subcommand(name: &str) -> bool {
    SUBCOMMANDS.contains(&name)
}

pub fn help(topic: Topic) -> String {
    match topic {
        Topic::Main => main_help(),
        Topic::Exec => EXEC_HELP.to_string(),
        Topic::Run => RUN_HELP.to_string(),
        Topic::Dev => DEV_HELP.to_string(),
        Topic::Config => CONFIG_HELP.to_string(),
        Topic::Check => CHECK_HELP.to_string(),
        Topic::Status => STATUS_HELP.to_string(),
        Topic::Version => {
            "initd version: print initd's version and build information\n\nUSAGE\n    initd version\n"
                .to_string()
        }
    }
}

const EXEC_HELP: &str = "\
initd exec: run a command as the supervised main child

USAGE
    initd exec [--] CMD [ARGS...]
    initd CMD [ARGS...]            (the same, when CMD is not a subcommand)

Docker secrets (NAME_FILE=/run/secrets/x, see INITD_SECRETS_DIRS) are read
into NAME first, and initd drops from root to the app user (INITD_USER). CMD
is looked up in PATH before anything starts. It runs in its own process
group (the terminal's foreground group when stdin is a terminal). initd
forwards the signals it receives to it, reaps every orphan, and when CMD
ends stops whatever it left behind: the stop signal first, SIGKILL after
INITD_STOP_TIMEOUT. initd exits with CMD's status: 128+N when a signal N
killed it, 143 after docker stop (see initd --help).
";

const RUN_HELP: &str = "\
initd run: the production entrypoint

USAGE
    initd run

In order, each only after the previous one succeeded:
    1. read Docker secrets (NAME_FILE=/run/secrets/x -> NAME)
    2. as root: renumber the app user to HOST_UID/HOST_GID, chown INITD_CHOWN,
       then drop to the app user (INITD_USER, default app)
    3. wait for INITD_WAIT_FOR (tcp://host:port, http://host/path), at most
       INITD_WAIT_TIMEOUT
    4. run the migration (INITD_MIGRATE; by default `python manage.py migrate
       --noinput` when manage.py exists), under INITD_MIGRATE_LOCK
    5. run INITD_PRESTART commands
    6. start INITD_SERVER, or gunicorn with production defaults, and
       supervise it as `initd exec` does
A failing step, or a stop signal, ends the pipeline: nothing after it starts.
`initd config` shows the plan without running it.
";

const DEV_HELP: &str = "\
initd dev: the development entrypoint (compose `command: initd dev`)

USAGE
    initd dev

Secrets and the app user as for `initd run`, then:
    1. INITD_DEV_SETUP commands, once, in order (`npm ci unless node_modules`
       skips the command when node_modules exists)
    2. with AUTO_START_SERVER=true: wait for INITD_WAIT_FOR, migrate, run
       INITD_PRESTART
    3. INITD_WATCHERS (css=npm run watch:css; js=...) start together, each line
       they print prefixed with their name; one that exits is restarted with
       backoff (1s doubling to 30s) and never takes the others down
    4. with AUTO_START_SERVER=true, the dev server (INITD_DEV_SERVER, else
       runserver, flask run or gunicorn), restarted when a file under
       INITD_RELOAD_PATHS changes; a server that crashes waits for the next
       change. Without it, the container idles for `docker compose exec`.
TERM stops everything gracefully and exits 0.
";

const CONFIG_HELP: &str = "\
initd config: print the effective configuration and the plan

USAGE
    initd config

Prints every setting as TOML with where its value came from (default, the
file, the environment, a secret; secret values are shown as ***), then what
`initd run` would do: the user, what it waits for, and each command line in
order. Nothing is started or changed. Exits non-zero when `initd run` would
fail before starting anything.
";

const CHECK_HELP: &str = "\
initd check: ask the running initd whether the app is healthy

USAGE
    initd check            readiness: one line, `STATE: REASON`; exit 0
                           healthy, 1 not
    initd check --live     liveness: exit 0 while the supervisor answers and
                           the main child is alive, even while INITD_HEALTH
                           fails or initd drains; 1 otherwise
    initd check --json     the full status as one JSON object (with --live:
                           plus `live` and `live_reason`)

For Docker's HEALTHCHECK and Kubernetes exec probes (startupProbe and
readinessProbe: `initd check`; livenessProbe: `initd check --live`):
    HEALTHCHECK CMD [\"initd\", \"check\"]

It asks the supervisor (initd as PID 1) over its control socket,
INITD_SOCKET (default /run/initd/initd.sock), and reports unhealthy when
there is no answer within INITD_CHECK_TIMEOUT (default 2s). It reads only
those two settings (from the environment, else the settings file): no
secrets, no user switch, nothing else that could fail.

Healthy states:   running (the probe passed), idle (initd dev without a server)
Unhealthy states: starting (secrets, wait-for, migrations, pre-start),
                  unhealthy (the probe failed, or the server is not running),
                  draining (INITD_DRAIN after a stop signal), stopping

Once the server runs, the supervisor tests INITD_HEALTH:
    http://127.0.0.1:8000/healthz   a GET answers 2xx or 3xx
    tcp://127.0.0.1:8000            a connection is accepted
    cmd:celery -A proj inspect ping the command exits 0 (run as the app user)
    (unset)                         the main child is alive
within INITD_HEALTH_TIMEOUT (default 1s). Checks that arrive while a probe
runs share its result.
";

const STATUS_HELP: &str = "\
initd status: show what the running initd supervises

USAGE
    initd status

Prints the state and its reason, the uptime, the last probe, and a table of
the processes: the main child, or in dev mode the server and each watcher
with its pid, restart count and state. Asks the supervisor as `initd check`
does (INITD_SOCKET, INITD_CHECK_TIMEOUT). Exits 0 when the supervisor
answered, 1 when it could not be asked.
";

fn main_help() -> String {
    let mut out = String::from(
        "\
initd: PID 1 for containers of Python web apps

USAGE
    initd [exec --] CMD [ARGS...]  run CMD under initd (reap, forward, stop)
    initd run                      secrets, app user, wait, migrate, server
    initd dev                      dev setup, asset watchers, reloading server
    initd config                   print the effective configuration and plan
    initd check [--live] [--json]  ask the running initd: ready (exit 0) or
                                   not (1); --live: alive or not
    initd status                   show the running initd's state, processes
    initd version                  print version and build information
    initd help [SUBCOMMAND]        print this help, or a subcommand's

    Every subcommand takes --help. Use `initd exec -- NAME` to run a program
    whose name is also a subcommand. Settings come from the environment (or
    /etc/initd.toml); tini's and dumb-init's flags are answered with the
    setting to use instead.

ENVIRONMENT
",
    );
    // Each name on a line of its own, its description below it, wrapped:
    // the names are too long for a column beside 80-column text.
    for s in SETTINGS {
        let _ = writeln!(out, "    {}", s.name);
        for line in wrap(&setting_help(s), HELP_WIDTH - 8) {
            let _ = writeln!(out, "        {line}");
        }
    }
    out.push('\n');
    out.push_str(exit::TABLE);
    out.push('\n');
    out
}

/// Help text lines are at most this wide.
pub const HELP_WIDTH: usize = 80;

/// A setting's description with its default, said once: the help texts
/// that explain what happens when a setting is unset already say it.
pub fn setting_help(s: &crate::config::Setting) -> String {
    let help = s.help.trim_end_matches('.');
    if s.default.is_empty() {
        help.to_string()
    } else {
        format!("{help} (default: {})", s.default)
    }
}

/// Greedy word wrap to `width` columns; a word longer than that stands on
/// a line of its own.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `initd 0.3.0 (1a2b3c4)` first, as `--version` of most tools starts.
pub fn version() -> String {
    format!(
        "initd {} ({})\nbuilt: {}, {}-{}, rustc {}\ninstalled from: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("INITD_BUILD_COMMIT"),
        if cfg!(target_feature = "crt-static") {
            "statically linked"
        } else {
            "dynamically linked"
        },
        std::env::consts::ARCH,
        std::env::consts::OS,
        env!("INITD_BUILD_RUSTC"),
        // Set by the packaging builds (pyproject.toml, images/initd): a
        // constant, so knowing it costs nothing at run time.
        option_env!("INITD_DIST").unwrap_or("source (cargo build)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn exec_of(args: &[&str]) -> Command {
        Command::Exec(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn bare_command_means_exec() {
        assert_eq!(parse_strs(&["python", "-V"]), Ok(exec_of(&["python", "-V"])));
        assert_eq!(
            parse_strs(&["exec", "python", "-V"]),
            Ok(exec_of(&["python", "-V"]))
        );
        assert_eq!(parse_strs(&["exec", "--", "-weird"]), Ok(exec_of(&["-weird"])));
        assert_eq!(parse_strs(&["--", "version"]), Ok(exec_of(&["version"])));
        assert_eq!(parse_strs(&["exec", "--", "exec"]), Ok(exec_of(&["exec"])));
    }

    #[test]
    fn the_commands_own_flags_are_left_alone() {
        assert_eq!(parse_strs(&["ls", "--help"]), Ok(exec_of(&["ls", "--help"])));
        assert_eq!(parse_strs(&["exec", "ls", "-h"]), Ok(exec_of(&["ls", "-h"])));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_strs(&["--help"]), Ok(Command::Help(Topic::Main)));
        assert_eq!(parse_strs(&["-h"]), Ok(Command::Help(Topic::Main)));
        assert_eq!(parse_strs(&["help"]), Ok(Command::Help(Topic::Main)));
        assert_eq!(parse_strs(&["help", "exec"]), Ok(Command::Help(Topic::Exec)));
        assert_eq!(parse_strs(&["exec", "--help"]), Ok(Command::Help(Topic::Exec)));
        assert_eq!(
            parse_strs(&["version", "--help"]),
            Ok(Command::Help(Topic::Version))
        );
        assert_eq!(parse_strs(&["version"]), Ok(Command::Version));
        assert_eq!(parse_strs(&["run"]), Ok(Command::Run));
        assert_eq!(parse_strs(&["config"]), Ok(Command::Config));
        assert_eq!(parse_strs(&["run", "--help"]), Ok(Command::Help(Topic::Run)));
        assert_eq!(parse_strs(&["help", "config"]), Ok(Command::Help(Topic::Config)));
        assert_eq!(parse_strs(&["--version"]), Ok(Command::Version));
    }

    #[test]
    fn usage_errors() {
        assert_eq!(parse_strs(&[]), Err(UsageError::NoCommand));
        assert_eq!(parse_strs(&["exec"]), Err(UsageError::NoCommand));
        assert_eq!(parse_strs(&["exec", "--"]), Err(UsageError::NoCommand));
        assert_eq!(
            parse_strs(&["--frobnicate"]),
            Err(UsageError::UnknownOption("--frobnicate".into()))
        );
        assert_eq!(
            parse_strs(&["exec", "-x"]),
            Err(UsageError::UnknownOption("-x".into()))
        );
        assert_eq!(
            parse_strs(&["version", "x"]),
            Err(UsageError::Unexpected("initd version"))
        );
    }

    #[test]
    fn help_lists_every_setting_and_exit_code() {
        let text = help(Topic::Main);
        for s in SETTINGS {
            // Each name on a line of its own.
            assert!(
                text.contains(&format!("\n    {}\n", s.name)),
                "{} missing from --help",
                s.name
            );
        }
        assert!(text.contains("127"));
        assert!(text.contains("78"));
    }

    #[test]
    fn every_help_text_fits_80_columns_and_says_each_default_once() {
        for topic in [
            Topic::Main,
            Topic::Exec,
            Topic::Run,
            Topic::Dev,
            Topic::Config,
            Topic::Check,
            Topic::Status,
            Topic::Version,
        ] {
            for line in help(topic).lines() {
                assert!(line.chars().count() <= HELP_WIDTH, "{topic:?}: {line:?}");
            }
        }
        for s in SETTINGS {
            let text = setting_help(s);
            let mentions = text.matches("default").count();
            assert!(mentions <= 1, "{}: {text}", s.name);
            assert!(!text.contains("(default: unset)"), "{}: {text}", s.name);
        }
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("abcdefgh x", 4), ["abcdefgh", "x"]);
    }

    #[test]
    fn help_on_an_unknown_subcommand_is_a_usage_error() {
        let err = parse_strs(&["help", "chek"]).unwrap_err();
        assert_eq!(err, UsageError::HelpTopic("chek".into()));
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .starts_with("no help on \"chek\"; the subcommands are exec, run")
        );
        assert!(parse_strs(&["help", "run", "x"]).is_err());
        assert_eq!(parse_strs(&["help", "help"]), Ok(Command::Help(Topic::Main)));
    }

    #[test]
    fn version_first_line_names_version_and_commit() {
        let text = version();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            format!(
                "initd {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("INITD_BUILD_COMMIT")
            )
        );
    }

    #[test]
    fn tini_and_dumb_init_flags_name_the_setting_to_use() {
        for (flag, needle) in [
            ("-s", "initd does that by itself whenever it is not PID 1"),
            ("-g", "INITD_SIGNAL_TARGET=group"),
            ("-p", "initd has no equivalent"),
            ("-pSIGTERM", "initd has no equivalent"),
            ("-v", "INITD_LOG=debug"),
            ("-vvv", "INITD_LOG=debug"),
            ("--verbose", "INITD_LOG=debug"),
            ("-w", "logs the orphans initd reaps"),
            ("-e", "INITD_STOP_EXIT=zero"),
            ("-e143", "INITD_STOP_EXIT=zero"),
            ("-l", "its license is in its source"),
            ("-c", "that is initd's default (INITD_SIGNAL_TARGET=child)"),
            ("--single-child", "INITD_SIGNAL_TARGET=child"),
            ("-r", "INITD_SIGNAL_MAP=FROM:TO"),
            ("-r15:3", "INITD_SIGNAL_MAP=FROM:TO"),
            ("--rewrite", "INITD_SIGNAL_MAP=FROM:TO"),
            ("--rewrite=15:3", "INITD_SIGNAL_MAP=FROM:TO"),
        ] {
            for args in [vec![flag, "--", "app"], vec!["exec", flag, "app"]] {
                let err = parse_strs(&args).unwrap_err();
                assert_eq!(err.exit_code(), 2, "{flag}");
                let line = err.to_string();
                assert!(line.starts_with(&format!("{flag}: ")), "{line}");
                assert!(line.contains(needle), "{flag}: {line}");
                assert!(line.ends_with("run `initd CMD [ARGS...]`"), "{line}");
                assert!(!line.contains('\n'), "{line}");
            }
        }
        let line = parse_strs(&["-sg", "app"]).unwrap_err().to_string();
        assert!(
            line.contains("-s (become") && line.contains("-g (signal"),
            "{line}"
        );
        // Not theirs: still an unknown option.
        assert!(matches!(parse_strs(&["-x"]), Err(UsageError::UnknownOption(_))));
        assert!(matches!(parse_strs(&["-sx"]), Err(UsageError::UnknownOption(_))));
        assert!(matches!(
            parse_strs(&["--signal"]),
            Err(UsageError::UnknownOption(_))
        ));
        // Their --version and -h are initd's own.
        assert_eq!(parse_strs(&["--version"]), Ok(Command::Version));
        assert_eq!(parse_strs(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn check_and_status() {
        let check = |json, live| Ok(Command::Check { json, live });
        assert_eq!(parse_strs(&["check"]), check(false, false));
        assert_eq!(parse_strs(&["check", "--json"]), check(true, false));
        assert_eq!(parse_strs(&["check", "--live"]), check(false, true));
        assert_eq!(parse_strs(&["check", "--live", "--json"]), check(true, true));
        assert_eq!(parse_strs(&["check", "--json", "--live"]), check(true, true));
        assert_eq!(
            parse_strs(&["check", "--live", "--live"]),
            Err(UsageError::CheckArgs)
        );
        assert_eq!(parse_strs(&["check", "live"]), Err(UsageError::CheckArgs));
        assert_eq!(parse_strs(&["check", "--help"]), Ok(Command::Help(Topic::Check)));
        assert_eq!(parse_strs(&["help", "status"]), Ok(Command::Help(Topic::Status)));
        assert_eq!(parse_strs(&["status"]), Ok(Command::Status));
        let err = parse_strs(&["check", "--verbose"]).unwrap_err();
        assert_eq!(err, UsageError::CheckArgs);
        assert_eq!(err.exit_code(), 1);
        assert_eq!(parse_strs(&["status", "-v"]).unwrap_err().exit_code(), 2);
        assert!(help(Topic::Check).contains("HEALTHCHECK CMD [\"initd\", \"check\"]"));
    }

    #[test]
    fn subcommands_are_known() {
        assert!(is_subcommand("exec"));
        assert!(is_subcommand("run"));
        assert!(is_subcommand("dev"));
        assert!(is_subcommand("check"));
        assert!(!is_subcommand("celery"));
    }
}
