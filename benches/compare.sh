#!/usr/bin/env bash
# Side-by-side benchmark: initd vs tini vs dumb-init, each as PID 1, and
# initd's own start-up paths (`initd run` vs a bash run.sh, `initd check`
# vs curl) in the same run.
#
#   bash benches/compare.sh           # full run: about 5 minutes after the build
#   QUICK=1 bash benches/compare.sh   # smoke test: about a minute
#
# Prints one Markdown table and writes it to benches/results/latest.md
# (raw samples: latest-raw.tsv, the inits' stderr: logs/; all git-ignored).
#
# Knobs (environment):
#   INITD_BIN      initd to test; when set, the cargo build is skipped
#   TINI_BIN       default /usr/bin/tini-static (falls back to /usr/bin/tini)
#   DUMB_INIT_BIN  default /usr/bin/dumb-init
#   EXEC_ROUNDS    exec-overhead rounds          (200; QUICK 30)
#   TERM_ROUNDS    SIGTERM-latency / RSS rounds  (30;  QUICK 5)
#   ZOMBIE_ROUNDS  orphan-storm rounds           (10;  QUICK 1)
#   RUN_ROUNDS     `initd run` vs run.sh rounds  (100; QUICK 15)
#   CHECK_ROUNDS   `initd check` vs curl rounds  (200; QUICK 30)
#   ORPHANS        orphans per storm             (1000)
#   WAKE_SECS      idle window for wake-ups      (10)
#   TIME_LIMIT     hard limit in seconds for the measuring part (900; QUICK 240)
#
# Method, and why:
# - Every run is a fresh pid namespace (`unshare --pid --fork --mount-proc`),
#   because PID 1 is where the inits differ: orphans are re-parented to it
#   and the kernel drops signals it has no handler for.
# - Each round runs initd, tini, dumb-init and the floor in a rotating order,
#   so slow drift (CPU frequency, caches, other load) lands on all of them
#   alike and no init always runs "first" or "after the expensive one".
#   Besides medians we report the median of per-round ratios (paired), which
#   cancels round-to-round noise that an unpaired ratio of medians keeps.
# - Every number has a floor: the same job with no init (or a trivial one),
#   so an init's cost is read as a distance from what the kernel needs anyway.
# - Clocks are read with bash's $EPOCHREALTIME (microseconds, no fork), so
#   the timed regions contain only the command being measured plus bash's own
#   fork/exec, which the floor contains too. python3 is used where bash cannot
#   be precise or fast enough (the orphan storm's 2 ms polling and /proc
#   scans, statistics), and its start-up is never inside a timed region.

set -euo pipefail
# EPOCHREALTIME and printf follow the locale's decimal separator.
export LC_ALL=C

die() { printf 'compare.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'compare.sh: %s\n' "$*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=$REPO/benches/results
LOGDIR=$RESULTS/logs

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    d_exec=30 d_term=5 d_zombie=1 d_run=15 d_check=30 d_limit=240
else
    d_exec=200 d_term=30 d_zombie=10 d_run=100 d_check=200 d_limit=900
fi
EXEC_ROUNDS=${EXEC_ROUNDS:-$d_exec}
TERM_ROUNDS=${TERM_ROUNDS:-$d_term}
ZOMBIE_ROUNDS=${ZOMBIE_ROUNDS:-$d_zombie}
RUN_ROUNDS=${RUN_ROUNDS:-$d_run}
CHECK_ROUNDS=${CHECK_ROUNDS:-$d_check}
ORPHANS=${ORPHANS:-1000}
WAKE_SECS=${WAKE_SECS:-10}
TIME_LIMIT=${TIME_LIMIT:-$d_limit}
for v in EXEC_ROUNDS TERM_ROUNDS ZOMBIE_ROUNDS RUN_ROUNDS CHECK_ROUNDS ORPHANS WAKE_SECS TIME_LIMIT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

# initd rejects unknown INITD_* variables as a configuration error, and
# INITD_BIN is ours, not initd's: keep it out of the inits' environment.
BUILD_INITD=1
# initd drops to an app user by default and refuses root without one; the
# peers run the child as root, so initd must too for a like-for-like run.
# (Exported once here so no `env` wrapper lands inside a timed region.)
export INITD_ALLOW_ROOT=true
# initd reads every NAME_FILE=/path variable as a Docker secret; a
# developer machine's *_FILE variables are not secrets.
for var in $(compgen -e); do
    case $var in *_FILE | FILE__*) unset "$var" ;; esac
done
if [[ -n ${INITD_BIN:-} ]]; then BUILD_INITD=0; fi
INITD_BIN=${INITD_BIN:-$REPO/target/x86_64-unknown-linux-gnu/release/initd}
export -n INITD_BIN

# ---------------------------------------------------------------- preflight
((EUID == 0)) || die "must run as root: pid namespaces need CAP_SYS_ADMIN and reading other processes' /proc needs root (try: sudo bash $0)"
command -v unshare >/dev/null || die "unshare not found; install util-linux"
((BASH_VERSINFO[0] >= 5)) || die "needs bash >= 5 for \$EPOCHREALTIME (this is $BASH_VERSION)"

