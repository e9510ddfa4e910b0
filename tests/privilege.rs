//! The attacks of issue 11 on what root does to the file system, each run
//! as the attacker would: the app user (uid 1000) owns its files and plants
//! links, swaps directories and links files before initd (root, PID 1 with
//! a private /etc) chowns, renumbers or reads secrets. After each, the
//! target outside must be untouched. They need root (chown, mount).
//!
//! Each test prints its figures (`privilege: ...` on stderr; run with
//! `--nocapture` to see them) for the table in docs/reliability.md.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(60);
const APP: u32 = 1000;

fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn app_passwd(dir: &Scratch) -> String {
    format!("app:x:{APP}:{APP}::{}:/bin/sh", dir.path("home").display())
}

const APP_GROUP: &[&str] = &["app:x:1000:"];

/// initd as PID 1 with a private /etc (in a scratch directory of its own,
/// returned to be kept until the run ends) holding the app user, its home
/// in `dir`, not allowed to stay root, running `sh -c script` as the app.
fn initd_as_app(dir: &Scratch, script: &str) -> (Command, Scratch) {
    let passwd = app_passwd(dir);
    let etc = Scratch::new("etc");
    let mut cmd = initd_pid1_with_etc(&etc, &[&passwd], APP_GROUP, ["sh", "-c", script]);
    cmd.env_remove("INITD_ALLOW_ROOT");
    (cmd, etc)
}

/// What the app prints once it runs.
const STARTED: &str = "echo app-started";

/// A process of the app user that swaps `a` and `b` in `dir` with
/// `renameat2(RENAME_EXCHANGE)` as fast as it can until killed, counting
/// the swaps in memory shared with the test.
struct Racer {
    pid: nix::unistd::Pid,
    count: &'static AtomicU64,
}

