//! The entrypoint pipeline end to end: `initd run`, `initd exec` with
//! secrets and the app user, and `initd config`, each run as the real
//! binary (as PID 1 of a pid namespace; the user tests also in a mount
//! namespace with a private /etc) and judged by what a user sees: exit
//! codes, initd's lines, files, the children's /proc/PID/status, HTTP
//! answers.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname, listen, socket,
};

const LIMIT: Duration = Duration::from_secs(30);
/// A secret's content that must never reach initd's output.
const PLANT: &str = "s3cr3t-planted-value";
const HOST_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

// ---------------------------------------------------------------------------
// Helpers

/// The values of one `Name:` line of a /proc/PID/status text.
fn status_field(status: &str, name: &str) -> Vec<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {name}: line in {status:?}"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

/// The app user most user tests add: uid and gid 1000, its home in the
/// scratch directory, and a member of a supplementary group `extra` (1500).
fn app_passwd(dir: &Scratch) -> String {
    format!("app:x:1000:1000::{}:/bin/sh", dir.path("home").display())
}

const APP_GROUPS: &[&str] = &["app:x:1000:", "extra:x:1500:app"];

/// A child that prints its own status and the login variables.
const SHOW_IDS: &str = "cat /proc/self/status; echo \"HOME=$HOME USER=$USER LOGNAME=$LOGNAME\"";

/// `sh -c SCRIPT` as one command line for the INITD_* command settings.
fn sh(script: &str) -> String {
    format!("sh -c '{script}'")
}

