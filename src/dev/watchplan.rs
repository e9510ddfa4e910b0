//! How each reload root is watched, decided from the file system it is on.
//!
//! inotify reports what this kernel does to a file. On a local file system
//! every change goes through this kernel, so inotify sees them all. On a
//! FUSE mount, 9p, virtiofs or a network file system the files can change
//! elsewhere (the host's editor under Docker Desktop or WSL2, another NFS
//! client) and nothing tells inotify here. A list of the blind ones can
//! never be complete (plain `fuse`, `fuse.<anything>`, the next Docker
//! Desktop's mount), so the rule goes the other way: inotify alone only on
//! the short list of file systems known to be local; anywhere else initd
//! polls as well, keeping inotify so that edits made inside the container
//! still land at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::ReloadPoll;

/// File systems whose every change passes through this kernel, so inotify
/// sees it: the disk file systems, overlay (a container's own layers) and
/// memory file systems.
pub const LOCAL_FILESYSTEMS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "bcachefs", "f2fs", "zfs", "jfs", "reiserfs", "nilfs2",
    "overlay", "tmpfs", "ramfs",
];

/// How often a root on a file system not known to be local is polled, by
/// default (INITD_RELOAD_POLL sets an interval of its own).
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

pub fn is_local(fs_type: &str) -> bool {
    LOCAL_FILESYSTEMS.contains(&fs_type)
}

/// One mount, from a line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fs_type: String,
}

/// The mounts listed in the text of /proc/self/mountinfo, in its order
/// (a later mount on the same point covers an earlier one).
pub fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let fs_type = right.split_whitespace().next()?;
            Some(Mount {
                point: PathBuf::from(unescape_mountinfo(point)),
                fs_type: fs_type.to_string(),
            })
        })
        .collect()
}

/// The filesystem type of the mount holding `path`: the longest mount
/// point that is a prefix of it.
pub fn mount_fs_type(mountinfo: &str, path: &Path) -> Option<String> {
    holding(&mounts(mountinfo), path).map(|m| m.fs_type.clone())
}

fn holding<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        let longer = best.is_none_or(|b| m.point.as_os_str().len() >= b.point.as_os_str().len());
        if path.starts_with(&m.point) && longer {
            best = Some(m);
        }
    }
    best
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// How one root is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Inotify,
    /// inotify for what changes here, polling at this interval for what
    /// changes elsewhere.
    InotifyAndPoll(Duration),
    Poll(Duration),
}

/// What decided a root's method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// INITD_RELOAD_POLL set an interval.
    ForcedPoll,
    /// INITD_RELOAD_POLL=off.
    ForcedInotify,
    /// The root and every mount below it are on local file systems; the
    /// type of the root's.
    Local(String),
    /// This mount, holding the root or below it, is not known to be local.
    NotLocal(Mount),
    /// No mount holds the root (/proc/self/mountinfo unreadable, or the
    /// root is not absolute).
    Unknown,
}

/// The decision for one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPlan {
    pub root: PathBuf,
    pub method: Method,
    /// What is polled: the root itself, or only the mounts below it that
    /// are not local (a checkout bind-mounted at /app/src in an image's
    /// /app). Empty for inotify alone.
    pub poll: Vec<PathBuf>,
    pub reason: Reason,
}

/// Decides how `root` is watched, given the text of /proc/self/mountinfo,
/// INITD_RELOAD_POLL, and which directory names are never watched (a
/// mount at an ignored path, node_modules say, is not polled for).
pub fn plan_root(
    mountinfo: &str,
    root: &Path,
    setting: ReloadPoll,
    ignores_dir: &dyn Fn(&str) -> bool,
) -> RootPlan {
    let plan = |method, poll: Vec<PathBuf>, reason| RootPlan {
        root: root.to_path_buf(),
        method,
        poll,
        reason,
    };
    match setting {
        ReloadPoll::Every(every) => {
            return plan(Method::Poll(every), vec![root.to_path_buf()], Reason::ForcedPoll);
        }
        ReloadPoll::Off => return plan(Method::Inotify, Vec::new(), Reason::ForcedInotify),
        ReloadPoll::Auto => {}
    }
    let all = mounts(mountinfo);
    let both = Method::InotifyAndPoll(DEFAULT_POLL);
    let Some(home) = holding(&all, root) else {
        return plan(both, vec![root.to_path_buf()], Reason::Unknown);
    };
    if !is_local(&home.fs_type) {
        return plan(both, vec![root.to_path_buf()], Reason::NotLocal(home.clone()));
    }
    let below: Vec<&Mount> = all
        .iter()
        .filter(|m| m.point.starts_with(root) && m.point != root)
        // Only if it is still the mount there, not covered by a later one.
        .filter(|m| holding(&all, &m.point) == Some(*m))
        .filter(|m| !is_local(&m.fs_type))
        .filter(|m| {
            let relative = m.point.strip_prefix(root).unwrap_or(&m.point);
            !relative
                .components()
                .any(|c| c.as_os_str().to_str().is_some_and(ignores_dir))
        })
        .collect();
    match below.first() {
        None => plan(Method::Inotify, Vec::new(), Reason::Local(home.fs_type.clone())),
        Some(first) => {
            // Polling a mount below another one would look at it twice.
            let mut points: Vec<PathBuf> = below.iter().map(|m| m.point.clone()).collect();
            points.sort();
            points.dedup_by(|later, earlier| later.starts_with(earlier));
            plan(both, points, Reason::NotLocal((*first).clone()))
        }
    }
}