# Install only what is missing, with one `apt-get update`, so a warm machine
# does no network work at all.
need=()
if [[ -z ${TINI_BIN:-} ]] && ! command -v tini >/dev/null; then need+=(tini); fi
if [[ -z ${DUMB_INIT_BIN:-} ]] && ! command -v dumb-init >/dev/null; then need+=(dumb-init); fi
command -v file >/dev/null || need+=(file)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v setpriv >/dev/null || need+=(util-linux)
[[ -x /usr/bin/gunicorn ]] || need+=(gunicorn)
if ((${#need[@]})); then
    command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# initd is static, so compare it with static tini: a dynamic binary pays for
# ld.so and libc relocation at every start, which would flatter initd.
# (Debian ships dumb-init only dynamically linked; the table says so.)
if [[ -z ${TINI_BIN:-} ]]; then
    if [[ -x /usr/bin/tini-static ]]; then TINI_BIN=/usr/bin/tini-static; else TINI_BIN=$(command -v tini); fi
fi
DUMB_INIT_BIN=${DUMB_INIT_BIN:-$(command -v dumb-init)}

# Use the real interpreter, not a shim (pyenv's shims are shell scripts that
# fork helpers; as PID 1 of the floor run those would pose as the workload).
PY=$(python3 -c 'import sys; print(sys.executable)')

if ((BUILD_INITD)); then
    say "cargo build --release (in $REPO)"
    (cd "$REPO" && cargo build --release) \
        || die "cargo build --release failed; fix the build, or point INITD_BIN at an initd binary"
fi
[[ -x $INITD_BIN ]] || die "initd binary not found or not executable: $INITD_BIN"
[[ -x $TINI_BIN ]] || die "tini not executable: $TINI_BIN"
[[ -x $DUMB_INIT_BIN ]] || die "dumb-init not executable: $DUMB_INIT_BIN"

# --kill-child: if this script dies, the kernel SIGKILLs each namespace's
# PID 1, which takes the whole namespace down, so nothing outlives a crash.
UNSHARE=(unshare --pid --fork --mount-proc --kill-child)
unshare --pid --fork --mount-proc --kill-child /bin/true 2>/dev/null \
    || die "cannot create a pid namespace here (unshare --pid --fork --mount-proc failed; inside a container this needs --privileged)"

TMP=$(mktemp -d /tmp/initd-compare.XXXXXX)
mkdir -p "$RESULTS"
rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"
RAW=$RESULTS/latest-raw.tsv
: >"$RAW"

# A FIFO that nobody writes: `read -t` on it is a sub-millisecond sleep that
# forks nothing, so polling does not itself create processes or noise.
# Launched commands get it closed ({NEVER}>&-) so no init inherits it.
# ----------------------------------------------- helpers for sections 5 and 6
# stamp: as `stamp CMD...` it writes "start NS" (CLOCK_MONOTONIC) to stdout
# and execs CMD; installed as `gunicorn` it writes "end NS" and exits 0. So
# the time from the exec of an entrypoint to the exec of gunicorn is read
# without any fork, shell or unshare of ours inside it.
cat >"$TMP/stamp.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec t;
    char line[64];
    const char *me = strrchr(argv[0], '/');
    int gunicorn, n;
    clock_gettime(CLOCK_MONOTONIC, &t);
    me = me ? me + 1 : argv[0];
    gunicorn = strcmp(me, "gunicorn") == 0;
    n = snprintf(line, sizeof line, "%s %lld\n", gunicorn ? "end" : "start",
                 (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    if (write(1, line, n) != n) return 1;
    if (gunicorn) return 0;
    if (argc < 2) return 2;
    execvp(argv[1], argv + 1);
    perror("stamp: exec");
    return 127;
}
EOF
mkdir -p "$TMP/bin" "$TMP/stubbin" "$TMP/app" "$TMP/secrets"
cc -O2 -static -o "$TMP/bin/stamp" "$TMP/stamp.c" || die "cannot compile the stamp helper with cc (apt-get install gcc libc6-dev)"
cp "$TMP/bin/stamp" "$TMP/stubbin/gunicorn"
# The app user (nobody) must reach the stub and the app.
chmod 711 "$TMP"
chmod 755 "$TMP/bin" "$TMP/stubbin" "$TMP/app"
cat >"$TMP/app/app.py" <<'EOF'
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
EOF
printf 's3cret-db-password' >"$TMP/secrets/db_password"
# The bash entrypoint doing what `initd run` does here, the way images'
# run.sh scripts do it: a Docker secret into the environment (file_env),
# the worker count from the CPUs, the user drop (setpriv, as gosu would),
# exec gunicorn.
cat >"$TMP/run.sh" <<'EOF'
#!/bin/bash
set -euo pipefail
file_env() {
    local var=$1 file_var="${1}_FILE"
    if [[ -n ${!file_var:-} ]]; then
        export "$var"="$(cat "${!file_var}")"
        unset "$file_var"
    fi
}
file_env DB_PASSWORD
workers=$(($(nproc) * 2 + 1))
exec setpriv --reuid=nobody --regid=nogroup --init-groups \
    gunicorn app:app --bind "0.0.0.0:${PORT:-8000}" --workers "$workers" \
    --access-logfile - --error-logfile -
EOF
RUN_ENV=(PATH="$TMP/stubbin:/usr/local/bin:/usr/bin:/bin" HOME=/root LC_ALL=C
    DB_PASSWORD_FILE="$TMP/secrets/db_password" INITD_SECRETS_DIRS="$TMP/secrets"
    INITD_USER=nobody INITD_MIGRATE=off)

mkfifo "$TMP/never"
exec {NEVER}<>"$TMP/never"
nap() { read -r -t "$1" -u "$NEVER" || true; }

# ------------------------------------------------------- process bookkeeping
# KIDS := children of every thread of $1 (threads can own children too).
kids_of() {
    local t
    local -a line
    KIDS=()
    for t in /proc/"$1"/task/*/children; do
        [[ -r $t ]] || continue
        line=()
        read -r -a line 2>/dev/null <"$t" || true
        KIDS+=("${line[@]}")
    done
}

comm_of() { REPLY=; read -r REPLY 2>/dev/null <"/proc/$1/comm" || true; }

# SIGKILL the descendants of $1 (except $2), children before parents: killing
# a parent first would re-parent its children out of our sight. Depth 3
# reaches every namespace's PID 1 (script > python > unshare > init), and a
# dead PID 1 takes its whole namespace with it.
kill_tree() {
    local root=$1 skip=${2:-} depth=${3:-0} c
    ((depth < 3)) || return 0
    kids_of "$root"
    local -a mine=("${KIDS[@]}")
    for c in "${mine[@]}"; do
        [[ $c == "$skip" ]] && continue
        kill_tree "$c" "$skip" $((depth + 1))
        kill -KILL "$c" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    kill_tree $$
    wait 2>/dev/null || true
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# Hard bound on run time. A TERM alone would wait until the current
# foreground command ends (bash defers traps), and a hung init is exactly
# what could make it not end, so also kill our process tree.
(
    read -r -t "$TIME_LIMIT" -u "$NEVER" || true
    say "time limit of ${TIME_LIMIT}s reached (TIME_LIMIT); stopping"
    kill -TERM $$ 2>/dev/null || true
    kill_tree $$ "$BASHPID"
) &
# No "Killed" job notice when cleanup ends it; cleanup finds it by pid anyway.
disown $!

# ---------------------------------------------------------------- the inits
NAMES=(initd tini dumb-init bare)

# INIT := argv prefix that runs a command under init $1 as PID 1.
set_init() {
    case $1 in
        initd) INIT=("$INITD_BIN" exec --) ;;
        # No -s: as PID 1 tini reaps without being a subreaper.
        tini) INIT=("$TINI_BIN" --) ;;
        dumb-init) INIT=("$DUMB_INIT_BIN") ;;
        bare) INIT=() ;;
        autoreap) INIT=("$PY" "$TMP/autoreap.py") ;;
        *) die "unknown init $1" ;;
    esac
}

# ORDER := the four names rotated by round $1, so each takes each slot equally often.
order() {
    local k
    ORDER=()
    for k in 0 1 2 3; do ORDER+=("${NAMES[($1 + k) % 4]}"); done
}

rec() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; }

# After `unshare ... &` (pid $1) for init $2 running `sleep`: wait until the
# init has exec'd and its child is `sleep`, so we measure a settled init and
# not the half-started unshare. Sets INIT_PID (host pid of the namespace's
# PID 1) and CHILD_PID.
wait_ready() {
    local upid=$1 name=$2 i c
    for ((i = 0; i < 5000; i++)); do
        kids_of "$upid"
        if ((${#KIDS[@]})); then
            INIT_PID=${KIDS[0]}
            if [[ $name == bare ]]; then
                comm_of "$INIT_PID"
                if [[ $REPLY == sleep ]]; then CHILD_PID=$INIT_PID; return 0; fi
            else
                kids_of "$INIT_PID"
                for c in "${KIDS[@]}"; do
                    comm_of "$c"
                    if [[ $REPLY == sleep ]]; then CHILD_PID=$c; return 0; fi
                done
            fi
        fi
        nap 0.002
    done
    die "$name did not start its child within 10 s; see $LOGDIR/$name.log"
}

# RSS/HWM (kB) of $1, ANON: its private memory (RssAnon: heap, stack, data
# it wrote; VmRSS also counts the binary's own pages, shared page cache that
# a static binary faults in by the 64 KiB), and CTX: voluntary + involuntary context switches
# summed over its threads (each switch is a wake-up or preemption).
# PRIV: Private_Clean + Private_Dirty from smaps_rollup, the pages no other
# process shares (the binary's file pages count here too while no other
# process maps that binary).
proc_status() {
    local k v rest f
    RSS=0 HWM=0 ANON=0 CTX=0 PRIV=0
    while read -r k v rest; do
        case $k in VmRSS:) RSS=$v ;; VmHWM:) HWM=$v ;; RssAnon:) ANON=$v ;; esac
    done <"/proc/$1/status"
    while read -r k v rest; do
        case $k in Private_Clean: | Private_Dirty:) PRIV=$((PRIV + v)) ;; esac
    done <"/proc/$1/smaps_rollup"
    for f in /proc/"$1"/task/*/status; do
        while read -r k v rest; do
            case $k in voluntary_ctxt_switches: | nonvoluntary_ctxt_switches:) CTX=$((CTX + v)) ;; esac
        done <"$f"
    done
}

log_tail() { tail -n 5 "$LOGDIR/$1.log" 2>/dev/null | sed 's/^/    /' >&2 || true; }

# ------------------------------------------------------------ python helpers
# PID 1 of the orphan-storm floor: SIGCHLD ignored means the kernel releases
# exited children itself (no zombie ever exists), so the time the orphans
# take to disappear is pure kernel time. It sleeps on a pidfd of its main
# child, not in wait(): every child exit wakes a waiter in wait(), which
# would make the floor do work per orphan.
cat >"$TMP/autoreap.py" <<'EOF'
import os, select, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.execvp(sys.argv[1], sys.argv[1:])
select.select([os.pidfd_open(pid)], [], [])
EOF

# One orphan-storm trial, in python because it polls every 2 ms and scans
# /proc, which bash would do with hundreds of forks in the way of the very
# thing it watches. Starts the namespace itself so the timeline is one clock.
# Prints: zombies-at-checkpoint others-left drain-ms pid1-cpu-ms
cat >"$TMP/orphans.py" <<'EOF'
import os, signal, subprocess, sys, time

LIFETIME = 0.2   # each orphan is `sleep 0.2`
SETTLE = 1.0     # count zombies this long after the last should have died
marker, logpath, argv = sys.argv[1], sys.argv[2], sys.argv[3:]

def kids(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += f.read().split()
    except OSError:
        pass
    return {int(x) for x in out}

def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""

def cpu_ns(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total

def fail(msg):
    print(f"orphans.py: {msg}", file=sys.stderr)
    sys.exit(1)

with open(logpath, "ab") as log:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
init = None
try:
    # The init is unshare's child; it is ready once its child has exec'd sh.
    t_end = time.monotonic() + 20
    while True:
        if p.poll() is not None:
            fail(f"unshare exited early with status {p.returncode}")
        if time.monotonic() > t_end:
            fail("the workload did not start within 20 s")
        k = kids(p.pid)
        if k:
            init = min(k)
            sh = [c for c in kids(init) if comm(c) == "sh"]
            if sh:
                main = sh[0]
                break
        time.sleep(0.001)
    cpu0 = cpu_ns(init)

    # The marker appears once the subshell that forked the orphans has exited,
    # i.e. every orphan exists and belongs to PID 1.
    while not (os.path.exists(marker) and os.path.getsize(marker) > 0):
        if p.poll() is not None:
            fail(f"unshare exited with status {p.returncode} before the orphans were spawned")
        if time.monotonic() > t_end + 20:
            fail("orphans were not spawned within 20 s")
        time.sleep(0.001)
    m = time.monotonic()

    # Drain: when PID 1 has no child left but the main one (reaped, or never
    # a zombie). Cheap to poll: one read of PID 1's children list.
    checkpoint = m + LIFETIME + SETTLE
    drain = None
    while True:
        now = time.monotonic()
        if drain is None and not (kids(init) - {main}):
            drain = now - m
        if now >= checkpoint:
            break
        time.sleep(0.002)

    # Zombies: every process in PID 1's pid namespace in state Z.
    ns = os.readlink(f"/proc/{init}/ns/pid")
    zombies = left = 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in (init, main):
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/pid") != ns:
                continue
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        left += 1
        if st[st.rindex(")") + 2] == "Z":
            zombies += 1
    cpu = cpu_ns(init) - cpu0

    # Give a slow reaper a number rather than a blank, within bounds (the
    # main child exits at m + 5 s).
    while drain is None and time.monotonic() < checkpoint + 2.5:
        if not (kids(init) - {main}):
            drain = time.monotonic() - m
        time.sleep(0.002)
    print(zombies, left, "NA" if drain is None else f"{drain * 1e3:.1f}", f"{cpu / 1e6:.3f}")
finally:
    if init is not None:
        try:
            os.kill(init, signal.SIGKILL)
        except OSError:
            pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
EOF

# ------------------------------------------------------------- sanity check
# Fail early and clearly if an init cannot even run /bin/true as PID 1
# (e.g. initd still printing "not built yet").
for name in initd tini dumb-init; do
    set_init "$name"
    rc=0
    "${UNSHARE[@]}" "${INIT[@]}" /bin/true </dev/null >>"$LOGDIR/$name.log" 2>&1 {NEVER}>&- || rc=$?
    if ((rc != 0)); then
        log_tail "$name"
        die "$name as PID 1 could not run /bin/true (exit $rc): ${INIT[*]}"
    fi
done

T_START=$SECONDS
# Other work on the machine shows up as noise; the report shows how much there was.
read -r LOAD_START _ </proc/loadavg

# ------------------------------------------------ 1. exec overhead (/bin/true)
say "exec overhead: $EXEC_ROUNDS rounds"
for ((r = 0; r < EXEC_ROUNDS; r++)); do
    order "$r"
    for name in "${ORDER[@]}"; do
        set_init "$name"
        rc=0
        t0=${EPOCHREALTIME/./}
        "${UNSHARE[@]}" "${INIT[@]}" /bin/true </dev/null >/dev/null 2>>"$LOGDIR/$name.log" {NEVER}>&- || rc=$?
        t1=${EPOCHREALTIME/./}
        if ((rc != 0)); then log_tail "$name"; die "$name: /bin/true as its child exited $rc"; fi
        rec exec_us "$r" "$name" $((t1 - t0))
    done
done

# ------------------------------------- 2. idle RSS and SIGTERM -> exit latency
say "idle RSS and SIGTERM latency: $TERM_ROUNDS rounds"
for ((r = 0; r < TERM_ROUNDS; r++)); do
    order "$r"
    for name in "${ORDER[@]}"; do
        set_init "$name"
        "${UNSHARE[@]}" "${INIT[@]}" sleep 1000 </dev/null >/dev/null 2>>"$LOGDIR/$name.log" {NEVER}>&- &
        upid=$!
        wait_ready "$upid" "$name"
        # Let the init finish whatever it does after fork, so VmRSS is the
        # idle figure (VmHWM keeps the start-up peak anyway).
        nap 0.05
        proc_status "$INIT_PID"
        rec rss_kb "$r" "$name" "$RSS"
        rec hwm_kb "$r" "$name" "$HWM"
        rec anon_kb "$r" "$name" "$ANON"
        rec priv_kb "$r" "$name" "$PRIV"
        # A bare `sleep` as PID 1 has no TERM handler, so the kernel drops
        # TERM; its floor is SIGKILL: the cost of a PID 1 dying at all.
        sig=TERM
        [[ $name == bare ]] && sig=KILL
        rc=0
        t0=${EPOCHREALTIME/./}
        kill -s "$sig" "$INIT_PID"
        # Waiting on unshare is event-driven (SIGCHLD), unlike polling /proc;
        # unshare's own reap-and-exit is in the floor too.
        wait "$upid" || rc=$?
        t1=${EPOCHREALTIME/./}
        rec term_us "$r" "$name" $((t1 - t0))
        rec term_rc "$r" "$name" "$rc"
    done
done

# ------------------------------------------------ 3. orphan storm and zombies
say "orphan storm ($ORPHANS orphans): $ZOMBIE_ROUNDS rounds"
# The child forks $ORPHANS short sleeps from a subshell that exits at once,
# so they are re-parented to PID 1 (as when a gunicorn worker's helpers
# outlive it), then stays alive as the main child. The marker tells the
# observer that the last orphan exists.
ORPHAN_SCRIPT='( i=0; while [ "$i" -lt "$1" ]; do sleep 0.2 & i=$((i + 1)); done ); echo spawned >"$2"; exec sleep 5'
for ((r = 0; r < ZOMBIE_ROUNDS; r++)); do
    order "$r"
    for name in "${ORDER[@]}"; do
        # A bare `sh` as PID 1 is no floor here (it never waits for orphans
        # that are not its jobs); the kernel-auto-reaping PID 1 is.
        init=$name
        [[ $name == bare ]] && init=autoreap
        set_init "$init"
        marker=$TMP/marker.$r.$name
        # In the background and waited for: bash runs a trap (Ctrl-C, TERM,
        # the time limit) only after a foreground command ends, but at once
        # during `wait`.
        "$PY" "$TMP/orphans.py" "$marker" "$LOGDIR/$name.log" \
            "${UNSHARE[@]}" "${INIT[@]}" sh -c "$ORPHAN_SCRIPT" sh "$ORPHANS" "$marker" \
            >"$TMP/trial.out" {NEVER}>&- &
        wait $! || { log_tail "$name"; die "$name: orphan-storm trial failed"; }
        read -r zombies left drain cpu <"$TMP/trial.out"
        rec zombies "$r" "$name" "$zombies"
        rec left "$r" "$name" "$left"
        rec drain_ms "$r" "$name" "$drain"
        rec storm_cpu_ms "$r" "$name" "$cpu"
    done
done

# ------------------------------------------------------- 4. idle wake-ups
# All four side by side: idle processes do not disturb each other, and this
# saves 3 x WAKE_SECS.
say "idle wake-ups over ${WAKE_SECS}s"
declare -A UP IPID C0
for name in "${NAMES[@]}"; do
    set_init "$name"
    "${UNSHARE[@]}" "${INIT[@]}" sleep 1000 </dev/null >/dev/null 2>>"$LOGDIR/$name.log" {NEVER}>&- &
    UP[$name]=$!
done
for name in "${NAMES[@]}"; do
    wait_ready "${UP[$name]}" "$name"
    IPID[$name]=$INIT_PID
done
nap 1 # past start-up, so only idle behaviour is counted
for name in "${NAMES[@]}"; do proc_status "${IPID[$name]}"; C0[$name]=$CTX; done
nap "$WAKE_SECS"
for name in "${NAMES[@]}"; do
    proc_status "${IPID[$name]}"
    rec wakeups 0 "$name" $((CTX - C0[$name]))
done
for name in "${NAMES[@]}"; do
    kill -KILL "${IPID[$name]}" 2>/dev/null || true
    wait "${UP[$name]}" 2>/dev/null || true
done

# ------------------------------------- 5. `initd run` vs a bash run.sh
# From the exec of the entrypoint to the exec of gunicorn (the stub): what a
# container start waits for before the app's own start-up begins. Secrets,
# user, plan; no wait-for, no migration. Floor: `stamp gunicorn`, an exec
# straight into the stub.
say "initd run vs run.sh: $RUN_ROUNDS rounds"
RUN_NAMES=(initd-run run.sh gunicorn)
for ((r = 0; r < RUN_ROUNDS; r++)); do
    for k in 0 1 2; do
        name=${RUN_NAMES[(r + k) % 3]}
        case $name in
            initd-run) cmd=("$INITD_BIN" run) ;;
            run.sh) cmd=(/bin/bash "$TMP/run.sh") ;;
            gunicorn) cmd=(gunicorn) ;;
        esac
        rc=0
        (cd "$TMP/app" && exec env -i "${RUN_ENV[@]}" "${UNSHARE[@]}" "$TMP/bin/stamp" "${cmd[@]}") \
            </dev/null >"$TMP/run.out" 2>>"$LOGDIR/$name.log" {NEVER}>&- || rc=$?
        start= end=
        while read -r k2 v; do
            case $k2 in start) start=$v ;; end) end=$v ;; esac
        done <"$TMP/run.out"
        if ((rc != 0)) || [[ -z $start || -z $end ]]; then
            log_tail "$name"
            die "$name: exit $rc, stamps '${start:-}' '${end:-}' (the stub gunicorn was not reached)"
        fi
        rec run_us "$r" "$name" $(((end - start) / 1000))
    done
