//! The security suite: the app never runs as root by accident, cannot
//! regain privileges after the drop, and a secret never ends up anywhere
//! it does not belong — a log, an error, another process's memory, a core
//! file. initd runs as PID 1 of a pid namespace; the user tests also in a
//! mount namespace with a private /etc (they need root).
//!
//! Each test prints its figures (`security: ...` on stderr; run with
//! `--nocapture` to see them) for the table in docs/reliability.md.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(30);
/// A secret's content that must never show where it does not belong.
const PLANT: &str = "s3cr3t-planted-value";

/// A directory anyone may write to, for the app user's output.
fn shared_dir(dir: &Scratch, name: &str) -> std::path::PathBuf {
    let path = dir.path(name);
    fs::create_dir_all(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
    path
}

// ---------------------------------------------------------------------------
// 1. Never root by accident

#[test]
fn the_app_never_runs_as_root_unless_allowed() {
    if !is_root_or_skip("the_app_never_runs_as_root_unless_allowed") {
        return;
    }
    // Root under another name, and a group named like the missing user.
    let passwd = ["toor:x:0:0:root twin:/root:/bin/sh"];
    let group = ["app:x:1000:"];
    let mut refused = 0;
    let attempt = |sub: &str, user: Option<&str>, allow: Option<&str>, config: Option<&str>| {
        let dir = Scratch::new("root");
        let marker = dir.path("ran");
        let touch = format!("id -u > {}", marker.display());
        let args: Vec<&str> = match sub {
            "exec" => vec!["exec", "sh", "-c", &touch],
            _ => vec!["run"],
        };
        let mut cmd = initd_pid1_with_etc(&dir, &passwd, &group, args);
        cmd.env_remove("INITD_ALLOW_ROOT")
            .env("INITD_MIGRATE", "off")
            .env("INITD_SERVER", format!("sh -c '{touch}'"));
        if let Some(user) = user {
            cmd.env("INITD_USER", user);
        }
        if let Some(allow) = allow {
            cmd.env("INITD_ALLOW_ROOT", allow);
        }
        if let Some(toml) = config {
            let path = dir.path("initd.toml");
            fs::write(&path, toml).unwrap();
            cmd.env("INITD_CONFIG", path);
        }
        let out = run(cmd, LIMIT);
        (out, fs::read_to_string(&marker).ok())
    };
    let cases: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
        // No `app` user in the image.
        (None, None, None),
        (None, Some("false"), None),
        // uid 0 by number, with any group.
        (Some("0"), None, None),
        (Some("0:0"), Some("0"), None),
        (Some("0:1000"), None, None),
        (Some("0:app"), None, None),
        // root by name, and uid 0 under another name.
        (Some("root"), None, None),
        (Some("root:app"), Some("no"), None),
        (Some("toor"), None, None),
        (Some("toor:1000"), None, None),
        // A user that does not exist is never a reason to stay root.
        (Some("nosuchuser"), None, None),
        // The same from the TOML file.
        (None, None, Some("user = \"toor\"\n")),
        (None, None, Some("user = \"0\"\nallow_root = false\n")),
    ];
    for sub in ["exec", "run"] {
        for &(user, allow, config) in cases {
            let (out, ran) = attempt(sub, user, allow, config);
            let case = format!("{sub} INITD_USER={user:?} INITD_ALLOW_ROOT={allow:?} file={config:?}");
            assert_eq!(out.code(), 77, "{case}: {}", out.stderr);
            assert_eq!(ran, None, "{case}: the command ran");
            let line = out.stderr.trim();
            assert!(
                line.contains("INITD_ALLOW_ROOT") || line.contains("not found"),
                "{case}: {line}"
            );
            refused += 1;
        }
    }
    // Allowed, root is root, under either name.
    for user in ["toor", "0"] {
        let (out, ran) = attempt("exec", Some(user), Some("true"), None);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert_eq!(ran.as_deref(), Some("0\n"));
    }
    eprintln!(
        "security: never root: {refused} attempts to run the app as uid 0 without INITD_ALLOW_ROOT \
         (missing user, uid 0 by number, root by name, uid 0 under another name, from env and TOML, \
         exec and run): all refused with 77, nothing ran"
    );
}

