//! The ecosystem's conventions, end to end with the real binary: a real
//! environment full of unrelated `*_FILE` and Kubernetes variables, exit
//! statuses after a stop, signal maps initd cannot honour, liveness versus
//! readiness, tini's and dumb-init's flags, and the command line's
//! hygiene. Judged by exit codes, the lines printed, and what ran.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// A real environment

#[test]
fn a_real_environment_reaches_the_app_unchanged() {
    // REALISTIC_ENV is in every helper's environment: a missing
    // TF_CLI_CONFIG_FILE, a CA bundle over 128 KiB, Kubernetes variables
    // for a Service named initd. None is a secret or a setting.
    let big = fs::metadata("/etc/ssl/certs/ca-certificates.crt").map(|m| m.len());
    let mut cmd = initd_pid1(["env"]);
    cmd.env("INITD_LOG", "debug");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    for (k, v) in REALISTIC_ENV {
        let line = format!("{k}={v}");
        assert!(
            lines.contains(&line.as_str()),
            "{line} not passed on:\n{}",
            out.stdout
        );
    }
    // Each Kubernetes variable is noted at debug level, none refused.
    for (k, _) in REALISTIC_ENV.iter().filter(|(k, _)| k.starts_with("INITD_")) {
        assert!(
            out.stderr.contains(&format!(
                "initd: debug: {k}: a Kubernetes service variable (a Service named initd), not a setting; ignored"
            )),
            "{k}:\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
    if let Ok(len) = big {
        assert!(
            len > 128 * 1024,
            "the CA bundle is meant to be too big for a variable"
        );
    }
}

#[test]
fn typos_of_settings_are_still_refused_beside_kubernetes_variables() {
    let dir = Scratch::new("conv-typo");
    let marker = dir.path("ran");
    for (name, value, line) in [
        (
            "INITD_STOP_TIMEUOT",
            "3s",
            "initd: error: INITD_STOP_TIMEUOT: unknown setting; did you mean INITD_STOP_TIMEOUT?",
        ),
        (
            "INITD_PORT",
            "8080",
            "initd: error: INITD_PORT: unknown setting; did you mean PORT?",
        ),
        (
            "INITD_SERVICE_HSOT",
            "10.96.0.11",
            "initd: error: INITD_SERVICE_HSOT: unknown setting; run `initd --help` for the list of settings",
        ),
    ] {
        let mut cmd = initd_pid1(["exec", "touch", marker.to_str().unwrap()]);
        cmd.env(name, value);
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 78, "{name}: {}", out.stderr);
        assert_eq!(out.stderr.trim(), line);
        assert!(!marker.exists(), "{name}: the command ran");
    }
}

#[test]
fn a_missing_file_outside_the_secrets_directories_is_no_secret_but_inside_it_is() {
    let dir = Scratch::new("conv-secret");
    let secrets = dir.path("secrets");
    fs::create_dir(&secrets).unwrap();
    let marker = dir.path("ran");
    // Outside (the default /run/secrets, or a directory beside the
    // configured one): left alone, initd starts.
    let mut cmd = initd_pid1(["exec", "touch", marker.to_str().unwrap()]);
    cmd.env("INITD_SECRETS_DIRS", &secrets)
        .env("APP_TOKEN_FILE", format!("{}-old/token", secrets.display()));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(marker.exists());
    fs::remove_file(&marker).unwrap();
    // Inside: a secret, and a missing one stops initd before anything runs.
    let mut cmd = initd_pid1(["exec", "touch", marker.to_str().unwrap()]);
    cmd.env("INITD_SECRETS_DIRS", &secrets)
        .env("APP_TOKEN_FILE", secrets.join("token"));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 78, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("initd: error: secret APP_TOKEN: cannot read "),
        "{}",
        out.stderr
    );
    assert!(!marker.exists());
    // A bad INITD_SECRETS_DIRS is named.
    let mut cmd = initd_pid1(["exec", "true"]);
    cmd.env("INITD_SECRETS_DIRS", "run/secrets");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 78);
    assert!(
        out.stderr
            .starts_with("initd: error: INITD_SECRETS_DIRS=\"run/secrets\": expected absolute directories"),
        "{}",
        out.stderr
    );
    // The removed setting is now an unknown one.
    let mut cmd = initd_pid1(["exec", "true"]);
    cmd.env("INITD_NOT_SECRETS", "X_FILE");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 78);
    assert!(
        out.stderr
            .starts_with("initd: error: INITD_NOT_SECRETS: unknown setting"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// Exit status after a stop

/// `initd run` with a Python server that dies of TERM as Python does by
/// default (no handler): the status after `docker stop`.
fn stopped_status(stop_exit: Option<&str>, map: Option<&str>) -> (i32, String) {
    let dir = Scratch::new("conv-exit");
    let ready = dir.path("ready");
    let server = format!(
        "python3 -c \"import time; open('{}', 'w').close(); time.sleep(600)\"",
        ready.display()
    );
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_MIGRATE", "off")
        .env("INITD_SERVER", &server);
    if let Some(v) = stop_exit {
        cmd.env("INITD_STOP_EXIT", v);
    }
    if let Some(m) = map {
        cmd.env("INITD_SIGNAL_MAP", m);
    }
    let running = spawn_logged(&mut cmd, &dir, "initd");
    wait_for_file(&ready);
    signal(running.pid(), Signal::SIGTERM);
    let out = running.finish(LIMIT);
    (out.code(), out.stderr)
}

#[test]
fn docker_stop_gives_143_by_default_and_0_with_zero() {
    let (code, stderr) = stopped_status(None, None);
    assert_eq!(code, 143, "{stderr}");
    let (code, stderr) = stopped_status(Some("zero"), None);
    assert_eq!(code, 0, "{stderr}");
    // A mapped stop signal: 128 + the signal the child died of.
    let (code, stderr) = stopped_status(None, Some("TERM:INT"));
    assert_eq!(code, 130, "{stderr}");
}

// ---------------------------------------------------------------------------
// Signal maps

#[test]
fn each_signal_initd_never_forwards_is_refused_in_the_map() {
    let dir = Scratch::new("conv-map");
    let marker = dir.path("ran");
    for from in [
        "CHLD", "TTIN", "TTOU", "PIPE", "KILL", "STOP", "ILL", "TRAP", "ABRT", "BUS", "FPE", "SEGV", "SYS",
    ] {
        let value = format!("HUP:USR1,{from}:TERM");
        let mut cmd = initd_pid1(["exec", "touch", marker.to_str().unwrap()]);
        cmd.env("INITD_SIGNAL_MAP", &value);
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 78, "{from}: {}", out.stderr);
        let line = out.stderr.trim();
        assert!(
            line.starts_with(&format!(
                "initd: error: INITD_SIGNAL_MAP={value:?}: entry \"{from}:TERM\": "
            )),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!marker.exists(), "{from}: the command ran");
    }
}

#[test]
fn term_none_is_accepted_with_a_warning_and_the_stop_takes_the_grace_period() {
    let dir = Scratch::new("conv-termnone");
    let mut cmd = initd_pid1(["sleep", "600"]);
    cmd.env("INITD_SIGNAL_MAP", "TERM:none")
        .env("INITD_STOP_TIMEOUT", "1s");
    let mut running = spawn_logged(&mut cmd, &dir, "initd");
    running.wait_stderr(
        "initd: warning: INITD_SIGNAL_MAP drops TERM (TERM:none): `docker stop` and Kubernetes no \
         longer stop the app gracefully, they SIGKILL it after their grace period",
        LIMIT,
    );
    // The TERM is dropped: the app keeps running.
    let pid = running.pid();
    wait_for(LIMIT, || has_child(pid).then_some(()));
    signal(pid, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        has_child(pid),
        "the app stopped on a dropped TERM:\n{}",
        running.stderr()
    );
    // What the runtime does after its grace period.
    signal(pid, Signal::SIGKILL);
    let out = running.finish(LIMIT);
    assert!(!out.status.success());
}

// ---------------------------------------------------------------------------
// Liveness

struct Supervised {
    run: Logged,
    socket: PathBuf,
}

impl Supervised {
    fn start(dir: &Scratch, env: &[(&str, &str)]) -> Supervised {
        let socket = dir.path("initd.sock");
        let mut cmd = initd_pid1(["run"]);
        cmd.current_dir(&dir.0)
            .env("INITD_SOCKET", &socket)
            .env("INITD_MIGRATE", "off")
            .envs(env.iter().copied());
        Supervised {
            run: spawn_logged(&mut cmd, dir, "initd"),
            socket,
        }
    }

    fn check(&self, args: &[&str]) -> Output {
        run(check_cmd(&self.socket, args, &[]), LIMIT)
    }

    /// Checks until the readiness line starts with `prefix`.
    fn wait_ready_line(&self, prefix: &str) -> Output {
        wait_check_line(&self.socket, prefix, LIMIT, &|| self.run.stderr())
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", out.stdout))
}

#[test]
fn live_while_the_probe_fails_and_while_draining() {
    let dir = Scratch::new("conv-live");
    let port = free_port();
    // Nothing listens on the probe's port: the app is not ready, but alive.
    let probe = format!("tcp://127.0.0.1:{port}");
    let mut initd = Supervised::start(
        &dir,
        &[
            ("INITD_SERVER", "sleep 600"),
            ("INITD_HEALTH", &probe),
            ("INITD_DRAIN", "600s"),
        ],
    );
    // (Before the socket is there a check says "unhealthy: no supervisor".)
    let ready = initd.wait_ready_line(&format!("unhealthy: {probe}: "));
    assert_eq!(ready.code(), 1, "{}", ready.stdout);
    let live = initd.check(&["--live"]);
    assert_eq!(live.code(), 0, "{}", live.stdout);
    assert!(
        live.stdout.starts_with("live: unhealthy: the main child (pid "),
        "{}",
        live.stdout
    );
    let live = initd.check(&["--live", "--json"]);
    assert_eq!(live.code(), 0);
    let value = json(&live);
    assert_eq!(
        (value["live"].as_bool(), value["healthy"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(value["main_pid"].is_u64(), "{value}");
    let ready = initd.check(&["--json"]);
    assert_eq!(ready.code(), 1);
    assert_eq!(json(&ready)["state"], "unhealthy");

    // Draining: not ready, still live.
    signal(initd.run.pid(), Signal::SIGTERM);
    initd.run.wait_stderr("draining on TERM", LIMIT);
    let ready = initd.check(&[]);
    assert_eq!(ready.code(), 1);
    assert!(ready.stdout.starts_with("draining: "), "{}", ready.stdout);
    let live = initd.check(&["--live"]);
    assert_eq!(live.code(), 0, "{}", live.stdout);
    assert!(live.stdout.starts_with("live: draining: "), "{}", live.stdout);

    // A second TERM ends the drain; once initd is gone nothing is live.
    signal(initd.run.pid(), Signal::SIGTERM);
    let socket = initd.socket.clone();
    let out = initd.run.finish(LIMIT);
    assert_eq!(out.code(), 143, "{}", out.stderr);
    let live = run(check_cmd(&socket, &["--live"], &[]), LIMIT);
    assert_eq!(live.code(), 1);
    assert!(live.stdout.starts_with("not live: "), "{}", live.stdout);
    let live = run(check_cmd(&socket, &["--live", "--json"], &[]), LIMIT);
    assert_eq!(json(&live)["live"], false);
}

#[test]
fn live_during_start_up_before_there_is_a_main_child() {
    let dir = Scratch::new("conv-live-start");
    let release = dir.path("release");
    let migration = format!("sh -c 'until [ -e {} ]; do sleep 0.02; done'", release.display());
    let initd = Supervised::start(
        &dir,
        &[("INITD_MIGRATE", &migration), ("INITD_SERVER", "sleep 600")],
    );
    initd.wait_ready_line("starting: ");
    let live = initd.check(&["--live"]);
    assert_eq!(live.code(), 0, "{}", live.stdout);
    assert_eq!(live.stdout, "live: starting: migration running\n");
    fs::write(&release, "").unwrap();
    initd.wait_ready_line("running: ");
}

#[test]
fn check_flags_are_checked() {
    let socket = Path::new("/nonexistent/initd.sock");
    for args in [&["--live", "--live"][..], &["--verbose"], &["live"]] {
        let out = run(check_cmd(socket, args, &[]), LIMIT);
        // Never Docker's reserved 2 from a health check.
        assert_eq!(out.code(), 1, "{args:?}");
        assert_eq!(
            out.stderr,
            "initd: error: initd check takes only --live and --json (see initd check --help)\n"
        );
    }
}

// ---------------------------------------------------------------------------
// Migrating from tini and dumb-init

#[test]
fn tini_and_dumb_init_flags_are_answered_with_the_setting_to_use() {
    let dir = Scratch::new("conv-tini");
    let marker = dir.path("ran");
    let touch = marker.to_str().unwrap().to_string();
    for (flags, needle) in [
        (&["-s"][..], "initd does that by itself whenever it is not PID 1"),
        (&["-g"], "set INITD_SIGNAL_TARGET=group"),
        (&["-p", "SIGTERM"], "initd has no equivalent"),
        (&["-v"], "set INITD_LOG=debug"),
        (&["-vvv"], "set INITD_LOG=debug"),
        (&["-w"], "logs the orphans initd reaps"),
        (&["-e", "143"], "INITD_STOP_EXIT=zero"),
        (&["-l"], "its license is in its source"),
        (&["-c"], "that is initd's default (INITD_SIGNAL_TARGET=child)"),
        (&["--single-child"], "that is initd's default"),
        (&["-r", "15:3"], "set INITD_SIGNAL_MAP=FROM:TO"),
        (&["--rewrite", "15:3"], "set INITD_SIGNAL_MAP=FROM:TO"),
        (&["--rewrite=15:3"], "set INITD_SIGNAL_MAP=FROM:TO"),
        (&["--verbose"], "set INITD_LOG=debug"),
    ] {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["--", "touch", &touch]);
        let out = run(initd_plain(&args), LIMIT);
        assert_eq!(out.code(), 2, "{flags:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        let line = out.stderr.trim_end();
        assert!(
            line.starts_with(&format!("initd: error: {}: ", flags[0])),
            "{line}"
        );
        assert!(line.contains(needle), "{flags:?}: {line}");
        assert!(!line.contains("use: initd exec --"), "{line}");
        assert!(out.stdout.is_empty());
        assert!(!marker.exists(), "{flags:?}: the command ran");
    }
    // Their --version is initd's own.
    for flag in ["--version", "-V"] {
        let out = run(initd_plain([flag]), LIMIT);
        assert_eq!(out.code(), 0);
        assert!(out.stdout.starts_with("initd "), "{}", out.stdout);
    }
}

// ---------------------------------------------------------------------------
// Command-line hygiene

#[test]
fn help_on_an_unknown_subcommand_is_a_usage_error() {
    let out = run(initd_plain(["help", "chek"]), LIMIT);
    assert_eq!(out.code(), 2);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr
            .starts_with("initd: error: no help on \"chek\"; the subcommands are exec, run,"),
        "{}",
        out.stderr
    );
    let out = run(initd_plain(["help", "check"]), LIMIT);
    assert_eq!(out.code(), 0);
    assert!(out.stdout.contains("initd check --live"), "{}", out.stdout);
}

#[test]
fn version_names_version_and_commit_on_its_first_line() {
    let out = run(initd_plain(["--version"]), LIMIT);
    assert_eq!(out.code(), 0);
    let first = out.stdout.lines().next().unwrap();
    let words: Vec<&str> = first.split(' ').collect();
    assert_eq!(words.len(), 3, "{first}");
    assert_eq!(words[0], "initd");
    let numbers: Vec<&str> = words[1].split('.').collect();
    assert!(
        numbers.len() == 3 && numbers.iter().all(|n| n.parse::<u32>().is_ok()),
        "{first}"
    );
    assert!(words[2].starts_with('(') && words[2].ends_with(')'), "{first}");
}

#[test]
fn help_fits_80_columns_and_says_each_default_once() {
    let out = run(initd_plain(["--help"]), LIMIT);
    assert_eq!(out.code(), 0);
    for line in out.stdout.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    // Durations as people write them.
    assert!(out.stdout.contains("(default: 8s)"), "{}", out.stdout);
    assert!(!out.stdout.contains("(default: unset)"));
    let env = out.stdout.split("ENVIRONMENT\n").nth(1).unwrap();
    let env = env.split("EXIT STATUS").next().unwrap();
    // Each setting's block (its name, then its indented description) says
    // "default" at most once, and exactly once when it has one.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in env.lines() {
        if let Some(name) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            blocks.push((name.to_string(), String::new()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push_str(line.trim());
            text.push(' ');
        }
    }
    assert_eq!(blocks.len(), initd::config::SETTINGS.len());
    for (name, text) in &blocks {
        let setting = initd::config::SETTINGS.iter().find(|s| s.name == name).unwrap();
        assert!(text.matches("default").count() <= 1, "{name}: {text}");
        assert_eq!(
            text.contains(&format!("(default: {})", setting.default)),
            !setting.default.is_empty(),
            "{name}: {text}"
        );
    }
}

#[test]
fn own_lines_share_one_prefix_and_level_before_and_after_logging_is_set_up() {
    let dir = Scratch::new("conv-style");
    // Before logging (a bad setting) and after it (a warning, then a
    // command that cannot be found): the same `initd: LEVEL: ` style.
    let mut cmd = initd_pid1(["exec", "true"]);
    cmd.env("INITD_STOP_TIMEOUT", "soon");
    let before = run(cmd, LIMIT);
    assert_eq!(before.code(), 78);
    assert!(
        before
            .stderr
            .starts_with("initd: error: INITD_STOP_TIMEOUT=\"soon\": expected"),
        "{}",
        before.stderr
    );
    let mut cmd = initd_pid1(["exec", "no-such-command-xyz"]);
    cmd.current_dir(&dir.0);
    let after = run(cmd, LIMIT);
    assert_eq!(after.code(), 127);
    assert!(after.stderr.starts_with("initd: error: "), "{}", after.stderr);
    // The usage error of a bad command line too.
    let out = run(initd_plain(["-x"]), LIMIT);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.starts_with("initd: error: unknown option -x"),
        "{}",
        out.stderr
    );

    // In JSON, both are JSON objects with the same fields.
    let mut cmd = initd_pid1(["exec", "true"]);
    cmd.env("INITD_STOP_TIMEOUT", "soon")
        .env("INITD_LOG_FORMAT", "json");
    let before = run(cmd, LIMIT);
    let mut cmd = initd_pid1(["exec", "no-such-command-xyz"]);
    cmd.env("INITD_LOG_FORMAT", "json");
    let after = run(cmd, LIMIT);
    let keys = |text: &str| -> Vec<String> {
        let value: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap()).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(value["level"], "ERROR", "{text}");
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&before.stderr), keys(&after.stderr));
}

#[test]
fn json_log_fields_that_are_numbers_are_numbers() {
    let dir = Scratch::new("conv-json");
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_LOG", "debug")
        .env("INITD_LOG_FORMAT", "json")
        .env("INITD_MIGRATE", "true")
        .env("INITD_SERVER", "true");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let mut pids = 0;
    for line in out.stderr.lines().filter(|l| l.starts_with('{')) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(pid) = value.get("pid") {
            assert!(pid.is_u64(), "{line}");
            pids += 1;
        }
    }
    assert!(pids > 0, "no line with a pid:\n{}", out.stderr);
}