impl Racer {
    fn start(dir: &Path, a: &str, b: &str, uid: u32) -> Racer {
        use std::ffi::CString;
        // SAFETY: an anonymous shared mapping, never unmapped (the test
        // process ends soon), holding one AtomicU64.
        let count: &'static AtomicU64 = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            &*(p as *const AtomicU64)
        };
        let dir = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let (a, b) = (CString::new(a).unwrap(), CString::new(b).unwrap());
        // SAFETY: the child only makes syscalls and atomic stores on memory
        // prepared before the fork, then is killed.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(uid, uid, uid) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    libc::_exit(3);
                }
                let fd = libc::open(dir.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
                if fd < 0 {
                    libc::_exit(4);
                }
                loop {
                    let r = libc::syscall(
                        libc::SYS_renameat2,
                        fd,
                        a.as_ptr(),
                        fd,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    );
                    if r == 0 {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            nix::unistd::ForkResult::Parent { child } => Racer { pid: child, count },
        }
    }

    fn swaps(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

#[test]
fn a_racer_swapping_a_directory_and_a_link_cannot_steer_the_chown() {
    if !is_root_or_skip("a_racer_swapping_a_directory_and_a_link_cannot_steer_the_chown") {
        return;
    }
    const FILES: usize = 3000;
    let dir = Scratch::new("race");
    // The app's tree: `d` holds its files; `l` is its link to root's
    // directory of the same names. The racer swaps the two names.
    let tree = dir.path("tree");
    let target = dir.path("target");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::create_dir_all(&target).unwrap();
    for i in 0..FILES {
        let name = format!("f{i}");
        fs::write(tree.join("d").join(&name), "app").unwrap();
        // Another group, so the chown has work to do on every file.
        lchown(&tree.join("d").join(&name), APP, 1001);
        fs::write(target.join(&name), "root").unwrap();
    }
    symlink(&target, tree.join("l")).unwrap();
    for path in [&tree, &tree.join("d"), &tree.join("l")] {
        lchown(path, APP, APP);
    }
    // The app's directory by descriptor: its name keeps changing.
    let d_fd = fs::File::open(tree.join("d")).unwrap();
    let real_d = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&d_fd)
    ));
    let racer = Racer::start(&tree, "d", "l", APP);
    wait_for(LIMIT, || (racer.swaps() > 1000).then_some(()));
    let mut total_swaps = 0;
    let mut whole_rounds = 0;
    let rounds = 5;
    for _ in 0..rounds {
        let before = racer.swaps();
        let (mut cmd, _etc) = initd_as_app(&dir, STARTED);
        cmd.env("INITD_CHOWN", &tree);
        let out = run(cmd, LIMIT);
        let during = racer.swaps() - before;
        total_swaps += during;
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert_eq!(out.stdout, "app-started\n");
        assert!(during >= 1000, "only {during} swaps during the chown");
        // Root's directory and every file in it are as they were.
        assert_eq!(owner(&target), (0, 0));
        let moved: Vec<String> = (0..FILES)
            .map(|i| format!("f{i}"))
            .filter(|n| owner(&target.join(n)) != (0, 0))
            .collect();
        assert!(
            moved.is_empty(),
            "{} of root's files chowned: {:?}",
            moved.len(),
            &moved[..moved.len().min(5)]
        );
        // And the app's own directory was chowned whole, wherever its name
        // was at the time, or not at all: when the walk met both names
        // while each was the link, it skipped the link (the safe answer;
        // only the racer's own tree misses out). Never in part.
        let left = (0..FILES)
            .filter(|i| owner(&real_d.join(format!("f{i}"))) != (APP, APP))
            .count();
        assert!(
            left == 0 || left == FILES,
            "{left} of the app's {FILES} files not chowned: a directory is walked whole or not at all"
        );
        if left == 0 {
            whole_rounds += 1;
        }
        for i in 0..FILES {
            lchown(&real_d.join(format!("f{i}")), APP, 1001);
        }
    }
    drop(racer);
    // The walk does reach the app's directory through the race: a walk
    // that gave up at the first swap would chown nothing in every round.
    assert!(
        whole_rounds >= 1,
        "the app's directory was skipped in all {rounds} rounds"
    );
    eprintln!(
        "privilege: race: {rounds} starts chowning a tree of {FILES} files while the app user swapped \
         a directory and a link to root's directory {total_swaps} times (renameat2 RENAME_EXCHANGE): \
         none of root's {FILES} files changed owner; the app's directory was chowned whole in \
         {whole_rounds} of {rounds} starts and skipped as a link in the others"
    );
}

#[test]
fn a_planted_parent_link_in_initd_chown_is_refused_naming_it() {
    if !is_root_or_skip("a_planted_parent_link_in_initd_chown_is_refused_naming_it") {
        return;
    }
    let dir = Scratch::new("parentlink");
    // `/app/var -> /var`, in a temp tree: root's var/log, the app's app/.
    let var_log = dir.path("var/log");
    fs::create_dir_all(&var_log).unwrap();
    fs::write(var_log.join("syslog"), "root").unwrap();
    let app = dir.path("app");
    fs::create_dir_all(&app).unwrap();
    symlink(dir.path("var"), app.join("var")).unwrap();
    lchown(&app, APP, APP);
    lchown(&app.join("var"), APP, APP);
    let (mut cmd, _etc) = initd_as_app(&dir, STARTED);
    let asked = app.join("var/log");
    cmd.env(
        "INITD_CHOWN",
        format!("{},{}", dir.path("home").display(), asked.display()),
    );
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 77, "{}", out.stderr);
    assert_eq!(out.stdout, "", "the app started");
    assert_eq!(
        out.stderr.trim(),
        format!(
            "initd: error: INITD_CHOWN: refusing to chown {}: {} is a symbolic link, and initd follows \
             no symbolic link when it chowns as root; name the real directory instead",
            asked.display(),
            app.join("var").display()
        )
    );
    assert_eq!(owner(&var_log), (0, 0));
    assert_eq!(owner(&var_log.join("syslog")), (0, 0));
    assert_eq!(owner(&dir.path("var")), (0, 0));

    // A missing path is only a warning.
    let (mut cmd, _etc) = initd_as_app(&dir, STARTED);
    cmd.env("INITD_CHOWN", dir.path("not-there"));
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "app-started\n");
    assert_eq!(
        out.stderr.trim(),
        format!(
            "initd: warning: INITD_CHOWN: {} does not exist; nothing to chown",
            dir.path("not-there").display()
        )
    );
    eprintln!(
        "privilege: parent link: INITD_CHOWN through an app-planted link refused with 77 naming the link; root's directory untouched"
    );
}

