//! initd as PID 1 in a fresh pid namespace, observed the way a user would:
//! exit codes, which process received which signal, zombies, leftovers.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(30);

/// A python3 child that records each kind of signal it receives in `log`
/// (in order of first arrival), writes `ready` once its handlers are
/// installed, and exits 0 soon after TERM or QUIT. Handlers only note the
/// signal: writing a file from a handler is not reentrant under a storm.
fn recorder(dir: &Scratch) -> Vec<String> {
    let script = format!(
        r#"
import signal, time
seen = []
def record(sig, frame):
    if sig not in seen:
        seen.append(sig)
for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH,
          signal.SIGCONT, signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
    signal.signal(s, record)
open({ready:?}, "w").close()
written = 0
with open({log:?}, "a", buffering=1) as log:
    while True:
        while written < len(seen):
            log.write(signal.Signals(seen[written]).name + "\n")
            written += 1
        if signal.SIGTERM in seen or signal.SIGQUIT in seen:
            break
        time.sleep(0.02)
"#,
        log = dir.path("log"),
        ready = dir.path("ready"),
    );
    vec!["python3".into(), "-c".into(), script]
}

#[test]
fn exit_status_of_the_child_is_initds() {
    let out = run(initd_pid1(["sh", "-c", "exit 3"]), LIMIT);
    assert_eq!(out.code(), 3, "{}", out.stderr);
    let out = run(initd_pid1(["true"]), LIMIT);
    assert_eq!(out.code(), 0);
    // The explicit subcommand is the same thing.
    let out = run(initd_pid1(["exec", "--", "sh", "-c", "exit 4"]), LIMIT);
    assert_eq!(out.code(), 4);
}

#[test]
fn a_child_killed_by_a_signal_nobody_asked_for_is_128_plus_n() {
    let out = run(initd_pid1(["sh", "-c", "kill -SEGV $$"]), LIMIT);
    assert_eq!(out.code(), 139, "{}", out.stderr);
    assert!(
        out.stderr.contains("main child was killed by SEGV"),
        "{}",
        out.stderr
    );
}

#[test]
fn command_not_found_is_127_and_names_the_path() {
    let out = run(initd_pid1(["no-such-command-xyz"]), LIMIT);
    assert_eq!(out.code(), 127);
    assert_eq!(
        out.stderr.trim(),
        "initd: error: command not found: no-such-command-xyz (PATH=/usr/local/bin:/usr/bin:/bin)"
    );
}

#[test]
fn a_command_that_is_not_executable_is_126() {
    let dir = Scratch::new("noexec");
    let script = dir.path("script.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(initd_pid1([&script]), LIMIT);
    assert_eq!(out.code(), 126);
    assert!(out.stderr.contains("not executable"), "{}", out.stderr);
}

#[test]
fn bad_usage_and_bad_settings_fail_before_anything_starts() {
    let dir = Scratch::new("nostart");
    let marker = dir.path("started");
    let touch = format!("touch {}", marker.display());
    let out = run(initd_plain(Vec::<&str>::new()), LIMIT);
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("no command given"), "{}", out.stderr);

    let out = run(
        initd_plain(["sh", "-c", &touch]).env("INITD_STOP_TIMEUOT", "3s"),
        LIMIT,
    );
    assert_eq!(out.code(), 78);
    assert_eq!(
        out.stderr.trim(),
        "initd: error: INITD_STOP_TIMEUOT: unknown setting; did you mean INITD_STOP_TIMEOUT?"
    );
    let out = run(
        initd_plain(["sh", "-c", &touch]).env("INITD_SIGNAL_MAP", "TERM:QUITE"),
        LIMIT,
    );
    assert_eq!(out.code(), 78);
    assert!(
        out.stderr.contains("INITD_SIGNAL_MAP=\"TERM:QUITE\""),
        "{}",
        out.stderr
    );
    assert!(!marker.exists(), "the command ran despite a configuration error");
}

#[test]
fn docker_stop_that_the_child_honours_exits_143_or_0_with_zero() {
    // The default reports what the child died of, as tini, dumb-init and
    // shells do; `zero` is the opt-in for a clean 0; `keep` says it aloud.
    for (setting, expected) in [(None, 143), (Some("keep"), 143), (Some("zero"), 0)] {
        let mut cmd = initd_pid1(["sleep", "100"]);
        if let Some(value) = setting {
            cmd.env("INITD_STOP_EXIT", value);
        }
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let pid = initd_host_pid(&child);
        // Let initd start its child before it is asked to stop.
        wait_for(LIMIT, || has_child(pid).then_some(()));
        let start = Instant::now();
        signal(pid, Signal::SIGTERM);
        let out = finish(child, LIMIT);
        assert_eq!(
            out.code(),
            expected,
            "INITD_STOP_EXIT={setting:?}: {}",
            out.stderr
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "stop took the whole grace period"
        );
        assert!(out.stderr.contains("stopping: TERM"), "{}", out.stderr);
    }
}