// ---------------------------------------------------------------------------
// 2. No way back to root

/// Reports, into the file named by its first argument, the ids, groups,
/// capabilities and no_new_privs of the process, and which attempts to
/// become root again succeed.
const CHECK: &str = r#"import os, sys
status = {}
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    status[key] = value.split()
tries = []
for name, attempt in [
    ("setuid", lambda: os.setuid(0)),
    ("seteuid", lambda: os.seteuid(0)),
    ("setresuid", lambda: os.setresuid(0, 0, 0)),
    ("setgid", lambda: os.setgid(0)),
    ("setgroups", lambda: os.setgroups([0])),
]:
    try:
        attempt()
        tries.append(name + ":ok")
    except PermissionError:
        tries.append(name + ":denied")
caps = ",".join(status[k][0] for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"))
with open(sys.argv[1], "w") as out:
    out.write("uid=%s gid=%s groups=%s caps=%s nnp=%s %s\n" % (
        ",".join(status["Uid"]), ",".join(status["Gid"]), ",".join(sorted(status["Groups"])),
        caps, status["NoNewPrivs"][0], " ".join(tries)))
"#;

#[test]
fn every_process_runs_as_the_app_user_and_cannot_regain_root() {
    if !is_root_or_skip("every_process_runs_as_the_app_user_and_cannot_regain_root") {
        return;
    }
    let mut checked = 0;
    for nnp in [false, true] {
        let dir = Scratch::new("regain");
        let out_dir = shared_dir(&dir, "out");
        let check = dir.path("check.py");
        fs::write(&check, CHECK).unwrap();
        let passwd = format!("app:x:1000:1000::{}:/bin/sh", dir.path("home").display());
        let group = ["app:x:1000:", "extra:x:1500:app"];
        let role = |name: &str| format!("python3 {} {}/{name}", check.display(), out_dir.display());
        let hold = |name: &str| format!("sh -c '{}; exec sleep 600'", role(name));

        // `initd run`: every step and the server. (Each run gets its own
        // private /etc, in a scratch directory of its own.)
        let etc = Scratch::new("regain-run");
        let mut cmd = initd_pid1_with_etc(&etc, &[&passwd], &group, ["run"]);
        cmd.env_remove("INITD_ALLOW_ROOT")
            .env("INITD_MIGRATE", role("migration"))
            .env("INITD_PRESTART", role("prestart"))
            .env("INITD_SERVER", role("server"));
        // The default is on: off is the documented opt-out.
        cmd.env("INITD_NO_NEW_PRIVS", if nnp { "true" } else { "false" });
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 0, "{}", out.stderr);

        // `initd dev`: the setup, a watcher and the dev server.
        let etc = Scratch::new("regain-dev");
        let mut cmd = initd_pid1_with_etc(&etc, &[&passwd], &group, ["dev"]);
        cmd.env_remove("INITD_ALLOW_ROOT")
            .current_dir(&dir.0)
            .env("AUTO_START_SERVER", "true")
            .env("INITD_MIGRATE", "off")
            .env("INITD_RELOAD_PATHS", &out_dir)
            .env("INITD_DEV_SETUP", role("setup"))
            .env("INITD_WATCHERS", format!("w={}", hold("watcher")))
            .env("INITD_DEV_SERVER", hold("devserver"));
        // The default is on: off is the documented opt-out.
        cmd.env("INITD_NO_NEW_PRIVS", if nnp { "true" } else { "false" });
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let pid = initd_host_pid(&child);
        let roles = ["migration", "prestart", "server", "setup", "watcher", "devserver"];
        wait_for(LIMIT, || {
            roles
                .iter()
                .all(|r| out_dir.join(r).metadata().is_ok_and(|m| m.len() > 0))
                .then_some(())
        });
        signal(pid, Signal::SIGTERM);
        let out = finish(child, LIMIT);
        assert_eq!(out.code(), 0, "{}", out.stderr);

        let want = format!(
            "uid=1000,1000,1000,1000 gid=1000,1000,1000,1000 groups=1000,1500 \
             caps=0000000000000000,0000000000000000,0000000000000000,0000000000000000 nnp={} \
             setuid:denied seteuid:denied setresuid:denied setgid:denied setgroups:denied\n",
            u8::from(nnp)
        );
        for r in roles {
            let got = fs::read_to_string(out_dir.join(r)).unwrap();
            assert_eq!(got, want, "{r} (INITD_NO_NEW_PRIVS={nnp})");
            checked += 1;
        }
    }
    eprintln!(
        "security: after the drop: {checked} processes (migration, pre-start, server, dev setup, \
         watcher, dev server; with and without INITD_NO_NEW_PRIVS) ran as 1000:1000 with exactly the \
         user's groups and no capability; 5 ways back to root, all denied"
    );
}

