#!/usr/bin/env bash
# Reload benchmark for `initd dev`: how soon an edit is served, and what
# watching costs while nothing happens.
#
#   bash benches/reload.sh           # full run: about 7 minutes after the build
#   QUICK=1 bash benches/reload.sh   # smoke test: about a minute
#
# Prints Markdown tables and writes them to benches/results/reload.md
# (git-ignored; the raw samples go to reload-raw.tsv next to it).
#
# Knobs (environment):
#   INITD_BIN  initd to test; when set, the cargo build is skipped
#   ROUNDS     edits per contender              (30; QUICK 5)
#   IDLE_SECS  length of one idle CPU window    (60; QUICK 10)
#   IDLE_RUNS  idle windows                     (3;  QUICK 1)
#   FILES      wanted files in the idle tree    (10000)
#
# What is measured, and how:
# - Edit to answer: a tiny WSGI app (the same file for every contender) is
#   served by gunicorn with one worker; the driver rewrites app.py with a
#   new body and polls GET / every 2 ms until the new body comes back.
#   Contenders: initd dev with inotify, initd dev polling every second (its
#   fallback for Docker Desktop mounts), and gunicorn's own --reload with
#   its inotify and its polling engine. Each keeps running in its own copy
#   of the project; every round edits each contender once, in a rotating
#   order, so drift and load land on all alike. Medians over the rounds.
# - Change to restart begun (initd only): the timestamp of initd's
#   "... changed: restarting the server" line (INITD_LOG_FORMAT=json, in
#   microseconds) minus the wall-clock time of the write. It includes the
#   100 ms debounce, which is deliberate: an editor's save or a formatter
#   is several writes.
# - The floor: gunicorn started cold until its first answer, measured in
#   the same rotation. A restart (initd's) cannot beat stopping the old
#   server plus this; gunicorn --reload re-forks a worker instead and skips
#   the master's start, so its floor is lower.
# - Idle CPU: initd dev (its dev server a `sleep`, so all CPU counted is
#   initd's own) watching FILES Python files in 100-file directories, with
#   inotify and polling every second, side by side (each on a tree of its
#   own: notify's inotify watches include IN_OPEN, so a poller opening the
#   directories of a shared tree would wake the other) for IDLE_SECS, reading
#   utime+stime from /proc/PID/stat (all threads). The polling floor is GNU
#   find stat'ing the same tree once (`find -newer`), times one pass a
#   second. gunicorn --reload is shown for reference: it watches only the
#   modules it imported, not the tree, and its rows count master + worker
#   (gunicorn alone, no --reload, is its floor).
# Every process runs as PID 1 of its own pid namespace, as in a container.

set -euo pipefail
export LC_ALL=C

