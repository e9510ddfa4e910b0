#!/usr/bin/env bash
# Poll cost benchmark for `initd dev`: what watching a large tree by polling
# costs, per poll round and while idling at the default interval.
#
#   bash benches/poll.sh           # about 4 minutes after the build
#   QUICK=1 bash benches/poll.sh   # smoke test: under a minute
#
# Prints a Markdown table and writes it to benches/results/poll.md
# (git-ignored).
#
# Knobs (environment):
#   INITD_BIN   initd to test; when set, the cargo build is skipped
#   FILES       wanted (*.py) files in the tree            (10000)
#   ROUND_SECS  window for the per-round cost, at 100ms    (30; QUICK 6)
#   IDLE_SECS   window for idle CPU, local tree            (60; QUICK 10)
#   FUSE_SECS   window for idle CPU on the FUSE mount      (180; QUICK 30)
#               (one window: it must span several rounds, which a large
#               tree on FUSE spaces out, see below)
#   RUNS        windows of the other kinds; medians shown  (3;  QUICK 1)
#
# The tree: FILES Python files in directories of 100, each directory with
# a __pycache__ holding a .pyc per module, plus a node_modules of 5,000
# files and a .git of 2,000: what a Django checkout looks like after a
# run. The ignored parts cost nothing but must not be entered.
#
# What is measured, each initd being PID 1 of its own pid namespace with a
# `sleep` as its dev server, so all CPU counted is initd's watching:
# - CPU per poll round: INITD_RELOAD_POLL=100ms (poll only) for ROUND_SECS,
#   initd's utime+stime (all threads, /proc/PID/stat) divided by the rounds
#   made in the window. Every 10th round lists every directory again; the
#   figure is the average over all rounds.
# - Idle CPU at the default interval: the tree seen through a FUSE mount
#   (bindfs over the directory, mount type `fuse`), where initd by default
#   watches with inotify and polls every second as well, waiting longer
#   when a round is expensive (100 times the round's time); initd's CPU
#   over FUSE_SECS. bindfs answers every stat in user space, so its own CPU is
#   shown too: that is the file system's cost of being polled, paid by the
#   machine rather than by initd. Without bindfs (or /dev/fuse) this row is
#   replaced by INITD_RELOAD_POLL=1s on the local tree and says so.
# - Idle CPU with INITD_RELOAD_POLL=1s on the local tree (poll only).
# - Floor: GNU find stat'ing the same wanted files once (`find -newer`,
#   pruning the ignored directories), CPU per pass.

set -euo pipefail
export LC_ALL=C

die() { printf 'poll.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'poll.sh: %s\n' "$*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=$REPO/benches/results

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    d_round=6 d_idle=10 d_fuse=30 d_runs=1
else
    d_round=30 d_idle=60 d_fuse=180 d_runs=3
fi
FILES=${FILES:-10000}
ROUND_SECS=${ROUND_SECS:-$d_round}
IDLE_SECS=${IDLE_SECS:-$d_idle}
FUSE_SECS=${FUSE_SECS:-$d_fuse}
RUNS=${RUNS:-$d_runs}
for v in FILES ROUND_SECS IDLE_SECS FUSE_SECS RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

BUILD_INITD=1
if [[ -n ${INITD_BIN:-} ]]; then BUILD_INITD=0; fi
INITD_BIN=${INITD_BIN:-$REPO/target/x86_64-unknown-linux-gnu/release/initd}
export -n INITD_BIN

((EUID == 0)) || die "must run as root: pid namespaces and FUSE mounts need it (try: sudo bash $0)"
need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
command -v find >/dev/null || need+=(findutils)
command -v bindfs >/dev/null || need+=(bindfs)
if ((${#need[@]})); then
    if command -v apt-get >/dev/null; then
        say "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
            || say "could not install ${need[*]}"
    fi
    command -v python3 >/dev/null && command -v unshare >/dev/null && command -v find >/dev/null \
        || die "missing ${need[*]} and cannot install them"
fi

if ((BUILD_INITD)); then
    say "cargo build --release (in $REPO)"
    (cd "$REPO" && cargo build --release) \
        || die "cargo build --release failed; fix the build, or point INITD_BIN at an initd binary"
fi
[[ -x $INITD_BIN ]] || die "initd binary not found or not executable: $INITD_BIN"
INITD_BIN=$(realpath "$INITD_BIN")  # the runs change directory
unshare --pid --fork --mount-proc --kill-child /bin/true 2>/dev/null \
    || die "cannot create a pid namespace here (inside a container this needs --privileged)"

TMP=$(mktemp -d /tmp/initd-poll.XXXXXX)
DRIVER_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $DRIVER_PID ]]; then kill -TERM "$DRIVER_PID" 2>/dev/null || true; wait "$DRIVER_PID" 2>/dev/null || true; fi
    # The driver unmounts what it mounted; this is for an interrupted one.
    if mountpoint -q "$TMP/view" 2>/dev/null; then umount -l "$TMP/view" || true; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

mkdir -p "$RESULTS"
cat >"$TMP/driver.py" <<'PY'
import datetime, os, platform, resource, signal, statistics, subprocess, sys, time

# benches/procs.py (on PYTHONPATH): start, stop and measure processes.
from procs import CLK_TCK, UNSHARE, cpu_ticks, init_pid, kill_all, spawn, stop

INITD, TMP, RESULTS = sys.argv[1], sys.argv[2], sys.argv[3]
FILES, ROUND_SECS, IDLE_SECS, FUSE_SECS, RUNS = (int(a) for a in sys.argv[4:9])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def say(text):
    print(f"poll.sh: {text}", file=sys.stderr, flush=True)


def make_tree(root):
    for i in range(FILES):
        d = os.path.join(root, "pkg", f"sub{i // 100}")
        if i % 100 == 0:
            os.makedirs(os.path.join(d, "__pycache__"), exist_ok=True)
        with open(os.path.join(d, f"mod{i}.py"), "w") as f:
            f.write(f"X = {i}\n")
        with open(os.path.join(d, "__pycache__", f"mod{i}.cpython-311.pyc"), "wb") as f:
            f.write(b"\0" * 64)
    for i in range(5000):
        d = os.path.join(root, "node_modules", f"lib{i // 50}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"index{i}.js"), "w") as f:
            f.write("module.exports = 1;\n")
    for i in range(2000):
        d = os.path.join(root, ".git", "objects", f"{i % 256:02x}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{i:038x}"), "wb") as f:
            f.write(b"x")


def wanted_files(root):
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "node_modules", ".git")]
        n += sum(1 for f in filenames if f.endswith(".py"))
    return n


