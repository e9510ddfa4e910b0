#!/usr/bin/env bash
# The Docker tier: images/, docker-compose.yml and docker-compose.ci.yml end to
# end on the real engine. Builds the base images (images/base/build.sh, cached
# between runs), then the initd image, the app and nginx images with those as
# build arguments, runs the compose files and checks what a user would see:
#
#   initd:    the initd image (images/initd) holds /initd alone and says
#             "installed from: image"; copied out (COPY --from) into a Debian
#             image and into a FROM scratch image with Debian's busybox-static
#             and no libc, it serves HTTP as PID 1, turns healthy through
#             `initd check` and stops on `docker stop`. The app and nginx
#             images copy it the same way.
#   CI file:  the app turns healthy through `initd check`; HTTPS through nginx
#             with the forwarded headers; HTTP redirects to HTTPS; TLS below
#             1.2 refused; the app has no way in but nginx; migrations ran
#             after the wait for PostgreSQL; the app runs as the image's uid;
#             the secrets reached the app and appear in no log and no
#             `docker inspect`; HUP reaches gunicorn; orphans are reaped in
#             every container; `docker stop` is quick and clean, nginx
#             finishes a request in flight and shows its error page while
#             the app is down; the drop-in run-scripts start initd as PID 1.
#             The Celery worker turns healthy through a ping to its own node
#             (and unhealthy when it stops answering), runs a task queued
#             through nginx, and on `docker stop` finishes the task in hand.
#   scaling:  `--scale app=3` on a fresh database: one replica migrates, the
#             others wait for the lock and find nothing to do; all healthy;
#             nginx spreads requests over them.
#   dev file: HOST_UID renumbers the app user; an edit in the bind-mounted
#             checkout is served at the next request; the watcher rebuilds
#             the CSS; with AUTO_START_SERVER=false the container idles and
#             `docker compose exec app initd exec ...` runs as the app user
#             with the secrets. The dev worker restarts on a task edit.
#   logs:     nginx with LOG_RETENTION=true: two restarts, two dated folders.
#   make:     make up with no initd image yet (it builds that first; COMPOSE_FILE
#             kept in .env), again (no change), make
#             shell with commands on stdin, make down.
#   builds:   image sizes, build times, and a rebuild after a code-only change.
#
#   bash tests/docker/e2e.sh
#
# Environment: E2E_HTTP_PORT / E2E_HTTPS_PORT (host ports; default: free
# ones), E2E_BASE=public (use the public base images instead of building
# local stand-ins; needs a registry), E2E_COLD=1 (empty the engine's whole
# build cache first, to measure a cold build), E2E_IMAGES=NAME (prefix of the
# image tags, default initd-e2e: two runs at once need two), E2E_KEEP=1 (leave the
# containers up after a failure, for a look).
#
# Without a Docker engine it says so and exits 0: the tier did not run.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

say() { printf 'e2e: %s\n' "$*" >&2; }

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "e2e: NOT RUN: no Docker engine reachable here (docker info failed); the Docker tier did not run"
    exit 0
fi

T_START=$SECONDS
PASSED=0
pass() {
    PASSED=$((PASSED + 1))
    say "ok: $*"
}
fail() {
    say "FAILED: $*"
    dump_logs
    echo "e2e: $PASSED passed, 1 failed"
    exit 1
}

# ---------------------------------------------------------------------------
# Tools: a docker CLI that builds with BuildKit, and a compose
# ---------------------------------------------------------------------------

# The Dockerfiles need BuildKit (cache mounts). A CLI with the buildx plugin
# has it; a Docker 20.10-22 CLI has it built in behind DOCKER_BUILDKIT=1; a
# newer CLI without buildx has neither. Probe each candidate with a real
# one-line build rather than guessing from version numbers.
pick_builder() {
    local probe cli
    probe=$(mktemp -d)
    printf 'FROM scratch\nCOPY probe /probe\n' >"$probe/Dockerfile"
    : >"$probe/probe"
    for cli in docker /usr/bin/docker /usr/local/bin/docker; do
        command -v "$cli" >/dev/null 2>&1 || continue
        if DOCKER_BUILDKIT=1 "$cli" build -q -t initd-e2e-buildkit-probe "$probe" >/dev/null 2>&1; then
            BUILD_CLI=$cli
            docker rmi initd-e2e-buildkit-probe >/dev/null 2>&1 || true
            rm -rf "$probe"
            return 0
        fi
    done
    rm -rf "$probe"
    say "no docker CLI here builds with BuildKit (install the buildx plugin)"
    exit 1
}

pick_compose() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE_CMD=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE_CMD=(docker-compose)
    else
        [ "$(id -u)" = 0 ] || { say "neither 'docker compose' nor docker-compose is installed"; exit 1; }
        say "installing docker-compose"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
        COMPOSE_CMD=(docker-compose)
    fi
}

