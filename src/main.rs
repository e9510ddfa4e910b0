use std::process::ExitCode;

use initd::cli::{self, Command};
use initd::entrypoint::{self as pipeline, Main};
use initd::{check, logging, show};

fn main() -> ExitCode {
    ExitCode::from(real_main().clamp(0, 255) as u8)
}

fn real_main() -> i32 {
    let command = match cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(command) => command,
        Err(err) => {
            logging::early_error(&err.to_string());
            return err.exit_code();
        }
    };
    match command {
        Command::Help(topic) => {
            print!("{}", cli::help(topic));
            0
        }
        Command::Version => {
            print!("{}", cli::version());
            0
        }
        Command::Exec(argv) => pipeline::run(Main::Command(argv)),
        Command::Run => pipeline::run(Main::Server),
        Command::Dev => pipeline::run(Main::Dev),
        Command::Config => config(),
        // Not through the pipeline: a health check must be cheap and must
        // not fail for reasons of its own.
        Command::Check { json, live } => check::run(json, live),
        Command::Status => check::status(),
    }
}

fn config() -> i32 {
    let prepared = match pipeline::prepare() {
        Ok(p) => p,
        Err(code) => return code,
    };
    print!("{}", show::settings(&prepared.loaded.layers));
    print!("{}", show::left_alone(&prepared.left_alone));
    match pipeline::plan(&prepared, &Main::Server) {
        Ok(plan) => {
            // GUNICORN_ARGUMENTS may come from a secret and be in a command.
            print!("{}", prepared.redactor.redact(&show::plan(&plan)));
            0
        }
        Err((message, code)) => {
            // The reason once, on stderr like every error; stdout, which
            // may be a file, only notes that the plan is missing.
            println!(
                "
# the plan cannot be made; the reason is on stderr"
            );
            logging::early_error(&prepared.redactor.redact(&message));
            code
        }
    }
}
