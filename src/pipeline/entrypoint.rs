//! The entrypoint pipeline shared by `initd run` and `initd exec`:
//! secrets, configuration, the app user, dependencies, migrations and
//! pre-start commands, then the main command — each phase only after the
//! previous one succeeded, and none after a stop.
//!
//! Everything that can be checked is checked before anything starts (the
//! plan), so a bad setting never leaves a half-started app behind.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::cmdline;
use crate::config::{self, Loaded, Migrate, MigrateLock, Settings};
use crate::health::cmdprobe;
use crate::health::control;
use crate::health::probe::Probe;
use crate::logging;
use crate::net::dns;
use crate::net::netio;
use crate::net::waitfor;
use crate::pid1::child;
use crate::pid1::exit;
use crate::pid1::exit::Halt;
use crate::pid1::launch::Launcher;
use crate::pid1::resolve;
use crate::pid1::signals;
use crate::pid1::status::{LockHolder, LockWait, Phase, Status};
use crate::pid1::steps;
use crate::pid1::supervisor::{MainKind, Policy, Supervisor};
use crate::pipeline::gunicorn;
use crate::pipeline::handover;
use crate::pipeline::migrate_lock;
use crate::pipeline::role::{self, Role};
use crate::pipeline::secrets::{self, Redactor};
use crate::pipeline::user::{self, AppUser, DropDecision};

/// What the pipeline ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Main {
    /// `initd run`: the server from the settings.
    Server,
    /// `initd exec`: this command, after secrets and the user only.
    Command(Vec<OsString>),
    /// `initd dev`: setup, watchers, and the dev server when
    /// AUTO_START_SERVER is on.
    Dev,
}

/// Everything decided before anything starts.
pub struct Plan {
    pub user: UserPlan,
    pub wait_for: Vec<waitfor::Target>,
    /// (what, argv, whether the migration lock is held around it)
    pub steps: Vec<Step>,
    pub main: Vec<String>,
    pub main_kind: MainKind,
    /// How gunicorn's WSGI app was chosen (INITD_APP, FLASK_APP, a file).
    pub app_rule: Option<String>,
    /// Variables every command gets unless the environment sets them:
    /// (name, value).
    pub env_defaults: Vec<(&'static str, &'static str)>,
    pub warnings: Vec<String>,
    /// Dev mode's own parts.
    pub dev: Option<DevParts>,
    /// The control socket, the probe and the drain.
    pub health: config::Health,
}

pub struct DevParts {
    pub setup: Vec<config::SetupStep>,
    pub plan: crate::dev::devloop::DevPlan,
}

pub struct Step {
    pub what: String,
    pub argv: Vec<String>,
    pub locked: bool,
}

pub struct UserPlan {
    pub decision: DropDecision,
    pub host_uid: Option<u32>,
    pub host_gid: Option<u32>,
    pub chown: Vec<PathBuf>,
}

impl UserPlan {
    pub fn user(&self) -> &AppUser {
        match &self.decision {
            DropDecision::Skip(u) | DropDecision::Drop(u) => u,
        }
    }
}

/// The environment after secrets, the configuration, and a redactor for
/// every line initd prints from here on.
pub struct Prepared {
    pub env: Vec<(OsString, OsString)>,
    /// The `*_FILE` variables that are not secrets, for `initd config`.
    pub left_alone: Vec<secrets::LeftAlone>,
    pub loaded: Loaded,
    pub redactor: Arc<Redactor>,
    pub cwd: PathBuf,
}