done

# --------------------- 6. `initd check` vs curl, and an idle `initd run`
# One `initd run` as PID 1 serving a real gunicorn (2 workers) with an HTTP
# health probe and its control socket; each round runs, in rotating order,
# `initd check` (a fresh process, as Docker's HEALTHCHECK runs it), curl
# against the same app, `tini-static --version`, `dumb-init --version`, and
# `/bin/true` (the floor: bash's fork and exec).
say "initd check vs curl: $CHECK_ROUNDS rounds"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/
(cd "$TMP/app" && exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LC_ALL=C \
    INITD_ALLOW_ROOT=true INITD_MIGRATE=off PORT="$PORT" INITD_WORKERS=2 \
    INITD_HEALTH="$URL" INITD_SOCKET="$TMP/run.sock" "${UNSHARE[@]}" "$INITD_BIN" run) \
    </dev/null >>"$LOGDIR/initd-gunicorn.log" 2>&1 {NEVER}>&- &
GUP=$!
export INITD_SOCKET=$TMP/run.sock
for ((i = 0; ; i++)); do
    if "$INITD_BIN" check >/dev/null 2>&1 && curl -fsS -o /dev/null "$URL" 2>/dev/null; then break; fi
    ((i < 600)) || { tail -n 20 "$LOGDIR/initd-gunicorn.log" >&2; die "initd run with gunicorn did not become healthy within 30 s"; }
    nap 0.05
