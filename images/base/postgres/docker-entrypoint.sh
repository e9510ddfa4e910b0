#!/usr/bin/env bash
# Entrypoint of initd-base/postgres: the essentials of the official postgres
# image's docker-entrypoint.sh, re-done for Debian's PostgreSQL packages so a
# docker-compose.yml written for `postgres:16` runs unchanged against this
# local stand-in (no registry is reachable here, so the real image can't be
# pulled).
#
# What it keeps from the official image, because compose files rely on it:
#   - POSTGRES_PASSWORD / POSTGRES_USER / POSTGRES_DB / POSTGRES_INITDB_ARGS,
#     each also as *_FILE (Docker secrets), POSTGRES_HOST_AUTH_METHOD;
#   - initdb only when $PGDATA holds no cluster yet, so a named volume keeps
#     its data across container restarts and recreations;
#   - /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once, on first init;
#   - password auth (scram-sha-256 unless told otherwise) for every TCP peer,
#     listen on all addresses;
#   - the server runs as the postgres user and is exec'd, so it is PID 1 of
#     the container and gets `docker stop`'s signal itself (the image sets
#     STOPSIGNAL SIGINT: a "fast" shutdown that doesn't wait for clients).
# What it leaves out: POSTGRES_INITDB_WALDIR, locale packages (C.UTF-8 is
# built into glibc), the official image's fixed PG major (this is Debian's).
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }

# file_env VAR [DEFAULT]: VAR from $VAR, else from the file named by
# $VAR_FILE, else DEFAULT. Setting both is an error, as in the official image,
# so a typo can't silently pick the wrong secret.
file_env() {
    local var=$1 def=${2:-} fvar="${1}_FILE" val
    if [ -n "${!var:-}" ] && [ -n "${!fvar:-}" ]; then
        log "error: both $var and $fvar are set (but are exclusive)"
        exit 1
    fi
    val=$def
    if [ -n "${!var:-}" ]; then
        val=${!var}
    elif [ -n "${!fvar:-}" ]; then
        val=$(<"${!fvar}")
    fi
    export "$var"="$val"
    unset "$fvar"
}

# `docker run IMAGE -c foo=bar` means "postgres -c foo=bar", as upstream.
if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    # A fresh named volume is owned by root; initdb refuses a data directory
    # it can't own, and postgres refuses one that isn't 0700.
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 0700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    # setpriv (util-linux, always present) execs in place; su/runuser would
    # stay behind as the parent, and then PID 1 would not be postgres.
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        log "error: database is uninitialized and superuser password is not specified."
        log "       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), or"
        log "       POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password."
        exit 1
    fi

    log "initializing a new cluster in $PGDATA (user $POSTGRES_USER, db $POSTGRES_DB)"
    initdb_args=(--username="$POSTGRES_USER")
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list, as upstream
    if [ -n "$POSTGRES_PASSWORD" ]; then
        # The password goes through a pipe, never onto a command line (ps
        # shows those). The <(...) must sit on initdb's own command line: its
        # /dev/fd path is closed once the command it appears in completes.
        initdb "${initdb_args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
    else
        initdb "${initdb_args[@]}" $POSTGRES_INITDB_ARGS
    fi

    # Unix-socket and loopback peers keep initdb's trust (as upstream, so
    # `docker exec ... psql` works); everyone else needs the password.
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_HOST_AUTH_METHOD" = md5 ]; then
        # Roles created from now on get md5 hashes, which md5 clients need.
        # (The superuser's password was hashed by initdb with SCRAM; an md5
        # pg_hba line still accepts it, by upgrading the exchange to SCRAM.)
        printf "password_encryption = 'md5'\n" >>"$PGDATA/postgresql.conf"
    fi

    # A temporary server on the Unix socket only: nothing on the network may
    # see a half-initialized database.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --no-password)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
        *.sh)
            # Executable scripts run; others are sourced, as upstream.
            if [ -x "$f" ]; then
                log "running $f"
                "$f"
            else
                log "sourcing $f"
                # shellcheck disable=SC1090 # the user's script
                . "$f"
            fi
            ;;
        *.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
        *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
        *) log "ignoring $f" ;;
        esac
    done
    shopt -u nullglob
    pg_ctl -D "$PGDATA" -m fast -w stop
    log "init done; starting the server"
fi

exec "$@"