#[test]
fn a_child_that_ignores_the_stop_is_killed_after_the_grace_period_137() {
    let dir = Scratch::new("ignore");
    let script = format!(
        "trap '' TERM; touch {}; while :; do sleep 0.05; done",
        dir.path("ready").display()
    );
    let child = initd_pid1(["sh", "-c", &script])
        .env("INITD_STOP_TIMEOUT", "500ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = initd_host_pid(&child);
    wait_for_file(&dir.path("ready"));
    let start = Instant::now();
    signal(pid, Signal::SIGTERM);
    let out = finish(child, LIMIT);
    let took = start.elapsed();
    assert_eq!(out.code(), 137, "{}", out.stderr);
    assert!(
        took >= Duration::from_millis(500),
        "killed before the grace period: {took:?}"
    );
    assert!(out.stderr.contains("grace period over"), "{}", out.stderr);
}

#[test]
fn signals_are_forwarded_to_the_main_child_only_by_default() {
    for target in ["child", "group"] {
        let dir = Scratch::new("target");
        // A shell wrapper whose own child (same process group) records USR1.
        let inner = format!(
            "trap 'echo USR1 >> {sub}' USR1; touch {ready}; while :; do sleep 0.05; done",
            sub = dir.path("sub").display(),
            ready = dir.path("ready").display()
        );
        let outer = format!(
            "trap 'echo USR1 >> {main}' USR1; trap 'exit 0' TERM; sh -c \"{inner}\" & while :; do sleep 0.05; done",
            main = dir.path("main").display(),
        );
        let child = initd_pid1(["sh", "-c", &outer])
            .env("INITD_SIGNAL_TARGET", target)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = initd_host_pid(&child);
        wait_for_file(&dir.path("ready"));
        signal(pid, Signal::SIGUSR1);
        wait_for(LIMIT, || dir.read("main").contains("USR1").then_some(()));
        if target == "group" {
            wait_for(LIMIT, || dir.read("sub").contains("USR1").then_some(()));
        } else {
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(
                dir.read("sub"),
                "",
                "the grandchild got a signal meant for the main child"
            );
        }
        signal(pid, Signal::SIGTERM);
        let out = finish(child, LIMIT);
        assert_eq!(out.code(), 0, "{target}: {}", out.stderr);
    }
}

#[test]
fn every_catchable_signal_kind_is_forwarded() {
    let dir = Scratch::new("kinds");
    let child = initd_pid1(recorder(&dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = initd_host_pid(&child);
    wait_for_file(&dir.path("ready"));
    for (sig, name) in [
        (Signal::SIGHUP, "SIGHUP"),
        (Signal::SIGUSR1, "SIGUSR1"),
        (Signal::SIGUSR2, "SIGUSR2"),
        (Signal::SIGWINCH, "SIGWINCH"),
        (Signal::SIGCONT, "SIGCONT"),
    ] {
        signal(pid, sig);
        wait_for(LIMIT, || dir.read("log").contains(name).then_some(()));
    }
    signal(pid, Signal::SIGTERM);
    let out = finish(child, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(dir.read("log").ends_with("SIGTERM\n"));
}

#[test]
fn the_signal_map_rewrites_and_drops() {
    let dir = Scratch::new("map");
    let child = initd_pid1(recorder(&dir))
        .env("INITD_SIGNAL_MAP", "TERM:QUIT,WINCH:none")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = initd_host_pid(&child);
    wait_for_file(&dir.path("ready"));
    signal(pid, Signal::SIGWINCH);
    signal(pid, Signal::SIGHUP);
    wait_for(LIMIT, || dir.read("log").contains("SIGHUP").then_some(()));
    signal(pid, Signal::SIGTERM);
    let out = finish(child, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    // WINCH was dropped; TERM arrived as QUIT, and a QUIT honoured is a clean stop.
    assert_eq!(dir.read("log"), "SIGHUP\nSIGQUIT\n");
    assert!(out.stderr.contains("stopping: QUIT"), "{}", out.stderr);
}

#[test]
fn a_thousand_orphans_leave_no_zombie_after_one_second() {
    // The main child makes 1000 orphans (double fork), lets them die
    // together, waits one second and counts zombies in its pid namespace.
    let script = r#"
import os, time
# Every orphan blocks on a pipe; closing our end lets all 1000 die at once.
r, w = os.pipe()
for i in range(1000):
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
os.close(r)
def procs():
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(p) != os.getpid():
                out.append((fields[0], fields[1]))
    return out
adopted = sum(1 for state, ppid in procs() if ppid == "1")
os.close(w)
time.sleep(1.0)
zombies = sum(1 for state, ppid in procs() if state == "Z")
print(f"adopted={adopted} zombies={zombies}")
"#;
    let out = run(initd_pid1(["python3", "-c", script]), LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let line = out.stdout.trim();
    let adopted: u32 = line.split_whitespace().next().unwrap()["adopted=".len()..]
        .parse()
        .unwrap();
    // All of them really were re-parented to initd, and none is left a zombie.
    assert_eq!(adopted, 1000, "{line}");
    assert!(line.ends_with("zombies=0"), "{line}");
}

#[test]
fn leftover_daemons_get_the_stop_signal_before_sigkill() {
    let dir = Scratch::new("daemons");
    // One daemon stops on TERM; the other only notes it and must be killed.
    let script = format!(
        "(trap 'echo polite >> {log}; exit 0' TERM; while :; do sleep 0.05; done) &
         (trap 'echo stubborn >> {log}' TERM; while :; do sleep 0.05; done) &
         sleep 0.3; exit 5",
        log = dir.path("log").display()
    );
    let start = Instant::now();
    let out = run(
        initd_pid1(["sh", "-c", &script]).env("INITD_STOP_TIMEOUT", "700ms"),
        LIMIT,
    );
    let took = start.elapsed();
    // The main child's status is kept; both daemons were asked first.
    assert_eq!(out.code(), 5, "{}", out.stderr);
    let log = dir.read("log");
    assert!(log.contains("polite") && log.contains("stubborn"), "log: {log:?}");
    assert!(
        took >= Duration::from_millis(700),
        "SIGKILL came before the grace period: {took:?}"
    );
    assert!(
        out.stderr.contains("stopping leftover processes: TERM"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("grace period over"), "{}", out.stderr);
}

#[test]
fn leftovers_that_obey_do_not_wait_for_the_grace_period() {
    let dir = Scratch::new("quick");
    let script = format!(
        "(trap 'echo bye >> {log}; exit 0' TERM; while :; do sleep 0.05; done) & sleep 0.2",
        log = dir.path("log").display()
    );
    let start = Instant::now();
    let out = run(
        initd_pid1(["sh", "-c", &script]).env("INITD_STOP_TIMEOUT", "20s"),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(dir.read("log"), "bye\n");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn not_pid_1_it_still_reaps_as_a_subreaper() {
    let dir = Scratch::new("subreaper");
    // The main child starts an orphan and reports who its new parent is.
    let script = format!(
        "sh -c 'sleep 0.5 & echo $! > {pidfile}'; sleep 0.1; orphan=$(cat {pidfile});
         awk '{{print $4}}' /proc/$orphan/stat > {ppid}; sleep 0.6",
        pidfile = dir.path("orphan").display(),
        ppid = dir.path("ppid").display(),
    );
    let child = initd_plain(["sh", "-c", &script])
        .env("INITD_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let initd_pid = child.id();
    let out = finish(child, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(
        dir.read("ppid").trim(),
        initd_pid.to_string(),
        "orphan not adopted by initd"
    );
    assert!(out.stderr.contains("child subreaper"), "{}", out.stderr);
    let orphan = dir.read("orphan").trim().to_string();
    assert!(
        !std::path::Path::new(&format!("/proc/{orphan}")).exists(),
        "orphan {orphan} left behind"
    );
}

#[test]
fn the_child_inherits_no_descriptor_of_initd() {
    let list = "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))";
    let links = "import os; print([os.readlink(f'/proc/self/fd/{f}') for f in os.listdir('/proc/self/fd')])";
    let out = run(initd_pid1(["python3", "-c", links]), LIMIT);
    assert!(!out.stdout.contains("signalfd"), "{}", out.stdout);
    let bare = run(std::process::Command::new("python3").args(["-c", list]), LIMIT);
    let under = run(initd_pid1(["python3", "-c", list]), LIMIT);
    assert_eq!(under.code(), 0, "{}", under.stderr);
    assert_eq!(under.stdout, bare.stdout);
}

#[test]
fn output_passes_through_untouched() {
    let script = "printf 'out\\0binary\\nno newline'; printf 'err line' >&2";
    let out = run(initd_pid1(["sh", "-c", script]), LIMIT);
    assert_eq!(out.stdout, "out\0binary\nno newline");
    assert_eq!(out.stderr, "err line");
}

#[test]
fn json_logs_for_log_shippers() {
    let out = run(
        initd_pid1(["sh", "-c", "exit 9"]).env("INITD_LOG_FORMAT", "json"),
        LIMIT,
    );
    assert_eq!(out.code(), 9);
    let line = out.stderr.lines().next().expect("a log line");
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
    assert!(line.contains("main child exited with status 9"), "{line}");
}

#[test]
fn log_level_off_is_silent() {
    let out = run(initd_pid1(["sh", "-c", "exit 9"]).env("INITD_LOG", "off"), LIMIT);
    assert_eq!(out.code(), 9);
    assert_eq!(out.stderr, "");
}

#[test]
fn idle_initd_does_not_wake_up() {
    let child = initd_pid1(["sleep", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = initd_host_pid(&child);
    let switches = || {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .map(|l| l.split_whitespace().last().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = switches();
    std::thread::sleep(Duration::from_secs(2));
    let after = switches();
    assert_eq!(after - before, 0, "initd woke up while idle");
    assert_eq!(finish(child, LIMIT).code(), 0);
}

#[test]
fn a_signal_storm_neither_crashes_initd_nor_loses_the_final_stop() {
    let dir = Scratch::new("storm");
    let child = initd_pid1(recorder(&dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = initd_host_pid(&child);
    wait_for_file(&dir.path("ready"));
    for i in 0..5000 {
        let sig = [Signal::SIGUSR1, Signal::SIGHUP, Signal::SIGWINCH, Signal::SIGCHLD][i % 4];
        signal(pid, sig);
    }
    signal(pid, Signal::SIGTERM);
    let out = finish(child, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let log = dir.read("log");
    for name in ["SIGUSR1", "SIGHUP", "SIGWINCH"] {
        assert!(log.contains(name), "{name} never reached the child: {log}");
    }
    assert!(log.contains("SIGTERM\n"), "{log}");
}

/// What the child starts with: none of initd's blocked signals (initd
/// blocks them all for its signalfd, and the mask survives exec), SIGPIPE
/// back at its default although initd ignores it, a process group of its
/// own, and initd's working directory.
#[test]
fn the_child_starts_with_a_clean_signal_state_its_own_group_and_initds_directory() {
    let dir = Scratch::new("clean-child");
    // grep, not a shell: dash clears the signal mask when it starts.
    let out = run(
        initd_pid1(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let field = |name: &str| {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {}", out.stdout));
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(
        field("SigBlk:"),
        0,
        "no signal blocked in the child: {}",
        out.stdout
    );
    // Signals 1-31: none ignored (bit N-1 is signal N); glibc's posix_spawn
    // leaves only its own internal real-time signals 32 and 33 ignored.
    let ignored = field("SigIgn:") & 0x7fff_ffff;
    assert_eq!(
        ignored, 0,
        "no standard signal ignored (SIGPIPE above all): {ignored:#x}"
    );
    let script = "echo pgrp=$(cut -d' ' -f5 /proc/self/stat) pid=$$; pwd";
    let mut cmd = initd_pid1(["sh", "-c", script]);
    cmd.current_dir(dir.path(""));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let ids = out.stdout.lines().find(|l| l.starts_with("pgrp=")).unwrap();
    let (pgrp, pid) = ids.split_once(' ').unwrap();
    assert_eq!(
        &pgrp[5..],
        &pid[4..],
        "the child leads its own process group: {ids}"
    );
    let cwd = dir.path("");
    assert!(
        out.stdout
            .lines()
            .any(|l| std::path::Path::new(l) == cwd.as_path()),
        "the child runs in initd's directory {}: {}",
        cwd.display(),
        out.stdout
    );
}

/// initd started with stdout closed (a careless `>&-` in a wrapper script):
/// the first file it opens must not become its stdout, so its child finds
/// /dev/null there; and a write to a pipe nobody reads is an error initd
/// handles, not a SIGPIPE that ends it. Run as a plain subreaper: as PID 1
/// of a namespace the kernel would drop that SIGPIPE anyway.
#[test]
fn closed_stdout_becomes_dev_null_and_a_broken_stderr_pipe_does_not_kill_initd() {
    use std::os::unix::process::CommandExt;
    let dir = Scratch::new("closed-stdio");
    let target = dir.path("stdout-is");
    let mut cmd = initd_plain([
        "sh",
        "-c",
        &format!("echo \"$(readlink /proc/$$/fd/1)\" > {}", target.display()),
    ]);
    // SAFETY: close() between fork and exec, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(dir.read("stdout-is").trim(), "/dev/null");

    // stderr: a pipe whose reader is gone before initd writes its line
    // about the child's exit status.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let mut cmd = initd_plain(["sh", "-c", "exit 3"]);
    cmd.env("INITD_LOG", "info").stderr(std::fs::File::from(writer));
    let mut child = cmd.spawn().unwrap();
    let status = wait_timeout(&mut child, LIMIT);
    assert_eq!(
        status.code(),
        Some(3),
        "initd ended by {status:?}, not with the child's status"
    );
}
