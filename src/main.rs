#![no_main]

use initd::cli::{self, Command};
use initd::entrypoint::{self as pipeline, Main};
use initd::{check, logging, show};

// initd's own `main`, in place of std's runtime start-up: that start-up
// reads /proc/self/maps to place a guard page, maps a signal stack and
// installs SIGSEGV/SIGBUS handlers for stack-overflow messages — a dozen
// system calls on every container start and every `initd check`, and the
// reason pthread_getattr_np and sscanf (~110 kB of static glibc) are
// linked in. What of it initd needs is done in `start_up` below.
// std::env::args still works: glibc hands argv to std through .init_array.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    start_up();
    // exit() rather than a return: it flushes std's buffered stdout.
    std::process::exit(real_main().clamp(0, 255))
}

/// The part of std's start-up that initd relies on.
fn start_up() {
    // A write to a closed pipe must be an EPIPE error to handle, not a
    // signal that ends PID 1. Children get the default back: std resets
    // SIGPIPE in every child it starts.
    // SAFETY: setting a disposition to SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Started with stdin, stdout or stderr closed, the first file initd
    // opens would take that number, and log lines would land in it.
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll writes only into the array it is given.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for pfd in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: open with a constant C string; the descriptor is kept
        // for the life of the process on purpose.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd >= 0 && fd != pfd.fd {
            // SAFETY: plain descriptor calls on numbers we own.
            unsafe {
                libc::dup2(fd, pfd.fd);
                libc::close(fd);
            }
        }
    }
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
        Err(halt) => {
            if let Some(message) = &halt.message {
                logging::early_error(message);
            }
            return halt.code;
        }
    };
    print!("{}", show::settings(&prepared.loaded.layers));
    print!("{}", show::left_alone(&prepared.left_alone));
    match pipeline::plan(&prepared, &Main::Server) {
        Ok(plan) => {
            // GUNICORN_ARGUMENTS may come from a secret and be in a command.
            print!("{}", prepared.redactor.redact(&show::plan(&plan)));
            0
        }
        Err(halt) => {
            // The reason once, on stderr like every error; stdout, which
            // may be a file, only notes that the plan is missing.
            println!(
                "
# the plan cannot be made; the reason is on stderr"
            );
            if let Some(message) = &halt.message {
                logging::early_error(&prepared.redactor.redact(message));
            }
            halt.code
        }
    }
}