#[test]
fn no_new_privs_stops_a_setuid_program_from_giving_root_back() {
    if !is_root_or_skip("no_new_privs_stops_a_setuid_program_from_giving_root_back") {
        return;
    }
    let dir = Scratch::new("suid");
    // A setuid-root copy of `id`, the way sudo or su would be installed.
    let id = dir.path("suid-id");
    fs::copy("/usr/bin/id", &id).unwrap();
    std::os::unix::fs::chown(&id, Some(0), Some(0)).unwrap();
    fs::set_permissions(&id, fs::Permissions::from_mode(0o4755)).unwrap();
    let passwd = format!("app:x:1000:1000::{}:/bin/sh", dir.path("home").display());
    let euid = |nnp: Option<&str>| {
        let etc = Scratch::new("suid-etc");
        let mut cmd = initd_pid1_with_etc(&etc, &[&passwd], &["app:x:1000:"], [id.to_str().unwrap(), "-u"]);
        cmd.env_remove("INITD_ALLOW_ROOT");
        if let Some(v) = nnp {
            cmd.env("INITD_NO_NEW_PRIVS", v);
        }
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        out.stdout.trim().to_string()
    };
    let without = euid(Some("false"));
    if without != "0" {
        note(&format!(
            "no_new_privs_stops_a_setuid_program_from_giving_root_back: skipped, setuid bits have no \
             effect here (euid {without}; a nosuid mount?)"
        ));
        return;
    }
    assert_eq!(euid(None), "1000", "INITD_NO_NEW_PRIVS is on by default");
    assert_eq!(euid(Some("true")), "1000");
    eprintln!(
        "security: no_new_privs: a setuid-root program gives the app euid 1000 by default and with \
         INITD_NO_NEW_PRIVS=true, euid 0 only with the opt-out INITD_NO_NEW_PRIVS=false"
    );
}

// ---------------------------------------------------------------------------
// 3. Secrets

/// Prints each variable as NAME=value, or NAME=<unset>.
fn print_vars(names: &[&str]) -> String {
    format!("import os\nfor n in {names:?}:\n    print(n + '=' + os.environ.get(n, '<unset>'))")
}

