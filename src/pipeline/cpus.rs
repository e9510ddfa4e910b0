//! How many CPUs the container may use, for sizing worker pools.
//!
//! A container sees every core of the host in /proc/cpuinfo and
//! `nproc`, but `docker run --cpus` and Kubernetes CPU limits cap it with a
//! cgroup quota; sizing gunicorn by the host's cores oversubscribes the quota
//! and gets the workers throttled. The quota is fractional (`--cpus 1.5`),
//! so it is returned as is and rounding is the caller's policy.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// The CPUs this process may use: the cgroup quota (the tightest one on the
/// path up the hierarchy), capped by the CPUs it may run on at all.
pub fn container_cpus() -> f64 {
    let allowed = allowed_cpus() as f64;
    let dir = match (
        fs::read_to_string("/proc/self/cgroup"),
        fs::read_to_string("/proc/self/mountinfo"),
    ) {
        (Ok(cgroup), Ok(mountinfo)) => cgroup_dir_from(&cgroup, &mountinfo),
        _ => None,
    };
    match dir.and_then(|dir| quota_along(&dir)) {
        Some(quota) => quota.min(allowed),
        None => allowed,
    }
}

/// The tightest quota from `dir` up to the top of the hierarchy. A parent's
/// quota bounds all of its children, and a nested cgroup (a pod, a systemd
/// slice) may carry the limit on any level. Levels without quota files
/// (the root cgroup, directories above the mount) are skipped, and a `dir`
/// that does not exist in this mount namespace simply yields its ancestors.
fn quota_along(dir: &Path) -> Option<f64> {
    dir.ancestors().filter_map(quota_in).reduce(f64::min)
}

fn quota_in(dir: &Path) -> Option<f64> {
    if let Ok(max) = fs::read_to_string(dir.join("cpu.max")) {
        return parse_cpu_max(&max);
    }
    let quota = fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
    let period = fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
    parse_cfs(&quota, &period)
}