/// Reads secrets and settings. Errors are printed (redacted) and mapped to
/// an exit status; logging is not set up yet, so they go to stderr plainly.
pub fn prepare() -> Result<Prepared, Halt> {
    // The secrets are about to be in initd's memory: no core file may carry
    // them to disk, and nobody but root may read that memory through
    // /proc/PID/mem, ptrace or /proc/PID/environ (with `USER app`, the app
    // runs under initd's own uid). The children are not affected: exec
    // makes a process dumpable again.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        return Err(Halt::error(
            exit::INTERNAL,
            format!("cannot make initd's memory private (PR_SET_DUMPABLE): {e}"),
        ));
    }
    // Read before the secrets, which they are about.
    let selection = secrets::Selection::from_env().map_err(|e| Halt::error(exit::CONFIG, e.to_string()))?;
    let resolved = secrets::resolve(std::env::vars_os(), &selection)
        .map_err(|e| Halt::error(exit::CONFIG, e.to_string()))?;
    let redactor = Arc::new(Redactor::new(&resolved.secrets));
    let names: Vec<String> = resolved.secrets.iter().map(|s| s.name.clone()).collect();
    let loaded = config::load(&resolved.env, &names)
        .map_err(|e| Halt::error(exit::CONFIG, redactor.redact(&e.to_string())))?;
    // Every command inherits initd's directory. One that is gone (removed
    // under a `docker exec`'s feet) is replaced by / for initd and so for them.
    let cwd = std::env::current_dir().unwrap_or_else(|_| {
        let root = PathBuf::from("/");
        let _ = std::env::set_current_dir(&root);
        root
    });
    Ok(Prepared {
        env: resolved.env,
        left_alone: resolved.left_alone,
        loaded,
        redactor,
        cwd,
    })
}

/// Works out the whole plan without side effects.
pub fn plan(prepared: &Prepared, main: &Main) -> Result<Plan, Halt> {
    let settings = &prepared.loaded.settings;
    let p = &settings.pipeline;
    let user = plan_user(settings).map_err(|e| Halt::error(exit::NOPERM, e.to_string()))?;
    let mut warnings = settings.signal_map.warnings();
    let mut steps = Vec::new();
    let mut dev = None;
    let mut app_rule = None;
    let (main_argv, main_kind) = match main {
        Main::Command(argv) => (
            argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            MainKind::Command,
        ),
        Main::Server => {
            steps.extend(pre_start_steps(prepared, &mut warnings)?);
            let server = server_plan(prepared).map_err(|e| Halt::error(exit::CONFIG, e))?;
            warnings.extend(server.warnings);
            app_rule = server.app_rule;
            (server.argv, MainKind::Server)
        }
        Main::Dev => {
            let d = &p.dev;
            let server = if d.auto_start_server {
                steps.extend(pre_start_steps(prepared, &mut warnings)?);
                Some(dev_server(prepared).map_err(|e| Halt::error(exit::CONFIG, e))?)
            } else {
                None
            };
            let roots = if d.reload_paths.is_empty() {
                vec![prepared.cwd.clone()]
            } else {
                d.reload_paths.iter().map(|r| prepared.cwd.join(r)).collect()
            };
            let mut filter = crate::dev::filter::Filter::default();
            if let Some(include) = &d.reload_include {
                filter.include = include.clone();
            }
            if let Some(ignore) = &d.reload_ignore {
                filter.ignore = ignore.clone();
            }
            let main = server.clone().unwrap_or_default();
            dev = Some(DevParts {
                setup: d.setup.clone(),
                plan: crate::dev::devloop::DevPlan {
                    watchers: d.watchers.clone(),
                    server,
                    reload_roots: roots,
                    filter,
                    poll: d.reload_poll,
                },
            });
            (main, MainKind::DevServer)
        }
    };
    // Every command must exist before the first one starts (watchers may
    // be installed by the dev setup, so they are looked up when started).
    let path = prepared
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let setup = dev.iter().flat_map(|d| d.setup.iter().map(|s| &s.argv));
    let main_cmd = (!main_argv.is_empty()).then_some(&main_argv);
    let health = &settings.health;
    let probe_cmd = match &health.probe {
        // Only the entrypoint serves checks, but which initd this is is
        // not known yet; a guest shares the entrypoint's PATH anyway.
        Probe::Cmd(argv) if health.socket.is_some() => Some(argv),
        _ => None,
    };
    for argv in setup
        .chain(steps.iter().map(|s| &s.argv))
        .chain(main_cmd)
        .chain(probe_cmd)
    {
        resolve::resolve(argv[0].as_ref(), path, &prepared.cwd)
            .map_err(|e| Halt::error(e.exit_code(), e.to_string()))?;
    }
    Ok(Plan {
        user,
        wait_for: match main {
            Main::Server => p.wait_for.clone(),
            Main::Dev if p.dev.auto_start_server => p.wait_for.clone(),
            _ => Vec::new(),
        },
        steps,
        main: main_argv,
        main_kind,
        app_rule,
        env_defaults: env_defaults(&prepared.loaded.layers, main),
        warnings,
        dev,
        health: health.clone(),
    })
}

