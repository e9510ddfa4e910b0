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
use crate::exit;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help(Topic),
    Version,
    Exec(Vec<OsString>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Main,
    Exec,
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
}

const SUBCOMMANDS: [&str; 3] = ["exec", "version", "help"];

pub fn parse(args: Vec<OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let Some(first) = args.next() else {
        return Err(UsageError::NoCommand);
    };
    let rest: Vec<OsString> = args.collect();
    match first.to_str() {
        Some("-h" | "--help") => Ok(Command::Help(Topic::Main)),
        Some("help") => Ok(Command::Help(help_topic(rest.first()))),
        Some("-V" | "--version") => Ok(Command::Version),
        Some("version") => match rest.first().and_then(|a| a.to_str()) {
            None => Ok(Command::Version),
            Some("-h" | "--help") => Ok(Command::Help(Topic::Version)),
            Some(_) => Err(UsageError::Unexpected("initd version")),
        },
        Some("exec") => parse_exec(rest),
        Some("--") => exec(rest),
        Some(opt) if opt.starts_with('-') => Err(UsageError::UnknownOption(opt.to_string())),
        _ => exec(std::iter::once(first).chain(rest).collect()),
    }
}

fn help_topic(arg: Option<&OsString>) -> Topic {
    match arg.and_then(|a| a.to_str()) {
        Some("exec") => Topic::Exec,
        Some("version") => Topic::Version,
        _ => Topic::Main,
    }
}

fn parse_exec(rest: Vec<OsString>) -> Result<Command, UsageError> {
    match rest.first().and_then(|a| a.to_str()) {
        Some("--") => exec(rest.into_iter().skip(1).collect()),
        Some("-h" | "--help") => Ok(Command::Help(Topic::Exec)),
        Some(opt) if opt.starts_with('-') => Err(UsageError::UnknownOption(opt.to_string())),
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

CMD is looked up in PATH before anything starts. It runs in its own process
group (the terminal's foreground group when stdin is a terminal). initd
forwards the signals it receives to it, reaps every orphan, and when CMD ends
stops whatever it left behind: the stop signal first, SIGKILL after
INITD_STOP_TIMEOUT. initd exits with CMD's status (see initd --help).
";

fn main_help() -> String {
    let mut out = String::from(
        "\
initd: PID 1 for containers of Python web apps

USAGE
    initd [exec --] CMD [ARGS...]   run CMD under initd (reap, forward, stop)
    initd version                   print version and build information
    initd help [SUBCOMMAND]         print this help, or a subcommand's

    Every subcommand takes --help. Use `initd exec -- NAME` to run a program
    whose name is also a subcommand.

ENVIRONMENT
",
    );
    for s in SETTINGS {
        let default = if s.default.is_empty() { "unset" } else { s.default };
        let _ = writeln!(out, "    {:<22}{} (default: {default})", s.name, s.help);
    }
    out.push('\n');
    out.push_str(exit::TABLE);
    out.push('\n');
    out
}

pub fn version() -> String {
    format!(
        "initd {}\ncommit: {}\nbuilt: {}, {}-{}, rustc {}\n",
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
            assert!(text.contains(s.name), "{} missing from --help", s.name);
        }
        assert!(text.contains("127"));
        assert!(text.contains("78"));
    }

    #[test]
    fn subcommands_are_known() {
        assert!(is_subcommand("exec"));
        assert!(!is_subcommand("run"));
    }
}
