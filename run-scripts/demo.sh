#!/usr/bin/env bash
# The main job in one command: build the static initd and run a small Python
# web server under it as PID 1 of a fresh pid namespace (as in a container).
# Ctrl-C (or `kill -TERM` of initd) stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
initd=target/x86_64-unknown-linux-gnu/release/initd
port=${PORT:-8000}

if [ "$(id -u)" = 0 ]; then
    as_pid1=(unshare --pid --fork --mount-proc)
elif unshare --user --map-root-user true 2>/dev/null; then
    as_pid1=(unshare --user --map-root-user --pid --fork --mount-proc)
else
    echo "demo: cannot create a pid namespace here; running initd as a subreaper instead" >&2
    as_pid1=()
fi

# A clean environment, as a container has: a workstation's *_FILE variables
# would otherwise be read as Docker secrets. The server runs as `nobody`,
# as an image's app user would: initd drops to it from root.
user=nobody
[ "$(id -u)" = 0 ] || user=$(id -un)
echo "demo: initd supervises python3 -m http.server, as $user, on http://127.0.0.1:$port/ (Ctrl-C to stop)"
exec "${as_pid1[@]}" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM="${TERM:-dumb}" LANG="${LANG:-C.UTF-8}" \
    INITD_LOG="${INITD_LOG:-debug}" INITD_USER="$user" \
    "$initd" python3 -m http.server "$port" --bind 127.0.0.1 --directory /tmp
