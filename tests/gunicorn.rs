//! The gunicorn command initd builds, run by the real gunicorn: the flags
//! must be ones it accepts, and they must mean to it what initd means by
//! them. Each test is skipped, with a note, where gunicorn is not installed
//! (`apt-get install gunicorn` or `pip install gunicorn`).

mod common;

use common::free_port;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use initd::gunicorn::{ServerInputs, ServerPlan, plan};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const STOP_TIMEOUT: Duration = Duration::from_secs(8);

/// gunicorn's version line, or None (with a note) when it is not installed.
fn gunicorn(test: &str) -> Option<String> {
    match Command::new("gunicorn").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            eprintln!("{test}: using {version}");
            Some(version)
        }
        _ => {
            eprintln!("{test}: skipped, gunicorn is not installed");
            None
        }
    }
}

fn has_option(option: &str) -> bool {
    let help = Command::new("gunicorn").arg("--help").output().unwrap();
    String::from_utf8_lossy(&help.stdout).contains(option)
}

/// A Django-shaped project: `mysite/wsgi.py` in a fresh directory.
fn project(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("initd-gunicorn-it-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("mysite")).unwrap();
    fs::write(
        dir.join("mysite").join("wsgi.py"),
        "def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [b'hello from initd\\n']\n",
    )
    .unwrap();
    dir
}

fn plan_in(dir: &Path, vars: &[(&str, &str)]) -> ServerPlan {
    let env = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    plan(&ServerInputs::gather(env, STOP_TIMEOUT, dir)).unwrap()
}

/// gunicorn with `argv` in `dir`, untouched by this machine's own gunicorn
/// settings.
fn command(argv: &[String], dir: &Path) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(dir)
        .env_remove("GUNICORN_CMD_ARGS")
        .env_remove("WEB_CONCURRENCY")
        .env_remove("FORWARDED_ALLOW_IPS");
    cmd
}

/// `--print-config` as `name = value` pairs.
fn print_config(argv: &[String], dir: &Path) -> Vec<(String, String)> {
    let out = command(argv, dir).arg("--print-config").output().unwrap();
    assert_success(&out, argv);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(" = ")?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

fn setting(config: &[(String, String)], name: &str) -> String {
    config
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{name} not in --print-config"))
}

fn assert_success(out: &Output, argv: &[String]) {
    assert!(
        out.status.success(),
        "{argv:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gunicorn_accepts_the_defaults() {
    let Some(_) = gunicorn("gunicorn_accepts_the_defaults") else {
        return;
    };
    let dir = project("check");
    let port = free_port().to_string();
    let p = plan_in(
        &dir,
        &[("PORT", &port), ("INITD_FORWARDED_ALLOW_IPS", "10.0.0.0/8")],
    );
    assert!(p.argv.iter().any(|a| a == "--graceful-timeout"), "{:?}", p.argv);

    // --check-config loads the app too, so this also proves the detected
    // `mysite.wsgi:application` resolves.
    if has_option("--check-config") {
        let out = command(&p.argv, &dir).arg("--check-config").output().unwrap();
        assert_success(&out, &p.argv);
    }
    if has_option("--print-config") {
        let config = print_config(&p.argv, &dir);
        assert_eq!(setting(&config, "bind"), format!("['0.0.0.0:{port}']"));
        assert_eq!(setting(&config, "workers"), p.workers.unwrap().to_string());
        assert_eq!(setting(&config, "accesslog"), "-");
        assert_eq!(setting(&config, "errorlog"), "-");
        assert_eq!(setting(&config, "graceful_timeout"), "7");
        assert_eq!(setting(&config, "forwarded_allow_ips"), "['10.0.0.0/8']");
        if Path::new("/dev/shm").is_dir() {
            assert_eq!(setting(&config, "worker_tmp_dir"), "/dev/shm");
        }
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_users_gunicorn_settings_win() {
    let Some(_) = gunicorn("the_users_gunicorn_settings_win") else {
        return;
    };
    if !has_option("--print-config") {
        eprintln!("the_users_gunicorn_settings_win: skipped, this gunicorn has no --print-config");
        return;
    }
    let dir = project("override");

    // Why initd leaves its own flag out rather than relying on "the last
    // occurrence wins": that holds for --workers, but gunicorn listens on
    // every --bind it is given.
    let twice: Vec<String> = [
        "gunicorn",
        "--bind",
        "0.0.0.0:8000",
        "--workers",
        "5",
        "mysite.wsgi",
        "--bind",
        "127.0.0.1:9000",
        "-w",
        "3",
    ]
    .map(String::from)
    .to_vec();
    let config = print_config(&twice, &dir);
    assert_eq!(setting(&config, "workers"), "3");
    assert_eq!(setting(&config, "bind"), "['0.0.0.0:8000', '127.0.0.1:9000']");

    let p = plan_in(
        &dir,
        &[(
            "GUNICORN_ARGUMENTS",
            "-b 127.0.0.1:9000 -w 3 --graceful-timeout=30",
        )],
    );
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    let config = print_config(&p.argv, &dir);
    assert_eq!(setting(&config, "bind"), "['127.0.0.1:9000']");
    assert_eq!(setting(&config, "workers"), "3");
    assert_eq!(setting(&config, "graceful_timeout"), "30");

    // gunicorn ranks its command line above its config file, so initd
    // leaves out what the file sets.
    fs::write(
        dir.join("gunicorn.conf.py"),
        "workers = 4\nbind = '127.0.0.1:9001'\n",
    )
    .unwrap();
    let p = plan_in(&dir, &[]);
    let config = print_config(&p.argv, &dir);
    assert_eq!(setting(&config, "workers"), "4");
    assert_eq!(setting(&config, "bind"), "['127.0.0.1:9001']");
    assert_eq!(setting(&config, "graceful_timeout"), "7");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gunicorn_serves_logs_to_stdout_and_stops_on_term() {
    let Some(_) = gunicorn("gunicorn_serves_logs_to_stdout_and_stops_on_term") else {
        return;
    };
    let dir = project("serve");
    let port = free_port();
    let p = plan_in(&dir, &[("PORT", &port.to_string()), ("INITD_WORKERS", "2")]);
    let stdout = dir.join("stdout");
    let stderr = dir.join("stderr");
    let mut child = command(&p.argv, &dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let logs = || {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            fs::read_to_string(&stdout).unwrap_or_default(),
            fs::read_to_string(&stderr).unwrap_or_default()
        )
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) {
            conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            conn.write_all(b"GET /hello HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            conn.read_to_string(&mut response).unwrap();
            break response;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("gunicorn exited with {status} before serving\n{}", logs());
        }
        assert!(Instant::now() < deadline, "gunicorn never listened\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.ends_with("hello from initd\n"), "{response}");

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gunicorn did not stop within INITD_STOP_TIMEOUT\n{}", logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}\n{}", logs());

    // The access log went to stdout and gunicorn's own log to stderr.
    let out = fs::read_to_string(&stdout).unwrap();
    let err = fs::read_to_string(&stderr).unwrap();
    assert!(out.contains("\"GET /hello HTTP/1.0\" 200"), "{}", logs());
    assert!(
        err.contains(&format!("Listening at: http://0.0.0.0:{port}")),
        "{}",
        logs()
    );
    assert!(!err.contains("GET /hello"), "{}", logs());
    fs::remove_dir_all(dir).unwrap();
}