/// The migration (auto-detected or configured) and the pre-start commands.
fn pre_start_steps(prepared: &Prepared, warnings: &mut Vec<String>) -> Result<Vec<Step>, Halt> {
    let p = &prepared.loaded.settings.pipeline;
    let mut steps = Vec::new();
    let migrate = match &p.migrate {
        Migrate::Off => None,
        Migrate::Command(argv) => Some(argv.clone()),
        Migrate::Auto => prepared.cwd.join("manage.py").is_file().then(|| {
            ["python", "manage.py", "migrate", "--noinput"]
                .map(String::from)
                .to_vec()
        }),
    };
    if let Some(argv) = migrate {
        let locked = p.migrate_lock == MigrateLock::Postgres;
        if locked {
            // A missing or malformed DATABASE_URL is a setting's fault: say
            // so now, not after the wait for the database.
            migrate_lock::target_from_vars(&prepared.env)
                .map_err(|e| Halt::error(exit::CONFIG, e.to_string()))?;
        }
        steps.push(Step {
            what: "migration".into(),
            argv,
            locked,
        });
    } else if p.migrate_lock == MigrateLock::Postgres {
        warnings.push("INITD_MIGRATE_LOCK=postgres has no migration to guard".into());
    }
    for (i, argv) in p.prestart.iter().enumerate() {
        steps.push(Step {
            what: format!("pre-start command {}", i + 1),
            argv: argv.clone(),
            locked: false,
        });
    }
    Ok(steps)
}

/// The dev server: INITD_DEV_SERVER, else Django's runserver, Flask's dev
/// server, or gunicorn with one worker. initd does the reloading itself, so
/// the frameworks' own reloaders are turned off (two reloaders restart
/// twice, and Django's polls every second).
fn dev_server(prepared: &Prepared) -> Result<Vec<String>, String> {
    let settings = &prepared.loaded.settings;
    if let Some(server) = &settings.pipeline.dev.server {
        return Ok(server.clone());
    }
    let port = settings.pipeline.port.to_string();
    if prepared.cwd.join("manage.py").is_file() {
        let bind = format!("0.0.0.0:{port}");
        return Ok(["python", "manage.py", "runserver", "--noreload", &bind]
            .map(String::from)
            .to_vec());
    }
    let flask_app = prepared
        .env
        .iter()
        .any(|(k, v)| k == "FLASK_APP" && !v.is_empty());
    if flask_app {
        let argv = [
            "flask",
            "run",
            "--host",
            "0.0.0.0",
            "--port",
            &port,
            "--no-reload",
        ];
        return Ok(argv.map(String::from).to_vec());
    }
    let layers = &prepared.loaded.layers;
    let env = &prepared.env;
    let lookup = |name: &str| {
        if name == "INITD_WORKERS" {
            return Some("1".to_string());
        }
        layers.text(name).or_else(|| {
            env.iter()
                .find(|(k, _)| k.to_str() == Some(name))
                .and_then(|(_, v)| v.to_str().map(str::to_string))
        })
    };
    let inputs = gunicorn::ServerInputs::gather(lookup, settings.stop_timeout, &prepared.cwd);
    gunicorn::plan(&inputs).map(|p| p.argv).map_err(|e| e.to_string())
}