need_tools() {
    local need=()
    command -v curl >/dev/null || need+=(curl)
    command -v python3 >/dev/null || need+=(python3)
    command -v openssl >/dev/null || need+=(openssl)
    if ((${#need[@]})); then
        [ "$(id -u)" = 0 ] || { say "missing ${need[*]}"; exit 1; }
        say "installing ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])'
}

pick_builder
pick_compose
need_tools

# ---------------------------------------------------------------------------
# Scratch space, names, cleanup
# ---------------------------------------------------------------------------

PROJECT=initd-e2e-$$
IMG=${E2E_IMAGES:-initd-e2e}
WORK=$(mktemp -d /tmp/initd-e2e.XXXXXX)
chmod 755 "$WORK"
HTTP_PORT=${E2E_HTTP_PORT:-$(free_port)}
HTTPS_PORT=${E2E_HTTPS_PORT:-$(free_port)}
[ "$HTTP_PORT" != "$HTTPS_PORT" ] || HTTPS_PORT=$(free_port)
# The uid the dev checkout belongs to "on the host"; neither 1000 (the
# image's) nor 9500 (CI's), so a renumbering shows.
DEV_UID=4242

# What the compose files read (see their headers).
export COMPOSE_PROJECT_NAME=$PROJECT EXAMPLE_IMAGE=$IMG HTTP_PORT HTTPS_PORT
export SECRETS_DIR=$WORK/secrets NGINX_LOG_DIR=$WORK/nginx-logs
# Builds are done here, not by compose: compose v1 would build with the
# classic builder, which has no cache mounts.
export COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=1

CURRENT_FILE=docker-compose.ci.yml
compose() { "${COMPOSE_CMD[@]}" -f "$ROOT/$CURRENT_FILE" "$@"; }

cleanup() {
    local rc=$?
    if [ -n "${E2E_KEEP:-}" ] && [ $rc != 0 ]; then
        say "E2E_KEEP: leaving project $PROJECT ($CURRENT_FILE) and $WORK in place"
        return
    fi
    local f p
    for f in docker-compose.ci.yml docker-compose.yml; do
        "${COMPOSE_CMD[@]}" -f "$ROOT/$f" down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    done
    # Anything of the project compose did not know about (a failed run's
    # one-off containers, the `make` block's project), then the scratch space.
    for p in "$PROJECT" "$PROJECT-make"; do
        docker ps -aq --filter "label=com.docker.compose.project=$p" | xargs -r docker rm -f >/dev/null 2>&1 || true
        docker network ls -q --filter "label=com.docker.compose.project=$p" | xargs -r docker network rm >/dev/null 2>&1 || true
        docker volume ls -q --filter "label=com.docker.compose.project=$p" | xargs -r docker volume rm >/dev/null 2>&1 || true
    done
    docker rmi "$IMG/app:warm" "$IMG/initd:make" "$IMG/initd-in-debian:latest" "$IMG/initd-in-scratch:latest" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

dump_logs() {
    say "--- $CURRENT_FILE: docker compose ps / logs (last 60 lines each) ---"
    compose ps >&2 2>&1 || true
    local s
    for s in app worker redis db nginx; do
        compose logs --no-color --tail=60 "$s" >&2 2>&1 || true
    done
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Output is matched from variables, not `cmd | grep -q`: grep quits at the
# first match, cmd may then die of SIGPIPE, and pipefail calls that failure.

# Polls CMD until it succeeds, for at most $1 seconds.
eventually() {
    local limit=$1 t0=$SECONDS
    shift
    until "$@"; do
        ((SECONDS - t0 < limit)) || return 1
        sleep 1
    done
}

# The ids of a service's containers.
cids() { compose ps -q "$1"; }
cid() { cids "$1" | awk 'NR == 1'; }

health_of() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"; }

# True when every container of the service is healthy (and there are $2).
all_healthy() {
    local service=$1 want=${2:-1} n=0 c
    for c in $(cids "$service"); do
        [ "$(health_of "$c")" = healthy ] || return 1
        n=$((n + 1))
    done
    [ "$n" = "$want" ]
}

wait_healthy() {
    local service=$1 want=${2:-1} c
    if ! eventually 180 all_healthy "$service" "$want"; then
        for c in $(cids "$service"); do
            docker inspect -f '{{json .State.Health}}' "$c" >&2 || true
        done
        fail "$service: not $want healthy container(s) within 180s"
    fi
}

https() { curl -sk --max-time 20 "https://localhost:$HTTPS_PORT$1"; }

# Numeric uid (real) of a process in a container.
uid_of() { docker exec "$1" awk '/^Uid:/ { print $2 }' "/proc/$2/status"; }

# The main child of initd (PID 1) in a container.
main_child() { docker exec "$1" sh -c 'cat /proc/1/task/1/children' | awk '{ print $1 }'; }

# Zombies in a container: processes in state Z.
zombies() {
    docker exec "$1" sh -c 'for s in /proc/[0-9]*/stat; do cat "$s" 2>/dev/null; done' |
        awk '{ sub(/^.*\) /, ""); if ($1 == "Z") n++ } END { print n + 0 }'
}

# Leaves three orphans in a container (sleepers whose parent exits at once),
# checks they were re-parented to PID 1, waits until they have exited, and
# checks nothing is left unreaped.
# Orphaned sleepers (parent: PID 1) still running, not zombies.
live_sleepers() {
    docker exec "$1" sh -c 'for s in /proc/[0-9]*/stat; do cat "$s" 2>/dev/null; done' |
        awk '/ \(sleep\) / { sub(/^.*\) /, ""); if ($1 != "Z" && $2 == 1) n++ } END { print n + 0 }'
}
no_live_sleepers() { [ "$(live_sleepers "$1")" = 0 ]; }
no_zombies() { [ "$(zombies "$1")" = 0 ]; }

orphans_reaped() {
    local c=$1 name=$2 adopted
    # 8s, not less: on a loaded machine the `docker exec` that counts them
    # can take seconds, and a sleeper gone by then is not counted.
    docker exec "$c" sh -c 'for i in 1 2 3; do (sleep 8 &); done'
    adopted=$(docker exec "$c" sh -c 'for d in /proc/[0-9]*; do
            [ "$(cat $d/comm 2>/dev/null)" = sleep ] && awk "/^PPid:/ { print \$2 }" $d/status; done' |
        grep -cx 1 || true)
    [ "$adopted" = 3 ] || fail "$name: expected 3 orphaned sleepers adopted by PID 1, found $adopted"
    eventually 30 no_live_sleepers "$c" || fail "$name: the orphaned sleepers did not exit"
    # Reaped as soon as they exit; a few seconds of slack for a slow machine.
    eventually 5 no_zombies "$c" || fail "$name: $(zombies "$c") zombie process(es) left after the orphans exited"
    pass "$name: 3 orphans adopted by PID 1 and reaped (no zombies)"
}

# docker stop with a measured duration; sets STOP_SECS and STOP_CODE.
timed_stop() {
    local c=$1 t0 t1
    t0=$(date +%s%N)
    docker stop -t 10 "$c" >/dev/null
    t1=$(date +%s%N)
    STOP_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    STOP_CODE=$(docker inspect -f '{{.State.ExitCode}}' "$c")
}

# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------

if [ -n "${E2E_COLD:-}" ]; then
    say "E2E_COLD: emptying the engine's build cache and removing $IMG/* images"
    docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$IMG/" | xargs -r docker rmi -f >/dev/null 2>&1 || true
    "$BUILD_CLI" builder prune -af >/dev/null
fi

BUILD_ARGS=()
if [ "${E2E_BASE:-local}" = public ]; then
    say "base images: the public defaults of the Dockerfiles"
    POSTGRES_IMAGE=postgres:16
    REDIS_IMAGE=redis:7
    PYTHON_IMAGE=python:3.12-slim
else
    t0=$SECONDS
    say "base images: images/base/build.sh (cached in /var/cache/initd-base)"
    base_env=$(bash images/base/build.sh python node rust nginx postgres redis)
    eval "$base_env"
    say "base images ready in $((SECONDS - t0))s"
    # RUST_IMAGE: the initd image's build; the Debian one (PYTHON_IMAGE) is
    # also the glibc base of the copy-out checks below.
    BUILD_ARGS=(--build-arg "RUST_IMAGE=$RUST_IMAGE" --build-arg "NODE_IMAGE=$NODE_IMAGE"
        --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "NGINX_IMAGE=$NGINX_IMAGE"
        --build-arg "DEBIAN_IMAGE=$PYTHON_IMAGE")
fi
# The app and nginx images copy initd out of this one (images/initd).
INITD_IMAGE=$IMG/initd:latest
BUILD_ARGS+=(--build-arg "INITD_IMAGE=$INITD_IMAGE")
export POSTGRES_IMAGE REDIS_IMAGE INITD_IMAGE

# The build context: the files the Dockerfiles use, copied, so the rebuild
# after a code change below can change one without touching the checkout.
CTX=$WORK/context
mkdir -p "$CTX"
cp -a Cargo.toml Cargo.lock build.rs .cargo src benches images tests "$CTX/"
for f in LICENSE* COPYING*; do if [ -f "$f" ]; then cp -a "$f" "$CTX/"; fi; done
rm -rf "$CTX/images/app/example/static/build" "$CTX/images/app/example/staticfiles" "$CTX/images/app/example/db.sqlite3"

declare -A BUILD_SECS=()
build() {
    local name=$1 t0
    shift
    t0=$(date +%s%N)
    if ! DOCKER_BUILDKIT=1 "$BUILD_CLI" build --progress=plain "${BUILD_ARGS[@]}" "$@" "$CTX" >"$WORK/build-${name//[:\/]/-}.log" 2>&1; then
        tail -n 60 "$WORK/build-${name//[:\/]/-}.log" >&2
        fail "docker build of $name"
    fi
    BUILD_SECS[$name]=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    say "built $name in ${BUILD_SECS[$name]}s"
}

say "building with $BUILD_CLI (BuildKit), compose: ${COMPOSE_CMD[*]}"
build "$INITD_IMAGE" -f "$CTX/images/initd/Dockerfile" -t "$INITD_IMAGE"
build "$IMG/app:ci" -f "$CTX/images/app/Dockerfile" --target production \
    --build-arg APP_UID=9500 --build-arg APP_GID=9500 -t "$IMG/app:ci"
build "$IMG/nginx:latest" -f "$CTX/images/nginx/Dockerfile" -t "$IMG/nginx:latest"
build "$IMG/app:dev" -f "$CTX/images/app/Dockerfile" --target dev -t "$IMG/app:dev"
pass "images built: $INITD_IMAGE, $IMG/app:ci, $IMG/app:dev, $IMG/nginx:latest"

# ---------------------------------------------------------------------------
# The initd image: /initd alone, copied out into other images
# ---------------------------------------------------------------------------

# Every file in the image's layers (docker save: manifest.json names the
# layer archives in both the classic and the OCI layout).
mkdir -p "$WORK/initd-image"
docker save "$INITD_IMAGE" | tar -x -C "$WORK/initd-image"
layer_files=$(python3 - "$WORK/initd-image" <<'PY'
import json, os, sys, tarfile
root = sys.argv[1]
names = set()
for layer in json.load(open(os.path.join(root, "manifest.json")))[0]["Layers"]:
    with tarfile.open(os.path.join(root, layer)) as t:
        names.update(m.name for m in t.getmembers() if not m.isdir())
print("\n".join(sorted(names)))
PY
)
want_files=$(
    echo initd
    for f in LICENSE* COPYING*; do if [ -f "$f" ]; then echo "$f"; fi; done | sort
)
[ "$layer_files" = "$(sort <<<"$want_files")" ] ||
    { printf 'files in the image:\n%s\n' "$layer_files" >&2; fail "initd image: it holds more or less than /initd (and the license file, if any)"; }
initd_version=$(docker run --rm "$INITD_IMAGE" version) || fail "initd image: docker run IMAGE version failed"
grep -qx 'installed from: image' <<<"$initd_version" || { echo "$initd_version" >&2; fail "initd image: initd version does not say 'installed from: image'"; }
pass "initd image: its layers hold /initd alone ($(docker image inspect -f '{{.Size}}' "$INITD_IMAGE" | awk '{ printf "%.1f MB", $1 / 1e6 }')), initd version says 'installed from: image'"

# COPY --from=<the initd image> /initd into a Debian (glibc) image and into a
# FROM scratch image with Debian's busybox-static and nothing else; each
# serves HTTP under initd and turns healthy through `initd check`.
copied_out() {
    local kind=$1 uid=$2 name=$PROJECT-copied-$1 tag=$IMG/initd-in-$1:latest files server
    build "$tag" -f "$CTX/tests/docker/initd-in-$kind.Dockerfile" -t "$tag"
    docker run -d --name "$name" --label "com.docker.compose.project=$PROJECT" "$tag" >/dev/null
    copied_healthy() { [ "$(health_of "$name")" = healthy ]; }
    eventually 60 copied_healthy || { docker logs "$name" >&2; docker inspect -f '{{json .State.Health}}' "$name" >&2; fail "initd copied into $kind: never healthy"; }
    check=$(docker exec "$name" initd check) || fail "initd copied into $kind: initd check failed once healthy ($check)"
    [ "$(docker exec "$name" cat /proc/1/comm)" = initd ] || fail "initd copied into $kind: PID 1 is not initd"
    server=$(main_child "$name")
    [ "$(uid_of "$name" "$server")" = "$uid" ] || fail "initd copied into $kind: the server does not run as uid $uid"
    if [ "$kind" = scratch ]; then
        files=$(docker export "$name" | tar -t)
        if grep -Eq '(^|/)(lib|lib64|lib32|libx32)/|(^|/)(ld-linux|ld-musl|libc)[^/]*\.so' <<<"$files"; then
            grep -E 'lib' <<<"$files" >&2
            fail "initd copied into scratch: the image has a libc or library directory after all"
        fi
    fi
    timed_stop "$name"
    # http.server and busybox httpd die of TERM: 143, never docker's SIGKILL.
    [ "$STOP_CODE" = 143 ] || fail "initd copied into $kind: exit $STOP_CODE on docker stop, not 143"
    docker rm "$name" >/dev/null
    pass "initd copied into $kind: healthy through initd check ($check), server as uid $uid, docker stop ${STOP_SECS}s exit 143"
}
copied_out debian 65534
copied_out scratch 0

# ---------------------------------------------------------------------------
# Secrets: fresh random values, so a leak is unambiguous
# ---------------------------------------------------------------------------

mkdir -p "$SECRETS_DIR" "$NGINX_LOG_DIR"
DB_PASSWORD=$(openssl rand -hex 24)
SECRET_KEY=$(openssl rand -hex 32)
printf '%s\n' "$DB_PASSWORD" >"$SECRETS_DIR/db_password"
printf '%s\n' "$SECRET_KEY" >"$SECRETS_DIR/secret_key"
# PostgreSQL reads its copy as the postgres user (compose v1 bind-mounts
# secret files as they are).
chmod 644 "$SECRETS_DIR"/*

no_secret_in() {
    local what=$1 text=$2
    if grep -qF -e "$DB_PASSWORD" -e "$SECRET_KEY" <<<"$text"; then
        fail "a secret value appears in $what"
    fi
}

# ---------------------------------------------------------------------------
# CI file: production command, image's own code, fixed uid
# ---------------------------------------------------------------------------

CURRENT_FILE=docker-compose.ci.yml
say "--- $CURRENT_FILE: up (https://localhost:$HTTPS_PORT/, http on $HTTP_PORT)"
compose up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up ($CURRENT_FILE)"; }
wait_healthy app
APP=$(cid app) NGINX=$(cid nginx) DB=$(cid db)
check=$(docker exec "$APP" initd check) || fail "ci: initd check exits non-zero in a healthy container"
[[ $check == "running: "*"http://127.0.0.1:8000/healthz: HTTP 200"* ]] || fail "ci: initd check says '$check'"
pass "ci: app container healthy through its HEALTHCHECK (initd check: $check)"

page=$(https /) || fail "ci: https://localhost:$HTTPS_PORT/ did not answer"
for want in "X-Forwarded-Proto: https" "secure: True" "database: postgresql" "uid: 9500"; do
    grep -qF "$want" <<<"$page" || { echo "$page" >&2; fail "ci: front page lacks '$want'"; }
done
grep -Eq '^Host: localhost$' <<<"$page" || fail "ci: Host was not passed to the app"
grep -Eq '^X-Real-IP: [0-9a-f.:]+$' <<<"$page" || fail "ci: X-Real-IP was not set"
grep -Eq '^X-Forwarded-For: [0-9a-f.:]+$' <<<"$page" || fail "ci: X-Forwarded-For was not set"
pass "ci: HTTPS through nginx reaches the app with Host, X-Real-IP, X-Forwarded-For, X-Forwarded-Proto"

redirect=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://localhost:$HTTP_PORT/some/path?q=1")
[ "$redirect" = "301 https://localhost:$HTTPS_PORT/some/path?q=1" ] || fail "ci: HTTP answered '$redirect', not a redirect to HTTPS"
pass "ci: plain HTTP redirects to https://localhost:$HTTPS_PORT/ with path and query"

if curl -sk --max-time 10 --tls-max 1.1 -o /dev/null "https://localhost:$HTTPS_PORT/" 2>/dev/null; then
    fail "ci: nginx accepted TLS 1.1"
fi
for v in 1.2 1.3; do
    curl -sk --max-time 10 --tlsv$v --tls-max $v -o /dev/null "https://localhost:$HTTPS_PORT/healthz" ||
        fail "ci: TLS $v refused"
done
subject=$(openssl s_client -connect "localhost:$HTTPS_PORT" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -subject 2>/dev/null || true)
grep -q 'CN *= *localhost' <<<"$subject" || fail "ci: no self-signed certificate for localhost ($subject)"
pass "ci: TLS 1.2 and 1.3 accepted, 1.1 refused; self-signed certificate generated at first start"

# The app's only network is the internal one, and it publishes nothing.
ports=$(docker inspect -f '{{range $p, $b := .NetworkSettings.Ports}}{{if $b}}{{$p}} {{end}}{{end}}' "$APP")
[ -z "$ports" ] || fail "ci: the app publishes ports to the host: $ports"
nets=$(docker inspect -f '{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}' "$APP")
[ "$nets" = "${PROJECT}_backend " ] || fail "ci: the app is on networks '$nets', expected only ${PROJECT}_backend"
[ "$(docker network inspect -f '{{.Internal}}' "${PROJECT}_backend")" = true ] || fail "ci: the backend network is not internal"
if docker run --rm --network "${PROJECT}_frontend" --entrypoint python3 "$PYTHON_IMAGE" -c \
    'import urllib.request; urllib.request.urlopen("http://app:8000/healthz", timeout=5)' >/dev/null 2>&1; then
    fail "ci: the app answered a container outside its internal network"
fi
pass "ci: the app publishes no port and only nginx's network reaches it"

curl -sk -o /dev/null "https://localhost:$HTTPS_PORT/no-such-page-e2e" || true
grep -q 'no-such-page-e2e' "$NGINX_LOG_DIR/access.log" 2>/dev/null || fail "ci: nginx's access log is not in the mounted directory"
[ "$(stat -c %u "$NGINX_LOG_DIR/access.log")" = "$(docker exec "$NGINX" id -u nginx)" ] ||
    fail "ci: the access log is not owned by the nginx user"
pass "ci: nginx logs to the mounted directory, as the nginx user"

# Migrations: after the wait for the database, applied once.
logs=$(compose logs --no-color app)
wait_line=$(grep -m 1 -n 'waiting for tcp://db:5432' <<<"$logs" | cut -d: -f1 || true)
migrate_line=$(grep -m 1 -n 'Applying visits.0001_initial... OK' <<<"$logs" | cut -d: -f1 || true)
if [ -z "$wait_line" ] || [ -z "$migrate_line" ] || [ "$wait_line" -gt "$migrate_line" ]; then
    echo "$logs" >&2
    fail "ci: no wait for db:5432 followed by the visits migration in the app's log"
fi
applied=$(docker exec "$DB" psql -U app -d app -tAc "select count(*) from django_migrations where app = 'visits'")
[ "$applied" = 1 ] || fail "ci: visits migration recorded $applied times in PostgreSQL"
visits=$(docker exec "$DB" psql -U app -d app -tAc 'select count(*) from visits_visit')
[ "$visits" -ge 1 ] || fail "ci: no visit stored in PostgreSQL"
pass "ci: waited for db:5432, then migrated PostgreSQL (visits.0001 applied once, $visits visit(s) stored)"

# Who runs: initd drops to the image's app user (uid 9500 in CI).
server=$(main_child "$APP")
[ -n "$server" ] || fail "ci: initd has no main child"
[ "$(docker exec "$APP" cat "/proc/$server/comm")" = gunicorn ] || fail "ci: the main child is not gunicorn"
[ "$(uid_of "$APP" "$server")" = 9500 ] || fail "ci: gunicorn runs as uid $(uid_of "$APP" "$server"), not 9500"
for w in $(docker exec "$APP" cat "/proc/$server/task/$server/children"); do
    [ "$(uid_of "$APP" "$w")" = 9500 ] || fail "ci: gunicorn worker $w is not uid 9500"
done
pass "ci: gunicorn and its workers run as uid 9500 (from /proc)"

# Secrets: in the app's environment as values, the *_FILE variables gone.
# /proc/PID/environ is for the process's own uid (root in a container has no
# CAP_SYS_PTRACE), so it is read as 9500.
app_environ() { docker exec -u 9500 "$APP" sh -c "tr '\\0' '\\n' </proc/$server/environ"; }
env_sha() { app_environ | sed -n "s/^$1=//p" | tr -d '\n' | sha256sum; }
[ "$(env_sha SECRET_KEY)" = "$(printf '%s' "$SECRET_KEY" | sha256sum)" ] || fail "ci: SECRET_KEY did not reach gunicorn's environment"
[ "$(env_sha PGPASSWORD)" = "$(printf '%s' "$DB_PASSWORD" | sha256sum)" ] || fail "ci: PGPASSWORD did not reach gunicorn's environment"
if grep -q '_FILE=' <<<"$(app_environ)"; then
    fail "ci: a *_FILE variable is still in the app's environment"
fi
for c in $(compose ps -q); do
    no_secret_in "docker inspect $(docker inspect -f '{{.Name}}' "$c")" "$(docker inspect "$c")"
done
no_secret_in "docker compose logs" "$(compose logs --no-color 2>&1)"
pass "ci: both secrets reached the app's process; neither appears in any log or docker inspect"

# --- Celery worker (CI file): healthy through a real ping, tasks run, -----
# --- and a task running when `docker stop` comes still completes ----------

# A field of a JSON object on stdin: json_field KEY [SUBKEY] ('' if absent,
# or if the input is no JSON: nginx's error page while the app restarts).
json_field() {
    python3 -c 'import json, sys
try:
    v = json.load(sys.stdin)
except ValueError:
    v = {}
for k in sys.argv[1:]:
    v = v.get(k, "") if isinstance(v, dict) else ""
print(v)' "$@"
}
# Queues slow_sum through nginx; prints the answer (JSON).
queue_task() { https "/tasks/sum?$1"; }
task_state() { https "/tasks/$1" | json_field state; }

wait_healthy worker
WORKER=$(cid worker)
check=$(docker exec "$WORKER" initd check) || fail "worker: initd check exits non-zero in a healthy container"
[[ $check == "running: "*"inspect ping"* ]] || fail "worker: initd check says '$check' (no ping probe?)"
pass "worker: healthy through its HEALTHCHECK, a Celery ping to its own node ($check)"

plan=$(docker exec "$WORKER" initd config 2>&1) || { echo "$plan" >&2; fail "worker: initd config failed"; }
grep -q '^# wait for: tcp://redis:6379, tcp://db:5432' <<<"$plan" || { echo "$plan" >&2; fail "worker: the plan does not wait for redis and db"; }
grep -q '^# 1\. server: celery -A example worker' <<<"$plan" || { echo "$plan" >&2; fail "worker: the plan's only step is not the Celery worker (a migration?)"; }
if grep -q 'Applying \|migrat' <<<"$(docker logs "$WORKER" 2>&1)"; then fail "worker: the worker container migrated"; fi
wserver=$(main_child "$WORKER")
[ "$(docker exec "$WORKER" cat "/proc/$wserver/comm")" = celery ] || fail "worker: initd's main child is not celery"
[ "$(uid_of "$WORKER" "$wserver")" = 9500 ] || fail "worker: celery runs as uid $(uid_of "$WORKER" "$wserver"), not 9500"
pass "worker: initd waits for redis and db, migrates nothing, and runs celery as its main child (uid 9500)"

answer=$(queue_task "x=2&y=40&wait=25") || fail "worker: /tasks/sum did not answer"
if [ "$(json_field state <<<"$answer")" != SUCCESS ] || [ "$(json_field result sum <<<"$answer")" != 42 ] ||
    [ "$(json_field result uid <<<"$answer")" != 9500 ] || [ "$(json_field result worker <<<"$answer")" != "${WORKER:0:12}" ] ||
    [ "$(json_field result visits <<<"$answer")" -lt 1 ]; then
    echo "$answer" >&2
    fail "worker: the task queued through nginx did not come back summed by this worker, as 9500, with the visits from PostgreSQL"
fi
pass "worker: a task queued at /tasks/sum ran on the worker (sum 42, uid 9500, read PostgreSQL with the secret)"

# Healthy only while the worker answers: a stopped (SIGSTOP) Celery is alive
# but deaf, and the check must say so; SIGCONT brings it back.
docker exec "$WORKER" sh -c "kill -STOP $wserver"
if out=$(docker exec "$WORKER" initd check 2>&1); then
    docker exec "$WORKER" sh -c "kill -CONT $wserver"
    fail "worker: initd check passed while celery was stopped ($out)"
fi
docker exec "$WORKER" sh -c "kill -CONT $wserver"
[[ $out == unhealthy:*"inspect ping"* ]] || fail "worker: a deaf worker's check says '$out'"
eventually 60 docker exec "$WORKER" initd check >/dev/null || fail "worker: not healthy again after SIGCONT"
pass "worker: a worker that does not answer the ping is unhealthy ($out), healthy again once it answers"

orphans_reaped "$WORKER" "ci worker (initd)"

# Warm shutdown: a task is running (STARTED) when the stop comes; Celery
# finishes it, then exits, all within stop_grace_period.
answer=$(queue_task "x=20&y=22&s=8") || fail "worker: could not queue the long task"
task=$(json_field id <<<"$answer")
[ -n "$task" ] || { echo "$answer" >&2; fail "worker: no task id from /tasks/sum"; }
eventually 30 sh -c "curl -sk 'https://localhost:$HTTPS_PORT/tasks/$task' | grep -q '\"state\": \"STARTED\"'" ||
    fail "worker: the 8s task never started (state $(task_state "$task"))"
t0=$(date +%s%N)
compose stop worker >/dev/null 2>&1
WORKER_STOP=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
code=$(docker inspect -f '{{.State.ExitCode}}' "$WORKER")
wlogs=$(docker logs "$WORKER" 2>&1)
grep -q 'Warm shutdown' <<<"$wlogs" || { echo "$wlogs" | tail -20 >&2; fail "worker: no warm shutdown in Celery's log"; }
grep -q "slow_sum\[$task\] succeeded" <<<"$wlogs" || { echo "$wlogs" | tail -20 >&2; fail "worker: the running task did not succeed before the worker exited"; }
state=$(task_state "$task")
[ "$state" = SUCCESS ] || fail "worker: the task interrupted by docker stop is $state, not SUCCESS"
# Celery exits 0 after a warm shutdown (it was not killed by the signal):
# initd passes that on. 143 would be initd reporting the TERM itself
# (INITD_STOP_EXIT=keep); 137 or anything else means a kill or a failure.
[ "$code" = 0 ] || [ "$code" = 143 ] || fail "worker: exit code $code after docker stop (killed before the task finished?)"
awk -v s="$WORKER_STOP" 'BEGIN { exit !(s < 25) }' || fail "worker: the stop took ${WORKER_STOP}s (reached INITD_STOP_TIMEOUT)"
pass "worker: docker stop during an 8s task: warm shutdown, the task completed (SUCCESS), exit $code after ${WORKER_STOP}s"

# HUP goes to gunicorn (which reloads its workers).
docker kill -s HUP "$APP" >/dev/null
eventually 30 sh -c "docker logs '$APP' 2>&1 | grep -q 'Handling signal: hup'" || fail "ci: gunicorn never saw the HUP"
pass "ci: docker kill -s HUP reaches gunicorn"
grep -q '"ok"' <<<"$(https /healthz)" || fail "ci: app unhealthy after HUP"

orphans_reaped "$APP" "ci app (initd)"
orphans_reaped "$NGINX" "ci nginx (initd)"
orphans_reaped "$DB" "ci db (docker's init)"

# Stop nginx while a request is in flight: it must finish.
(https "/slow?s=3" >"$WORK/inflight.out" 2>&1; echo "rc=$?" >>"$WORK/inflight.out") &
inflight=$!
# Long enough for the request to be inside the app, short of its 3s.
sleep 1
timed_stop "$NGINX"
wait "$inflight" || true
# nginx exits 0 after the QUIT (its graceful stop) initd maps TERM to.
grep -q 'done after 3s' "$WORK/inflight.out" || { cat "$WORK/inflight.out" >&2; fail "ci: the request in flight was cut by nginx's stop"; }
[ "$STOP_CODE" = 0 ] || fail "ci: nginx exited $STOP_CODE on docker stop"
awk -v s="$STOP_SECS" 'BEGIN { exit !(s < 10) }' || fail "ci: docker stop of nginx took ${STOP_SECS}s"
pass "ci: docker stop nginx: ${STOP_SECS}s, exit 0, the request in flight completed"
NGINX_STOP=$STOP_SECS

timed_stop "$APP"
# gunicorn exits 0 after its graceful stop, so initd does too; a server that
# dies of the TERM would give 143 (INITD_STOP_EXIT=keep, the default).
[ "$STOP_CODE" = 0 ] || fail "ci: the app exited $STOP_CODE on docker stop"
awk -v s="$STOP_SECS" 'BEGIN { exit !(s < 10) }' || fail "ci: docker stop of the app took ${STOP_SECS}s"
pass "ci: docker stop app: ${STOP_SECS}s, exit 0"
APP_STOP=$STOP_SECS

# A command that dies of the TERM: 143 after docker stop, as under tini or
# a shell (so an evicted Job is not "Completed"); 0 with INITD_STOP_EXIT=zero.
for mode in keep zero; do
    name=$PROJECT-stop-$mode
    docker run -d --name "$name" --label "com.docker.compose.project=$PROJECT" -e INITD_STOP_EXIT=$mode \
        "$IMG/app:ci" exec python -c 'import time; time.sleep(600)' >/dev/null
    eventually 30 sh -c "docker exec '$name' sh -c 'cat /proc/[0-9]*/cmdline' 2>/dev/null | tr '\\0' ' ' | grep -q 'time.sleep'" ||
        { docker logs "$name" >&2; fail "ci: exec python did not start (INITD_STOP_EXIT=$mode)"; }
    timed_stop "$name"
    want=143; [ "$mode" = zero ] && want=0
    [ "$STOP_CODE" = "$want" ] || fail "ci: INITD_STOP_EXIT=$mode: exit $STOP_CODE after docker stop, expected $want"
    docker rm "$name" >/dev/null
done
pass "ci: a command killed by docker stop exits 143 (INITD_STOP_EXIT=zero: 0)"

# With the app gone, nginx answers with its own error page.
docker start "$NGINX" >/dev/null
eventually 30 sh -c "curl -sk -o /dev/null 'https://localhost:$HTTPS_PORT/'" || fail "ci: nginx did not come back after docker start"
err=$(curl -sk -w '\n%{http_code}' "https://localhost:$HTTPS_PORT/")
[[ $err == *"We'll be right back"* && $err == *$'\n'502 ]] || { echo "$err" >&2; fail "ci: no custom error page (502) with the app down"; }
pass "ci: with the app down nginx serves its custom error page (502)"

timed_stop "$DB"
[ "$STOP_CODE" = 0 ] || fail "ci: PostgreSQL exited $STOP_CODE on docker stop"
pass "ci: docker stop db: ${STOP_SECS}s, exit 0"
DB_STOP=$STOP_SECS

# The drop-in scripts: an image whose CMD calls /app/bash/run.sh (or
# run-dev.sh) gets initd as PID 1 without other changes.
out=$(docker run --rm -v "$ROOT/run-scripts/run.sh:/app/bash/run.sh:ro" --entrypoint sh \
    -e INITD_MIGRATE=off -e SECRET_KEY=unused \
    -e INITD_SERVER="python -c 'import os; print(\"server ppid\", os.getppid(), \"uid\", os.getuid())'" \
    "$IMG/app:ci" /app/bash/run.sh 2>&1) || { echo "$out" >&2; fail "run-scripts/run.sh: the container failed"; }
if ! grep -q '^initd: starting server' <<<"$out" || ! grep -q '^server ppid 1 uid 9500$' <<<"$out"; then
    echo "$out" >&2
    fail "run-scripts/run.sh: the server did not run under initd as PID 1, as the app user"
fi
name=$PROJECT-run-dev
docker run -d --name "$name" --label "com.docker.compose.project=$PROJECT" \
    -v "$ROOT/run-scripts/run-dev.sh:/app/bash/run-dev.sh:ro" --entrypoint sh "$IMG/app:dev" /app/bash/run-dev.sh >/dev/null
eventually 60 sh -c "docker logs '$name' 2>&1 | grep -q 'AUTO_START_SERVER is off'" ||
    { docker logs "$name" >&2; fail "run-scripts/run-dev.sh: initd dev did not start"; }
[ "$(docker exec "$name" cat /proc/1/comm)" = initd ] || fail "run-scripts/run-dev.sh: PID 1 is not initd"
timed_stop "$name"
[ "$STOP_CODE" = 0 ] || fail "run-scripts/run-dev.sh: exit $STOP_CODE on docker stop"
docker rm "$name" >/dev/null
pass "run-scripts: run.sh runs initd run, run-dev.sh initd dev, as PID 1"

# Under another init: `docker run --init` (what compose's `init: true` does)
# makes docker's init (tini) PID 1 and initd its child. initd is still the
# entrypoint: it serves the control socket, so the image's HEALTHCHECK turns
# healthy, `initd status` names the other init, and docker stop passes
# through both.
name=$PROJECT-under-init
docker run -d --init --name "$name" --label "com.docker.compose.project=$PROJECT" \
    -e SECRET_KEY=under-init-e2e "$IMG/app:ci" >/dev/null
under_init_healthy() { [ "$(health_of "$name")" = healthy ]; }
eventually 120 under_init_healthy ||
    { docker logs "$name" >&2; fail "--init: the app never turned healthy beneath docker's init"; }
[ "$(docker exec "$name" cat /proc/1/comm)" != initd ] || fail "--init: PID 1 is initd, not docker's init"
status=$(docker exec "$name" initd status) || fail "--init: initd status failed"
grep -q '^init: *entrypoint under another init (PID 1 is ' <<<"$status" ||
    { echo "$status" >&2; fail "--init: initd status does not name the other init"; }
grep -q 'running under another init' <<<"$(docker logs "$name" 2>&1)" ||
    fail "--init: initd did not say that it runs under another init"
timed_stop "$name"
# 0 or 143 (INITD_STOP_EXIT decides); never docker's SIGKILL (137).
[ "$STOP_CODE" = 0 ] || [ "$STOP_CODE" = 143 ] || fail "--init: exit $STOP_CODE on docker stop"
awk -v s="$STOP_SECS" 'BEGIN { exit !(s < 10) }' || fail "--init: docker stop took ${STOP_SECS}s"
docker rm "$name" >/dev/null
pass "--init (compose init: true): initd beneath docker's init turns healthy, status names the init, docker stop ${STOP_SECS}s exit $STOP_CODE"

# ---------------------------------------------------------------------------
# Scaling: three replicas start together on a fresh database
# ---------------------------------------------------------------------------

compose down -v --timeout 10 >/dev/null 2>&1
say "--- $CURRENT_FILE: up --scale app=3 on a fresh database"
compose up -d --no-build --scale app=3 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up --scale app=3"; }
wait_healthy app 3
migrated=0 nothing_to_do=0
for c in $(cids app); do
    l=$(docker logs "$c" 2>&1)
    grep -q 'taking the migration lock' <<<"$l" || fail "scale: replica $c did not take the migration lock"
    grep -q 'Applying visits.0001_initial... OK' <<<"$l" && migrated=$((migrated + 1))
    grep -q 'No migrations to apply' <<<"$l" && nothing_to_do=$((nothing_to_do + 1))
    if grep -Eq 'Traceback|\[ERROR\]|initd: (error|warning):' <<<"$l"; then
        echo "$l" >&2
        fail "scale: replica $c logged an error"
    fi
done
if [ "$migrated" != 1 ] || [ "$nothing_to_do" != 2 ]; then
    fail "scale: $migrated replica(s) applied the migration and $nothing_to_do found nothing to do (want 1 and 2)"
fi
pass "scale: 3 replicas healthy; one migrated under the lock, two found nothing left to do"
hosts=$(for _ in $(seq 12); do https / | sed -n 's/^host: //p'; done | sort -u | wc -l)
[ "$hosts" -ge 2 ] || fail "scale: nginx sent 12 requests to $hosts replica(s)"
pass "scale: nginx spread 12 requests over $hosts replicas"
compose down -v --timeout 10 >/dev/null 2>&1

# ---------------------------------------------------------------------------
# Dev file: initd dev, the checkout bind-mounted
# ---------------------------------------------------------------------------

CURRENT_FILE=docker-compose.yml
export APP_SRC=$WORK/checkout HOST_UID=$DEV_UID HOST_GID=$DEV_UID AUTO_START_SERVER=true
cp -a images/app/example "$APP_SRC"
rm -rf "$APP_SRC/static/build" "$APP_SRC/staticfiles" "$APP_SRC/db.sqlite3"
chown -R "$DEV_UID:$DEV_UID" "$APP_SRC"
say "--- $CURRENT_FILE: up (AUTO_START_SERVER=true, HOST_UID=$DEV_UID, checkout $APP_SRC)"
compose up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up ($CURRENT_FILE)"; }
wait_healthy app
APP=$(cid app)
pass "dev: app container healthy through initd check"

page=$(https /)
grep -qF "uid: $DEV_UID" <<<"$page" || { echo "$page" >&2; fail "dev: the app does not run as HOST_UID $DEV_UID"; }
grep -qF 'X-Forwarded-Proto: https' <<<"$page" || fail "dev: no X-Forwarded-Proto through nginx"
server=$(main_child "$APP")
[ "$(uid_of "$APP" "$server")" = "$DEV_UID" ] || fail "dev: the dev server is not uid $DEV_UID in /proc"
pass "dev: the dev server runs as HOST_UID $DEV_UID (renumbered app user), behind nginx"

sed -i 's/^GREETING = .*/GREETING = "Edited in the checkout by e2e."/' "$APP_SRC/visits/views.py"
eventually 60 sh -c "curl -sk 'https://localhost:$HTTPS_PORT/' | grep -q 'Edited in the checkout by e2e.'" ||
    fail "dev: the edited view was not served within 60s"
pass "dev: an edit in the bind-mounted checkout is served at the next request"

printf '\n.e2e-marker { color: rebeccapurple; }\n' >>"$APP_SRC/assets/src/app.css"
eventually 60 sh -c "curl -sk 'https://localhost:$HTTPS_PORT/static/build/app.css' | grep -q '.e2e-marker{color:rebeccapurple}'" ||
    fail "dev: the watcher did not rebuild app.css within 60s"
[ "$(stat -c %u "$APP_SRC/static/build/app.css")" = "$DEV_UID" ] || fail "dev: the rebuilt asset is not owned by $DEV_UID on the host"
grep -q 'assets | built static/build/app.css' <<<"$(compose logs --no-color app)" || fail "dev: no watcher line in the logs"
pass "dev: the asset watcher rebuilt app.css (owned by $DEV_UID on the host)"

# --- Celery worker (dev file): `initd dev` restarts it on a task edit -------

wait_healthy worker
WORKER=$(cid worker)
answer=$(queue_task "x=1&y=2&wait=25")
if [ "$(json_field result sum <<<"$answer")" != 3 ] || [ "$(json_field result uid <<<"$answer")" != "$DEV_UID" ] ||
    [ "$(json_field result note <<<"$answer")" != "Summed by the initd example worker." ]; then
    echo "$answer" >&2
    fail "dev worker: the task did not run as HOST_UID $DEV_UID with the checkout's code"
fi
sed -i 's/^TASK_NOTE = .*/TASK_NOTE = "Edited task, reloaded by initd dev."/' "$APP_SRC/visits/tasks.py"
note_is_edited() { [ "$(queue_task "x=1&y=2&wait=10" | json_field result note)" = "Edited task, reloaded by initd dev." ]; }
eventually 120 note_is_edited || fail "dev worker: a task queued after the edit still ran the old code (120s)"
restarts=$(docker exec "$WORKER" initd check --json | json_field main_restarts)
[ "${restarts:-0}" -ge 1 ] || fail "dev worker: initd reports $restarts restarts of the worker after the edit"
pass "dev worker: healthy; after an edit of visits/tasks.py initd dev restarted Celery ($restarts restart(s)) and the next task ran the new code"
no_secret_in "docker compose logs (dev)" "$(compose logs --no-color 2>&1)"
no_secret_in "docker inspect (dev app)" "$(docker inspect "$APP")"

timed_stop "$APP"
# initd dev stops its set of processes on purpose and exits 0.
[ "$STOP_CODE" = 0 ] || fail "dev: initd dev exited $STOP_CODE on docker stop"
awk -v s="$STOP_SECS" 'BEGIN { exit !(s < 10) }' || fail "dev: docker stop took ${STOP_SECS}s"
pass "dev: docker stop app: ${STOP_SECS}s, exit 0"

# --- A terminal: Ctrl-C stops `initd dev` and everything it runs -----------
# tests/docker/keyboard.py gives the command a fresh pty, as a person's
# terminal would, types Ctrl-C once the dev server says it is up, and prints
# `exit=N seconds=S`.
oneoffs() { docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.oneoff=True; }
say "--- docker compose run app dev on a terminal, then Ctrl-C"
tty_out=$(python3 tests/docker/keyboard.py --wait 'Quit the server with CONTROL-C' --timeout 180 --exit-within 15 -- \
    "${COMPOSE_CMD[@]}" -f "$ROOT/$CURRENT_FILE" run --rm app dev 2>"$WORK/tty-compose.log") || {
    tail -n 40 "$WORK/tty-compose.log" >&2
    fail "dev: docker compose run app dev did not end within 15s of Ctrl-C ($tty_out)"
}
grep -q 'stopping on INT' "$WORK/tty-compose.log" || { tail -n 40 "$WORK/tty-compose.log" >&2; fail "dev: no 'stopping on INT' from initd after Ctrl-C"; }
[ "${tty_out%% *}" = exit=0 ] || { tail -n 40 "$WORK/tty-compose.log" >&2; fail "dev: docker compose run app dev ended with $tty_out after Ctrl-C"; }
eventually 20 sh -c "[ -z \"\$(docker ps -aq --filter label=com.docker.compose.project=$PROJECT --filter label=com.docker.compose.oneoff=True)\" ]" ||
    fail "dev: the one-off container of docker compose run is still there after Ctrl-C: $(oneoffs)"
pass "dev: docker compose run app dev on a terminal: Ctrl-C stopped the server and the watcher, initd exited 0 ($tty_out), container gone"

say "--- docker run -it IMAGE dev (AUTO_START_SERVER=false) on a terminal, then Ctrl-C"
tty_name=$PROJECT-tty
tty_out=$(python3 tests/docker/keyboard.py --wait 'AUTO_START_SERVER is off' --timeout 60 --exit-within 10 -- \
    docker run -it --name "$tty_name" -e AUTO_START_SERVER=false "$IMG/app:dev" dev 2>"$WORK/tty-run.log") || {
    tail -n 40 "$WORK/tty-run.log" >&2
    docker rm -f "$tty_name" >/dev/null 2>&1 || true
    fail "dev: docker run -it … dev (idle) did not end within 10s of Ctrl-C ($tty_out)"
}
tty_state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$tty_name")
docker rm -f "$tty_name" >/dev/null 2>&1 || true
[ "$tty_state" = "exited 0" ] || { tail -n 40 "$WORK/tty-run.log" >&2; fail "dev: idle initd dev after Ctrl-C: container $tty_state, client $tty_out"; }
pass "dev: docker run -it, idle initd dev: Ctrl-C stopped it at once ($tty_out, container exited 0)"

# Idle: no server, commands through exec.
export AUTO_START_SERVER=false
say "--- $CURRENT_FILE: up (AUTO_START_SERVER=false)"
compose up -d --no-build app >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; fail "compose up (idle)"; }
APP=$(cid app)
eventually 60 sh -c "docker logs '$APP' 2>&1 | grep -q 'AUTO_START_SERVER is off'" || fail "dev: no idle notice with AUTO_START_SERVER=false"
if grep -q 'runserver' <<<"$(docker exec "$APP" sh -c 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\0" " "')"; then
    fail "dev: a server runs although AUTO_START_SERVER=false"
fi
out=$(compose exec -T app initd exec python -c 'import hashlib, os
print(os.getuid(), os.environ["USER"], "PGPASSWORD_FILE" in os.environ)
print(hashlib.sha256(os.environ["PGPASSWORD"].encode()).hexdigest())
print(hashlib.sha256(os.environ["SECRET_KEY"].encode()).hexdigest())') || fail "dev: docker compose exec app initd exec python failed"
expected="$DEV_UID app False
$(printf '%s' "$DB_PASSWORD" | sha256sum | cut -d' ' -f1)
$(printf '%s' "$SECRET_KEY" | sha256sum | cut -d' ' -f1)"
[ "$out" = "$expected" ] || { printf 'got:\n%s\nwanted:\n%s\n' "$out" "$expected" >&2; fail "dev: exec did not run as the app user with the secrets"; }
pass "dev: AUTO_START_SERVER=false idles; compose exec app initd exec python runs as app ($DEV_UID) with the secrets"
wait_healthy app
check=$(docker exec "$APP" initd check) || fail "dev: initd check fails while idle"
[[ $check == idle:* ]] || fail "dev: initd check says '$check' while idle"
pass "dev: the idle container is healthy (initd check: $check)"
orphans_reaped "$APP" "dev app, idle (initd)"
timed_stop "$APP"
[ "$STOP_CODE" = 0 ] || fail "dev: idle initd exited $STOP_CODE on docker stop"
pass "dev: docker stop of the idle app: ${STOP_SECS}s, exit 0"
compose down -v --timeout 10 >/dev/null 2>&1

# ---------------------------------------------------------------------------
# nginx LOG_RETENTION: each start files the previous logs in a dated folder
# ---------------------------------------------------------------------------

CURRENT_FILE=docker-compose.ci.yml
dated='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}-[0-9]{2}Z(-[0-9]+)?$'
# The earlier runs used the default (false): nginx appended, no folders.
if [ -n "$(find "$NGINX_LOG_DIR" -mindepth 1 -type d)" ]; then
    ls -la "$NGINX_LOG_DIR" >&2
    fail "logs: LOG_RETENTION=false (the default) left folders in the log directory"
fi
say "--- nginx with LOG_RETENTION=true, LOG_RETENTION_DAYS=30 (alone: --no-deps)"
RET_LOGS=$WORK/nginx-logs-retention
# A folder from long ago, which LOG_RETENTION_DAYS=30 removes.
mkdir -p "$RET_LOGS/2020-01-01T00-00-00Z"
echo 'old run' >"$RET_LOGS/2020-01-01T00-00-00Z/access.log"
chmod -R a+rX "$RET_LOGS"
marker_request() { curl -sk -o /dev/null "https://localhost:$HTTPS_PORT/$1" || true; }
nginx_started_since() { docker logs --since "$1" "$(cid nginx)" 2>&1 | grep -q 'nginx-start: HTTPS on'; }
restart_nginx() {
    local since
    since=$(date +%s)
    # Folder names have one-second resolution: never two starts in one second.
    sleep 1
    compose restart nginx >/dev/null 2>&1 || fail "logs: compose restart nginx"
    eventually 30 nginx_started_since "$since" || fail "logs: nginx did not start again"
    eventually 30 sh -c "curl -sk -o /dev/null 'https://localhost:$HTTPS_PORT/'" || fail "logs: nginx does not answer after the restart"
}
NGINX_LOG_DIR=$RET_LOGS LOG_RETENTION=true LOG_RETENTION_DAYS=30 compose up -d --no-build --no-deps nginx >"$WORK/up.log" 2>&1 ||
    { cat "$WORK/up.log" >&2; fail "compose up nginx (LOG_RETENTION=true)"; }
eventually 30 sh -c "curl -sk -o /dev/null 'https://localhost:$HTTPS_PORT/'" || fail "logs: nginx did not come up"
[ ! -e "$RET_LOGS/2020-01-01T00-00-00Z" ] || fail "logs: LOG_RETENTION_DAYS=30 left the 2020 folder"
marker_request e2e-run-one
restart_nginx
marker_request e2e-run-two
restart_nginx
marker_request e2e-run-three
mapfile -t folders < <(find "$RET_LOGS" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
if [ "${#folders[@]}" != 2 ] || ! [[ ${folders[0]} =~ $dated ]] || ! [[ ${folders[1]} =~ $dated ]]; then
    ls -laR "$RET_LOGS" >&2
    fail "logs: two restarts left ${#folders[@]} folder(s) (${folders[*]}), not two dated ones"
fi
first=$RET_LOGS/${folders[0]} second=$RET_LOGS/${folders[1]}
grep -q e2e-run-one "$first/access.log" && ! grep -q e2e-run-two "$first/access.log" ||
    fail "logs: ${folders[0]} does not hold exactly the first run's requests"
grep -q e2e-run-two "$second/access.log" && ! grep -q e2e-run-one "$second/access.log" ||
    fail "logs: ${folders[1]} does not hold exactly the second run's requests"
[ -f "$first/error.log" ] && [ -f "$second/error.log" ] || fail "logs: error.log was not kept with each run"
grep -q e2e-run-three "$RET_LOGS/access.log" && ! grep -q -e e2e-run-one -e e2e-run-two "$RET_LOGS/access.log" ||
    fail "logs: the current access.log is not fresh"
nginx_uid=$(docker exec "$(cid nginx)" id -u nginx)
[ "$(stat -c %u "$first")" = "$nginx_uid" ] && [ "$(stat -c %u "$second")" = "$nginx_uid" ] ||
    fail "logs: the dated folders were not made by the nginx user (uid $nginx_uid)"
pass "logs: LOG_RETENTION=true: two restarts left ${folders[0]}/ and ${folders[1]}/, each with its run's logs, made as the nginx user; LOG_RETENTION_DAYS=30 removed the 2020 folder"
compose down -v --timeout 10 >/dev/null 2>&1

# ---------------------------------------------------------------------------
# make: up (the initd image first; COMPOSE_FILE kept in .env), up again
# (idempotent), shell, down
# ---------------------------------------------------------------------------

# In a copy of the checkout: `make up COMPOSE_FILE=...` writes .env, and a
# developer's own .env must neither be changed nor read.
MK=$WORK/make-checkout
mkdir -p "$MK"
cp -a Makefile docker-compose.yml docker-compose.ci.yml Cargo.toml Cargo.lock build.rs .cargo src benches images "$MK/"
for f in LICENSE* COPYING*; do if [ -f "$f" ]; then cp -a "$f" "$MK/"; fi; done
rm -rf "$MK/images/app/example/static/build" "$MK/images/app/example/staticfiles" "$MK/images/app/example/db.sqlite3" "$MK/.env"
# The base images the builds take (unset with E2E_BASE=public: the defaults).
export RUST_IMAGE NODE_IMAGE PYTHON_IMAGE NGINX_IMAGE
export COMPOSE_PROJECT_NAME=$PROJECT-make
# An initd image tag that does not exist yet, as on a clean engine: make up
# must build it before compose builds the images that copy from it (nothing
# can be pulled, so compose alone would fail).
export INITD_IMAGE=$IMG/initd:make
docker rmi "$INITD_IMAGE" >/dev/null 2>&1 || true
CURRENT_FILE=docker-compose.ci.yml
mk() { make --no-print-directory -s -C "$MK" "$@"; }
say "--- make up COMPOSE_FILE=docker-compose.ci.yml (project $COMPOSE_PROJECT_NAME)"
t0=$SECONDS
mk up COMPOSE_FILE=docker-compose.ci.yml >"$WORK/make-up.log" 2>&1 || { tail -n 40 "$WORK/make-up.log" >&2; fail "make up COMPOSE_FILE=docker-compose.ci.yml"; }
MAKE_UP=$((SECONDS - t0))
grep -qx 'COMPOSE_FILE=docker-compose.ci.yml' "$MK/.env" || fail "make up did not keep COMPOSE_FILE in .env"
docker image inspect "$INITD_IMAGE" >/dev/null 2>&1 || fail "make up did not build the initd image $INITD_IMAGE"
wait_healthy app
wait_healthy worker
[ "$(docker inspect -f '{{.Config.Image}}' "$(cid app)")" = "$IMG/app:ci" ] || fail "make up: the app does not run the CI image"
# Each container as "name container-id image-id", sorted.
project_state() {
    local c
    for c in $(compose ps -q); do docker inspect -f '{{.Name}} {{.Id}} {{.Image}}' "$c"; done | sort
}
before=$(project_state)
[ "$(wc -l <<<"$before")" = 5 ] || fail "make up: $(wc -l <<<"$before") containers, expected app, worker, redis, db, nginx"
# Again, without COMPOSE_FILE: .env still names the CI file, nothing changed,
# so nothing is recreated.
mk up >"$WORK/make-up.log" 2>&1 || { tail -n 40 "$WORK/make-up.log" >&2; fail "make up (second time)"; }
after=$(project_state)
if [ "$before" != "$after" ]; then
    grep -v '^#' "$WORK/make-up.log" | tail -n 30 >&2
    printf 'before:\n%s\nafter:\n%s\n' "$before" "$after" >&2
    fail "make up (second time) recreated containers"
fi
for c in $(compose ps -q); do
    [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ] || fail "make up: $(docker inspect -f '{{.Name}}' "$c") is not running"
done
pass "make up COMPOSE_FILE=docker-compose.ci.yml: built the missing initd image first, then the rest, started (5 services, ${MAKE_UP}s), kept the choice in .env; a second make up changed nothing"

out=$(printf '%s\n' 'id -u' 'echo "$USER $PWD"' 'printf %s "$SECRET_KEY" | sha256sum' | mk shell 2>&1) ||
    { echo "$out" >&2; fail "make shell (commands on stdin) failed"; }
expected="9500
app /app
$(printf '%s' "$SECRET_KEY" | sha256sum)"
[ "$out" = "$expected" ] || { printf 'got:\n%s\nwanted:\n%s\n' "$out" "$expected" >&2; fail "make shell did not run as the app user with the secrets"; }
pass "make shell: a shell in the app container as uid 9500 (initd exec), with the secrets"

mk down >"$WORK/make-down.log" 2>&1 || { cat "$WORK/make-down.log" >&2; fail "make down"; }
[ -z "$(compose ps -q)" ] || fail "make down left containers"
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")" ] || fail "make down left containers behind"
pass "make down: every container of the project is gone"
compose down -v --timeout 10 >/dev/null 2>&1
docker rmi "$INITD_IMAGE" >/dev/null 2>&1 || true
export COMPOSE_PROJECT_NAME=$PROJECT INITD_IMAGE=$IMG/initd:latest

# ---------------------------------------------------------------------------
# A code-only change: what a rebuild costs
# ---------------------------------------------------------------------------

# A change no earlier run made (the builder cache would remember that one).
stamp="Rebuilt after a code-only change ($$-$(date +%s%N))."
sed -i "s/^GREETING = .*/GREETING = \"$stamp\"/" "$CTX/images/app/example/visits/views.py"
build "$IMG/app:warm" -f "$CTX/images/app/Dockerfile" --target production \
    --build-arg APP_UID=9500 --build-arg APP_GID=9500 -t "$IMG/app:warm"
docker run --rm --entrypoint grep "$IMG/app:warm" -qF "$stamp" /app/visits/views.py ||
    fail "warm rebuild: the image does not hold the changed code"
pass "rebuild after a code-only change: ${BUILD_SECS[$IMG/app:warm]}s"

size() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }
{
    echo
    echo "e2e: images and build times (this run; 'cold' only on an empty build cache)"
    printf '  %-22s %8s  %s\n' IMAGE SIZE "BUILD (s)"
    printf '  %-22s %8s  %s\n' "$INITD_IMAGE" "$(size "$INITD_IMAGE")" "${BUILD_SECS[$INITD_IMAGE]}"
    printf '  %-22s %8s  %s\n' "$IMG/app:ci" "$(size "$IMG/app:ci")" "${BUILD_SECS[$IMG/app:ci]} (after the initd image)"
    printf '  %-22s %8s  %s\n' "$IMG/app:dev" "$(size "$IMG/app:dev")" "${BUILD_SECS[$IMG/app:dev]} (after app:ci)"
    printf '  %-22s %8s  %s\n' "$IMG/nginx:latest" "$(size "$IMG/nginx:latest")" "${BUILD_SECS[$IMG/nginx:latest]} (after app:ci)"
    printf '  %-22s %8s  %s\n' "code-only change" "" "${BUILD_SECS[$IMG/app:warm]} (app:ci rebuilt)"
    echo "  docker stop: nginx ${NGINX_STOP}s, app ${APP_STOP}s, db ${DB_STOP}s, worker ${WORKER_STOP}s (warm, an 8s task running)"
    echo "  make up with built images: ${MAKE_UP}s"
    echo "  e2e total: $((SECONDS - T_START))s"
} >&2
echo "e2e: $PASSED passed, 0 failed"