done
# A second PID 1 with no probe (`initd exec -- sleep`): there `initd check`
# is initd's own cost alone, a start and one round trip through the control
# socket, answered from the supervisor's state; against `initd run` above
# the answer waits for the HTTP probe of gunicorn that every check makes.
(cd "$TMP" && exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LC_ALL=C \
    INITD_ALLOW_ROOT=true INITD_USER=root INITD_SOCKET="$TMP/exec.sock" "${UNSHARE[@]}" \
    "$INITD_BIN" exec -- sleep 100000) </dev/null >>"$LOGDIR/initd-exec-check.log" 2>&1 {NEVER}>&- &
XUP=$!
for ((i = 0; ; i++)); do
    if INITD_SOCKET=$TMP/exec.sock "$INITD_BIN" check >/dev/null 2>&1; then break; fi
    ((i < 600)) || { tail -n 20 "$LOGDIR/initd-exec-check.log" >&2; die "initd exec -- sleep did not answer a check within 30 s"; }
    nap 0.05
done
CURL=$(command -v curl)
TRUE=$(type -P true)
CHECK_NAMES=(initd-check initd-check-noprobe curl tini-version dumb-init-version true)
for ((r = 0; r < CHECK_ROUNDS; r++)); do
    for k in 0 1 2 3 4 5; do
        name=${CHECK_NAMES[(r + k) % 6]}
        sock=$TMP/run.sock
        case $name in
            initd-check) cmd=("$INITD_BIN" check) ;;
            initd-check-noprobe) cmd=("$INITD_BIN" check) sock=$TMP/exec.sock ;;
            curl) cmd=("$CURL" -fsS -o /dev/null "$URL") ;;
            tini-version) cmd=("$TINI_BIN" --version) ;;
            dumb-init-version) cmd=("$DUMB_INIT_BIN" --version) ;;
            true) cmd=("$TRUE") ;;
        esac
        rc=0
        t0=${EPOCHREALTIME/./}
        INITD_SOCKET=$sock "${cmd[@]}" </dev/null >/dev/null 2>&1 {NEVER}>&- || rc=$?
        t1=${EPOCHREALTIME/./}
        ((rc == 0)) || die "$name exited $rc in round $r"
        rec check_us "$r" "$name" $((t1 - t0))
    done