#[test]
fn secret_files_that_lead_out_block_or_overflow_are_refused_cleanly() {
    let dir = Scratch::new("secretfiles");
    // The Kubernetes layout: every key a link into the same volume.
    let vol = dir.path("vol");
    fs::create_dir_all(vol.join("..2024_01_01")).unwrap();
    fs::write(vol.join("..2024_01_01/db"), format!("{PLANT}\n")).unwrap();
    std::os::unix::fs::symlink("..2024_01_01", vol.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/db", vol.join("db")).unwrap();
    // A link planted to lead out of the volume, to a file the app may not read.
    fs::create_dir_all(dir.path("private")).unwrap();
    fs::write(dir.path("private/key"), format!("{PLANT}-private\n")).unwrap();
    fs::set_permissions(dir.path("private/key"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("../private/key", vol.join("escape")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", vol.join("passwd")).unwrap();
    let fifo = vol.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // 1 GiB on paper, nothing on disk: only the cap may be read.
    let huge = vol.join("huge");
    fs::File::create(&huge).unwrap().set_len(1 << 30).unwrap();

    let attempt = |path: &Path| {
        let marker = dir.path("ran");
        let _ = fs::remove_file(&marker);
        let mut cmd = initd_pid1([
            "exec",
            "python3",
            "-c",
            &format!("{}\nopen({:?}, 'w').close()", print_vars(&["DB"]), marker),
        ]);
        // The volume is where this test mounts its secrets.
        cmd.env("DB_FILE", path).env("INITD_SECRETS_DIRS", &vol);
        let start = Instant::now();
        let out = run(cmd, Duration::from_secs(10));
        (out, marker.exists(), start.elapsed())
    };
    let (out, ran, _) = attempt(&vol.join("db"));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(ran);
    assert_eq!(out.stdout, format!("DB={PLANT}\n"));

    let real = |p: &Path| fs::canonicalize(p).unwrap();
    let refusals = [
        (
            vol.join("escape"),
            format!(
                "is a symbolic link to {}, outside {}",
                real(&dir.path("private/key")).display(),
                real(&vol).display()
            ),
        ),
        (
            vol.join("passwd"),
            format!(
                "is a symbolic link to /etc/passwd, outside {}",
                real(&vol).display()
            ),
        ),
        (fifo.clone(), "is a FIFO, not a regular file".to_string()),
        (huge.clone(), "is larger than 1 MiB".to_string()),
        (
            vol.join("..data"),
            "is a directory, not a regular file".to_string(),
        ),
    ];
    let mut slowest = Duration::ZERO;
    for (path, reason) in &refusals {
        let (out, ran, took) = attempt(path);
        slowest = slowest.max(took);
        assert_eq!(out.code(), 78, "{}: {}", path.display(), out.stderr);
        assert!(!ran, "{}: the command ran", path.display());
        let line = out.stderr.trim();
        assert!(
            line.starts_with(&format!("initd: error: secret DB: {} {reason}", path.display())),
            "{line}"
        );
        assert!(!line.contains(PLANT) && out.stdout.is_empty(), "{line}");
    }
    eprintln!(
        "security: secret files: a Kubernetes-style link within the volume is read; {} refused with 78 \
         before anything ran (link out of the volume, link to /etc/passwd, FIFO, 1 GiB file, directory), \
         the slowest in {:.0}ms",
        refusals.len(),
        slowest.as_secs_f64() * 1000.0
    );
}

#[test]
fn a_secret_stays_out_of_dev_mode_logs_and_other_processes() {
    let dir = Scratch::new("devleak");
    fs::create_dir_all(dir.path("src")).unwrap();
    fs::write(dir.path("src/app.py"), "x = 0\n").unwrap();
    let pw = dir.path("pw");
    fs::write(&pw, format!("{PLANT}\n")).unwrap();
    let args = dir.path("args");
    fs::write(&args, format!("--name {PLANT}\n")).unwrap();
    let bin = dir.path("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(
        bin.join("gunicorn"),
        "#!/bin/sh\necho dev-server-up\nexec sleep 600\n",
    )
    .unwrap();
    fs::set_permissions(bin.join("gunicorn"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut seen = String::new();
    for format in ["text", "json"] {
        let watcher = format!(
            "sh -c 'echo watcher DB_PASSWORD_FILE=${{DB_PASSWORD_FILE:-unset}} CERT_FILE=$CERT_FILE; \
             test \"$DB_PASSWORD\" = \"$(cat {pw})\" && echo watcher has the secret; exec sleep 600'",
            pw = pw.display()
        );
        let mut cmd = initd_pid1(["dev"]);
        cmd.current_dir(&dir.0)
            .env("INITD_LOG", "trace")
            .env("INITD_LOG_FORMAT", format)
            .env("AUTO_START_SERVER", "true")
            .env("INITD_RELOAD_PATHS", "src")
            .env("DB_PASSWORD_FILE", &pw)
            .env("INITD_SECRETS", "DB_PASSWORD,GUNICORN_ARGUMENTS")
            // Not listed, outside /run/secrets: passed on as the path it is.
            .env("CERT_FILE", &pw)
            // A migration step: its command line is logged too.
            .env("INITD_MIGRATE", "sh -c 'exit 0'")
            .env("INITD_WATCHERS", format!("w={watcher}"))
            // The default dev server is gunicorn (a stand-in here), with
            // GUNICORN_ARGUMENTS from a secret: in the command line initd
            // logs at each start, so redaction has work to do.
            .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()))
            .env("INITD_APP", "app:application")
            .env("GUNICORN_ARGUMENTS_FILE", &args);
        // Output to files, to be read while initd runs.
        let (out_path, err_path) = (
            dir.path(&format!("{format}.out")),
            dir.path(&format!("{format}.err")),
        );
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let pid = initd_host_pid(&child);
        let all = || {
            let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
            read(&out_path) + &read(&err_path)
        };
        let wait_text = |needle: &str| wait_for(LIMIT, || all().contains(needle).then_some(()));
        // Watchers' output is prefixed and goes where theirs went.
        wait_text("w | watcher has the secret");
        let servers_up = || all().lines().filter(|l| *l == "dev-server-up").count();
        wait_for(LIMIT, || (servers_up() == 1).then_some(()));
        // Running: initd's own environment and command line, as anyone in
        // the container could read them.
        for file in ["environ", "cmdline"] {
            let bytes = fs::read(format!("/proc/{pid}/{file}")).unwrap();
            seen.push_str(&String::from_utf8_lossy(&bytes).replace('\0', " "));
        }
        // A restart of the dev server on an edit, and a stop.
        fs::write(dir.path("src/app.py"), format!("x = {format:?}\n")).unwrap();
        wait_text("restarting the server");
        wait_for(LIMIT, || (servers_up() == 2).then_some(()));
        signal(pid, Signal::SIGTERM);
        let out = finish(child, LIMIT);
        assert_eq!(out.code(), 0, "{}", all());
        let all = all();
        seen.push_str(&all);
        assert!(all.contains("w | watcher DB_PASSWORD_FILE=unset"), "{all}");
        // The server's command line was logged, masked, at each start.
        assert!(all.matches("app:application ***").count() >= 2, "{all}");
        assert!(all.contains(&format!("CERT_FILE={}", pw.display())), "{all}");
    }
    // `initd config` at trace level, the secret also in a setting it shows.
    let mut cmd = initd_plain(["config"]);
    cmd.current_dir(&dir.0)
        .env("INITD_LOG", "trace")
        .env("INITD_SERVER", "sleep 1")
        .env("INITD_SECRETS", "DB_PASSWORD,GUNICORN_ARGUMENTS")
        .env("DB_PASSWORD_FILE", &pw)
        .env("GUNICORN_ARGUMENTS_FILE", &args);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("gunicorn_arguments = \"***\""),
        "{}",
        out.stdout
    );
    seen.push_str(&out.stdout);
    seen.push_str(&out.stderr);
    assert!(
        !seen.contains(PLANT),
        "the secret leaked:\n{}",
        seen.lines()
            .filter(|l| l.contains(PLANT))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "security: dev mode: a planted secret appears in no log line (trace level, text and json, \
         through a restart and a stop), not in `initd config`, not in initd's environment or command \
         line; the watcher has it, not its *_FILE; a *_FILE outside the secrets keeps its path"
    );
}

#[test]
fn initds_memory_is_closed_to_the_app_and_to_core_files() {
    // The app, running under initd's own uid (`USER app` in the image),
    // cannot read initd's memory or environment.
    let dir = Scratch::new("memory");
    let pw = dir.path("pw");
    fs::write(&pw, format!("{PLANT}\n")).unwrap();
    let probe = "import os
for f in ('/proc/1/mem', '/proc/1/environ', '/proc/self/environ'):
    try:
        open(f, 'rb').read(1)
        print(f, 'readable')
    except OSError as e:
        print(f, type(e).__name__)";
    let mut prefix = pid1_prefix();
    if !nix::unistd::geteuid().is_root() {
        note("initds_memory_is_closed_to_the_app_and_to_core_files: skipped, needs root (setpriv)");
        return;
    }
    prefix.extend(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"]);
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..])
        .args([INITD, "exec", "python3", "-c", probe])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("INITD_SECRETS", "DB_PASSWORD")
        .env("DB_PASSWORD_FILE", &pw);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "/proc/1/mem PermissionError\n/proc/1/environ PermissionError\n/proc/self/environ readable\n"
    );

    // A crash of initd writes no core file, which would hold the secret.
    // The control: a process started the same way does dump core here.
    let with_cores = |cmd: &mut Command| {
        cmd.current_dir(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let unlimited = libc::rlimit {
                    rlim_cur: libc::RLIM_INFINITY,
                    rlim_max: libc::RLIM_INFINITY,
                };
                if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    };
    let mut control = Command::new("sleep");
    control.arg("30");
    with_cores(&mut control);
    let mut control = control.spawn().unwrap();
    signal(control.id() as i32, Signal::SIGABRT);
    let control = wait_timeout(&mut control, LIMIT);
    if !control.core_dumped() {
        note("initds_memory_is_closed_to_the_app_and_to_core_files: core part skipped, no core dumps here");
        return;
    }
    for entry in fs::read_dir(&dir.0).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("core") {
            fs::remove_file(entry.path()).unwrap();
        }
    }
    let mut cmd = initd_plain(["sleep", "30"]);
    cmd.env("DB_PASSWORD_FILE", &pw)
        .env("INITD_SECRETS", "DB_PASSWORD")
        .env("RELIAB_SLEEPER", dir.0.as_os_str());
    with_cores(&mut cmd);
    let mut initd = cmd.spawn().unwrap();
    let pid = initd.id() as i32;
    let sleeper = wait_for(LIMIT, || {
        initd::procfs::snapshot()
            .into_iter()
            .find(|s| s.ppid == pid)
            .map(|s| s.pid)
    });
    // SIGABRT: its default action dumps core, initd leaves it alone (a
    // fault signal), and Rust's runtime does not catch it (it does catch
    // SIGSEGV, to report stack overflows).
    signal(pid, Signal::SIGABRT);
    let status = wait_timeout(&mut initd, LIMIT);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleeper), Signal::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    assert!(!status.core_dumped(), "initd dumped core");
    let cores: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("core"))
        .collect();
    assert!(cores.is_empty(), "core files: {cores:?}");
    eprintln!(
        "security: initd's memory: the app under initd's own uid cannot read /proc/1/mem or \
         /proc/1/environ; initd killed by SIGABRT writes no core file (a plain process here does)"
    );
}