/// The CPUs the scheduler may run this process on (`--cpuset-cpus`, taskset).
/// Not `std::thread::available_parallelism`: that also applies the cgroup
/// quota, but rounded down, which would turn `--cpus 1.5` into 1.
fn allowed_cpus() -> usize {
    // SAFETY: an all-zero cpu_set_t is a valid empty set, and the kernel
    // writes at most size_of::<cpu_set_t>() bytes into it.
    let count = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set) as usize
        } else {
            0
        }
    };
    if count > 0 {
        return count;
    }
    // More CPUs than a cpu_set_t holds (EINVAL), or no answer at all.
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses cgroup v2 `cpu.max`: `QUOTA PERIOD` in microseconds, where a
/// quota of `max` means no limit.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    // The kernel always prints both fields; writing `max` alone keeps the
    // period, whose default is 100 ms.
    let period = fields.next().unwrap_or("100000");
    ratio(quota, period)
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`, where a
/// quota of -1 means no limit.
pub fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    ratio(quota.trim(), period.trim())
}

/// `max`, `-1`, zero and garbage all read as "no quota".
fn ratio(quota: &str, period: &str) -> Option<f64> {
    let quota: u64 = quota.parse().ok()?;
    let period: u64 = period.parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// The directory holding this process's CPU controller files, from the
/// contents of /proc/self/cgroup and /proc/self/mountinfo.
///
/// The cgroup v1 `cpu` controller wins over the v2 hierarchy: on a hybrid
/// host the v2 tree (mounted at /sys/fs/cgroup/unified) has no controllers.
pub fn cgroup_dir_from(proc_self_cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_mount).collect();
    let entries = proc_self_cgroup.lines().filter_map(|line| {
        let mut parts = line.splitn(3, ':');
        Some((parts.next()?, parts.next()?, parts.next()?))
    });
    let mut unified = None;
    for (id, controllers, path) in entries {
        if controllers.split(',').any(|c| c == "cpu") {
            let v1 = mounts
                .iter()
                .filter(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "cpu"));
            if let Some(dir) = locate(v1, path) {
                return Some(dir);
            }
        } else if id == "0" && controllers.is_empty() {
            unified = Some(path);
        }
    }
    let v2 = mounts.iter().filter(|m| m.fstype == "cgroup2");
    locate(v2, unified?)
}

/// Where the cgroup `path` (as /proc/self/cgroup names it) appears under the
/// first of `mounts` that shows it.
fn locate<'a>(mounts: impl Iterator<Item = &'a Mount>, path: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for m in mounts {
        // A mount of the whole hierarchy has root `/`; a container whose
        // cgroup was bind-mounted at /sys/fs/cgroup has its own cgroup as
        // root, and /proc/self/cgroup names that same path.
        if let Ok(below) = Path::new(path).strip_prefix(&m.root)
            && !below.components().any(|c| c == Component::ParentDir)
        {
            return Some(m.mount_point.join(below));
        }
        // The path lies outside what the mount shows: a cgroup namespace
        // whose root is below ours prints `/../..`, and a bind mount of one
        // container's cgroup does not show its parents. In the usual
        // container layout the mount itself is our cgroup.
        fallback.get_or_insert_with(|| m.mount_point.clone());
    }
    fallback
}

#[derive(Debug, PartialEq, Eq)]
struct Mount {
    root: PathBuf,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

/// Parses a mountinfo line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS
/// [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`. The optional fields vary in
/// number, so the tail is found by its `-` separator.
fn parse_mount(line: &str) -> Option<Mount> {
    let (head, tail) = line.split_once(" - ")?;
    let mut head = head.split(' ');
    let root = unescape(head.nth(3)?);
    let mount_point = unescape(head.next()?);
    let mut tail = tail.split(' ');
    let fstype = tail.next()?.to_string();
    let super_options = tail.nth(1).unwrap_or("").to_string();
    Some(Mount {
        root: PathBuf::from(root),
        mount_point: PathBuf::from(mount_point),
        fstype,
        super_options,
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\NNN`
/// octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|digits| digits.iter().all(u8::is_ascii_digit))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match (bytes[i], escaped) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // mountinfo of a Docker container on a cgroup v2 host (private cgroup
    // namespace, the default there).
    const V2_CONTAINER_MOUNTINFO: &str = "\
1034 960 0:329 / / rw,relatime master:400 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
1035 1034 0:332 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1036 1034 0:333 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64
1040 1034 0:334 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1041 1040 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
1039 1036 0:331 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k,inode64
";

    // The host itself (systemd, cgroup v2 only).
    const V2_HOST_MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
25 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    // A Docker container on a cgroup v1 host: each controller's own
    // hierarchy, with the container's cgroup bind-mounted as its root.
    const V1_CONTAINER_CGROUP: &str = "\
12:pids:/docker/abc123
11:hugetlb:/docker/abc123
6:memory:/docker/abc123
4:cpu,cpuacct:/docker/abc123
3:cpuset:/docker/abc123
1:name=systemd:/docker/abc123
0::/system.slice/containerd.service
";
    const V1_CONTAINER_MOUNTINFO: &str = "\
600 599 0:51 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
601 600 0:28 /docker/abc123 /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime master:11 - cgroup cgroup rw,xattr,name=systemd
604 600 0:32 /docker/abc123 /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:16 - cgroup cgroup rw,cpu,cpuacct
605 600 0:33 /docker/abc123 /sys/fs/cgroup/cpuset ro,nosuid,nodev,noexec,relatime master:17 - cgroup cgroup rw,cpuset
606 600 0:34 /docker/abc123 /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:18 - cgroup cgroup rw,memory
";

    // A hybrid host (v1 controllers plus an empty v2 tree), as seen on the
    // machine these tests were written on.
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/c93e28e9e0363cba9a8796177e85ee3b
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";
    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("150000 100000"), Some(1.5));
        assert_eq!(parse_cpu_max("50000 100000"), Some(0.5));
        assert_eq!(parse_cpu_max("50000"), Some(0.5));
        assert_eq!(parse_cpu_max("0 100000"), None);
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("garbage 100000"), None);
    }

    #[test]
    fn cfs_quota_and_period() {
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs("200000\n", "100000\n"), Some(2.0));
        assert_eq!(parse_cfs("25000", "100000"), Some(0.25));
        assert_eq!(parse_cfs("100000", "0"), None);
        assert_eq!(parse_cfs("", "100000"), None);
    }

    #[test]
    fn v2_in_a_container_is_the_mount_itself() {
        assert_eq!(
            cgroup_dir_from("0::/\n", V2_CONTAINER_MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn v2_on_a_host_is_below_the_mount() {
        assert_eq!(
            cgroup_dir_from("0::/system.slice/docker-abc.scope\n", V2_HOST_MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/docker-abc.scope"))
        );
    }

    #[test]
    fn v2_outside_the_visible_root_falls_back_to_the_mount() {
        let mountinfo = "1041 1040 0:30 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup rw\n";
        assert_eq!(
            cgroup_dir_from("0::/../other\n", mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup_dir_from("0::/../../docker/xyz\n", V2_CONTAINER_MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            cgroup_dir_from("0::/docker/abc/inner\n", mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/inner"))
        );
    }

    #[test]
    fn v1_container_uses_the_cpu_controller_mount() {
        assert_eq!(
            cgroup_dir_from(V1_CONTAINER_CGROUP, V1_CONTAINER_MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
    }

    #[test]
    fn hybrid_prefers_the_v1_cpu_controller() {
        assert_eq!(
            cgroup_dir_from(HYBRID_CGROUP, HYBRID_MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
    }

    #[test]
    fn no_cgroup_information() {
        assert_eq!(cgroup_dir_from("", V2_HOST_MOUNTINFO), None);
        assert_eq!(cgroup_dir_from("0::/\n", ""), None);
        // `cpuacct` alone is not the `cpu` controller.
        assert_eq!(cgroup_dir_from("2:cpuacct:/\n", HYBRID_MOUNTINFO), None);
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let m =
            parse_mount(r"36 35 98:0 /a\040b /mnt/with\040space rw shared:1 master:2 - ext3 /dev/root rw")
                .unwrap();
        assert_eq!(m.root, PathBuf::from("/a b"));
        assert_eq!(m.mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.super_options, "rw");
        assert_eq!(unescape(r"back\\slash\134"), r"back\\slash\");
        assert_eq!(unescape(r"\777 \08 \+12 \1"), r"\777 \08 \+12 \1");
        assert_eq!(parse_mount("too short"), None);
    }

    #[test]
    fn quota_is_the_tightest_along_the_hierarchy() {
        let top = std::env::temp_dir().join(format!("initd-cpus-{}", std::process::id()));
        let inner = top.join("pod").join("container");
        fs::create_dir_all(&inner).unwrap();
        fs::write(top.join("cpu.max"), "max 100000\n").unwrap();
        fs::write(top.join("pod").join("cpu.max"), "150000 100000\n").unwrap();
        fs::write(inner.join("cpu.max"), "400000 100000\n").unwrap();
        assert_eq!(quota_along(&inner), Some(1.5));
        // A cgroup that is not visible here still counts its ancestors.
        assert_eq!(quota_along(&inner.join("gone")), Some(1.5));
        // v1 files.
        let v1 = top.join("v1");
        fs::create_dir_all(&v1).unwrap();
        fs::write(v1.join("cpu.cfs_quota_us"), "50000\n").unwrap();
        fs::write(v1.join("cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(quota_along(&v1), Some(0.5));
        fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn this_machine_has_at_least_one_cpu() {
        let cpus = container_cpus();
        assert!(cpus > 0.0, "{cpus}");
        assert!(allowed_cpus() >= 1);
    }
}

/// Property tests: cgroup files and mountinfo are the kernel's, but a
/// container runtime may present anything; nothing may panic.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_text_never_panics(a in any::<String>(), b in any::<String>()) {
            let _ = parse_cpu_max(&a);
            let _ = parse_cfs(&a, &b);
            let _ = cgroup_dir_from(&a, &b);
            let _ = parse_mount(&a);
            let _ = unescape(&a);
        }

        #[test]
        fn quotas_are_positive_ratios(quota in 0u64..10_000_000, period in 0u64..10_000_000) {
            match parse_cpu_max(&format!("{quota} {period}\n")) {
                Some(cpus) => prop_assert!(quota > 0 && period > 0 && cpus > 0.0),
                None => prop_assert!(quota == 0 || period == 0),
            }
        }
    }
}