done
# Idle, the control socket served (it has answered every check above).
nap 1
kids_of "$GUP"
GPID1=${KIDS[0]:-}
[[ -n $GPID1 ]] || die "initd run with gunicorn is gone; see $LOGDIR/initd-gunicorn.log"
proc_status "$GPID1"
rec run_rss_kb 0 initd "$RSS"
rec run_priv_kb 0 initd "$PRIV"
rec run_threads 0 initd "$(awk '/^Threads:/ {print $2}' "/proc/$GPID1/status")"
kill -TERM "$GPID1"
wait "$GUP" 2>/dev/null || true
kids_of "$XUP"
[[ -n ${KIDS[0]:-} ]] && kill -TERM "${KIDS[0]}"
wait "$XUP" 2>/dev/null || true
export -n INITD_SOCKET

MEASURE_SECS=$((SECONDS - T_START))
read -r LOAD_END _ </proc/loadavg

# -------------------------------------------------------------- the report
# Binary facts go into the raw file too, so the report has one source.
linkage() {
    local f
    f=$(file -bL "$1")
    case $f in
        *static-pie*) echo static-pie ;;
        *"statically linked"*) echo static ;;
        *"dynamically linked"*) echo dynamic ;;
        *script*) echo "script (wrapper)" ;;
        *) echo "${f:0:30}" ;;
    esac
}
version_of() {
    local v
    v=$(timeout 5 "$@" </dev/null 2>&1 | head -n 1) || true
    printf '%s' "${v:-?}"
}
declare -A BINS=([initd]="$INITD_BIN" [tini]="$TINI_BIN" [dumb-init]="$DUMB_INIT_BIN")
for name in initd tini dumb-init; do
    rec size 0 "$name" "$(stat -Lc %s "${BINS[$name]}")"
    rec linkage 0 "$name" "$(linkage "${BINS[$name]}")"
