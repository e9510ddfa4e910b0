#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the migration-lock tests: its own data
# directory, 127.0.0.1 on a free port, password logins only (SCRAM for the
# test role, md5 for a second one), nothing left behind after `stop`.
#
#   tests/support/postgres.sh run CMD [ARGS...]   start, run CMD with
#                                                 INITD_TEST_DATABASE_URL set, stop
#   eval "$(tests/support/postgres.sh start DIR)" start in DIR (created) and
#                                                 export INITD_TEST_DATABASE_URL
#   tests/support/postgres.sh stop DIR            stop it and remove DIR
#
# CI: `bash tests/support/postgres.sh run cargo test`. Debian's postgresql
# package is installed when missing and we are root. The server runs as the
# `postgres` user when started by root (initdb refuses to run as root).
set -euo pipefail

ROLE=initd_test
# Characters that must be percent-encoded in a URL, so the tests cover that.
PASSWORD='p@ss/w:rd?#1'
PASSWORD_URL='p%40ss%2Fw%3Ard%3F%231'
MD5_ROLE=initd_md5
MD5_PASSWORD=md5-secret
DB=initd_test

say() { echo "postgres.sh: $*" >&2; }

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $dir || ! -x $dir/initdb ]]; then
        if [[ $(id -u) -ne 0 ]]; then
            say "PostgreSQL is not installed (apt-get install postgresql, as root)"
            exit 1
        fi
        say "installing postgresql"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    echo "$dir"
}

# Runs a command as the cluster's owner.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
        2>/dev/null || echo $((20000 + RANDOM % 30000))
}

start() {
    local dir=$1 bin port
    bin=$(pg_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=reject \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    # First match wins: md5 for its role, SCRAM for the test role, and
    # nothing else over TCP.
    as_owner tee "$dir/data/pg_hba.conf" >/dev/null <<EOF
local all all trust
host all $MD5_ROLE 127.0.0.1/32 md5
host all $ROLE 127.0.0.1/32 scram-sha-256
EOF
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        as_owner tee "$dir/data/postgresql.auto.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
max_connections = 50
EOF
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null; then
            break
        fi
        say "start on port $port failed (attempt $attempt)"
        tail -n 5 "$dir/server.log" >&2 || true
        [[ $attempt -lt 5 ]] || exit 1
    done
    as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 >/dev/null <<EOF
SET password_encryption = 'scram-sha-256';
CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD';
SET password_encryption = 'md5';
CREATE ROLE $MD5_ROLE LOGIN PASSWORD '$MD5_PASSWORD';
CREATE DATABASE $DB OWNER $ROLE;
EOF
    local url="postgres://$ROLE:$PASSWORD_URL@127.0.0.1:$port/$DB"
    echo "$url" >"$dir/database_url"
    say "PostgreSQL $("$bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$port (data in $dir)"
    echo "export INITD_TEST_DATABASE_URL='$url'"
    echo "export INITD_TEST_MD5_DATABASE_URL='postgres://$MD5_ROLE:$MD5_PASSWORD@127.0.0.1:$port/$DB'"
}

stop() {
    local dir=$1 bin
    [[ -d $dir ]] || return 0
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $bin && -f $dir/data/postmaster.pid ]]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case ${1:-} in
start)
    [[ $# -eq 2 ]] || { say "usage: $0 start DIR"; exit 2; }
    start "$2"
    ;;
stop)
    [[ $# -eq 2 ]] || { say "usage: $0 stop DIR"; exit 2; }
    stop "$2"
    ;;
run)
    shift
    [[ $# -ge 1 ]] || { say "usage: $0 run CMD [ARGS...]"; exit 2; }
    dir=$(mktemp -d "${TMPDIR:-/tmp}/initd-pg.XXXXXX")
    trap 'stop "$dir"' EXIT
    eval "$(start "$dir")"
    "$@"
    ;;
*)
    say "usage: $0 start DIR | stop DIR | run CMD [ARGS...]"
    exit 2
    ;;
esac
