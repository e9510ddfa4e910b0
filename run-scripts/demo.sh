#!/usr/bin/env bash
# The main job in one command, without Docker: build the static initd, put the
# example Django app (images/app/example) and its requirements (from PyPI)
# into a virtualenv, and run it under `initd dev` as PID 1 of a fresh pid
# namespace, as in a container: migrations, the asset watcher, and a dev
# server that restarts when you edit a file. Ctrl-C (or `kill -TERM` of
# initd) stops it gracefully.
#
#   bash run-scripts/demo.sh          then open the URL it prints
#
# Environment: PORT (8000), INITD_DEMO_DIR (where the app copy, its virtualenv
# and its SQLite database live; /tmp/initd-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { echo "demo: $*" >&2; }

port=${PORT:-8000}
dir=${INITD_DEMO_DIR:-/tmp/initd-demo}
app=$dir/app
venv=$dir/venv

cargo build --release --quiet
initd=$repo/target/x86_64-unknown-linux-gnu/release/initd

# As root, the server runs as `nobody` (see below), which must be able to run
# the interpreter: not one under /root (pyenv), so the system's comes first.
runnable() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u nobody -- "$1" -c '' 2>/dev/null
    else
        "$1" -c '' 2>/dev/null
    fi
}
python=
for candidate in /usr/bin/python3 /usr/local/bin/python3 "$(command -v python3 || true)"; do
    if [ -x "$candidate" ] && runnable "$candidate"; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    say "no python3 that the app user can run (Debian: apt-get install python3 python3-venv)"
    exit 1
fi

# A virtualenv with the app's requirements. Debian splits venv support out of
# python3; install it when we may.
mkdir -p "$dir"
if [ -x "$venv/bin/python" ] && ! runnable "$venv/bin/python"; then
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            say "installing python3-venv"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$python" -m venv "$venv"
        else
            say "$python cannot create a virtualenv here; install venv support (Debian: apt-get install python3-venv)"
            exit 1
        fi
    fi
fi
say "installing the example app's requirements into $venv (from PyPI)"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r images/app/example/requirements.txt

# A copy of the app, so the demo's database and built assets stay out of the
# checkout (and the app user can write them). Edits go there.
mkdir -p "$app"
cp -a images/app/example/. "$app/"

# The server runs as an app user, as in an image: initd drops to it from
# root. Without root, a user namespace makes us "root" in it (still only
# ourselves outside); without that either, initd runs as a subreaper.
if [ "$(id -u)" = 0 ]; then
    as_pid1=(unshare --pid --fork --mount-proc)
    user_env=(INITD_USER=nobody)
    chown -R nobody: "$app"
elif unshare --user --map-root-user true 2>/dev/null; then
    as_pid1=(unshare --user --map-root-user --pid --fork --mount-proc)
    user_env=(INITD_USER=root INITD_ALLOW_ROOT=true)
else
    say "cannot create a pid namespace here; running initd as a subreaper instead"
    as_pid1=()
    user_env=()
fi

# initd's settings for the demo, as a TOML file (the environment would do as
# well: INITD_DEV_SERVER=..., INITD_WATCHERS=...).
{
    echo "auto_start_server = true"
    echo "dev_server = \"python manage.py runserver --noreload 127.0.0.1:$port\""
    if command -v node >/dev/null; then
        printf '[watchers]\nassets = "node assets/build.mjs --watch"\n'
    fi
} >"$dir/initd.toml"
command -v node >/dev/null || say "node is not installed: no asset watcher, the page will have no CSS"

cat >&2 <<EOF
demo: initd dev runs the example app from $app
demo:   open http://127.0.0.1:$port/   (and http://127.0.0.1:$port/healthz)
demo:   edit $app/visits/views.py or templates/index.html: the next request shows it
demo:   edit $app/assets/src/app.css: the watcher rebuilds the stylesheet
demo:   Ctrl-C stops everything gracefully
demo: with Docker, the same app behind nginx with PostgreSQL: docker compose up --build (docs/docker.md)
EOF

# A clean environment, as a container has: a workstation's own INITD_*
# settings would otherwise apply.
cd "$app"
exec "${as_pid1[@]}" env -i \
    PATH="$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    TERM="${TERM:-dumb}" LANG="${LANG:-C.UTF-8}" \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_DEBUG=true DATABASE_URL="sqlite:///$app/db.sqlite3" \
    INITD_CONFIG="$dir/initd.toml" "${user_env[@]}" \
    PORT="$port" \
    "$initd" dev