#[test]
fn durations_are_printed_as_people_write_them() {
    let dir = Scratch::new("conv-dur");
    let socket = dir.path("none.sock");
    let mut cmd = Command::new(INITD);
    realistic_env(&mut cmd);
    cmd.arg("config")
        .current_dir(&dir.0)
        .env("INITD_ALLOW_ROOT", "true")
        .env("INITD_SOCKET", &socket)
        .env("INITD_MIGRATE", "off")
        .env("INITD_SERVER", "sleep 1")
        .env("INITD_HEALTH", "tcp://127.0.0.1:1")
        .env("INITD_HEALTH_TIMEOUT", "1500ms")
        .env("INITD_DRAIN", "2500ms");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("tests tcp://127.0.0.1:1 (within 1.5s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("checks fail for 2.5s (INITD_DRAIN)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("1500ms") || out.stdout.contains("\"1500ms\""));
}

// ---------------------------------------------------------------------------
// Fault signals from outside (docs/pid1.md)

#[test]
fn a_fault_signal_from_outside_is_discarded_by_pid1_but_ends_a_plain_initd() {
    // As PID 1 (no handler): the kernel drops it; the app runs on.
    let dir = Scratch::new("conv-fault");
    let mut cmd = initd_pid1(["sleep", "600"]);
    let running = spawn_logged(&mut cmd, &dir, "pid1");
    let pid = running.pid();
    wait_for(LIMIT, || has_child(pid).then_some(()));
    signal(pid, Signal::SIGSEGV);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        has_child(pid),
        "PID 1 or its child ended on a SEGV from outside:\n{}",
        running.stderr()
    );
    signal(pid, Signal::SIGTERM);
    let out = running.finish(LIMIT);
    assert_eq!(out.code(), 143, "{}", out.stderr);

    // Not PID 1: initd ends of the signal itself; its child is left running.
    // SEGV and BUS pass the Rust runtime's stack-overflow guard first, which
    // lets the first one sent from outside through and restores the
    // default action: the second one ends initd.
    use std::os::unix::process::ExitStatusExt;
    for (sig, times) in [(Signal::SIGABRT, 1), (Signal::SIGFPE, 1), (Signal::SIGSEGV, 2)] {
        let mut cmd = initd_plain(["sleep", "600"]);
        let running = spawn_logged(&mut cmd, &dir, "plain");
        let pid = running.pid();
        let child = wait_for(LIMIT, || {
            initd::procfs::snapshot()
                .iter()
                .find(|s| s.ppid == pid)
                .map(|s| s.pid)
        });
        let orphan = PidFd::open(child).expect("the child runs");
        for _ in 0..times {
            signal(pid, sig);
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = running.finish(LIMIT);
        assert_eq!(out.status.signal(), Some(sig as i32), "{sig}: {:?}", out.status);
        assert!(
            orphan.signal(Signal::SIGKILL).is_ok(),
            "{sig}: the child went with initd"
        );
    }
}
