//! A Flask project as its developers write it, served by the real Flask and
//! gunicorn from PyPI with initd as PID 1 of a pid namespace: `initd run`
//! finds the app by the rules `flask run` follows (FLASK_APP, wsgi.py,
//! app.py, a factory) and gunicorn answers a real request; `initd dev` runs
//! `flask run` from FLASK_APP and serves each edit, however the editor
//! saves it.
//!
//! Flask and gunicorn are installed once into a virtualenv in cargo's
//! scratch directory for tests (`target/<triple>/tmp/flask-venv`), reused
//! by later runs. Where
//! that cannot be made (no `python3 -m venv`, no network to PyPI) every
//! test prints a note and passes without checking anything.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);
/// What the tests install: Flask 3 and a gunicorn that calls factories.
const PACKAGES: [&str; 2] = ["flask>=3,<4", "gunicorn>=22,<24"];

// ---------------------------------------------------------------------------
// The virtualenv

/// The virtualenv's `bin`, made on first use; None (with a note) when it
/// cannot be made here.
fn venv(test: &str) -> Option<PathBuf> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static MAKING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    match VENV.get_or_init(make_venv) {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            note(&format!("{test}: skipped, no Flask to test with: {why}"));
            None
        }
    }
}

fn make_venv() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flask-venv");
    let bin = dir.join("bin");
    // Written last: a venv without it was cut short and is made again.
    let ready = dir.join("initd-ready");
    let wanted = PACKAGES.join(" ");
    if fs::read_to_string(&ready).is_ok_and(|text| text == wanted) {
        return Ok(bin);
    }
    // Other test binaries may be making it too: one at a time, by lock.
    fs::create_dir_all(dir.parent().unwrap()).map_err(|e| e.to_string())?;
    let lock_file = fs::File::create(dir.with_extension("lock")).map_err(|e| e.to_string())?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("locking the virtualenv: {e}"))?;
    if fs::read_to_string(&ready).is_ok_and(|text| text == wanted) {
        return Ok(bin);
    }
    let _ = fs::remove_dir_all(&dir);
    let step = |program: &Path, args: &[&str]| -> Result<(), String> {
        let out = Command::new(program)
            .args(args)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{} {}` failed: {}",
                program.display(),
                args.join(" "),
                tail(&String::from_utf8_lossy(&out.stderr))
            ))
        }
    };
    note(&format!(
        "tests/flask.rs: installing {wanted} from PyPI into {}",
        dir.display()
    ));
    step(Path::new("python3"), &["-m", "venv", dir.to_str().unwrap()])?;
    let mut install = vec!["install", "--quiet"];
    install.extend(PACKAGES);
    step(&bin.join("pip"), &install)?;
    fs::write(&ready, &wanted).map_err(|e| e.to_string())?;
    Ok(bin)
}

// ---------------------------------------------------------------------------
// Helpers

/// A Flask project directory with initd commands for it.
struct Project {
    scratch: Scratch,
    bin: PathBuf,
    port: u16,
}

impl Project {
    fn new(tag: &str, bin: PathBuf) -> Project {
        let scratch = Scratch::new(tag);
        fs::create_dir(scratch.path("app")).unwrap();
        Project {
            scratch,
            bin,
            port: free_port(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.scratch.path("app")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    /// initd as PID 1 in the project, the virtualenv first in PATH as its
    /// Dockerfile would put it, one gunicorn worker (the machine is shared).
    fn initd(&self, args: &[&str]) -> Command {
        let mut cmd = initd_pid1(args);
        cmd.current_dir(self.dir())
            .env("HOME", &self.scratch.0)
            .env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.bin.display()),
            )
            .env("PORT", self.port.to_string())
            .env("INITD_WORKERS", "1");
        cmd
    }

    fn start(&self, args: &[&str], env: &[(&str, &str)], tag: &str) -> Logged {
        let mut cmd = self.initd(args);
        cmd.envs(env.iter().copied());
        spawn_logged(&mut cmd, &self.scratch, tag)
    }

    fn wait_body(&self, initd: &mut Logged, body: &str) {
        initd.wait_until(&format!("answering {body:?}"), LIMIT, |_| {
            get(self.port).as_deref() == Some(body)
        });
    }
}

/// Stops initd with SIGTERM; its output, after checking it exited 0.
fn stop(initd: Logged) -> Output {
    signal(initd.pid(), Signal::SIGTERM);
    let out = initd.finish(LIMIT);
    assert_eq!(out.code(), 0, "{}", tail(&out.stderr));
    out
}

/// A Flask module with an `app` answering `body`.
fn flask_app(body: &str) -> String {
    format!(
        "from flask import Flask\n\
         \n\
         app = Flask(__name__)\n\
         \n\
         \n\
         @app.route('/')\n\
         def index():\n\
         \x20   return {body:?}\n"
    )
}

/// A Flask module with a `create_app(greeting='factory')` factory, as the
/// Flask tutorial writes it.
const FACTORY: &str = "from flask import Flask\n\
                       \n\
                       \n\
                       def create_app(greeting='factory'):\n\
                       \x20   app = Flask(__name__)\n\
                       \n\
                       \x20   @app.route('/')\n\
                       \x20   def index():\n\
                       \x20       return greeting\n\
                       \n\
                       \x20   return app\n";

/// `initd run` serves the project: the app answers `body`, and the start
/// line shows `target` as gunicorn's app.
fn served_by_initd_run(test: &str, files: &[(&str, &str)], env: &[(&str, &str)], target: &str, body: &str) {
    let Some(bin) = venv(test) else { return };
    let p = Project::new(test, bin);
    for (name, text) in files {
        p.write(name, text);
    }
    let mut initd = p.start(&["run"], env, "run");
    p.wait_body(&mut initd, body);
    let out = stop(initd);
    let start = out
        .stderr
        .lines()
        .find(|l| l.starts_with("initd: starting server: gunicorn "))
        .unwrap_or_else(|| panic!("no start line:\n{}", out.stderr));
    // Quoted as a shell would need it.
    let shown = initd::cmdline::join(&[target.to_string()]);
    assert!(start.ends_with(&format!(" {shown}")), "{start}");
}

// ---------------------------------------------------------------------------
// initd run: which app gunicorn serves

#[test]
fn app_py_with_an_app_is_served() {
    served_by_initd_run(
        "flask-app-py",
        &[("app.py", &flask_app("from app.py"))],
        &[],
        "app:app",
        "from app.py",
    );
}

#[test]
fn a_factory_in_app_py_is_called() {
    served_by_initd_run(
        "flask-factory",
        &[("app.py", FACTORY)],
        &[],
        "app:create_app()",
        "factory",
    );
}

#[test]
fn wsgi_py_importing_app_py_is_the_entry_point() {
    served_by_initd_run(
        "flask-wsgi-py",
        &[
            ("app.py", FACTORY),
            (
                "wsgi.py",
                "from app import create_app\n\napplication = create_app('wsgi.py')\n",
            ),
        ],
        &[],
        "wsgi:application",
        "wsgi.py",
    );
}

#[test]
fn flask_app_names_a_module() {
    served_by_initd_run(
        "flask-app-module",
        &[
            ("hello.py", &flask_app("hello")),
            ("app.py", "raise SystemExit('not me')\n"),
        ],
        &[("FLASK_APP", "hello")],
        "hello:app",
        "hello",
    );
}

#[test]
fn flask_app_names_a_factory_with_arguments() {
    served_by_initd_run(
        "flask-app-call",
        &[("shop/__init__.py", FACTORY)],
        &[("FLASK_APP", "shop:create_app(greeting='from FLASK_APP')")],
        "shop:create_app(greeting='from FLASK_APP')",
        "from FLASK_APP",
    );
}

#[test]
fn flask_app_naming_a_factory_without_parentheses_calls_it() {
    // `flask run` calls it; gunicorn would serve the function itself.
    served_by_initd_run(
        "flask-app-name",
        &[("shop.py", FACTORY)],
        &[("FLASK_APP", "shop.py:create_app")],
        "shop:create_app()",
        "factory",
    );
}

#[test]
fn two_apps_are_an_error_that_says_how_to_choose() {
    let test = "two_apps_are_an_error_that_says_how_to_choose";
    let Some(bin) = venv(test) else { return };
    let p = Project::new("flask-two", bin);
    p.write("app.py", &flask_app("app.py"));
    p.write(
        "wsgi.py",
        "def application(environ, start_response):\n\
         \x20   start_response('200 OK', [])\n\
         \x20   return [b'wsgi.py']\n",
    );
    let out = run(p.initd(&["run"]), LIMIT);
    assert_eq!(out.code(), 78, "{}", out.stderr);
    let expected = format!(
        "initd: error: INITD_APP is unset and {} holds several WSGI apps (wsgi:application in wsgi.py, \
         app:app in app.py); set INITD_APP to the one to run, e.g. INITD_APP=wsgi:application",
        p.dir().display()
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.ends_with(&expected["initd: error: ".len()..])),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("starting server"), "{}", out.stderr);
    assert!(get(p.port).is_none());

    // `initd config` says it once (it used to print it on stdout and stderr).
    let out = run(p.initd(&["config"]), LIMIT);
    assert_eq!(out.code(), 78);
    let all = out.stdout.clone() + &out.stderr;
    assert_eq!(all.matches("holds several WSGI apps").count(), 1, "{all}");
    assert_eq!(out.stderr.trim(), expected);

    // INITD_APP chooses.
    let mut initd = p.start(&["run"], &[("INITD_APP", "wsgi:application")], "chosen");
    p.wait_body(&mut initd, "wsgi.py");
    stop(initd);
}

#[test]
fn initd_config_shows_which_rule_found_the_app() {
    let Some(bin) = venv("initd_config_shows_which_rule_found_the_app") else {
        return;
    };
    let p = Project::new("flask-config", bin);
    p.write("app.py", FACTORY);
    let out = run(p.initd(&["config"]), LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("# the WSGI app is taken from app.py at the root, its factory create_app()\n"),
        "{}",
        out.stdout
    );
    let setting = out
        .stdout
        .lines()
        .find(|l| l.starts_with("pythonunbuffered = "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        setting.starts_with("pythonunbuffered = \"1\" ") && setting.ends_with("# default"),
        "{setting}"
    );
    assert!(
        out.stdout.contains(
            "# environment: PYTHONUNBUFFERED=1 (initd's default; set PYTHONUNBUFFERED to change it, \
             empty to turn it off)\n"
        ),
        "{}",
        out.stdout
    );
    // Set, the environment's value shows with its source.
    let mut cmd = p.initd(&["config"]);
    cmd.env("PYTHONUNBUFFERED", "");
    let out = run(cmd, LIMIT);
    assert!(out.stdout.contains("pythonunbuffered = \"\""), "{}", out.stdout);
    assert!(out.stdout.contains("# env PYTHONUNBUFFERED"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("# environment: PYTHONUNBUFFERED"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// The Python environment

/// An app that prints a line when imported (to stdout, a pipe or a file in
/// a container: block-buffered unless PYTHONUNBUFFERED is set) and answers
/// with the two variables.
const ENV_APP: &str = "import os, sys\n\
                       from flask import Flask\n\
                       \n\
                       print('imported app.py')\n\
                       app = Flask(__name__)\n\
                       \n\
                       \n\
                       @app.route('/')\n\
                       def index():\n\
                       \x20   get = lambda name: os.environ.get(name, '(unset)')\n\
                       \x20   return f\"{get('PYTHONUNBUFFERED')}|{get('PYTHONDONTWRITEBYTECODE')}\"\n";

#[test]
fn pythonunbuffered_reaches_the_app_and_its_output_is_not_held_back() {
    let Some(bin) = venv("pythonunbuffered_reaches_the_app_and_its_output_is_not_held_back") else {
        return;
    };
    let p = Project::new("flask-unbuffered", bin);
    p.write("app.py", ENV_APP);
    let mut initd = p.start(&["run"], &[], "run");
    p.wait_body(&mut initd, "1|(unset)");
    // Printed while gunicorn still runs, not when it exits.
    let stdout = p.scratch.path("run.stdout");
    initd.wait_until("printing `imported app.py`", LIMIT, |_| {
        fs::read_to_string(&stdout)
            .unwrap_or_default()
            .contains("imported app.py")
    });
    stop(initd);

    // Set, even empty, it is the user's.
    let mut initd = p.start(&["run"], &[("PYTHONUNBUFFERED", "")], "empty");
    p.wait_body(&mut initd, "|(unset)");
    stop(initd);
}

// ---------------------------------------------------------------------------
// initd dev: flask run, reloads

const STARTED: &str = "initd: starting the dev server: ";

fn count(initd: &Logged, needle: &str) -> usize {
    initd.stderr().lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn initd_dev_runs_flask_run_from_flask_app_and_reloads_on_edit() {
    let Some(bin) = venv("initd_dev_runs_flask_run_from_flask_app_and_reloads_on_edit") else {
        return;
    };
    let p = Project::new("flask-dev", bin);
    p.write("hello.py", ENV_APP);
    let mut initd = p.start(
        &["dev"],
        &[("AUTO_START_SERVER", "true"), ("FLASK_APP", "hello")],
        "dev",
    );
    p.wait_body(&mut initd, "1|1");
    assert!(
        initd.stderr().contains(&format!(
            "{STARTED}flask run --host 0.0.0.0 --port {} --no-reload",
            p.port
        )),
        "{}",
        initd.stderr()
    );
    p.write("hello.py", &flask_app("edited"));
    p.wait_body(&mut initd, "edited");
    assert_eq!(count(&initd, STARTED), 2, "{}", initd.stderr());
    stop(initd);
    assert!(!p.dir().join("__pycache__").exists(), "dev mode wrote bytecode");
}

#[test]
fn initd_dev_without_flask_app_serves_app_py_with_gunicorn() {
    let Some(bin) = venv("initd_dev_without_flask_app_serves_app_py_with_gunicorn") else {
        return;
    };
    let p = Project::new("flask-dev-gunicorn", bin);
    p.write("app.py", FACTORY);
    let mut initd = p.start(&["dev"], &[("AUTO_START_SERVER", "true")], "dev");
    p.wait_body(&mut initd, "factory");
    let err = initd.stderr();
    let line = err.lines().find(|l| l.starts_with(STARTED)).unwrap();
    assert!(line.starts_with(&format!("{STARTED}gunicorn ")), "{line}");
    assert!(line.ends_with(" 'app:create_app()'"), "{line}");
    assert!(line.contains("--workers 1 "), "{line}");
    stop(initd);
}

/// Sets `path`'s mtime to `to`, as an edit made within the same second as
/// the previous one leaves it.
fn set_mtime(path: &Path, to: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(to)
        .unwrap();
}

#[test]
fn a_same_size_edit_within_the_same_second_is_served_after_the_restart() {
    let Some(bin) = venv("a_same_size_edit_within_the_same_second_is_served_after_the_restart") else {
        return;
    };
    let p = Project::new("flask-dev-same-second", bin);
    let file = p.write("hello.py", &flask_app("v1"));
    let first = fs::metadata(&file).unwrap().modified().unwrap();
    let mut initd = p.start(
        &["dev"],
        &[("AUTO_START_SERVER", "true"), ("FLASK_APP", "hello")],
        "dev",
    );
    p.wait_body(&mut initd, "v1");
    // Same size, and the mtime's second unchanged: all Python compares
    // before trusting a cached module.
    fs::write(&file, flask_app("v2")).unwrap();
    set_mtime(&file, first);
    initd.wait_until("restarting", LIMIT, |l| count(l, STARTED) >= 2);
    p.wait_body(&mut initd, "v2");
    stop(initd);
}

#[test]
fn a_truncate_then_write_save_is_served() {
    let Some(bin) = venv("a_truncate_then_write_save_is_served") else {
        return;
    };
    let p = Project::new("flask-dev-truncate", bin);
    let file = p.write("hello.py", &flask_app("v1"));
    let mut initd = p.start(
        &["dev"],
        &[("AUTO_START_SERVER", "true"), ("FLASK_APP", "hello")],
        "dev",
    );
    p.wait_body(&mut initd, "v1");
    // An editor that empties the file, then writes it: here the gap is
    // long enough for a restart to import the empty module in between,
    // and Flask to give up on it.
    let mut out = fs::File::create(&file).unwrap();
    initd.wait_stderr(
        "Failed to find Flask application or factory in module 'hello'",
        LIMIT,
    );
    out.write_all(flask_app("v2 after truncation").as_bytes())
        .unwrap();
    drop(out);
    p.wait_body(&mut initd, "v2 after truncation");

    // Write a temporary file, then rename it over the module.
    let temp = p.write("hello.py.tmp", &flask_app("v3 renamed"));
    fs::rename(&temp, &file).unwrap();
    p.wait_body(&mut initd, "v3 renamed");
    // Still serving a moment later: no failed start left behind.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(get(p.port).as_deref(), Some("v3 renamed"), "{}", initd.stderr());
    stop(initd);
}

#[test]
fn a_burst_of_truncating_saves_ends_with_the_last_one_served() {
    // Truncate-then-write saves every 60 ms for 3 s: each is within the
    // debounce window, so a restart happens at the 2 s cap while the saves
    // go on (and the server may import an empty module); the server must
    // end up serving the last one.
    let Some(bin) = venv("a_burst_of_truncating_saves_ends_with_the_last_one_served") else {
        return;
    };
    let p = Project::new("flask-dev-burst", bin);
    let file = p.write("hello.py", &flask_app("v0"));
    let mut initd = p.start(
        &["dev"],
        &[("AUTO_START_SERVER", "true"), ("FLASK_APP", "hello")],
        "dev",
    );
    p.wait_body(&mut initd, "v0");
    let until = Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        fs::write(&file, "").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        fs::write(&file, flask_app(&format!("v{n}"))).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    p.wait_body(&mut initd, &format!("v{n}"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(get(p.port), Some(format!("v{n}")), "{}", initd.stderr());
    stop(initd);
}