/// The Python variables the seeds' entrypoints set, as defaults: output
/// reaches `docker logs` as it is written (PYTHONUNBUFFERED), and in dev
/// mode no bytecode is cached, since Python trusts a cached module whose
/// source kept its size and its mtime second, which a quick edit can do
/// (PYTHONDONTWRITEBYTECODE). A value set in the environment, even empty,
/// or in the settings file wins; an empty one turns the default off.
fn env_defaults(layers: &config::Layers, main: &Main) -> Vec<(&'static str, &'static str)> {
    let mut names = vec!["PYTHONUNBUFFERED"];
    if *main == Main::Dev {
        names.push("PYTHONDONTWRITEBYTECODE");
    }
    names
        .into_iter()
        .filter(|name| layers.get(name).is_none())
        .filter_map(|name| {
            let setting = config::SETTINGS.iter().find(|s| s.name == name)?;
            Some((setting.name, setting.default))
        })
        .collect()
}

/// The variables from the settings file that children see as environment
/// variables (the environment itself already reaches them).
fn file_env(layers: &config::Layers) -> Vec<(OsString, OsString)> {
    ["PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"]
        .into_iter()
        .filter(|name| matches!(layers.source(name), config::Source::File(_)))
        .filter_map(|name| Some((OsString::from(name), OsString::from(layers.text(name)?))))
        .collect()
}

fn plan_user(settings: &Settings) -> Result<UserPlan, user::UserError> {
    let p = &settings.pipeline;
    let (uid, gid) = user::current_ids();
    let (host_uid, host_gid) = user::host_ids(p.host_uid, p.host_gid, p.allow_root)?;
    user::check_host_ids(uid, host_uid, host_gid)?;
    let db = user::Db::load(Path::new("/"))?;
    let decision = user::plan_drop(uid, gid, p.user.as_deref(), &db, p.allow_root)?;
    Ok(UserPlan {
        decision,
        host_uid,
        host_gid,
        chown: p.chown.clone(),
    })
}

fn server_plan(prepared: &Prepared) -> Result<gunicorn::ServerPlan, String> {
    let layers = &prepared.loaded.layers;
    let env = &prepared.env;
    // Settings initd knows come from its layers (so the TOML file counts);
    // gunicorn's own variables straight from the environment.
    let lookup = |name: &str| {
        layers.text(name).or_else(|| {
            env.iter()
                .find(|(k, _)| k.to_str() == Some(name))
                .and_then(|(_, v)| v.to_str().map(str::to_string))
        })
    };
    let inputs = gunicorn::ServerInputs::gather(lookup, prepared.loaded.settings.stop_timeout, &prepared.cwd);
    gunicorn::plan(&inputs).map_err(|e| e.to_string())
}

/// Runs the pipeline to its end and returns initd's exit status. Every
/// error of initd's own ends here, printed once.
pub fn run(main: Main) -> i32 {
    // Block first: a TERM that arrives while secrets are read or files are
    // chowned must wait for the supervisor, not kill initd half-way (or, as
    // PID 1, be dropped by the kernel).
    if let Err(e) = signals::block_handled() {
        logging::early_error(&format!("blocking signals failed: {e}"));
        return exit::INTERNAL;
    }
    let prepared = match prepare() {
        Ok(p) => p,
        Err(halt) => {
            // Logging is not set up yet: plainly, on stderr.
            if let Some(message) = &halt.message {
                logging::early_error(message);
            }
            return halt.code;
        }
    };
    let settings = prepared.loaded.settings.clone();
    logging::init(
        settings.log_level,
        settings.log_format,
        Some(prepared.redactor.clone()),
    );
    let code = match supervise(&prepared, &main) {
        Ok(code) => code,
        Err(halt) => {
            if let Some(message) = &halt.message {
                error!("{message}");
            }
            halt.code
        }
    };
    logging::report_dropped();
    code
}