die() { printf 'reload.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'reload.sh: %s\n' "$*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=$REPO/benches/results

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    d_rounds=5 d_idle=10 d_runs=1
else
    d_rounds=30 d_idle=60 d_runs=3
fi
ROUNDS=${ROUNDS:-$d_rounds}
IDLE_SECS=${IDLE_SECS:-$d_idle}
IDLE_RUNS=${IDLE_RUNS:-$d_runs}
FILES=${FILES:-10000}
for v in ROUNDS IDLE_SECS IDLE_RUNS FILES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

BUILD_INITD=1
if [[ -n ${INITD_BIN:-} ]]; then BUILD_INITD=0; fi
INITD_BIN=${INITD_BIN:-$REPO/target/x86_64-unknown-linux-gnu/release/initd}
export -n INITD_BIN

# ---------------------------------------------------------------- preflight
((EUID == 0)) || die "must run as root: pid namespaces need CAP_SYS_ADMIN (try: sudo bash $0)"

# Debian's gunicorn runs on /usr/bin/python3, whose `inotify` module
# (python3-inotify) gunicorn's inotify reload engine needs.
need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
command -v gunicorn >/dev/null || need+=(gunicorn)
command -v find >/dev/null || need+=(findutils)
GPY=
if command -v gunicorn >/dev/null; then
    GPY=$(head -1 "$(command -v gunicorn)" | sed -n 's/^#! *//p' | awk '{print $1}')
fi
if [[ -z $GPY ]] || { [[ -x $GPY ]] && ! "$GPY" -c 'import inotify.adapters' 2>/dev/null; }; then
    need+=(python3-inotify)
fi
if ((${#need[@]})); then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ((BUILD_INITD)); then
    say "cargo build --release (in $REPO)"
    (cd "$REPO" && cargo build --release) \
        || die "cargo build --release failed; fix the build, or point INITD_BIN at an initd binary"
fi
[[ -x $INITD_BIN ]] || die "initd binary not found or not executable: $INITD_BIN"
unshare --pid --fork --mount-proc --kill-child /bin/true 2>/dev/null \
    || die "cannot create a pid namespace here (unshare --pid --fork --mount-proc failed; inside a container this needs --privileged)"

TMP=$(mktemp -d /tmp/initd-reload.XXXXXX)
DRIVER_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # The driver kills what it started; this is for an interrupted driver.
    if [[ -n $DRIVER_PID ]]; then kill -TERM "$DRIVER_PID" 2>/dev/null || true; wait "$DRIVER_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

mkdir -p "$RESULTS"
cat >"$TMP/driver.py" <<'PY'
import datetime, json, os, platform, resource, signal, socket, statistics
import subprocess, sys, time

# benches/procs.py (on PYTHONPATH): start, stop and measure processes.
from procs import CLK_TCK, UNSHARE, cpu_ticks, init_pid, kill_all, spawn, stop

INITD, TMP, RESULTS = sys.argv[1], sys.argv[2], sys.argv[3]
ROUNDS, IDLE_SECS, IDLE_RUNS, FILES = (int(a) for a in sys.argv[4:8])
GUNICORN = subprocess.run(["sh", "-c", "command -v gunicorn"], capture_output=True, text=True).stdout.strip()
PATH = os.path.dirname(GUNICORN) + ":/usr/local/bin:/usr/bin:/bin"
# The interpreter gunicorn runs on (its #! line).
GPY = open(GUNICORN).readline()[2:].split()[0]
# A TERM from reload.sh (interrupted) unwinds through `finally`, which
# kills everything started.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def say(text):
    print(f"reload.sh: {text}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port):
    """The body of GET / if a server answered 200, else None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode() if b" 200 " in head.split(b"\r\n")[0] else None


APP = """BODY = {body!r}.encode()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [BODY]
"""


def make_project(path, body, extra_files=100, per_dir=100):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "app.py"), "w") as f:
        f.write(APP.format(body=body))
    for i in range(extra_files):
        d = os.path.join(path, "pkg", f"sub{i // per_dir}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"mod{i}.py"), "w") as f:
            f.write(f"X = {i}\n")


def initd_env(port, extra, server=None):
    env = {
        "PATH": PATH, "HOME": TMP, "INITD_ALLOW_ROOT": "true", "INITD_LOG_FORMAT": "json",
        "AUTO_START_SERVER": "true", "INITD_MIGRATE": "off",
        "INITD_DEV_SERVER": server or f"gunicorn --bind 127.0.0.1:{port} --workers 1 app:application",
    }
    env.update(extra)
    return env


def gunicorn_argv(port, *extra):
    return [GUNICORN, "--bind", f"127.0.0.1:{port}", "--workers", "1", *extra, "app:application"]


def plain_env():
    return {"PATH": PATH, "HOME": TMP}


def wait_body(port, want, limit=20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        body = get(port)
        if body is not None and (want is None or body == want):
            return time.monotonic()
        time.sleep(0.002)
    return None


def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def restart_times(log, since_wall):
    """From initd's JSON lines after `since_wall`: seconds to the restart
    line, and from it to the next start of the server (the old server's
    stop), or None."""
    begun = None
    with open(log, "rb") as f:
        for raw in f:
            if not raw.startswith(b"{"):
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            ts = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
            if ts < since_wall - 0.0005:
                continue
            message = event.get("message", "")
            if begun is None and "restarting the server" in message:
                begun = ts
            elif begun is not None and message.startswith("starting the dev server"):
                return begun - since_wall, ts - begun
    return (begun - since_wall, None) if begun is not None else (None, None)


def ms(x):
    return f"{x * 1000:.0f} ms"


def summary(xs):
    xs = sorted(xs)
    if not xs:
        return "n/a", "n/a", "n/a"
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return ms(statistics.median(xs)), ms(p90), ms(xs[0])


raw = open(os.path.join(RESULTS, "reload-raw.tsv"), "w")
raw.write("measure\tcontender\tround\tseconds\n")

# ------------------------------------------------------------ edit to answer
class Contender:
    def __init__(self, key, label, initd=False, floor=False):
        self.key, self.label, self.initd, self.floor = key, label, initd, floor
        self.dir = os.path.join(TMP, "lat", key)
        self.log = os.path.join(TMP, f"{key}.log")
        self.port = free_port()
        self.answer, self.begun, self.stopped, self.failed = [], [], [], 0
        self.proc = None


def run_latency():
    have_inotify = subprocess.run([GPY, "-c", "import inotify.adapters"], capture_output=True).returncode == 0
    cs = [
        Contender("initd-inotify", "initd dev, inotify", initd=True),
        Contender("initd-poll", "initd dev, polling every 1s", initd=True),
        Contender("gunicorn-reload-poll", "gunicorn --reload (poll engine)"),
        Contender("floor", "floor: gunicorn from cold to first answer", floor=True),
    ]
    if have_inotify:
        cs.insert(2, Contender("gunicorn-reload-inotify", "gunicorn --reload (inotify engine)"))
    else:
        say("python3-inotify missing: gunicorn's inotify engine is left out")
    for c in cs:
        make_project(c.dir, f"{c.key} start")
        if c.key == "initd-inotify":
            c.proc = spawn(UNSHARE + [INITD, "dev"], c.dir, initd_env(c.port, {}), c.log)
        elif c.key == "initd-poll":
            c.proc = spawn(UNSHARE + [INITD, "dev"], c.dir, initd_env(c.port, {"INITD_RELOAD_POLL": "1s"}), c.log)
        elif c.key.startswith("gunicorn-reload"):
            engine = c.key.rsplit("-", 1)[1]
            argv = UNSHARE + gunicorn_argv(c.port, "--reload", "--reload-engine", engine)
            c.proc = spawn(argv, c.dir, plain_env(), c.log)
    for c in cs:
        if c.proc and wait_body(c.port, f"{c.key} start", 30) is None:
            raise SystemExit(f"{c.label} never answered; see {c.log}:\n" + open(c.log).read()[-3000:])
    time.sleep(1.5)  # past the first second: no edit lands in the start's own second
    say(f"edit to answer: {ROUNDS} rounds x {len(cs)} contenders")
    for r in range(ROUNDS):
        order = cs[r % len(cs):] + cs[:r % len(cs)]
        for c in order:
            if c.floor:
                t0 = time.monotonic()
                p = spawn(gunicorn_argv(c.port), c.dir, plain_env(), c.log)
                t1 = wait_body(c.port, None)
                stop(p)
                if t1 is None:
                    c.failed += 1
                else:
                    c.answer.append(t1 - t0)
                    raw.write(f"answer\t{c.key}\t{r}\t{t1 - t0:.6f}\n")
                time.sleep(0.3)
                continue
            # A longer body every round: Python trusts a cached .pyc whose
            # source kept its size and its mtime's second.
            body = f"{c.key} round {r} " + "." * r
            src = APP.format(body=body)
            wall = time.time()
            t0 = time.monotonic()
            with open(os.path.join(c.dir, "app.py"), "w") as f:
                f.write(src)
            t1 = wait_body(c.port, body)
            if t1 is None:
                c.failed += 1
                say(f"{c.label}: round {r} not served within 20 s")
                continue
            c.answer.append(t1 - t0)
            raw.write(f"answer\t{c.key}\t{r}\t{t1 - t0:.6f}\n")
            if c.initd:
                b, stopped = restart_times(c.log, wall)
                if b is not None:
                    c.begun.append(b)
                    raw.write(f"begun\t{c.key}\t{r}\t{b:.6f}\n")
                if stopped is not None:
                    c.stopped.append(stopped)
                    raw.write(f"stopped\t{c.key}\t{r}\t{stopped:.6f}\n")
            time.sleep(0.3)
    for c in cs:
        if c.proc:
            stop(c.proc)
    return cs


# ----------------------------------------------------------------- idle CPU
def run_idle():
    # A tree of its own for each initd: a poller opening the directories of
    # a tree another initd watches would wake that one's inotify (IN_OPEN).
    trees = {}
    for key in ("initd-inotify", "initd-poll", "gunicorn"):
        trees[key] = os.path.join(TMP, "idle", key)
        make_project(trees[key], "idle", extra_files=FILES - 1)
    sleeper = "sleep 1000000"
    setups = [
        ("initd-inotify", "initd dev, inotify", UNSHARE + [INITD, "dev"], initd_env(0, {}, sleeper), True),
        ("initd-poll", "initd dev, polling every 1s", UNSHARE + [INITD, "dev"],
         initd_env(0, {"INITD_RELOAD_POLL": "1s"}, sleeper), True),
        ("gunicorn", "gunicorn alone (no --reload)", UNSHARE + gunicorn_argv(free_port()), plain_env(), False),
        ("gunicorn-reload-inotify", "gunicorn --reload (inotify engine)",
         UNSHARE + gunicorn_argv(free_port(), "--reload", "--reload-engine", "inotify"), plain_env(), False),
        ("gunicorn-reload-poll", "gunicorn --reload (poll engine)",
         UNSHARE + gunicorn_argv(free_port(), "--reload", "--reload-engine", "poll"), plain_env(), False),
    ]
    results = {key: [] for key, *_ in setups}
    for run in range(IDLE_RUNS):
        say(f"idle CPU: window {run + 1} of {IDLE_RUNS}, {IDLE_SECS} s, {FILES} files")
        procs = []
        for key, label, argv, env, is_initd in setups:
            tree = trees.get(key, trees["gunicorn"])
            procs.append((key, spawn(argv, tree, env, os.path.join(TMP, f"idle-{key}.log")), is_initd))
        time.sleep(5)  # start-up and the first full look at the tree are not idling
        pids = {}
        for key, p, is_initd in procs:
            pid1 = init_pid(p.pid)
            # initd: itself only. gunicorn: the master (PID 1) and its worker.
            pids[key] = [pid1] if is_initd else [pid1] + children(pid1)
        before = {key: cpu_ticks(ps) for key, ps in pids.items()}
        time.sleep(IDLE_SECS)
        after = {key: cpu_ticks(ps) for key, ps in pids.items()}
        for key, p, _ in procs:
            stop(p)
        for key in pids:
            secs = (after[key] - before[key]) / CLK_TCK
            results[key].append(secs)
            raw.write(f"idle-cpu\t{key}\t{run}\t{secs:.3f}\n")
    # The floor of a poll: one stat of every file, by a C program.
    ref = os.path.join(TMP, "ref")
    open(ref, "w").close()
    find_cpu = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["find", trees["initd-poll"], "-type", "f", "-name", "*.py", "-newer", ref], stdout=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        find_cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return setups, results, statistics.median(find_cpu)


try:
    cs = run_latency()
    setups, idle, find_pass = run_idle()
finally:
    kill_all()
    raw.close()

gver = subprocess.run([GUNICORN, "--version"], capture_output=True, text=True).stdout.strip()
pyver = subprocess.run([GPY, "--version"], capture_output=True, text=True).stdout.strip()
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = []
out = lines.append
out(f"# initd dev: reload benchmark, {datetime.date.today().isoformat()}")
out("")
out(f"Machine: {os.cpu_count()} CPUs ({cpu_model}), Linux {platform.release()}; {gver}, "
    f"{pyver}. `bash benches/reload.sh` (ROUNDS={ROUNDS}, "
    f"IDLE_SECS={IDLE_SECS}, IDLE_RUNS={IDLE_RUNS}, FILES={FILES}).")
out("")
out("## Edit to answer")
out("")
out("From writing app.py to the first HTTP answer with the new body (gunicorn, one worker, "
    f"a project of 100 files); {ROUNDS} edits each, interleaved.")
out("")
out("| Contender | median | p90 | best | failed |")
out("|---|---|---|---|---|")
for c in cs:
    med, p90, best = summary(c.answer)
    out(f"| {c.label} | {med} | {p90} | {best} | {c.failed} |")
out("")
out("initd's part, from its log lines' timestamps: change to restart begun (the stop signal "
    "to the old server; includes the 100 ms debounce), then restart begun to the new server "
    "started (the old gunicorn's graceful stop). The rest, to the first answer, is the new "
    "gunicorn's start (compare the floor). Medians (p90):")
out("")
out("| Contender | change to restart begun | old server stopping | edit to answer |")
out("|---|---|---|---|")
for c in cs:
    if c.initd:
        cols = []
        for xs in (c.begun, c.stopped, c.answer):
            med, p90, _ = summary(xs)
            cols.append(f"{med} ({p90})")
        out(f"| {c.label} | {' | '.join(cols)} |")
out("")
out("## Idle CPU")
out("")
out(f"CPU time used over {IDLE_SECS} s of idling with {FILES} Python files watched "
    f"(utime+stime, {CLK_TCK} ticks a second, so 0 means under {1000 // CLK_TCK} ms); median of {IDLE_RUNS} window(s).")
out("")
out(f"| Process | CPU in {IDLE_SECS} s | share of one CPU |")
out("|---|---|---|")
for key, label, *_ in setups:
    secs = statistics.median(idle[key])
    out(f"| {label} | {secs * 1000:.0f} ms | {secs / IDLE_SECS * 100:.2f} % |")
out(f"| floor for polling every 1s: `find -newer` stat'ing the tree once a second | "
    f"{find_pass * IDLE_SECS * 1000:.0f} ms | {find_pass * 100:.2f} % |")
out("")
out("gunicorn's reloaders watch only the modules gunicorn imported (here one), not the tree; "
    "their rows count master and worker, whose floor is gunicorn alone.")
text = "\n".join(lines) + "\n"
with open(os.path.join(RESULTS, "reload.md"), "w") as f:
    f.write(text)
print(text)
PY

say "results go to $RESULTS/reload.md"
PY3=$(command -v python3)
PYTHONPATH="$REPO/benches" "$PY3" "$TMP/driver.py" "$INITD_BIN" "$TMP" "$RESULTS" "$ROUNDS" "$IDLE_SECS" "$IDLE_RUNS" "$FILES" &
DRIVER_PID=$!
wait "$DRIVER_PID"
DRIVER_PID=