#[test]
fn a_hard_link_to_a_root_file_is_not_chowned() {
    if !is_root_or_skip("a_hard_link_to_a_root_file_is_not_chowned") {
        return;
    }
    let dir = Scratch::new("hardlink");
    let secret = dir.path("shadow");
    fs::write(&secret, "root:*:").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let data = dir.path("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("own"), "x").unwrap();
    // As if made while fs.protected_hardlinks was off, or by an older image.
    fs::hard_link(&secret, data.join("sub/innocent")).unwrap();
    fs::hard_link(&secret, data.join("second")).unwrap();
    let (mut cmd, _etc) = initd_as_app(&dir, "true");
    cmd.env("INITD_CHOWN", &data);
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(owner(&secret), (0, 0));
    assert_eq!(owner(&data.join("own")), (APP, APP));
    assert_eq!(owner(&data.join("sub")), (APP, APP));
    assert_eq!(
        out.stderr.trim(),
        format!(
            "initd: warning: INITD_CHOWN: left 2 files under {} alone: more than one hard link, so the \
             other name may be outside; chown them in the Dockerfile if they are the app's",
            data.display()
        )
    );
    eprintln!(
        "privilege: hard link: 2 links to a root-owned 0600 file inside INITD_CHOWN left alone, one warning with the count"
    );
}

/// Prints `DB=<value>` or `DB=<unset>`.
const PRINT_DB: &str = "echo DB=${DB:-<unset>}";

#[test]
fn a_secrets_directory_the_app_linked_or_owns_is_refused() {
    if !is_root_or_skip("a_secrets_directory_the_app_linked_or_owns_is_refused") {
        return;
    }
    let dir = Scratch::new("secretlink");
    const PLANT: &str = "root-only-content";
    // Root's private directory, and the app's link to it.
    let private = dir.path("private");
    fs::create_dir_all(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(private.join("key"), PLANT).unwrap();
    fs::set_permissions(private.join("key"), fs::Permissions::from_mode(0o600)).unwrap();
    let app = dir.path("app");
    fs::create_dir_all(&app).unwrap();
    symlink(&private, app.join("secrets")).unwrap();
    lchown(&app.join("secrets"), APP, APP);
    // An app-owned directory on the way, holding a link root made.
    let owned = dir.path("owned");
    fs::create_dir_all(&owned).unwrap();
    fs::write(owned.join("token"), PLANT).unwrap();
    lchown(&owned, APP, APP);

    let attempt = |path: &Path| {
        let (mut cmd, _etc) = initd_as_app(&dir, PRINT_DB);
        cmd.env("DB_FILE", path).env("INITD_SECRETS", "DB");
        let out = run(cmd, LIMIT);
        let ran = out.stdout.starts_with("DB=");
        (out, ran)
    };
    let cases = [
        (
            app.join("secrets/key"),
            format!(
                "{} is a symbolic link owned by uid 1000, not by root",
                app.join("secrets").display()
            ),
        ),
        (
            owned.join("token"),
            format!(
                "{} is a directory owned by uid 1000, not by root",
                owned.display()
            ),
        ),
    ];
    for (path, why) in &cases {
        let (out, ran) = attempt(path);
        assert_eq!(out.code(), 78, "{}", out.stderr);
        assert!(!ran, "the app started");
        assert!(!out.stdout.contains(PLANT) && !out.stderr.contains(PLANT));
        assert_eq!(
            out.stderr.trim(),
            format!(
                "initd: error: secret DB: refusing {}: {why}; initd reads secrets as root only through \
                 directories and links that root owns (as Docker and Kubernetes mount them); mount the \
                 secret there, or, if DB_FILE is an app setting rather than a Docker secret, leave it out \
                 of INITD_SECRETS and point it outside the secrets directories",
                path.display()
            )
        );
    }
    // Root's own link (a Kubernetes-style volume) is still followed.
    let vol = dir.path("vol");
    fs::create_dir_all(vol.join("..2026_01_01")).unwrap();
    fs::write(vol.join("..2026_01_01/db"), "k8s-value\n").unwrap();
    symlink("..2026_01_01", vol.join("..data")).unwrap();
    symlink("..data/db", vol.join("db")).unwrap();
    let (out, ran) = attempt(&vol.join("db"));
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(ran);
    assert_eq!(out.stdout.trim(), "DB=k8s-value");
    eprintln!(
        "privilege: secrets: a root-only file behind an app-owned link, and one in an app-owned directory, \
         refused with 78 naming the component; a root-owned Kubernetes-style volume is read"
    );
}

#[test]
fn bad_host_ids_are_refused_before_etc_passwd_changes() {
    if !is_root_or_skip("bad_host_ids_are_refused_before_etc_passwd_changes") {
        return;
    }
    let mut refused = 0;
    let cases: &[&[(&str, &str)]] = &[
        &[("HOST_UID", "+5")],
        &[("HOST_UID", "4294967295")],
        &[("HOST_GID", "4294967295")],
        &[("HOST_UID", "2147483648")],
        &[("HOST_UID", " 1234")],
        &[("HOST_UID", "1234 ")],
        &[("HOST_UID", "0x4d2")],
        &[("HOST_GID", "-1")],
        &[("PUID", "1e3")],
        &[("PGID", "twenty")],
        &[("HOST_UID", "1234"), ("PUID", "1235")],
    ];
    for vars in cases {
        let dir = Scratch::new("badid");
        let (mut cmd, etc) = initd_as_app(&dir, STARTED);
        cmd.envs(vars.iter().copied());
        let before = fs::read(etc.path("passwd.new")).unwrap();
        let out = run(cmd, LIMIT);
        assert_eq!(out.code(), 78, "{vars:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{vars:?}: the app started");
        assert_eq!(
            fs::read(etc.path("etc/passwd")).unwrap(),
            before,
            "{vars:?}: /etc/passwd changed"
        );
        let line = out.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains(vars.last().unwrap().0), "{vars:?}: {line}");
        refused += 1;
    }
    // The aliases work, and a later start with the same ids is a no-op.
    let dir = Scratch::new("puid");
    let show = "id -u; id -g";
    let (mut cmd, _etc) = initd_as_app(&dir, show);
    cmd.env("PUID", "1234").env("PGID", "1234");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "1234\n1234\n");
    eprintln!(
        "privilege: host ids: {refused} malformed HOST_UID/HOST_GID/PUID/PGID values refused with 78, /etc/passwd byte for byte unchanged, nothing started"
    );
}