def cpu_secs(pid):
    return cpu_ticks([pid]) / CLK_TCK


def initd_env(extra):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": TMP, "INITD_ALLOW_ROOT": "true",
           "AUTO_START_SERVER": "true", "INITD_MIGRATE": "off", "INITD_SOCKET": "off",
           "INITD_DEV_SERVER": "sleep 1000000"}
    env.update(extra)
    return env


def measure(cwd, extra, secs, log, extra_pids=()):
    """initd dev in `cwd` for `secs` after it settled: its CPU seconds, the
    CPU seconds of `extra_pids` (a FUSE daemon), and its start-up line."""
    p = spawn(UNSHARE + [INITD, "dev"], cwd, initd_env(extra), log)
    try:
        if p.poll() is not None or not os.path.exists(f"/proc/{p.pid}"):
            raise SystemExit(f"initd exited at once ({p.returncode}):\n" + open(log, errors="replace").read()[-2000:])
        try:
            pid = init_pid(p.pid)
        except SystemExit as e:
            raise SystemExit(f"{e}; its output:\n" + open(log, errors="replace").read()[-2000:])
        time.sleep(4)  # start-up and the first full look are not idling
        before = cpu_secs(pid), sum(cpu_secs(x) for x in extra_pids)
        time.sleep(secs)
        after = cpu_secs(pid), sum(cpu_secs(x) for x in extra_pids)
    finally:
        stop(p)
    text = open(log, errors="replace").read().splitlines()
    line = next((l.strip() for l in text if "watching" in l), "?")
    slow = next((l.strip() for l in text if "a round:" in l), None)
    if slow:
        line += "`, then `" + slow
    return after[0] - before[0], after[1] - before[1], line


