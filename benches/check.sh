#!/usr/bin/env bash
# How much one health check costs: `initd check` against a running initd,
# side by side with what images use today, curl and a Python one-liner,
# against the same HTTP server. Docker runs the HEALTHCHECK command every
# interval for the life of the container, so this is paid forever.
#
#   bash benches/check.sh            # full run: about a minute after the build
#   QUICK=1 bash benches/check.sh    # smoke test: a few seconds
#
# Prints one Markdown table and writes it to benches/results/check.md
# (git-ignored), with the raw samples in benches/results/check-raw.tsv.
#
# Knobs (environment):
#   INITD_BIN   initd to test; when set, the cargo build is skipped
#   ROUNDS      measuring rounds (300; QUICK 30)
#
# Method, and why:
# - initd runs as PID 1 of a fresh pid namespace (`unshare --pid --fork
#   --mount-proc`; with a user namespace when not root), supervising a small
#   Python HTTP server whose /healthz answers 200, with its control socket at
#   a private path. Where no pid namespace can be made it runs as a plain
#   subreaper with the same socket; `initd check` does not care.
# - Rows: `true` (the floor: fork, exec and wait of a trivial program),
#   `initd version` (the floor of initd's own start-up), `initd check` with
#   the default probe (the main child is alive), `initd check` with
#   INITD_HEALTH=http://.../healthz (the supervisor makes the same GET curl
#   makes, so all three HTTP rows cost the server one request), `curl -fsS`,
#   and `python3 -c 'import urllib.request; ...'`.
# - Each sample is taken by a tiny static C program (built here with cc):
#   clock before fork, fork, exec, wait4, clock after; wait4's ru_maxrss is
#   the peak RSS. It is static and small on purpose: a child's peak RSS
#   includes the memory of the process it was forked from, and Python as
#   the spawner would add its ~10 MB to every row.
# - Every round runs all rows in a rotating order, so drift (CPU frequency,
#   other load on a shared machine) lands on all of them alike. We report
#   medians, the 90th percentile, and the median of per-round ratios to
#   curl (paired), which cancels round-to-round noise.
# - Peak RSS of `initd check` is the client's: the probe itself runs in the
#   supervisor, which is running anyway.

set -euo pipefail
export LC_ALL=C

die() { printf 'check.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'check.sh: %s\n' "$*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=$REPO/benches/results

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then d_rounds=30; else d_rounds=300; fi
ROUNDS=${ROUNDS:-$d_rounds}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, got '$ROUNDS'"

BUILD_INITD=1
if [[ -n ${INITD_BIN:-} ]]; then BUILD_INITD=0; fi
INITD_BIN=${INITD_BIN:-$REPO/target/x86_64-unknown-linux-gnu/release/initd}
# initd rejects unknown INITD_* variables; this one is ours.
export -n INITD_BIN
# A developer's *_FILE variables are not secrets for the supervisor.
for var in $(compgen -e); do
    case $var in *_FILE | FILE__* | INITD_*) unset "$var" ;; esac
done