/// From the plan to the end: the supervisor, the control socket, the
/// pipeline's commands.
fn supervise(prepared: &Prepared, main: &Main) -> Result<i32, Halt> {
    let settings = &prepared.loaded.settings;
    for name in &prepared.loaded.layers.ignored {
        debug!("{name}: a Kubernetes service variable (a Service named initd), not a setting; ignored");
    }
    let plan = plan(prepared, main)?;
    for warning in &plan.warnings {
        warn!("{warning}");
    }
    let status = Status::new();
    let mut sup = Supervisor::new(Policy::from(settings), status.clone())
        .map_err(|e| Halt::error(exit::INTERNAL, format!("opening a signalfd failed: {e}")))?;
    let role = role::decide(settings.health.socket.as_deref());
    status.set_role(role.describe());
    match &role {
        Role::Pid1 => {}
        Role::UnderInit { init } => info!(
            "running under another init (PID 1 is {init}): initd is the entrypoint all the same and \
             the subreaper of its own descendants; signals, reaping and the stop work as usual, \
             orphans outside initd's subtree are {init}'s to reap"
        ),
        Role::Guest { why } => debug!(
            "guest: {why}; this initd serves no control socket and leaves the app user and INITD_CHOWN \
             to the entrypoint"
        ),
    }
    // Before the drop: the socket's directory may need root to be made.
    let listener = if role.is_entrypoint() {
        open_control_socket(settings, &plan).map_err(|message| Halt::error(exit::CONFIG, message))?
    } else {
        None
    };
    let socket = listener.as_ref().map(|l| l.path().to_path_buf());
    if std::process::id() != 1 {
        crate::pid1::reaper::become_subreaper()
            .map_err(|e| Halt::error(exit::INTERNAL, format!("becoming a child subreaper failed: {e}")))?;
        debug!("not PID 1: registered as child subreaper, so orphans are still reaped here");
    }
    let result = execute(prepared, &plan, &mut sup, &role, listener);
    if let Some(path) = socket {
        // Not always permitted once initd is the app user; a socket left
        // behind is recognised as stale and replaced at the next start.
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Opens the control socket for `initd check`; the supervisor's loop
/// serves it once initd runs as the app user (see
/// [`serve_control_socket`]), and checks that come before wait in its
/// queue. Without one initd still runs the app, and says why checks will
/// fail; an unsafe INITD_SOCKET is the error returned.
fn open_control_socket(settings: &Settings, plan: &Plan) -> Result<Option<control::Listener>, String> {
    let health = &settings.health;
    let listener = match control::open(health, plan.user.user().gid) {
        Ok(Some(listener)) => listener,
        Ok(None) => return Ok(None),
        Err(control::OpenError::Unsafe(message)) => return Err(message),
        Err(control::OpenError::Unavailable(reason)) => {
            warn!("no health checks: {reason}");
            return Ok(None);
        }
    };
    if health.probe != Probe::Alive && health.probe_timeout >= health.check_timeout {
        warn!(
            "INITD_HEALTH_TIMEOUT ({}) is not below INITD_CHECK_TIMEOUT ({}): a slow probe makes \
             `initd check` give up before the probe does",
            crate::units::human_duration(health.probe_timeout),
            crate::units::human_duration(health.check_timeout)
        );
    }
    debug!("control socket: {}", listener.path().display());
    Ok(Some(listener))
}

/// Hands the control socket to the supervisor's loop, with the command of
/// a `cmd:` probe, which runs as the app user with the app's environment.
fn serve_control_socket(
    sup: &mut Supervisor,
    listener: control::Listener,
    prepared: &Prepared,
    plan: &Plan,
    launcher: &Launcher,
) {
    let health = &plan.health;
    let cmd = match &health.probe {
        Probe::Cmd(argv) => Some(cmdprobe::Spec {
            argv: argv.clone(),
            launcher: launcher.clone(),
        }),
        _ => None,
    };
    let path = listener.path().to_path_buf();
    let server = control::Server::new(sup.status().clone(), health, cmd, prepared.redactor.clone());
    match control::event_source(listener, server) {
        Ok(control) => sup.add_source(Box::new(control)),
        Err(e) => {
            warn!("no health checks: the control socket cannot be served: {e}");
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn execute(
    prepared: &Prepared,
    plan: &Plan,
    sup: &mut Supervisor,
    role: &Role,
    listener: Option<control::Listener>,
) -> Result<i32, Halt> {
    // A long chown (as root, before the drop) holds up the loop: checks
    // wait in the socket's queue meanwhile, and one that gives up reads
    // as not healthy, which is what "starting" would say.
    let user = become_app_user(&plan.user, role.is_entrypoint())?;
    let mut env = prepared.env.clone();
    for (key, value) in file_env(&prepared.loaded.layers)
        .into_iter()
        .chain(plan.env_defaults.iter().map(|(k, v)| (k.into(), v.into())))
    {
        if !env.iter().any(|(k, _)| *k == key) {
            env.push((key, value));
        }
    }
    if matches!(plan.user.decision, DropDecision::Drop(_)) {
        for (key, value) in user::user_env(&user) {
            env.retain(|(k, _)| k != key);
            env.push((key.into(), value));
        }
    }
    if prepared.loaded.settings.pipeline.no_new_privs {
        child::forbid_privilege_gain().map_err(|e| {
            Halt::error(
                exit::CONFIG,
                format!("INITD_NO_NEW_PRIVS=true: cannot set no_new_privs ({e}); set INITD_NO_NEW_PRIVS=false to run without it"),
            )
        })?;
    }
    let launcher = Launcher::new(env, &prepared.cwd);
    if let Some(listener) = listener {
        serve_control_socket(sup, listener, prepared, plan, &launcher);
    }
    if let Some(dev) = &plan.dev {
        for step in &dev.setup {
            checkpoint(sup)?;
            if let Some(path) = step.unless.as_ref().filter(|p| prepared.cwd.join(p).exists()) {
                info!(
                    "dev setup: skipping `{}`: {} exists",
                    cmdline::join(&step.argv),
                    path.display()
                );
                continue;
            }
            sup.status().set_phase(Phase::Starting, "dev setup running");
            steps::run_step(&launcher, sup, "dev setup", &step.argv)?;
        }
    }
    // After the dev setup, which needs no database (`npm ci` can run while
    // it starts), before the migration, which does.
    checkpoint(sup)?;
    if !plan.wait_for.is_empty() {
        wait_for(
            sup,
            &plan.wait_for,
            prepared.loaded.settings.pipeline.wait_timeout,
        )?;
    }
    for step in &plan.steps {
        checkpoint(sup)?;
        if step.locked {
            let timeout = prepared.loaded.settings.pipeline.migrate_lock_timeout;
            run_locked(sup, &launcher, step, &prepared.env, timeout)?;
        } else {
            steps::run_step(&launcher, sup, &step.what, &step.argv)?;
        }
    }
    checkpoint(sup)?;
    if let Some(dev) = &plan.dev {
        let dev_plan = crate::dev::devloop::DevPlan {
            watchers: dev.plan.watchers.clone(),
            server: dev.plan.server.clone(),
            reload_roots: dev.plan.reload_roots.clone(),
            filter: dev.plan.filter.clone(),
            poll: dev.plan.poll,
        };
        return Ok(crate::dev::devloop::run(sup, &launcher, dev_plan));
    }
    // `initd exec` stands in for tini: its command's output should be all
    // there is. The server's start is worth a line.
    if plan.steps.is_empty() && plan.wait_for.is_empty() && plan.main_kind == MainKind::Command {
        debug!("starting {}: {}", plan.main_kind, cmdline::join(&plan.main));
    } else {
        info!("starting {}: {}", plan.main_kind, cmdline::join(&plan.main));
    }
    sup.status()
        .set_phase(Phase::Running, format!("{} running", plan.main_kind));
    steps::run_main(&launcher, sup, plan.main_kind, &plan.main)
}

/// Ends the pipeline if a stop has arrived since the last look.
fn checkpoint(sup: &mut Supervisor) -> Result<(), Halt> {
    sup.handle_pending();
    match sup.stop_requested() {
        Some(_) => Err(Halt::with(sup.finish(None))),
        None => Ok(()),
    }
}

/// Renumbers and chowns as root if asked (the entrypoint only: a guest
/// finds that done), then drops initd itself to the app user: everything
/// started afterwards inherits it, and PID 1 keeps no root it does not
/// need.
fn become_app_user(plan: &UserPlan, entrypoint: bool) -> Result<AppUser, Halt> {
    let fail = |e: &dyn std::fmt::Display| Halt::error(exit::NOPERM, e.to_string());
    let mut user = plan.user().clone();
    let asked = plan.host_uid.is_some() || plan.host_gid.is_some() || !plan.chown.is_empty();
    if !entrypoint {
        if asked {
            debug!(
                "guest: HOST_UID/HOST_GID and INITD_CHOWN are left to the entrypoint initd, which applied \
                 them when the container started"
            );
        }
        if let DropDecision::Drop(_) = &plan.decision {
            user::drop_privileges(&user).map_err(|e| fail(&e))?;
            debug!("running as {} (uid {}, gid {})", user.name, user.uid, user.gid);
        }
        return Ok(user);
    }
    if let DropDecision::Drop(_) = &plan.decision {
        user = handover::prepare_files(&user, plan.host_uid, plan.host_gid, &plan.chown)
            .map_err(|e| fail(&e))?;
        user::drop_privileges(&user).map_err(|e| fail(&e))?;
        debug!("running as {} (uid {}, gid {})", user.name, user.uid, user.gid);
    } else {
        if !plan.chown.is_empty() {
            if user::is_root() {
                warn!("INITD_CHOWN ignored: the app runs as root, which owns everything already");
            } else {
                return Err(fail(
                    &"INITD_CHOWN needs initd to start as root; remove it or start the container as root",
                ));
            }
        }
        if (plan.host_uid.is_some() || plan.host_gid.is_some()) && user::is_root() {
            warn!("HOST_UID/HOST_GID ignored: the app runs as root");
        }
    }
    Ok(user)
}

fn wait_for(sup: &mut Supervisor, targets: &[waitfor::Target], timeout: Duration) -> Result<(), Halt> {
    let list: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    info!("waiting for {} (up to {}s)", list.join(", "), timeout.as_secs());
    sup.status()
        .set_phase(Phase::Starting, format!("waiting for {}", list.join(", ")));
    let started = Instant::now();
    let mut since = None;
    loop {
        let wake = sup.wake_fd();
        match waitfor::wait_all(targets, since, timeout, wake) {
            Ok(()) => return Ok(()),
            Err(waitfor::WaitError::Interrupted) => {
                // Any signal or check wakes the wait; only a stop ends it.
                // The wait goes on where it was, on the same deadline.
                since = Some(started);
                checkpoint(sup)?;
            }
            Err(e) => {
                return Err(Halt::error(e.exit_code(), format!("{e}; nothing was started")));
            }
        }
    }
}

/// Runs the migration while holding the PostgreSQL advisory lock, so
/// replicas starting together migrate one after another.
fn run_locked(
    sup: &mut Supervisor,
    launcher: &Launcher,
    step: &Step,
    env: &[(OsString, OsString)],
    timeout: Duration,
) -> Result<(), Halt> {
    let target = migrate_lock::target_from_vars(env).map_err(|e| Halt::error(exit::CONFIG, e.to_string()))?;
    let resolver = dns::Resolver::system();
    let signal_fd = sup.signal_fd().as_raw_fd();
    // SAFETY: the signalfd is owned by the supervisor, which outlives this
    // function; the borrow is raw only so the loop below may still hand
    // the supervisor out mutably between attempts.
    let signals = || unsafe { BorrowedFd::borrow_raw(signal_fd) };
    let resolve = |host: &str, port: u16| -> std::io::Result<Vec<SocketAddr>> {
        let limit = Instant::now() + Duration::from_secs(10);
        let ips = resolver
            .lookup(host, limit, netio::Interrupt::new(signals()))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
    };
    info!(
        "taking the migration lock on {target} (giving up after {}, INITD_MIGRATE_LOCK_TIMEOUT)",
        crate::units::human_duration(timeout)
    );
    let lock_name = format!(
        "the migration lock (advisory lock {} on {target})",
        migrate_lock::LOCK_KEY
    );
    let status = sup.status().clone();
    let since = Instant::now();
    let observe = |waiting: migrate_lock::Waiting| {
        let (detail, holder) = match waiting {
            migrate_lock::Waiting::Connecting { last } => (format!("connecting to PostgreSQL: {last}"), None),
            migrate_lock::Waiting::Held { holder: Some(h) } => (
                h.to_string(),
                Some(LockHolder {
                    pid: h.pid,
                    application_name: h.application_name,
                    client_addr: h.client_addr,
                    since: h.since,
                }),
            ),
            migrate_lock::Waiting::Held { holder: None } => ("held by another session".to_string(), None),
        };
        status.set_phase(Phase::Starting, format!("waiting for {lock_name}: {detail}"));
        status.set_lock_wait(Some(LockWait {
            lock: lock_name.clone(),
            detail,
            holder,
            since: Some(since),
        }));
    };
    status.set_phase(Phase::Starting, format!("waiting for {lock_name}"));
    let deadline = Instant::now() + timeout;
    // The wait asks "interrupted?" as it goes (every slice of its wait):
    // checks are answered then, and a pending signal ends the attempt.
    let sup = std::cell::RefCell::new(sup);
    let lock = loop {
        let interrupted = || sup.borrow_mut().serve_sources();
        // A stop ends the wait at once; any other signal wakes it, and it
        // goes on with the time that is left.
        match migrate_lock::acquire_observed(
            &target,
            &resolve,
            migrate_lock::LOCK_KEY,
            deadline.saturating_duration_since(Instant::now()),
            &interrupted,
            &observe,
        ) {
            Ok(lock) => break lock,
            Err(migrate_lock::LockError::Interrupted) => checkpoint(&mut sup.borrow_mut())?,
            Err(e) => {
                status.set_lock_wait(None);
                let code = if e.is_config() {
                    exit::CONFIG
                } else {
                    exit::UNAVAILABLE
                };
                return Err(Halt::error(code, format!("{e}; the migration did not run")));
            }
        }
    };
    let sup = sup.into_inner();
    status.set_lock_wait(None);
    status.set_phase(Phase::Starting, "migration running");
    debug!("holding the migration lock");
    let result = steps::run_step(launcher, sup, &step.what, &step.argv);
    if let Err(e) = lock.release() {
        warn!("{e}");
    }
    result
}

impl From<&Settings> for Policy {
    fn from(s: &Settings) -> Policy {
        Policy {
            target: s.signal_target,
            map: s.signal_map.clone(),
            stop_timeout: s.stop_timeout,
            keep_signal_status: s.keep_signal_status,
            drain: s.health.drain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(vars: &[(&str, &str)]) -> config::Layers {
        config::env_layer(
            vars.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn python_defaults_unless_the_environment_sets_them() {
        assert_eq!(
            env_defaults(&layers(&[]), &Main::Server),
            [("PYTHONUNBUFFERED", "1")]
        );
        assert_eq!(
            env_defaults(&layers(&[]), &Main::Dev),
            [("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1")]
        );
        // Set, even empty, turns the default off.
        assert_eq!(
            env_defaults(&layers(&[("PYTHONUNBUFFERED", "")]), &Main::Dev),
            [("PYTHONDONTWRITEBYTECODE", "1")]
        );
        assert!(
            env_defaults(
                &layers(&[("PYTHONUNBUFFERED", "0"), ("PYTHONDONTWRITEBYTECODE", "")]),
                &Main::Dev
            )
            .is_empty()
        );
        assert!(file_env(&layers(&[("PYTHONUNBUFFERED", "")])).is_empty());
    }

    #[test]
    fn the_settings_file_can_set_them_for_the_children() {
        let file = config::file_layer(
            Path::new("/etc/initd.toml"),
            "pythonunbuffered = \"\"\npythondontwritebytecode = \"0\"\n",
        )
        .unwrap();
        assert!(env_defaults(&file, &Main::Dev).is_empty());
        assert_eq!(
            file_env(&file),
            [
                (OsString::from("PYTHONUNBUFFERED"), OsString::from("")),
                (OsString::from("PYTHONDONTWRITEBYTECODE"), OsString::from("0"))
            ]
        );
    }
}