#[test]
fn an_openshift_primary_group_0_is_never_renumbered() {
    if !is_root_or_skip("an_openshift_primary_group_0_is_never_renumbered") {
        return;
    }
    let dir = Scratch::new("gid0");
    let passwd = format!("app:x:{APP}:0::{}:/bin/sh", dir.path("home").display());
    let mut cmd = initd_pid1_with_etc(&dir, &[&passwd], &[], ["sh", "-c", "id -u; id -g"]);
    cmd.env_remove("INITD_ALLOW_ROOT")
        .env("HOST_UID", "1234")
        .env("HOST_GID", "1234");
    let home = dir.path("home");
    fs::write(home.join("mine"), "x").unwrap();
    lchown(&home.join("mine"), APP, 0);
    fs::write(home.join("roots"), "x").unwrap();
    let root_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("root:"))
            .map(str::to_string)
            .collect()
    };
    let before_passwd = root_lines(&fs::read_to_string("/etc/passwd").unwrap());
    let before_group = root_lines(&fs::read_to_string("/etc/group").unwrap());
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "1234\n1234\n");
    let etc_passwd = dir.read("etc/passwd");
    assert_eq!(root_lines(&etc_passwd), before_passwd);
    assert_eq!(root_lines(&dir.read("etc/group")), before_group);
    assert!(etc_passwd.contains(&format!("app:x:1234:1234::{}:/bin/sh", home.display())));
    assert_eq!(owner(&home.join("mine")), (1234, 1234));
    // Root's file in the home keeps root's group.
    assert_eq!(owner(&home.join("roots")), (0, 0));
    eprintln!(
        "privilege: gid 0: HOST_GID with an OpenShift-style primary group 0 moves only the app's line and files; root's lines and files unchanged"
    );
}