# ---------------------------------------------------------------- preflight
need=()
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v unshare >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    ((EUID == 0)) || die "missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root"
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The real interpreter, not a shim (pyenv's shims are shell scripts).
PY=$(python3 -c 'import sys; print(sys.executable)')
CURL=$(command -v curl)
TRUE=$(type -P true)  # not the shell builtin

if ((BUILD_INITD)); then
    say "cargo build --release (in $REPO)"
    (cd "$REPO" && cargo build --release) \
        || die "cargo build --release failed; fix the build, or point INITD_BIN at an initd binary"
fi
[[ -x $INITD_BIN ]] || die "initd binary not found or not executable: $INITD_BIN"

TMP=$(mktemp -d /tmp/initd-check-bench.XXXXXX)
PIDS=()
cleanup() {
    local p sig=TERM
    # unshare ignores TERM while it waits for its child; SIGKILL makes
    # --kill-child take initd and its whole namespace down with it.
    if ((${AS_PID1:-0})); then sig=KILL; fi
    for p in "${PIDS[@]}"; do kill -"$sig" "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$RESULTS"

# ------------------------------------------------------------ the measurer
cat >"$TMP/measure.c" <<'EOF'
/* measure CMD [ARGS...]: runs CMD once (stdout and stderr to /dev/null)
 * and prints "WALL_NS MAXRSS_KB STATUS". */
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec a, b;
    struct rusage ru;
    int status, null;
    pid_t pid;
    if (argc < 2) {
        fputs("usage: measure CMD [ARGS...]\n", stderr);
        return 2;
    }
    null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid = fork();
    if (pid == 0) {
        dup2(null, 1);
        dup2(null, 2);
        execv(argv[1], argv + 1);
        _exit(127);
    }
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) {
        perror("measure");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%ld %ld %d\n",
           (long)(b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec),
           ru.ru_maxrss,
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 0;
}
EOF
cc -O2 -static -o "$TMP/measure" "$TMP/measure.c" 2>/dev/null \
    || cc -O2 -o "$TMP/measure" "$TMP/measure.c" \
    || die "cannot compile the measuring helper with cc"

# ------------------------------------------------------------- the servers
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/healthz
cat >"$TMP/server.py" <<'EOF'
import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
EOF

PID1=(unshare --pid --fork --mount-proc --kill-child)
if ((EUID != 0)); then PID1=(unshare --user --map-root-user --pid --fork --mount-proc --kill-child); fi
if ! "${PID1[@]}" "$TRUE" 2>/dev/null; then
    say "cannot make a pid namespace here; initd runs as a subreaper instead of PID 1"
    PID1=()
fi
AS_PID1=$(( ${#PID1[@]} > 0 ))

# start_initd NAME SERVER_CMD [VAR=VALUE...]: initd supervising SERVER_CMD
# with its socket at $TMP/NAME.sock.
start_initd() {
    local name=$1 server=$2
    shift 2
    env -i PATH=/usr/local/bin:/usr/bin:/bin INITD_ALLOW_ROOT=true INITD_MIGRATE=off \
        INITD_SOCKET="$TMP/$name.sock" INITD_SERVER="$server" "$@" \
        "${PID1[@]}" "$INITD_BIN" run >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
}
start_initd http "$PY $TMP/server.py $PORT" INITD_HEALTH="$URL"
start_initd alive "sleep 100000"

# Both answer healthy before anything is measured.
for name in http alive; do
    for _ in $(seq 200); do
        if INITD_SOCKET=$TMP/$name.sock "$INITD_BIN" check >/dev/null 2>&1; then continue 2; fi
        sleep 0.05
    done
    cat "$TMP/$name.log" >&2
    die "initd ($name) did not become healthy"
done
"$CURL" -fsS -o /dev/null "$URL" || die "curl cannot reach $URL"

# ------------------------------------------------------------ measuring
say "measuring: $ROUNDS rounds of 6 commands"
"$PY" - "$TMP" "$ROUNDS" "$INITD_BIN" "$CURL" "$PY" "$URL" "$TRUE" "$RESULTS" "$AS_PID1" <<'EOF'
import datetime, os, platform, statistics, subprocess, sys

tmp, rounds, initd, curl, py, url, true, results, as_pid1 = sys.argv[1:]
rounds = int(rounds)
measure = os.path.join(tmp, "measure")
base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}

rows = [
    ("true", "`true` (floor: fork, exec, wait)", [true], {}),
    ("version", "`initd version` (floor: initd start-up)", [initd, "version"], {}),
    ("check", "`initd check`, default probe", [initd, "check"],
     {"INITD_SOCKET": os.path.join(tmp, "alive.sock")}),
    ("check-http", "`initd check`, INITD_HEALTH=http://…/healthz", [initd, "check"],
     {"INITD_SOCKET": os.path.join(tmp, "http.sock")}),
    ("curl", "`curl -fsS http://…/healthz`", [curl, "-fsS", "-o", "/dev/null", url], {}),
    ("python", "`python3 -c 'import urllib.request; …'`",
     [py, "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5).read()"], {}),
]

samples = {key: [] for key, *_ in rows}
raw = []
for r in range(rounds):
    order = rows[r % len(rows):] + rows[:r % len(rows)]
    for key, _, argv, env in order:
        out = subprocess.run([measure] + argv, env={**base, **env},
                             capture_output=True, text=True, check=True).stdout.split()
        ns, kb, status = int(out[0]), int(out[1]), int(out[2])
        if status != 0:
            sys.exit(f"check.sh: error: {key} exited with status {status} in round {r}")
        samples[key].append((ns / 1e6, kb))
        raw.append(f"{r}\t{key}\t{ns}\t{kb}")

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

lines = []
date = datetime.date.today().isoformat()
kernel = platform.release()
cpus = os.cpu_count()
curl_version = subprocess.run([curl, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
py_version = platform.python_version()
where = "PID 1 of a pid namespace" if as_pid1 == "1" else "a subreaper (no pid namespace here)"
lines.append(f"`initd check` vs curl vs Python, {date}: {rounds} rounds, rows in rotating order; "
             f"Linux {kernel}, {cpus} CPUs; {curl_version.split(' (')[0]}, Python {py_version}; "
             f"initd as {where}.")
lines.append("")
lines.append("| command | median | p90 | paired ratio to curl | peak RSS (median) |")
lines.append("|---|---|---|---|---|")
curl_ms = [ms for ms, _ in samples["curl"]]
for key, label, _, _ in rows:
    ms = [m for m, _ in samples[key]]
    kb = [k for _, k in samples[key]]
    ratio = statistics.median(m / c for m, c in zip(ms, curl_ms))
    lines.append(f"| {label} | {statistics.median(ms):.2f} ms | {pct(ms, 90):.2f} ms | "
                 f"{ratio:.2f}× | {statistics.median(kb) / 1024:.1f} MiB |")
lines.append("")
check = statistics.median(m / c for (m, _), c in zip(samples["check-http"], curl_ms))
floor = statistics.median(m for m, _ in samples["true"])
lines.append(f"`initd check` with an HTTP probe takes {check:.2f}× curl's time "
             f"(target: at most 0.20×); the floor, a `true`, is {floor:.2f} ms. "
             f"Peak RSS is what wait4 reports for the child, which includes the "
             f"measuring helper's own few hundred KiB (see the `true` row).")
text = "\n".join(lines) + "\n"
print(text, end="")
with open(os.path.join(results, "check.md"), "w") as f:
    f.write(text)
with open(os.path.join(results, "check-raw.tsv"), "w") as f:
    f.write("round\tcommand\twall_ns\tmaxrss_kb\n" + "\n".join(raw) + "\n")
EOF
say "written to benches/results/check.md"