// ---------------------------------------------------------------------------
// 4. Health checks: a secret stays out of their answers

/// Pieces of the planted value long enough to mean something: a prefix of
/// it left by a cut is as much a leak as the whole.
fn plant_pieces() -> Vec<&'static str> {
    (0..=PLANT.len() - 6).map(|i| &PLANT[i..i + 6]).collect()
}

fn leaked(text: &str) -> Vec<&'static str> {
    plant_pieces().into_iter().filter(|p| text.contains(p)).collect()
}

/// What `initd check`, `initd check --json` and `initd status` say, after
/// a check that fails.
fn health_answers(socket: &Path) -> String {
    let mut seen = String::new();
    let check = run(check_cmd(socket, &[], &[]), LIMIT);
    assert_eq!(check.code(), 1, "the probe should fail: {}", check.stdout);
    for args in [&[][..], &["--json"], &["status"]] {
        let out = run(check_cmd(socket, args, &[]), LIMIT);
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
    }
    seen
}

#[test]
fn a_secret_stays_out_of_health_checks_and_status() {
    let dir = Scratch::new("health-leak");
    let pw = dir.path("pw");
    fs::write(&pw, format!("{PLANT}\n")).unwrap();
    let socket = dir.path("initd.sock");
    let mode = dir.path("mode");
    let start = |probe: &str, server: &str| {
        let mut cmd = initd_pid1(["run"]);
        cmd.current_dir(&dir.0)
            .env("INITD_SOCKET", &socket)
            .env("INITD_MIGRATE", "off")
            .env("INITD_LOG", "trace")
            .env("INITD_SECRETS", "DB_PASSWORD")
            .env("DB_PASSWORD_FILE", &pw)
            .env("INITD_SERVER", server)
            .env("INITD_HEALTH", probe);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_running = |socket: &Path| {
        wait_for(LIMIT, || {
            let out = run(check_cmd(socket, &["status"], &[]), LIMIT);
            out.stdout.contains("main ").then_some(())
        })
    };
    let mut seen = String::new();
    let mut answers = 0;

    // A probe command with the app's environment, whose failing output
    // holds the secret: whole; across the cut at the length kept for the
    // reason (the first 200 characters of its last line); and across the
    // start of the output's end that is kept (2,048 bytes).
    let probe_sh = dir.path("probe.sh");
    fs::write(
        &probe_sh,
        format!(
            "case $(cat {mode}) in\n\
             whole) echo \"login with password $DB_PASSWORD refused\" >&2 ;;\n\
             cut) printf '%0190d%s\\n' 0 \"$DB_PASSWORD\" ;;\n\
             tail) printf '%s%02040d\\n' \"$DB_PASSWORD\" 0 ;;\n\
             esac\nexit 1\n",
            mode = mode.display()
        ),
    )
    .unwrap();
    let child = start(&format!("cmd:sh {}", probe_sh.display()), "sleep 1000");
    let pid = initd_host_pid(&child);
    wait_running(&socket);
    let zeros = "0".repeat(190);
    for (m, shown) in [
        ("whole", "exited with status 1: login with password *** refused"),
        ("cut", &format!("exited with status 1: {zeros}***")[..]),
        (
            "tail",
            "exited with status 1: (its last line is longer than the 2048 bytes kept)",
        ),
    ] {
        fs::write(&mode, m).unwrap();
        let got = health_answers(&socket);
        assert!(got.contains(shown), "{m}: {got}");
        seen.push_str(&got);
        answers += 4;
    }
    signal(pid, Signal::SIGTERM);
    let out = finish(child, LIMIT);
    // The server dies of the TERM: 128 + 15.
    assert_eq!(out.code(), 143, "{}", out.stderr);
    seen.push_str(&out.stdout);
    seen.push_str(&out.stderr);

    // An HTTP probe whose URL carries the secret as a token, answered with
    // the secret in the reason phrase: whole, and cut where the reason is
    // (after 60 characters).
    let port = free_port();
    let server_py = dir.path("server.py");
    fs::write(
        &server_py,
        r#"import http.server, sys
port, secret_file, mode_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
secret = open(secret_file).read().strip()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        mode = open(mode_file).read()
        reason = "token " + secret + " expired" if mode == "whole" else "x" * 50 + secret
        self.send_response(503, reason)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#,
    )
    .unwrap();
    fs::write(&mode, "whole").unwrap();
    let server = format!(
        "python3 {} {port} {} {}",
        server_py.display(),
        pw.display(),
        mode.display()
    );
    let url = format!("http://127.0.0.1:{port}/healthz?token={PLANT}");
    let child = start(&url, &server);
    let pid = initd_host_pid(&child);
    wait_running(&socket);
    // The server may still be starting: wait for its answer.
    wait_for(LIMIT, || {
        let out = run(check_cmd(&socket, &[], &[]), LIMIT);
        out.stdout.contains("HTTP 503").then_some(())
    });
    let xs = "x".repeat(50);
    for (m, shown) in [
        ("whole", "HTTP 503 token *** expired".to_string()),
        ("cut", format!("HTTP 503 {xs}***")),
    ] {
        fs::write(&mode, m).unwrap();
        let got = health_answers(&socket);
        assert!(got.contains(&shown), "{m}: {got}");
        assert!(
            got.contains(&format!("http://127.0.0.1:{port}/healthz?token=***")),
            "{got}"
        );
        seen.push_str(&got);
        answers += 4;
    }
    signal(pid, Signal::SIGTERM);
    let out = finish(child, LIMIT);
    // The server dies of the TERM: 128 + 15.
    assert_eq!(out.code(), 143, "{}", out.stderr);
    seen.push_str(&out.stdout);
    seen.push_str(&out.stderr);

    let pieces = leaked(&seen);
    assert!(
        pieces.is_empty(),
        "the secret leaked ({pieces:?}):\n{}",
        seen.lines()
            .filter(|l| !leaked(l).is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "security: health checks: a planted secret, in a failing cmd: probe's output (whole, cut at \
         the reason's length, past the kept tail) and in an http probe's URL and reason phrase (whole, \
         cut), appears in none of {answers} answers of `initd check`, `initd check --json` and \
         `initd status`, nor in initd's trace-level log"
    );
}