#[test]
fn a_later_start_finishes_a_home_chown_an_earlier_one_could_not() {
    if !is_root_or_skip("a_later_start_finishes_a_home_chown_an_earlier_one_could_not") {
        return;
    }
    let dir = Scratch::new("unit");
    let home = dir.path("home");
    fs::create_dir_all(&home).unwrap();
    lchown(&home, APP, APP);
    let stuck = home.join("stuck");
    fs::write(&stuck, "x").unwrap();
    lchown(&stuck, APP, APP);
    // An immutable file cannot be chowned, even by root.
    let chattr = |flag: &str| Command::new("chattr").arg(flag).arg(&stuck).status();
    if !chattr("+i").is_ok_and(|s| s.success()) {
        note(
            "a_later_start_finishes_a_home_chown_an_earlier_one_could_not: skipped, chattr +i does not work here",
        );
        return;
    }
    let start = || {
        let etc = Scratch::new("unit-etc");
        // Every start of one container sees the same /etc: reuse it.
        let _ = fs::remove_dir_all(etc.path("etc"));
        let saved = dir.path("etc-saved");
        let mut cmd = initd_pid1_with_etc(&etc, &[&app_passwd(&dir)], APP_GROUP, ["sh", "-c", "id -u"]);
        if saved.exists() {
            fs::copy(saved.join("passwd"), etc.path("passwd.new")).unwrap();
            fs::copy(saved.join("group"), etc.path("group.new")).unwrap();
        }
        cmd.env_remove("INITD_ALLOW_ROOT")
            .env("HOST_UID", "1234")
            .env("HOST_GID", "1234");
        let out = run(cmd, LIMIT);
        fs::create_dir_all(&saved).unwrap();
        fs::copy(etc.path("etc/passwd"), saved.join("passwd")).unwrap();
        fs::copy(etc.path("etc/group"), saved.join("group")).unwrap();
        out
    };
    let first = start();
    chattr("-i").unwrap();
    assert_eq!(first.code(), 77, "{}", first.stderr);
    assert!(
        first.stderr.contains("cannot chown the home directory"),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains(&stuck.display().to_string()),
        "{}",
        first.stderr
    );
    // Nothing committed: the account still has its old ids.
    assert!(dir.read("etc-saved/passwd").contains("app:x:1000:1000:"));
    let second = start();
    assert_eq!(second.code(), 0, "{}", second.stderr);
    assert_eq!(second.stdout, "1234\n");
    assert_eq!(owner(&stuck), (1234, 1234));
    assert_eq!(owner(&home), (1234, 1234));
    assert!(dir.read("etc-saved/passwd").contains("app:x:1234:1234:"));
    eprintln!(
        "privilege: one unit: a home chown that failed (an immutable file) left /etc/passwd as it was; the next start renumbered and finished the chown"
    );
}