/// The start-up line: which method watches which root, and why.
pub fn describe(plans: &[RootPlan], human: impl Fn(Duration) -> String) -> String {
    let roots = |ps: &[RootPlan]| {
        ps.iter()
            .map(|p| p.root.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match plans.first().map(|p| (&p.reason, p.method)) {
        Some((Reason::ForcedPoll, Method::Poll(every))) => {
            return format!(
                "watching for changes by polling every {} (INITD_RELOAD_POLL): {}",
                human(every),
                roots(plans)
            );
        }
        Some((Reason::ForcedInotify, _)) => {
            return format!(
                "watching for changes with inotify only (INITD_RELOAD_POLL=off): {}",
                roots(plans)
            );
        }
        _ => {}
    }
    let parts: Vec<String> = plans
        .iter()
        .map(|p| {
            let root = p.root.display();
            match (&p.reason, p.method) {
                (Reason::Local(fs), _) => format!("{root} with inotify ({fs}, a local file system)"),
                (Reason::NotLocal(m), Method::InotifyAndPoll(every)) if p.poll == [p.root.clone()] => format!(
                    "{root} with inotify and by polling every {} ({} is not a file system known to be local, \
                     so inotify may miss changes made outside this container)",
                    human(every),
                    m.fs_type
                ),
                (Reason::NotLocal(m), Method::InotifyAndPoll(every)) => {
                    let points: Vec<String> = p.poll.iter().map(|q| q.display().to_string()).collect();
                    format!(
                        "{root} with inotify, and {} by polling every {} as well ({} is a {} mount, not a file \
                         system known to be local, so inotify may miss changes made outside this container)",
                        points.join(", "),
                        human(every),
                        m.point.display(),
                        m.fs_type
                    )
                }
                (_, Method::InotifyAndPoll(every)) => format!(
                    "{root} with inotify and by polling every {} (no mount found for it in \
                     /proc/self/mountinfo, so its file system is unknown)",
                    human(every)
                ),
                (_, Method::Poll(every)) => format!("{root} by polling every {}", human(every)),
                (_, Method::Inotify) => format!("{root} with inotify"),
            }
        })
        .collect();
    format!("watching for changes: {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn human(d: Duration) -> String {
        crate::units::human_duration(d)
    }

    /// A mountinfo with / on overlay and /app on `fs_type`.
    fn app_on(fs_type: &str) -> String {
        format!(
            "22 1 0:21 / / rw,relatime - overlay overlay rw\n\
             30 22 0:40 / /app rw,relatime - {fs_type} src rw\n"
        )
    }

    fn never(_: &str) -> bool {
        false
    }

    fn method_for(fs_type: &str) -> Method {
        plan_root(&app_on(fs_type), Path::new("/app"), ReloadPoll::Auto, &never).method
    }

    #[test]
    fn inotify_alone_only_on_file_systems_known_to_be_local() {
        let both = Method::InotifyAndPoll(DEFAULT_POLL);
        for fs in [
            "fuse",
            "fuse.bindfs",
            "fuse.grpcfuse",
            "fuse.something-new",
            "fakeowner",
            "virtiofs",
            "9p",
            "nfs4",
            "cifs",
            "unknownfs",
        ] {
            assert_eq!(method_for(fs), both, "{fs}");
            let plan = plan_root(&app_on(fs), Path::new("/app/src"), ReloadPoll::Auto, &never);
            assert_eq!(plan.poll, [PathBuf::from("/app/src")], "{fs}");
            assert_eq!(
                plan.reason,
                Reason::NotLocal(Mount {
                    point: "/app".into(),
                    fs_type: fs.into()
                })
            );
        }
        for fs in ["ext4", "overlay", "tmpfs", "xfs", "btrfs"] {
            assert_eq!(method_for(fs), Method::Inotify, "{fs}");
            let plan = plan_root(&app_on(fs), Path::new("/app"), ReloadPoll::Auto, &never);
            assert_eq!(plan.reason, Reason::Local(fs.into()));
            assert!(plan.poll.is_empty());
        }
    }

    #[test]
    fn the_setting_overrides_the_mount_type() {
        let every = Duration::from_millis(300);
        for fs in ["fuse", "ext4"] {
            let forced = plan_root(&app_on(fs), Path::new("/app"), ReloadPoll::Every(every), &never);
            assert_eq!(forced.method, Method::Poll(every));
            assert_eq!(forced.poll, [PathBuf::from("/app")]);
            let off = plan_root(&app_on(fs), Path::new("/app"), ReloadPoll::Off, &never);
            assert_eq!(off.method, Method::Inotify);
            assert!(off.poll.is_empty());
        }
    }

    #[test]
    fn no_mount_found_polls_as_well() {
        let plan = plan_root("", Path::new("/app"), ReloadPoll::Auto, &never);
        assert_eq!(plan.method, Method::InotifyAndPoll(DEFAULT_POLL));
        assert_eq!(plan.reason, Reason::Unknown);
        assert!(describe(&[plan], human).contains("no mount found for it"));
    }

    #[test]
    fn mount_types_come_from_the_longest_mount_point() {
        let info = "\
22 1 0:21 / / rw,relatime - overlay overlay rw
30 22 0:40 / /app rw,relatime - fuse.grpcfuse grpcfuse rw
31 30 0:41 / /app/node_modules rw - ext4 /dev/vda rw
32 22 0:42 / /my\\040dir rw - 9p host rw
";
        assert_eq!(
            mount_fs_type(info, Path::new("/app/views.py")).as_deref(),
            Some("fuse.grpcfuse")
        );
        assert_eq!(
            mount_fs_type(info, Path::new("/app/node_modules/x")).as_deref(),
            Some("ext4")
        );
        assert_eq!(mount_fs_type(info, Path::new("/srv")).as_deref(), Some("overlay"));
        assert_eq!(mount_fs_type(info, Path::new("/my dir/x")).as_deref(), Some("9p"));
        // /application is not under /app.
        assert_eq!(
            mount_fs_type(info, Path::new("/application")).as_deref(),
            Some("overlay")
        );
        let plan = plan_root(info, Path::new("/my dir"), ReloadPoll::Auto, &never);
        assert_eq!(plan.method, Method::InotifyAndPoll(DEFAULT_POLL));
        assert_eq!(plan.poll, [PathBuf::from("/my dir")]);
    }

    #[test]
    fn a_mount_below_the_root_is_polled_unless_covered_or_ignored() {
        let info = "\
22 1 0:21 / / rw - overlay overlay rw
40 22 0:50 / /app/src rw - virtiofs host rw
41 22 0:51 / /app/cache rw - 9p cache rw
42 41 0:52 / /app/cache rw - tmpfs tmpfs rw
43 22 0:53 / /application rw - 9p other rw
44 22 0:54 / /app/node_modules rw - fuse deps rw
45 40 0:55 / /app/src/vendor rw - nfs4 server:/v rw
";
        let ignores = |name: &str| name == "node_modules";
        let plan = plan_root(info, Path::new("/app"), ReloadPoll::Auto, &ignores);
        assert_eq!(plan.method, Method::InotifyAndPoll(DEFAULT_POLL));
        // /app/cache's 9p is covered by tmpfs, /application is not below
        // /app, node_modules is ignored, and /app/src/vendor is polled
        // with /app/src.
        assert_eq!(plan.poll, [PathBuf::from("/app/src")]);
        let line = describe(&[plan], human);
        assert_eq!(
            line,
            "watching for changes: /app with inotify, and /app/src by polling every 1s as well (/app/src is a \
             virtiofs mount, not a file system known to be local, so inotify may miss changes made outside \
             this container)"
        );
        let local_only = info.replace("virtiofs", "ext4").replace("nfs4", "xfs");
        let plan = plan_root(&local_only, Path::new("/app"), ReloadPoll::Auto, &ignores);
        assert_eq!(plan.method, Method::Inotify);
        assert_eq!(plan.reason, Reason::Local("overlay".into()));
    }

    #[test]
    fn the_line_names_each_root_its_method_and_the_mount_type() {
        let info = "\
22 1 0:21 / / rw - overlay overlay rw
30 22 0:40 / /app rw - fuse /src rw
31 22 0:41 / /lib rw - ext4 /dev/vda rw
";
        let plans: Vec<RootPlan> = ["/app", "/lib"]
            .iter()
            .map(|r| plan_root(info, Path::new(r), ReloadPoll::Auto, &never))
            .collect();
        assert_eq!(
            describe(&plans, human),
            "watching for changes: /app with inotify and by polling every 1s (fuse is not a file system known \
             to be local, so inotify may miss changes made outside this container); /lib with inotify (ext4, \
             a local file system)"
        );
        let forced: Vec<RootPlan> = ["/app", "/lib"]
            .iter()
            .map(|r| {
                plan_root(
                    info,
                    Path::new(r),
                    ReloadPoll::Every(Duration::from_millis(200)),
                    &never,
                )
            })
            .collect();
        assert_eq!(
            describe(&forced, human),
            "watching for changes by polling every 200ms (INITD_RELOAD_POLL): /app, /lib"
        );
        let off = [plan_root(info, Path::new("/app"), ReloadPoll::Off, &never)];
        assert_eq!(
            describe(&off, human),
            "watching for changes with inotify only (INITD_RELOAD_POLL=off): /app"
        );
    }
}
