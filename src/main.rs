use std::process::ExitCode;

use initd::cli::{self, Command};
use initd::{config, exec, exit, logging};

fn main() -> ExitCode {
    ExitCode::from(real_main().clamp(0, 255) as u8)
}

fn real_main() -> i32 {
    let command = match cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("initd: {err}");
            return exit::USAGE;
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
        Command::Exec(argv) => {
            let settings = match config::load(std::env::vars_os().collect(), &[]) {
                Ok(loaded) => loaded.settings,
                Err(err) => {
                    eprintln!("initd: {err}");
                    return exit::CONFIG;
                }
            };
            logging::init(settings.log_level, settings.log_format);
            match exec::run(&argv, &settings) {
                Ok(code) => code,
                Err(err) => {
                    tracing::error!("{err}");
                    err.exit_code()
                }
            }
        }
    }
}