#[test]
fn a_fifo_or_dev_zero_as_initd_config_is_refused_at_once() {
    let dir = Scratch::new("config");
    let fifo = dir.path("initd.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let mut slowest = Duration::ZERO;
    for (path, what) in [
        (fifo.as_path(), "is a FIFO, not a regular file"),
        (
            Path::new("/dev/zero"),
            "is a character device, not a regular file",
        ),
    ] {
        // Start-up.
        let begun = Instant::now();
        let mut cmd = initd_pid1(["exec", "true"]);
        cmd.env("INITD_CONFIG", path);
        let out = run(cmd, Duration::from_secs(10));
        slowest = slowest.max(begun.elapsed());
        assert_eq!(out.code(), 78, "{}", out.stderr);
        assert_eq!(
            out.stderr.trim(),
            format!(
                "initd: error: config file {}: {what}; point INITD_CONFIG at the TOML file itself",
                path.display()
            )
        );
        // The health check, as Docker runs it.
        let begun = Instant::now();
        let mut cmd = Command::new(INITD);
        cmd.arg("check")
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("INITD_CONFIG", path);
        let out = run(cmd, Duration::from_secs(10));
        slowest = slowest.max(begun.elapsed());
        assert_eq!(out.code(), 1);
        assert_eq!(
            out.stdout.trim(),
            format!(
                "unhealthy: config file {} (INITD_CONFIG): {what}; point INITD_CONFIG at the TOML file itself",
                path.display()
            )
        );
    }
    eprintln!(
        "privilege: config: a FIFO and /dev/zero as INITD_CONFIG refused by start-up (78) and `initd check`, \
         the slowest in {:.0}ms",
        slowest.as_secs_f64() * 1000.0
    );
}

#[test]
fn a_home_the_image_links_is_followed_but_no_link_inside_it() {
    if !is_root_or_skip("a_home_the_image_links_is_followed_but_no_link_inside_it") {
        return;
    }
    let dir = Scratch::new("homelink");
    // The image's `/home/app -> /data/app` (root's link), and in the home
    // the app's link to another directory of files with its old uid.
    let real = dir.path("data/app");
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("mine"), "x").unwrap();
    let outside = dir.path("elsewhere");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("other"), "x").unwrap();
    for path in [&real, &real.join("mine"), &outside, &outside.join("other")] {
        lchown(path, APP, APP);
    }
    symlink(&outside, real.join("escape")).unwrap();
    lchown(&real.join("escape"), APP, APP);
    let home = dir.path("home-link");
    symlink(&real, &home).unwrap();
    let passwd = format!("app:x:{APP}:{APP}::{}:/bin/sh", home.display());
    let etc = Scratch::new("homelink-etc");
    let mut cmd = initd_pid1_with_etc(&etc, &[&passwd], APP_GROUP, ["sh", "-c", "id -u"]);
    cmd.env_remove("INITD_ALLOW_ROOT")
        .env("HOST_UID", "1234")
        .env("HOST_GID", "1234");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "1234\n");
    assert_eq!(owner(&real), (1234, 1234));
    assert_eq!(owner(&real.join("mine")), (1234, 1234));
    assert_eq!(owner(&real.join("escape")), (1234, 1234));
    assert_eq!(owner(&outside), (APP, APP));
    assert_eq!(owner(&outside.join("other")), (APP, APP));
    // The same link planted by the app (its owner) is not followed.
    let dir = Scratch::new("homelink-app");
    let real = dir.path("real");
    fs::create_dir_all(&real).unwrap();
    lchown(&real, APP, APP);
    let home = dir.path("home-link");
    symlink(&real, &home).unwrap();
    lchown(&home, APP, APP);
    let passwd = format!("app:x:{APP}:{APP}::{}:/bin/sh", home.display());
    let etc = Scratch::new("homelink-app-etc");
    let mut cmd = initd_pid1_with_etc(&etc, &[&passwd], APP_GROUP, ["sh", "-c", "id -u"]);
    cmd.env_remove("INITD_ALLOW_ROOT").env("HOST_UID", "1234");
    let out = run(cmd, LIMIT);
    assert_eq!(out.code(), 77, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{} is a symbolic link owned by uid 1000, not by root",
            home.display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(owner(&real), (APP, APP));
    assert!(etc.read("etc/passwd").contains("app:x:1000:1000:"));
}