def bindfs_pid(mountpoint):
    out = subprocess.run(["pgrep", "-f", f"bindfs .* {mountpoint}$"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


tree = os.path.join(TMP, "tree")
say(f"making the tree: {FILES} Python files, with __pycache__, node_modules and .git")
make_tree(tree)
n_wanted = wanted_files(tree)

view = os.path.join(TMP, "view")
os.makedirs(view)
fuse_note = None
daemon = None
if not os.path.exists("/dev/fuse"):
    fuse_note = "/dev/fuse is missing"
elif subprocess.run(["sh", "-c", "command -v bindfs"], capture_output=True).returncode != 0:
    fuse_note = "bindfs is not installed"
else:
    r = subprocess.run(["bindfs", tree, view], capture_output=True, text=True)
    if r.returncode != 0:
        fuse_note = f"bindfs failed: {r.stderr.strip()}"
    else:
        daemon = bindfs_pid(view)
        if daemon is None:
            fuse_note = "bindfs daemon not found"

rows = []
try:
    per_round = []
    for run in range(RUNS):
        say(f"CPU per poll round: window {run + 1} of {RUNS}, {ROUND_SECS} s at 100ms")
        cpu, _, _ = measure(tree, {"INITD_RELOAD_POLL": "100ms"}, ROUND_SECS, os.path.join(TMP, "round.log"))
        per_round.append(cpu / (ROUND_SECS / 0.1))
    idle_daemon = []
    say(f"idle CPU at the default interval: one window of {FUSE_SECS} s")
    if fuse_note is None:
        cpu, dcpu, line = measure(view, {}, FUSE_SECS, os.path.join(TMP, "default.log"), [daemon])
        idle_daemon.append(dcpu)
    else:
        cpu, _, line = measure(tree, {"INITD_RELOAD_POLL": "1s"}, FUSE_SECS, os.path.join(TMP, "default.log"))
    idle_default = [cpu]
    idle_forced = []
    for run in range(RUNS):
        say(f"idle CPU, INITD_RELOAD_POLL=1s on the local tree: window {run + 1} of {RUNS}, {IDLE_SECS} s")
        cpu, _, _ = measure(tree, {"INITD_RELOAD_POLL": "1s"}, IDLE_SECS, os.path.join(TMP, "forced.log"))
        idle_forced.append(cpu)
    ref = os.path.join(TMP, "ref")
    open(ref, "w").close()
    find_cpu = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["find", tree, "(", "-name", "__pycache__", "-o", "-name", "node_modules", "-o", "-name", ".git", ")",
                        "-prune", "-o", "-type", "f", "-name", "*.py", "-newer", ref, "-print"],
                       stdout=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        find_cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
finally:
    kill_all()
    if fuse_note is None:
        subprocess.run(["umount", view])

med = statistics.median
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = []
out = lines.append
out(f"# initd dev: poll cost, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
out("")
out(f"Machine: {os.cpu_count()} CPUs ({cpu_model}), Linux {platform.release()}, load average "
    f"{os.getloadavg()[0]:.1f}. `bash benches/poll.sh` (FILES={FILES}, ROUND_SECS={ROUND_SECS}, "
    f"IDLE_SECS={IDLE_SECS}, FUSE_SECS={FUSE_SECS}, RUNS={RUNS}); {n_wanted} wanted files, next to ignored __pycache__, "
    "node_modules (5,000 files) and .git (2,000). Medians of the windows.")
out("")
out("| measure | CPU | share of one CPU |")
out("|---|---|---|")
out(f"| one poll round, {n_wanted} files (INITD_RELOAD_POLL=100ms, averaged over {int(ROUND_SECS / 0.1)} rounds) | "
    f"{med(per_round) * 1000:.2f} ms | at 1s: {med(per_round) * 100:.2f} % |")
if fuse_note is None:
    out(f"| idle at the default interval: FUSE mount (bindfs, `fuse`), inotify + polling, {FUSE_SECS} s | "
        f"{med(idle_default) * 1000:.0f} ms | {med(idle_default) / FUSE_SECS * 100:.2f} % |")
    out(f"| … the bindfs daemon answering those stats, same window | {med(idle_daemon) * 1000:.0f} ms | "
        f"{med(idle_daemon) / FUSE_SECS * 100:.2f} % |")
else:
    out(f"| idle at the default interval ({fuse_note}: INITD_RELOAD_POLL=1s on the local tree instead), {FUSE_SECS} s | "
        f"{med(idle_default) * 1000:.0f} ms | {med(idle_default) / FUSE_SECS * 100:.2f} % |")
out(f"| idle, INITD_RELOAD_POLL=1s on the local tree (polling only), {IDLE_SECS} s | "
    f"{med(idle_forced) * 1000:.0f} ms | {med(idle_forced) / IDLE_SECS * 100:.2f} % |")
out(f"| floor: `find -newer` stat'ing the same wanted files once | {med(find_cpu) * 1000:.2f} ms | "
    f"at 1s: {med(find_cpu) * 100:.2f} % |")
out("")
out(f"initd's lines in the default run: `{line}`")
text = "\n".join(lines) + "\n"
with open(os.path.join(RESULTS, "poll.md"), "w") as f:
    f.write(text)
print(text)
PY

say "results go to $RESULTS/poll.md"
PYTHONPATH="$REPO/benches" python3 "$TMP/driver.py" "$INITD_BIN" "$TMP" "$RESULTS" "$FILES" "$ROUND_SECS" "$IDLE_SECS" "$FUSE_SECS" "$RUNS" &
DRIVER_PID=$!
wait "$DRIVER_PID"
DRIVER_PID=