done

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
report=$RESULTS/latest.md
{
    echo "## initd vs tini vs dumb-init as PID 1"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- kernel: $(uname -sr)"
    echo "- CPU: ${cpu_model:-unknown} x $(nproc); 1-min load average $LOAD_START at start, $LOAD_END at end"
    echo "- rounds: exec $EXEC_ROUNDS, SIGTERM/RSS $TERM_ROUNDS, orphan storm $ZOMBIE_ROUNDS x $ORPHANS orphans, wake-ups 1 x ${WAKE_SECS}s, run $RUN_ROUNDS, check $CHECK_ROUNDS$( ((QUICK == 1)) && echo ' (QUICK)'); measuring took ${MEASURE_SECS}s"
    echo "- initd: \`$INITD_BIN\` ($(version_of "$INITD_BIN" version))"
    echo "- tini: \`$TINI_BIN\` ($(version_of "$TINI_BIN" --version))"
    echo "- dumb-init: \`$DUMB_INIT_BIN\` ($(version_of "$DUMB_INIT_BIN" --version))"
    echo
    "$PY" - "$RAW" "$EXEC_ROUNDS" "$TERM_ROUNDS" "$ZOMBIE_ROUNDS" "$ORPHANS" "$WAKE_SECS" "$RUN_ROUNDS" "$CHECK_ROUNDS" <<'EOF'
import collections, statistics, sys

raw, n_exec, n_term, n_zomb, n_orph, wake_secs, n_run, n_check = sys.argv[1:9]
data = collections.defaultdict(lambda: collections.defaultdict(dict))  # metric > init > round > value
for line in open(raw):
    metric, rnd, name, value = line.rstrip("\n").split("\t")
    data[metric][name][int(rnd)] = value

INITS = ["initd", "tini", "dumb-init"]

def nums(metric, name):
    out = {}
    for r, v in data[metric][name].items():
        try:
            out[r] = float(v)
        except ValueError:
            pass
    return out

def med(metric, name, scale=1.0):
    v = list(nums(metric, name).values())
    return statistics.median(v) * scale if v else None

def paired(metric, a, b):
    """Median over rounds of a/b: each round's pair shares conditions."""
    x, y = nums(metric, a), nums(metric, b)
    rs = [x[r] / y[r] for r in x if r in y and y[r] > 0]
    return statistics.median(rs) if rs else None

def paired_diff(metric, a, b, scale=1.0):
    x, y = nums(metric, a), nums(metric, b)
    ds = [(x[r] - y[r]) * scale for r in x if r in y]
    return statistics.median(ds) if ds else None

def f(v, fmt="{:.2f}", unit=""):
    return "n/a" if v is None else fmt.format(v) + unit

def mode(metric, name):
    vals = list(data[metric][name].values())
    if not vals:
        return "n/a"
    top, count = collections.Counter(vals).most_common(1)[0]
    return top if count == len(vals) else f"{top} ({count}/{len(vals)})"

def maxv(metric, name):
    v = list(nums(metric, name).values())
    return None if not v else max(v)

rows = []
def row(metric, cells, note=""):
    rows.append(f"| {metric} | " + " | ".join(cells) + f" | {note} |")

row("binary size (bytes)", [data["size"][n].get(0, "n/a") for n in INITS], "")
row("linkage (`file`)", [data["linkage"][n].get(0, "n/a") for n in INITS],
    "dynamic binaries also map libc and run ld.so at each start")

ms = 1e-3  # raw times are microseconds
row("exec `INIT /bin/true`, median ms",
    [f(med("exec_us", n, ms)) + f" (x{f(paired('exec_us', n, 'bare'))})" for n in INITS],
    f"floor `/bin/true` as PID 1: {f(med('exec_us', 'bare', ms))} ms; (x) = paired ratio to floor; n={n_exec}")
row("exec overhead over floor, median ms",
    [f(paired_diff("exec_us", n, "bare", ms), "{:+.2f}") for n in INITS],
    "median of per-round (init - floor)")
row("exec paired ratio initd / X", ["1", f(paired("exec_us", "initd", "tini"), "{:.3f}"),
                                    f(paired("exec_us", "initd", "dumb-init"), "{:.3f}")],
    "median of per-round ratios; < 1 means initd is faster")

row("idle VmRSS of PID 1, kB", [f(med("rss_kb", n), "{:.0f}") for n in INITS],
    f"floor: bare `sleep` as PID 1 {f(med('rss_kb', 'bare'), '{:.0f}')} kB; child is `sleep 1000`")
row("peak VmHWM of PID 1, kB", [f(med("hwm_kb", n), "{:.0f}") for n in INITS],
    f"floor: bare `sleep` {f(med('hwm_kb', 'bare'), '{:.0f}')} kB")
row("anonymous memory (RssAnon) of PID 1, kB", [f(med("anon_kb", n), "{:.0f}") for n in INITS],
    f"floor: bare `sleep` {f(med('anon_kb', 'bare'), '{:.0f}')} kB; heap, stack, written data")
row("private memory (Private_Clean+Private_Dirty) of PID 1, kB", [f(med("priv_kb", n), "{:.0f}") for n in INITS],
    f"floor: bare `sleep` {f(med('priv_kb', 'bare'), '{:.0f}')} kB; smaps_rollup: pages no other process maps")

row("SIGTERM to PID 1 -> gone, median ms", [f(med("term_us", n, ms)) for n in INITS],
    f"floor: SIGKILL to bare `sleep` as PID 1 {f(med('term_us', 'bare', ms))} ms; n={n_term}")
row("SIGTERM paired ratio initd / X", ["1", f(paired("term_us", "initd", "tini"), "{:.3f}"),
                                       f(paired("term_us", "initd", "dumb-init"), "{:.3f}")],
    "median of per-round ratios")
row("exit status after SIGTERM", [mode("term_rc", n) for n in INITS],
    "128+N for a child killed by the stop signal, as tini and dumb-init (`INITD_STOP_EXIT=zero`: 0)")

row(f"zombies 1 s after {n_orph} orphans died (max of rounds)",
    [f(maxv("zombies", n), "{:.0f}") for n in INITS],
    f"floor: SIGCHLD-ignoring PID 1 {f(maxv('zombies', 'bare'), '{:.0f}')}; "
    f"other processes still there: {', '.join(f(maxv('left', n), '{:.0f}') for n in INITS)}; n={n_zomb}")
row("orphans all gone, median ms after the last was forked",
    [f(med("drain_ms", n), "{:.0f}") for n in INITS],
    f"includes their 200 ms lifetime; floor (kernel auto-reap, no user-space reaper): "
    f"{f(med('drain_ms', 'bare'), '{:.0f}')} ms")
row("PID 1 CPU time during the storm, median ms", [f(med("storm_cpu_ms", n)) for n in INITS],
    f"floor: {f(med('storm_cpu_ms', 'bare'))} ms; from /proc/PID/schedstat")

row(f"idle wake-ups of PID 1 in {wake_secs} s", [f(med("wakeups", n), "{:.0f}") for n in INITS],
    f"floor: bare `sleep` {f(med('wakeups', 'bare'), '{:.0f}')}; voluntary + involuntary context switches")

row("`initd run` exec -> gunicorn exec, median ms", [f(med("run_us", "initd-run", ms)), "-", "-"],
    f"run.sh (bash: file_env, nproc, setpriv) {f(med('run_us', 'run.sh', ms))} ms; "
    f"paired ratio initd / run.sh {f(paired('run_us', 'initd-run', 'run.sh'), '{:.3f}')}; "
    f"floor (exec straight into the stub) {f(med('run_us', 'gunicorn', ms))} ms; n={n_run}")
row("`initd check` (fresh process) / `X --version`, median ms",
    [f(med("check_us", "initd-check", ms)), f(med("check_us", "tini-version", ms)),
     f(med("check_us", "dumb-init-version", ms))],
    f"against a running `initd run` (gunicorn, HTTP probe); `curl -fsS` to the same app "
    f"{f(med('check_us', 'curl', ms))} ms; floor `true` {f(med('check_us', 'true', ms))} ms; n={n_check}")
row("`initd check` paired ratio to curl / to `tini-static --version`",
    [f"{f(paired('check_us', 'initd-check', 'curl'), '{:.3f}')} / "
     f"{f(paired('check_us', 'initd-check', 'tini-version'), '{:.3f}')}", "-", "-"],
    "median of per-round ratios; every check waits for the HTTP probe of gunicorn")
row("`initd check` with no probe (`initd exec -- sleep`), median ms; paired ratio to curl / to `tini-static --version`",
    [f"{f(med('check_us', 'initd-check-noprobe', ms))}; "
     f"{f(paired('check_us', 'initd-check-noprobe', 'curl'), '{:.3f}')} / "
     f"{f(paired('check_us', 'initd-check-noprobe', 'tini-version'), '{:.3f}')}", "-", "-"],
    "initd's own cost: its start and one round trip through the control socket, answered from the supervisor's state")
row("idle `initd run` PID 1 (gunicorn, control socket served): VmRSS / private kB",
    [f"{f(med('run_rss_kb', 'initd'), '{:.0f}')} / {f(med('run_priv_kb', 'initd'), '{:.0f}')}", "-", "-"],
    f"threads: {mode('run_threads', 'initd')}")

print("| metric | initd | tini | dumb-init | floor / notes |")
print("|---|---|---|---|---|")
print("\n".join(rows))
EOF
} >"$report"

cat "$report"
say "wrote $report (raw samples: $RAW, init logs: $LOGDIR/)"