/// A TCP port on 127.0.0.1 that refuses connections while the socket is
/// kept but not listening: nothing else can take the port meanwhile.
fn bound_port() -> (OwnedFd, u16) {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    let port = getsockname::<SockaddrIn>(fd.as_raw_fd()).unwrap().port();
    (fd, port)
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A config output line `KEY = VALUE   # ORIGIN`: present, with exactly
/// this value and origin.
fn assert_config_line(out: &str, value: &str, origin: &str) {
    let found = out.lines().any(|l| {
        l.strip_prefix(value)
            .and_then(|rest| rest.trim_start().strip_prefix("# "))
            .is_some_and(|o| o == origin)
    });
    assert!(found, "no line `{value}  # {origin}` in:\n{out}");
}

// ---------------------------------------------------------------------------
// 1. The app user

#[test]
fn root_drops_to_the_app_user_with_exactly_its_ids_and_groups() {
    if !is_root_or_skip("root_drops_to_the_app_user_with_exactly_its_ids_and_groups") {
        return;
    }
    let dir = Scratch::new("drop");
    let passwd = app_passwd(&dir);
    let script = format!("{SHOW_IDS}; echo ==== ; cat /proc/1/status");
    let mut cmd = initd_pid1_with_etc(&dir, &[&passwd], APP_GROUPS, ["sh", "-c", &script]);
    let out = run(cmd.env_remove("INITD_ALLOW_ROOT"), LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let (child, pid1) = out.stdout.split_once("====").unwrap();
    for field in ["Uid", "Gid"] {
        assert_eq!(status_field(child, field), ["1000"; 4], "{field}:\n{child}");
    }
    assert_eq!(sorted(status_field(child, "Groups")), ["1000", "1500"], "{child}");
    for field in ["CapEff", "CapPrm", "CapAmb"] {
        assert_eq!(status_field(child, field), ["0000000000000000"], "{field}");
    }
    let home = dir.path("home");
    assert!(
        child.contains(&format!("HOME={} USER=app LOGNAME=app", home.display())),
        "{child}"
    );
    // initd itself, PID 1, keeps no root either.
    assert_eq!(status_field(pid1, "Uid"), ["1000"; 4], "{pid1}");
    assert_eq!(status_field(pid1, "CapEff"), ["0000000000000000"]);

    // And root cannot be taken back.
    let dir = Scratch::new("drop-setuid");
    let passwd = app_passwd(&dir);
    let mut cmd = initd_pid1_with_etc(
        &dir,
        &[&passwd],
        APP_GROUPS,
        ["python3", "-c", "import os; os.setuid(0); print('root again')"],
    );
    let out = run(cmd.env_remove("INITD_ALLOW_ROOT"), LIMIT);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("PermissionError"), "{}", out.stderr);
    assert!(!out.stdout.contains("root again"));
}

#[test]
fn a_numeric_user_gets_exactly_that_uid_and_gid() {
    if !is_root_or_skip("a_numeric_user_gets_exactly_that_uid_and_gid") {
        return;
    }
    let dir = Scratch::new("numeric");
    let passwd = app_passwd(&dir);
    let mut cmd = initd_pid1_with_etc(&dir, &[&passwd], APP_GROUPS, ["sh", "-c", SHOW_IDS]);
    let out = run(
        cmd.env_remove("INITD_ALLOW_ROOT").env("INITD_USER", "1000:1000"),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(status_field(&out.stdout, "Uid"), ["1000"; 4]);
    assert_eq!(status_field(&out.stdout, "Gid"), ["1000"; 4]);
    // An explicit group replaces the supplementary groups, as with
    // `docker run --user`.
    assert_eq!(status_field(&out.stdout, "Groups"), ["1000"], "{}", out.stdout);
    assert_eq!(status_field(&out.stdout, "CapEff"), ["0000000000000000"]);
    assert!(out.stdout.contains("USER=app LOGNAME=app"), "{}", out.stdout);
}

/// The lowest id from 1000 up that is neither a uid nor a gid in `etc`.
fn free_id(etc: &Path) -> u32 {
    let ids: BTreeSet<u32> = ["passwd", "group"]
        .iter()
        .flat_map(|f| {
            fs::read_to_string(etc.join(f))
                .unwrap()
                .lines()
                .filter_map(|l| l.split(':').nth(2)?.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    (1000..).find(|id| !ids.contains(id)).unwrap()
}

#[test]
fn root_is_refused_unless_allowed() {
    if !is_root_or_skip("root_is_refused_unless_allowed") {
        return;
    }
    let refused = |passwd: &[&str], user: Option<&str>| {
        let dir = Scratch::new("refused");
        let marker = dir.path("ran");
        let touch = format!("touch {}", marker.display());
        let mut cmd = initd_pid1_with_etc(&dir, passwd, &[], ["sh", "-c", &touch]);
        cmd.env_remove("INITD_ALLOW_ROOT");
        if let Some(user) = user {
            cmd.env("INITD_USER", user);
        }
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 77, "{}", out.stderr);
        assert!(!marker.exists(), "the command ran as root");
        (out.stderr.trim().to_string(), free_id(&dir.path("etc")))
    };

    // No app user in the image: say how to add one.
    let (line, id) = refused(&[], None);
    assert_eq!(
        line,
        format!(
            "initd: error: user \"app\" not found in /etc/passwd; add it in your Dockerfile: \
             RUN groupadd --gid {id} app && useradd --uid {id} --gid app --create-home app \
             (Alpine: RUN addgroup -g {id} app && adduser -D -u {id} -G app app) (or set INITD_USER)"
        )
    );
    let root_line = |name: &str| {
        format!(
            "initd: error: INITD_USER=\"{name}\" is uid 0 (root) and initd will not run the app as \
             root; use an unprivileged user, or set INITD_ALLOW_ROOT=1 if the app really needs root"
        )
    };
    assert_eq!(refused(&[], Some("root")).0, root_line("root"));
    // Root under another name is still root.
    assert_eq!(
        refused(&["toor:x:0:0::/root:/bin/sh"], Some("toor")).0,
        root_line("toor")
    );
    assert_eq!(refused(&[], Some("0")).0, root_line("0"));

    // Allowed: the app runs as root.
    let dir = Scratch::new("allowed");
    let out = run(initd_pid1_with_etc(&dir, &[], &[], ["sh", "-c", SHOW_IDS]), LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(status_field(&out.stdout, "Uid"), ["0"; 4]);
}

#[test]
fn started_as_a_user_initd_stays_that_user_and_cannot_switch() {
    if !is_root_or_skip("started_as_a_user_initd_stays_that_user_and_cannot_switch") {
        return;
    }
    let as_1000 = |dir: &Scratch, marker: &Path| {
        let passwd = app_passwd(dir);
        let script = format!("{SHOW_IDS}; touch {}", marker.display());
        let mut cmd = pid1_with_private_etc(
            dir,
            &[&passwd],
            APP_GROUPS,
            [
                "setpriv",
                "--reuid",
                "1000",
                "--regid",
                "1000",
                "--clear-groups",
                INITD,
                "sh",
                "-c",
                &script,
            ],
        );
        cmd.env_remove("INITD_ALLOW_ROOT");
        // The child writes its marker as uid 1000.
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
        cmd
    };
    let dir = Scratch::new("nonroot-switch");
    let marker = dir.path("ran");
    let out = run(as_1000(&dir, &marker).env("INITD_USER", "other"), LIMIT);
    assert_eq!(out.code(), 77, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "initd: error: INITD_USER=other but initd runs as uid 1000 (not root), so it cannot switch \
         users; remove INITD_USER or start the container as root"
    );
    assert!(!marker.exists());

    let dir = Scratch::new("nonroot-stay");
    let marker = dir.path("ran");
    let out = run(as_1000(&dir, &marker), LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(marker.exists());
    assert_eq!(status_field(&out.stdout, "Uid"), ["1000"; 4]);
    assert_eq!(status_field(&out.stdout, "Gid"), ["1000"; 4]);
    assert_eq!(status_field(&out.stdout, "CapEff"), ["0000000000000000"]);
    // Naming the user initd already is, is fine.
    let dir = Scratch::new("nonroot-same");
    let marker = dir.path("ran");
    let out = run(as_1000(&dir, &marker).env("INITD_USER", "app"), LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(marker.exists());
}

// ---------------------------------------------------------------------------
// 2. HOST_UID / HOST_GID and INITD_CHOWN

#[test]
fn host_uid_and_gid_renumber_the_app_user_and_its_files() {
    if !is_root_or_skip("host_uid_and_gid_renumber_the_app_user_and_its_files") {
        return;
    }
    let dir = Scratch::new("hostuid");
    let passwd = app_passwd(&dir);
    let mut cmd = initd_pid1_with_etc(&dir, &[&passwd], APP_GROUPS, ["sh", "-c", SHOW_IDS]);
    let home = dir.path("home");
    fs::create_dir_all(home.join("sub")).unwrap();
    for file in [".profile", "sub/file"] {
        fs::write(home.join(file), "x").unwrap();
    }
    for path in [".profile", "sub", "sub/file"] {
        std::os::unix::fs::lchown(home.join(path), Some(1000), Some(1000)).unwrap();
    }
    // Not the app user's: stays as it is.
    fs::write(home.join("roots"), "x").unwrap();
    let out = run(
        cmd.env_remove("INITD_ALLOW_ROOT")
            .env("HOST_UID", "1234")
            .env("HOST_GID", "1234"),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(status_field(&out.stdout, "Uid"), ["1234"; 4], "{}", out.stdout);
    assert_eq!(status_field(&out.stdout, "Gid"), ["1234"; 4]);
    assert_eq!(sorted(status_field(&out.stdout, "Groups")), ["1234", "1500"]);
    assert!(
        out.stderr
            .contains("initd: user app is now uid 1234 gid 1234 (was 1000:1000), to match HOST_UID/HOST_GID"),
        "{}",
        out.stderr
    );
    // The namespace's /etc is the private copy.
    let etc_passwd = dir.read("etc/passwd");
    let etc_group = dir.read("etc/group");
    assert!(
        etc_passwd
            .lines()
            .any(|l| l == format!("app:x:1234:1234::{}:/bin/sh", home.display())),
        "{etc_passwd}"
    );
    assert!(etc_group.lines().any(|l| l == "app:x:1234:"), "{etc_group}");
    assert!(etc_group.lines().any(|l| l == "extra:x:1500:app"), "{etc_group}");
    for path in ["", ".profile", "sub", "sub/file"] {
        assert_eq!(owner(&home.join(path)), (1234, 1234), "{path}");
    }
    assert_eq!(owner(&home.join("roots")), (0, 0));
}

#[test]
fn host_ids_that_are_root_or_taken_are_refused() {
    if !is_root_or_skip("host_ids_that_are_root_or_taken_are_refused") {
        return;
    }
    let attempt = |extra_passwd: &[&str], extra_group: &[&str], vars: &[(&str, &str)]| {
        let dir = Scratch::new("hostuid-bad");
        let marker = dir.path("ran");
        let touch = format!("touch {}", marker.display());
        let app = app_passwd(&dir);
        let mut passwd = vec![app.as_str()];
        passwd.extend(extra_passwd);
        let mut group = APP_GROUPS.to_vec();
        group.extend(extra_group);
        let mut cmd = initd_pid1_with_etc(&dir, &passwd, &group, ["sh", "-c", &touch]);
        cmd.env_remove("INITD_ALLOW_ROOT").envs(vars.iter().copied());
        let out = run(cmd, LIMIT);
        assert!(!marker.exists(), "the command ran: {vars:?}");
        assert!(
            dir.read("etc/passwd").lines().any(|l| l == app),
            "/etc/passwd was changed: {vars:?}"
        );
        out
    };
    let out = attempt(&[], &[], &[("HOST_UID", "0")]);
    assert_eq!(out.code(), 77, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "initd: error: HOST_UID=0 would make the app user root; leave HOST_UID unset when the host user \
         is root (or set INITD_ALLOW_ROOT=true, and the app user keeps its ids)"
    );
    let out = attempt(&[], &[], &[("HOST_GID", "0")]);
    assert_eq!(out.code(), 77, "{}", out.stderr);
    assert!(out.stderr.contains("HOST_GID=0 would make"), "{}", out.stderr);

    let out = attempt(
        &["other:x:1234:1234::/:/bin/sh"],
        &["other:x:1234:"],
        &[("HOST_UID", "1234")],
    );
    assert_eq!(out.code(), 77, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        "initd: error: cannot give user \"app\" uid 1234 (HOST_UID): it belongs to user \"other\" \
         in /etc/passwd; renumber \"other\" in your Dockerfile (usermod -u) or leave HOST_UID unset"
    );
    let out = attempt(
        &["other:x:1234:1234::/:/bin/sh"],
        &["other:x:1234:"],
        &[("HOST_GID", "1234")],
    );
    assert_eq!(out.code(), 77, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cannot give group \"app\" gid 1234 (HOST_GID): it belongs to group \"other\""),
        "{}",
        out.stderr
    );
}

#[test]
fn initd_chown_hands_the_paths_to_the_app_user() {
    if !is_root_or_skip("initd_chown_hands_the_paths_to_the_app_user") {
        return;
    }
    let dir = Scratch::new("chown");
    let data = dir.path("data");
    fs::create_dir_all(data.join("a/b")).unwrap();
    fs::write(data.join("a/b/file"), "x").unwrap();
    fs::write(data.join("top"), "x").unwrap();
    let passwd = app_passwd(&dir);
    let write = format!("echo written > {}/a/b/new", data.display());
    let mut cmd = initd_pid1_with_etc(&dir, &[&passwd], APP_GROUPS, ["sh", "-c", &write]);
    let out = run(
        cmd.env_remove("INITD_ALLOW_ROOT")
            .env("INITD_CHOWN", data.to_str().unwrap()),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    for path in ["", "a", "a/b", "a/b/file", "top", "a/b/new"] {
        assert_eq!(owner(&data.join(path)), (1000, 1000), "{path}");
    }
    assert_eq!(fs::read_to_string(data.join("a/b/new")).unwrap(), "written\n");
}

// ---------------------------------------------------------------------------
// 3. Secrets

/// Prints each variable as NAME=value, or NAME=<unset>.
fn print_vars(names: &[&str]) -> Vec<String> {
    let script = format!("import os\nfor n in {names:?}:\n    print(n + '=' + os.environ.get(n, '<unset>'))");
    strings(&["python3", "-c", &script])
}

#[test]
fn docker_secrets_become_variables() {
    let dir = Scratch::new("secrets");
    fs::create_dir_all(dir.path("x")).unwrap();
    fs::write(dir.path("x/pw"), format!("{PLANT}\n")).unwrap();
    fs::write(dir.path("x/key"), "key-from-file\r\n").unwrap();
    fs::create_dir_all(dir.path("elsewhere")).unwrap();
    fs::write(dir.path("elsewhere/token"), "not-a-secret\n").unwrap();
    let mut names = vec![
        "DB_PASSWORD",
        "DB_PASSWORD_FILE",
        "API_KEY",
        "FILE__API_KEY",
        "X",
        "X_FILE",
        "TOKEN",
        "TOKEN_FILE",
        "EVIL",
        "EVIL_FILE",
        "DOTDOT",
        "DOTDOT_FILE",
    ];
    // The unrelated variables of a real environment reach the app as they were.
    names.extend(REALISTIC_ENV.iter().map(|(k, _)| *k));
    let mut cmd = initd_pid1(print_vars(&names));
    let evil = format!("{}-evil/pw", dir.path("x").display());
    let dotdot = format!("{}/../elsewhere/token", dir.path("x").display());
    cmd.env("INITD_SECRETS_DIRS", dir.path("x"))
        .env("DB_PASSWORD_FILE", dir.path("x/pw"))
        // The prefix spelling is a secret wherever it points.
        .env("FILE__API_KEY", dir.path("x/key"))
        // Declared but empty: the secret fills it.
        .env("API_KEY", "")
        // Outside the secrets directory: an app setting, left alone.
        .env("X_FILE", "/nonexistent/x")
        .env("TOKEN_FILE", dir.path("elsewhere/token"))
        // Only looks inside.
        .env("EVIL_FILE", &evil)
        .env("DOTDOT_FILE", &dotdot);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let mut expected = format!(
        "DB_PASSWORD={PLANT}\nDB_PASSWORD_FILE=<unset>\nAPI_KEY=key-from-file\n\
         FILE__API_KEY=<unset>\nX=<unset>\nX_FILE=/nonexistent/x\nTOKEN=<unset>\nTOKEN_FILE={}\n\
         EVIL=<unset>\nEVIL_FILE={evil}\nDOTDOT=<unset>\nDOTDOT_FILE={dotdot}\n",
        dir.path("elsewhere/token").display()
    );
    for (k, v) in REALISTIC_ENV {
        expected.push_str(&format!("{k}={v}\n"));
    }
    assert_eq!(out.stdout, expected);
    assert_eq!(out.stderr, "");

    // INITD_SECRETS opts a NAME in wherever its file is.
    let mut cmd = initd_pid1(print_vars(&["TOKEN", "TOKEN_FILE"]));
    cmd.env("INITD_SECRETS", "TOKEN")
        .env("TOKEN_FILE", dir.path("elsewhere/token"));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "TOKEN=not-a-secret\nTOKEN_FILE=<unset>\n");
}

#[test]
fn initd_config_lists_the_file_variables_left_alone() {
    let dir = Scratch::new("leftalone");
    let mut cmd = initd_plain(["config"]);
    cmd.current_dir(&dir.0)
        .env("INITD_MIGRATE", "off")
        .env("INITD_SERVER", "sleep 1");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let section = out
        .stdout
        .split("# *_FILE variables left as they are (not Docker secrets)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of variables left alone:\n{}", out.stdout));
    let lines: Vec<&str> = section
        .lines()
        .take_while(|l| l.starts_with("# ") && l.contains("_FILE"))
        .collect();
    let outside = "outside the secrets directories (/run/secrets, INITD_SECRETS_DIRS)";
    for line in [
        format!(
            "# TF_CLI_CONFIG_FILE=/nonexistent/home/.terraformrc: {outside}; if it is a Docker secret, add TF_CLI_CONFIG to INITD_SECRETS"
        ),
        format!(
            "# CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE=/etc/ssl/certs/ca-certificates.crt: {outside}; if it is a Docker secret, add CLOUDSDK_CORE_CUSTOM_CA_CERTS to INITD_SECRETS"
        ),
        "# ENV_FILE=\".env\": not an absolute path; if it is a Docker secret, add ENV to INITD_SECRETS"
            .to_string(),
    ] {
        assert!(
            lines.contains(&line.as_str()),
            "{line}\nnot in:\n{}",
            lines.join("\n")
        );
    }
    // Names and paths only: nothing read from those files.
    assert!(!out.stdout.contains("BEGIN CERTIFICATE"));
}

#[test]
fn unusable_secrets_stop_initd_before_anything_starts() {
    let dir = Scratch::new("badsecrets");
    let marker = dir.path("ran");
    let touch = format!("touch {}", marker.display());
    let pw = dir.path("pw");
    fs::write(&pw, "x\n").unwrap();
    // The same for `initd exec` and `initd run`; the message is returned.
    let attempt = |vars: &[(&str, &Path)], extra: &[(&str, &str)]| {
        let messages: Vec<String> = ["exec", "run"]
            .into_iter()
            .map(|sub| {
                let mut cmd = match sub {
                    "exec" => initd_pid1(["exec", "sh", "-c", &touch]),
                    _ => initd_pid1(["run"]),
                };
                cmd.env("INITD_SERVER", sh(&touch))
                    .env("INITD_MIGRATE", "off")
                    .env("INITD_SECRETS_DIRS", &dir.0);
                cmd.envs(vars.iter().map(|(k, v)| (k, v)))
                    .envs(extra.iter().copied());
                let out = run(cmd, Duration::from_secs(10));
                assert_eq!(out.code(), 78, "{sub}: {}", out.stderr);
                assert!(!marker.exists(), "{sub}: the command ran");
                assert_eq!(out.stdout, "");
                out.stderr.trim().to_string()
            })
            .collect();
        assert_eq!(messages[0], messages[1]);
        messages[0].clone()
    };

    assert_eq!(
        attempt(&[("DB_PASSWORD_FILE", &pw)], &[("DB_PASSWORD", "inline")]),
        "initd: error: secret DB_PASSWORD: both DB_PASSWORD and DB_PASSWORD_FILE are set; unset one of them"
    );
    let missing = dir.path("no-such-secret");
    assert_eq!(
        attempt(&[("DB_PASSWORD_FILE", &missing)], &[]),
        format!(
            "initd: error: secret DB_PASSWORD: cannot read {} (No such file or directory); mount the \
             secret there or unset DB_PASSWORD_FILE",
            missing.display()
        )
    );
    let not_regular = |path: &Path, kind: &str| {
        format!(
            "initd: error: secret DB_PASSWORD: {} is {kind}, not a regular file; point \
             DB_PASSWORD_FILE at the secret file itself",
            path.display()
        )
    };
    let subdir = dir.path("subdir");
    fs::create_dir(&subdir).unwrap();
    assert_eq!(
        attempt(&[("DB_PASSWORD_FILE", &subdir)], &[]),
        not_regular(&subdir, "a directory")
    );
    // Opening a FIFO for reading would block until a writer comes: it must
    // be refused without being opened (the run limit above is the proof).
    let fifo = dir.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert_eq!(
        attempt(&[("DB_PASSWORD_FILE", &fifo)], &[]),
        not_regular(&fifo, "a FIFO")
    );
    let big = dir.path("big");
    fs::write(&big, vec![b'a'; 1024 * 1024 + 1]).unwrap();
    assert_eq!(
        attempt(&[("FILE__DB_PASSWORD", &big)], &[]),
        format!(
            "initd: error: secret DB_PASSWORD: {} is larger than 1 MiB, too big for an environment \
             variable; let the app read the file itself (from outside the secrets directories, with \
             FILE__DB_PASSWORD not in INITD_SECRETS)",
            big.display()
        )
    );
}

#[test]
fn a_secret_never_shows_in_initds_output_or_command_line() {
    let dir = Scratch::new("leak");
    let pw = dir.path("pw");
    fs::write(&pw, format!("{PLANT}\n")).unwrap();
    // `initd run` without INITD_SERVER runs gunicorn: a stand-in that
    // exits at once, and a project for it to be given.
    fs::create_dir_all(dir.path("bin")).unwrap();
    write_script(&dir.path("bin/gunicorn"), "#!/bin/sh\nexit 0\n");
    fs::create_dir_all(dir.path("proj")).unwrap();
    fs::write(dir.path("proj/wsgi.py"), "application = None\n").unwrap();
    let path = format!("{}:{HOST_PATH}", dir.path("bin").display());

    let mut seen = String::new();
    let mut case = |n: usize, args: &[&str], vars: &[(&str, String)], expected: i32| {
        for format in ["text", "json"] {
            let mut cmd = if args[0] == "config" {
                initd_plain(args)
            } else {
                initd_pid1(args)
            };
            cmd.current_dir(&dir.0)
                .env("PATH", &path)
                .env("INITD_LOG", "trace")
                .env("INITD_LOG_FORMAT", format)
                .env("INITD_SECRETS_DIRS", &dir.0)
                .envs(vars.iter().map(|(k, v)| (k, v)));
            let out = run(cmd, LIMIT);
            assert_eq!(out.code(), expected, "case {n} ({format}): {}", out.stderr);
            seen.push_str(&format!("--- case {n} ({format})\n{}{}", out.stdout, out.stderr));
        }
    };
    let secret = |name: &str, content: &str| {
        let path = dir.path(name);
        fs::write(&path, format!("{content}\n")).unwrap();
        path.to_str().unwrap().to_string()
    };
    let db = [("DB_PASSWORD_FILE", pw.to_str().unwrap().to_string())];
    let same_as_file = format!("test \"$DB_PASSWORD\" = \"$(cat {})\"", pw.display());
    case(1, &["exec", "sh", "-c", &same_as_file], &db, 0);
    case(2, &["exec", "no-such-command-xyz"], &db, 127);
    case(3, &["exec", "sh", "-c", "exit 7"], &db, 7);
    let failing_migration = [
        db[0].clone(),
        ("INITD_MIGRATE", sh("exit 3")),
        ("INITD_SERVER", "true".to_string()),
    ];
    case(4, &["run"], &failing_migration, 3);
    case(5, &["config"], &failing_migration, 0);
    // From here on each secret is the only one, so the redaction of
    // another cannot hide it. A secret that is one of initd's settings,
    // malformed: the error quotes the value (escaped, with a quote in it).
    for (i, value) in [PLANT.to_string(), format!("{PLANT}\"\\x")].iter().enumerate() {
        let vars = [("PORT_FILE", secret(&format!("port{i}"), value))];
        case(6, &["run"], &vars, 78);
        case(7, &["config"], &vars, 78);
    }
    // GUNICORN_ARGUMENTS from a secret ends up in the server's command
    // line, which initd logs and `initd config` shows, re-quoted.
    let spellings = [
        format!("--name {PLANT}"),
        format!("--name '{PLANT}'"),
        format!("--name  {PLANT}\t--timeout 30"),
        format!("--name=\"{PLANT}\""),
        format!("--name {PLANT}\\\"x"),
    ];
    for (i, spelling) in spellings.iter().enumerate() {
        let vars = [("GUNICORN_ARGUMENTS_FILE", secret(&format!("args{i}"), spelling))];
        case(8, &["run"], &vars, 0);
        case(9, &["config"], &vars, 0);
    }
    // Unbalanced quotes: the error quotes the value.
    for (i, spelling) in [format!("--name '{PLANT}"), format!("--name \"{PLANT}")]
        .iter()
        .enumerate()
    {
        let vars = [("GUNICORN_ARGUMENTS_FILE", secret(&format!("bad{i}"), spelling))];
        case(10, &["run"], &vars, 78);
        case(11, &["config"], &vars, 78);
    }
    assert!(
        !seen.contains(PLANT),
        "the secret leaked:\n{}",
        seen.lines()
            .filter(|l| l.contains(PLANT) || l.starts_with("--- case"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The cases did run what they were meant to.
    assert!(seen.contains("gunicorn_arguments = \"***\""), "{seen}");
    assert!(seen.contains("starting server: gunicorn"), "{seen}");
    assert!(seen.contains("PORT=\"***\""), "{seen}");

    // Nor is it in initd's own command line or environment, for anyone in
    // the container to read.
    let mut cmd = initd_pid1(["sleep", "30"]);
    cmd.env("DB_PASSWORD_FILE", &pw).env("INITD_SECRETS_DIRS", &dir.0);
    let running = spawn_logged(&mut cmd, &dir, "initd");
    let pid = running.pid();
    wait_for(LIMIT, || has_child(pid).then_some(()));
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let environ = String::from_utf8_lossy(&environ).replace('\0', " ");
    assert!(cmdline.contains("sleep 30"), "{cmdline}");
    assert!(environ.contains("DB_PASSWORD_FILE="), "{environ}");
    assert!(!cmdline.contains(PLANT) && !environ.contains(PLANT));
    signal(pid, Signal::SIGTERM);
    let out = running.finish(LIMIT);
    // `sleep` dies of the TERM: 128 + 15.
    assert_eq!(out.code(), 143, "{}", out.stderr);
    assert!(!out.stderr.contains(PLANT));
}

// ---------------------------------------------------------------------------
// 4. Waiting for dependencies

#[test]
fn the_server_starts_only_once_the_dependency_is_up() {
    let dir = Scratch::new("waitup");
    let (socket, port) = bound_port();
    let listening = dir.path("listening");
    let marker = dir.path("started");
    let server = sh(&format!(
        "if test -e {l}; then echo after > {m}; else echo before > {m}; fi",
        l = listening.display(),
        m = marker.display()
    ));
    let target = format!("tcp://127.0.0.1:{port}");
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_WAIT_FOR", &target)
        .env("INITD_WAIT_TIMEOUT", "20s")
        .env("INITD_SERVER", &server);
    let mut running = spawn_logged(&mut cmd, &dir, "initd");
    running.wait_stderr(&format!("waiting for {target}"), LIMIT);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!marker.exists(), "the server started while {target} was down");
    // Marked before it can accept, so a server that sees no mark started
    // too early.
    fs::write(&listening, "").unwrap();
    listen(&socket, Backlog::new(16).unwrap()).unwrap();
    let out = running.finish(LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(fs::read_to_string(&marker).unwrap(), "after\n");
    assert!(
        out.stderr.contains(&format!("{target} is up after")),
        "{}",
        out.stderr
    );
    // initd's probe really connected.
    let listener = TcpListener::from(socket);
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok(), "initd never connected");
}

#[test]
fn a_dependency_that_never_comes_up_is_69_and_nothing_starts() {
    let dir = Scratch::new("waitdown");
    let (_socket, port) = bound_port();
    let marker = dir.path("started");
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_WAIT_FOR", format!("tcp://127.0.0.1:{port}"))
        .env("INITD_WAIT_TIMEOUT", "1s")
        .env("INITD_MIGRATE", sh(&format!("touch {}", marker.display())))
        .env("INITD_SERVER", sh(&format!("touch {}", marker.display())));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 69, "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        format!(
            "initd: error: not up after 1s: tcp://127.0.0.1:{port} (connection refused); nothing was started"
        )
    );
    assert!(!marker.exists());
}

#[test]
fn a_stop_while_waiting_ends_initd_and_nothing_starts() {
    let dir = Scratch::new("waitstop");
    let (_socket, port) = bound_port();
    let marker = dir.path("started");
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_WAIT_FOR", format!("tcp://127.0.0.1:{port}"))
        .env("INITD_WAIT_TIMEOUT", "60s")
        .env("INITD_MIGRATE", sh(&format!("touch {}", marker.display())))
        .env("INITD_SERVER", sh(&format!("touch {}", marker.display())));
    let mut running = spawn_logged(&mut cmd, &dir, "initd");
    running.wait_stderr("waiting for", LIMIT);
    let pid = running.pid();
    let start = Instant::now();
    signal(pid, Signal::SIGTERM);
    let out = running.finish(LIMIT);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the stop waited for the dependency: {:?}",
        start.elapsed()
    );
    // Nothing ran, so there is no child status to report: 128 + TERM.
    assert_eq!(out.code(), 143, "{}", out.stderr);
    assert!(
        out.stderr.contains("stopping on TERM: nothing more will start"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists());
}

#[test]
fn an_https_dependency_is_a_configuration_error() {
    let dir = Scratch::new("waithttps");
    let marker = dir.path("started");
    for args in [&["run"][..], &["config"]] {
        let mut cmd = initd_pid1(args);
        cmd.current_dir(&dir.0)
            .env("INITD_WAIT_FOR", "https://x")
            .env("INITD_SERVER", sh(&format!("touch {}", marker.display())));
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 78, "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr.trim(),
            "initd: error: INITD_WAIT_FOR: \"https://x\": https is not supported (initd has no TLS); to wait \
             until the port accepts connections use tcp://x:443"
        );
    }
    assert!(!marker.exists());
}

// ---------------------------------------------------------------------------
// 5. Migration and pre-start commands

fn append(log: &Path, word: &str) -> String {
    sh(&format!("echo {word} >> {}", log.display()))
}

#[test]
fn migration_and_pre_start_commands_run_in_order_before_the_server() {
    let dir = Scratch::new("order");
    let log = dir.path("log");
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_MIGRATE", append(&log, "migrated"))
        .env(
            "INITD_PRESTART",
            format!("{}; {}", append(&log, "pre1"), append(&log, "pre2")),
        )
        .env("INITD_SERVER", append(&log, "server"));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(dir.read("log"), "migrated\npre1\npre2\nserver\n");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("initd: migration: {}", append(&log, "migrated")),
            format!("initd: pre-start command 1: {}", append(&log, "pre1")),
            format!("initd: pre-start command 2: {}", append(&log, "pre2")),
            format!("initd: starting server: {}", append(&log, "server")),
        ],
        "{}",
        out.stderr
    );
}

#[test]
fn a_failing_migration_ends_initd_with_its_status_and_nothing_after_runs() {
    let dir = Scratch::new("migfail");
    let log = dir.path("log");
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_MIGRATE", sh("exit 3"))
        .env("INITD_PRESTART", append(&log, "pre"))
        .env("INITD_SERVER", append(&log, "server"));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        "initd: error: migration failed with status 3: sh -c 'exit 3'; the server was not started"
    );
    assert!(
        !log.exists(),
        "ran after the failed migration: {}",
        dir.read("log")
    );
}

#[test]
fn a_stop_during_the_migration_reaches_it_and_nothing_after_runs() {
    let dir = Scratch::new("migstop");
    let log = dir.path("log");
    let ready = dir.path("ready");
    // Notes the TERM, then dies of it as a program without a handler would.
    let migration = sh(&format!(
        "trap \"echo got TERM >> {log}; trap - TERM; kill -TERM \\$\\$\" TERM; touch {ready}; \
         while :; do sleep 0.05; done",
        log = log.display(),
        ready = ready.display()
    ));
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_MIGRATE", &migration)
        .env("INITD_PRESTART", append(&log, "pre"))
        .env("INITD_SERVER", append(&log, "server"));
    let mut running = spawn_logged(&mut cmd, &dir, "initd");
    let pid = running.pid();
    wait_for_file(&ready);
    running.wait_stderr("initd: migration:", LIMIT);
    signal(pid, Signal::SIGTERM);
    let out = running.finish(LIMIT);
    // It died of the TERM initd forwarded: 128 + TERM, as shells say.
    assert_eq!(out.code(), 143, "{}", out.stderr);
    assert_eq!(dir.read("log"), "got TERM\n");
    assert!(
        out.stderr
            .contains("initd: migration ended by the stop; the server will not start"),
        "{}",
        out.stderr
    );
}

#[test]
fn manage_py_is_migrated_by_default_and_not_when_off() {
    let dir = Scratch::new("managepy");
    let log = dir.path("log");
    fs::write(
        dir.path("manage.py"),
        format!(
            "import sys\n\
             if sys.argv[1:] != ['migrate', '--noinput']:\n\
             \x20   sys.exit('unexpected arguments: %r' % sys.argv[1:])\n\
             open({:?}, 'a').write('migrate\\n')\n",
            log.to_str().unwrap()
        ),
    )
    .unwrap();
    // Python images have `python`; this machine may only have python3.
    fs::create_dir(dir.path("bin")).unwrap();
    let python3 = which::which("python3").expect("python3");
    std::os::unix::fs::symlink(python3, dir.path("bin/python")).unwrap();
    let path = format!("{}:{HOST_PATH}", dir.path("bin").display());
    for (migrate, expected) in [(None, "migrate\nserver\n"), (Some("off"), "server\n")] {
        let _ = fs::remove_file(&log);
        let mut cmd = initd_pid1(["run"]);
        cmd.current_dir(&dir.0)
            .env("PATH", &path)
            .env("INITD_SERVER", append(&log, "server"));
        if let Some(value) = migrate {
            cmd.env("INITD_MIGRATE", value);
        }
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 0, "{migrate:?}: {}", out.stderr);
        assert_eq!(dir.read("log"), expected, "{migrate:?}");
        assert_eq!(
            out.stderr
                .contains("initd: migration: python manage.py migrate --noinput"),
            migrate.is_none(),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn a_missing_pre_start_command_is_127_before_anything_runs() {
    let dir = Scratch::new("missing");
    let log = dir.path("log");
    let mut cmd = initd_pid1(["run"]);
    cmd.current_dir(&dir.0)
        .env("INITD_MIGRATE", append(&log, "migrated"))
        .env(
            "INITD_PRESTART",
            format!("{}; no-such-command-xyz --now", append(&log, "pre1")),
        )
        .env("INITD_SERVER", append(&log, "server"));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 127, "{}", out.stderr);
    assert_eq!(
        out.stderr.trim(),
        format!("initd: error: command not found: no-such-command-xyz (PATH={HOST_PATH})")
    );
    assert!(!log.exists(), "ran before the check: {}", dir.read("log"));
}

// ---------------------------------------------------------------------------
// 6. gunicorn

fn http_get(port: u16) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).ok()?;
    Some(response)
}

fn cmdline(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[test]
fn gunicorn_serves_under_initd_run_and_stops_gracefully() {
    let Ok(gunicorn) = which::which("gunicorn") else {
        note("gunicorn_serves_under_initd_run_and_stops_gracefully: skipped, gunicorn is not installed");
        return;
    };
    let dir = Scratch::new("gunicorn");
    fs::create_dir(dir.path("proj")).unwrap();
    fs::write(
        dir.path("proj/wsgi.py"),
        "def application(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [b'hello']\n",
    )
    .unwrap();
    let port = free_port();
    let path = format!("{}:{HOST_PATH}", gunicorn.parent().unwrap().display());
    let setup = |cmd: &mut Command| {
        cmd.current_dir(&dir.0)
            .env("PATH", &path)
            // gunicorn keeps a control socket under ~; not in root's own.
            .env("HOME", &dir.0)
            .env("INITD_WORKERS", "2")
            .env("PORT", port.to_string());
    };

    let mut config = initd_plain(["config"]);
    setup(&mut config);
    let config = run(config, LIMIT);
    assert_eq!(config.code(), 0, "{}", config.stderr);
    let shm = if Path::new("/dev/shm").is_dir() {
        " --worker-tmp-dir /dev/shm"
    } else {
        ""
    };
    let expected = format!(
        "gunicorn --bind 0.0.0.0:{port} --workers 2 --access-logfile - --error-logfile - \
         --graceful-timeout 7{shm} proj.wsgi:application"
    );
    let plan_line = config
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("# 1. server: "))
        .unwrap_or_else(|| panic!("no server in the plan:\n{}", config.stdout));
    assert_eq!(plan_line, expected);

    let mut cmd = initd_pid1(["run"]);
    setup(&mut cmd);
    let running = spawn_logged(&mut cmd, &dir, "initd");
    let pid = running.pid();
    let deadline = Instant::now() + LIMIT;
    let response = loop {
        if let Some(response) = http_get(port) {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "gunicorn never answered:\n{}",
            running.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello"), "{response}");

    // The master is initd's child, running exactly the command shown by
    // `initd config` (behind the interpreter), with its two workers.
    let procs = initd::procfs::snapshot();
    let children: Vec<i32> = procs.iter().filter(|s| s.ppid == pid).map(|s| s.pid).collect();
    assert_eq!(children.len(), 1, "{children:?}");
    let master = children[0];
    let argv = cmdline(master);
    let at = argv
        .iter()
        .position(|a| Path::new(a).file_name().is_some_and(|f| f == "gunicorn"))
        .unwrap_or_else(|| panic!("not gunicorn: {argv:?}"));
    let words: Vec<&str> = expected.split(' ').skip(1).collect();
    assert_eq!(argv[at + 1..], words, "{argv:?}");
    wait_for(LIMIT, || {
        let workers = initd::procfs::snapshot()
            .iter()
            .filter(|s| s.ppid == master)
            .count();
        (workers == 2).then_some(())
    });

    let start = Instant::now();
    signal(pid, Signal::SIGTERM);
    let out = running.finish(LIMIT);
    let took = start.elapsed();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(took < Duration::from_secs(8), "stopping took {took:?}");
    assert!(
        out.stderr.contains("initd: stopping: TERM to pid"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("grace period over"), "{}", out.stderr);
    assert!(out.stderr.contains("Shutting down: Master"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// 7. The migration lock

#[test]
fn replicas_migrate_one_at_a_time_under_the_postgres_lock() {
    let url = match std::env::var("INITD_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            note(
                "replicas_migrate_one_at_a_time_under_the_postgres_lock: skipped, \
                 INITD_TEST_DATABASE_URL is not set (bash tests/support/postgres.sh run cargo test)",
            );
            return;
        }
    };
    let dir = Scratch::new("pglock");
    let log = dir.path("log");
    let replicas: Vec<Logged> = (1..=2)
        .map(|n| {
            let mut cmd = initd_pid1(["run"]);
            cmd.current_dir(&dir.0)
                .env("DATABASE_URL", &url)
                .env("INITD_MIGRATE_LOCK", "postgres")
                .env(
                    "INITD_MIGRATE",
                    sh(&format!(
                        "echo \"start {n}\" >> {log}; sleep 1; echo \"end {n}\" >> {log}",
                        log = log.display()
                    )),
                )
                .env("INITD_SERVER", "true");
            spawn_logged(&mut cmd, &dir, &format!("initd{n}"))
        })
        .collect();
    for running in replicas {
        let out = running.finish(LIMIT);
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert!(out.stderr.contains("taking the migration lock"), "{}", out.stderr);
    }
    let text = dir.read("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let first = lines[0].strip_prefix("start ").expect(&text);
    let second = if first == "1" { "2" } else { "1" };
    assert_eq!(
        lines,
        [
            format!("start {first}"),
            format!("end {first}"),
            format!("start {second}"),
            format!("end {second}"),
        ],
        "the migrations overlapped"
    );
}

#[test]
fn a_migration_lock_without_database_url_fails_before_anything_starts() {
    let dir = Scratch::new("pgnourl");
    let log = dir.path("log");
    let (_socket, port) = bound_port();
    let message =
        "INITD_MIGRATE_LOCK=postgres needs DATABASE_URL (postgres://USER:PASSWORD@HOST:PORT/DBNAME)";
    for sub in ["run", "config"] {
        let mut cmd = initd_pid1([sub]);
        cmd.current_dir(&dir.0)
            .env("INITD_MIGRATE_LOCK", "postgres")
            .env("INITD_MIGRATE", append(&log, "migrated"))
            .env("INITD_SERVER", append(&log, "server"))
            // Checked before the wait: a long one would show it was not.
            .env("INITD_WAIT_FOR", format!("tcp://127.0.0.1:{port}"))
            .env("INITD_WAIT_TIMEOUT", "60s");
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 78, "{sub}: {}", out.stderr);
        assert!(
            out.stderr.lines().any(|l| l.ends_with(message)),
            "{sub}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("waiting for"), "{sub}: {}", out.stderr);
    }
    assert!(!log.exists());
}

// ---------------------------------------------------------------------------
// 8. initd config

#[test]
fn initd_config_shows_each_value_with_its_origin_and_the_plan() {
    let dir = Scratch::new("config");
    let marker = dir.path("ran");
    let file = dir.path("initd.toml");
    fs::write(
        &file,
        format!(
            "port = 9000\nstop_timeout = \"3s\"\nprestart = [\"touch {}\", \"echo 'two; three'\"]\n",
            marker.display()
        ),
    )
    .unwrap();
    let mut cmd = initd_plain(["config"]);
    cmd.current_dir(&dir.0)
        .env("INITD_CONFIG", &file)
        .env("INITD_STOP_TIMEOUT", "5s")
        .env("INITD_SERVER", "sleep 1")
        .env("INITD_MIGRATE", "off");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let f = format!("file {}", file.display());
    let text = &out.stdout;
    assert_config_line(text, "port = 9000", &f);
    assert_config_line(
        text,
        &format!(
            "prestart = [\"touch {}\", \"echo 'two; three'\"]",
            marker.display()
        ),
        &f,
    );
    // The environment wins over the file.
    assert_config_line(text, "stop_timeout = \"5s\"", "env INITD_STOP_TIMEOUT");
    assert_config_line(text, "server = \"sleep 1\"", "env INITD_SERVER");
    assert_config_line(
        text,
        &format!("config = \"{}\"", file.display()),
        "env INITD_CONFIG",
    );
    assert_config_line(text, "signal_target = \"child\"", "default");
    assert_config_line(text, "# workers = (unset)", "default");
    let plan: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# 1.") || l.starts_with("# 2.") || l.starts_with("# 3."))
        .collect();
    assert_eq!(
        plan,
        [
            format!("# 1. pre-start command 1: touch {}", marker.display()),
            "# 2. pre-start command 2: echo 'two; three'".to_string(),
            "# 3. server: sleep 1".to_string(),
        ]
    );
    assert_eq!(out.stderr, "");
    assert!(!marker.exists(), "initd config ran a command");
}

#[test]
fn a_misspelt_setting_is_78_with_a_suggestion() {
    let dir = Scratch::new("typo");
    let marker = dir.path("ran");
    let file = dir.path("initd.toml");
    fs::write(&file, "wrokers = 3\n").unwrap();
    let cases: [(&str, String, String); 2] = [
        (
            "INITD_CONFIG",
            file.to_str().unwrap().to_string(),
            format!(
                "initd: error: {} key `wrokers`: unknown setting; did you mean workers?",
                file.display()
            ),
        ),
        (
            "INITD_WROKERS",
            "3".to_string(),
            "initd: error: INITD_WROKERS: unknown setting; did you mean INITD_WORKERS?".to_string(),
        ),
    ];
    for (name, value, message) in &cases {
        for sub in ["config", "run"] {
            let mut cmd = initd_pid1([sub]);
            cmd.current_dir(&dir.0)
                .env(name, value)
                .env("INITD_SERVER", sh(&format!("touch {}", marker.display())));
            let out = run(cmd, LIMIT);
            assert_eq!(out.code(), 78, "{sub} {name}: {}", out.stderr);
            assert_eq!(out.stderr.trim(), message, "{sub}");
        }
    }
    assert!(!marker.exists());
}
