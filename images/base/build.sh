#!/usr/bin/env bash
# images/base/build.sh — build local stand-ins for the public base images that
# images/app/Dockerfile, images/nginx/Dockerfile and docker-compose.yml take as
# build args (python:3.12-slim, node:20-slim, rust:1, nginx, postgres:16, redis:7,
# busybox).
#
# Why: the machines this project is built and tested on reach Debian's
# package mirror, PyPI and crates.io, but no container registry, so
# `FROM python:3.12-slim` can never be pulled. These images are made from
# Debian packages only: a `debootstrap --variant=minbase` root file system,
# packages added in a chroot, then `tar | docker import`.
#
# Usage: images/base/build.sh [--force] [--verify|--no-verify] [IMAGE...]
#   IMAGE     any of: busybox python nginx postgres node rust redis (default: all)
#   --force   rebuild even when an image with the same recipe hash exists
#   --verify  run the smoke test of every selected image, built or not
#             (by default only freshly built images are smoke-tested)
#
# Output: stdout has only KEY=VALUE lines, e.g. PYTHON_IMAGE=initd-base/python:bookworm,
# so the result can be `eval`ed, fed to `docker build --build-arg`, or written
# as a docker-compose `.env`. Progress and the summary table go to stderr;
# each image's full build log goes to $INITD_BASE_CACHE/logs/NAME.log.
#
# Idempotent: each image carries a label with a hash of its recipe (the text
# of the shell functions that build it plus the files it copies in). A rerun
# skips an image whose label matches, so a warm run takes seconds and needs
# no network. Package downloads are kept under $INITD_BASE_CACHE (outside the
# repo, default /var/cache/initd-base), so even a rebuild after a recipe edit
# downloads only what changed.
#
# Environment:
#   INITD_BASE_CACHE        cache and work directory (default /var/cache/initd-base)
#   INITD_BASE_PREFIX       image name prefix (default initd-base)
#   INITD_BASE_SUITE        Debian suite (default bookworm)
#   DEBIAN_MIRROR           e.g. http://deb.debian.org/debian (default: read from apt's sources)
#   DEBIAN_SECURITY_MIRROR  e.g. http://deb.debian.org/debian-security (same)
#   INITD_BASE_EXTRA_CA     PEM files of extra CA certificates to trust in the Debian-
#                           based images; "auto" (default) takes the CA certificates
#                           the host added locally (/usr/local/share/ca-certificates,
#                           plain files in /etc/ssl/certs); "none" takes none.
#                           Why: where egress goes through a TLS-inspecting proxy,
#                           the host trusts that proxy's CA, and pip/cargo/apt-over-
#                           https inside `docker build` work only if the image does too.
#
# Needs root (debootstrap, chroot, mount) and a running Docker engine.
# shellcheck disable=SC2016 # in_root scripts are single-quoted on purpose: they expand in the chroot
set -euo pipefail
shopt -s nullglob

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${INITD_BASE_CACHE:-/var/cache/initd-base}
PREFIX=${INITD_BASE_PREFIX:-initd-base}
SUITE=${INITD_BASE_SUITE:-bookworm}
# The label that holds the recipe hash; also marks images as ours.
LABEL=org.initd.base.recipe
# Bump to force every image to rebuild (e.g. after a change outside the
# hashed functions that still changes what ends up in the images).
RECIPE_VERSION=1

ALL_IMAGES=(busybox python nginx postgres node rust redis)
# PATH for the chroot and for the images (Docker's default order).
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[base] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; }

# ---------------------------------------------------------------------------
# Host side: mirror discovery, tools, locking, work-dir hygiene
# ---------------------------------------------------------------------------

# Prints "URI SUITE" for every enabled apt source on the host, both the
# one-line (.list) and the deb822 (.sources) formats, so the script follows
# whatever mirror this machine is configured for instead of hard-coding one.
apt_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        # deb [opts] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" { print $2, $3 }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '
            function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no") for (u in uris) for (s in suites) print uris[u], suites[s]; delete uris; delete suites; types = ""; enabled = "" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"   { types = $0; sub(/^[^:]*:[ \t]*/, "", types) }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            tolower($1) == "uris:"    { for (i = 2; i <= NF; i++) uris[i] = $i }
            tolower($1) == "suites:"  { for (i = 2; i <= NF; i++) suites[i] = $i }
            END { flush() }' "$f"
    done
}

detect_mirrors() {
    local src
    src=$(apt_sources || true)
    if [ -z "${DEBIAN_MIRROR:-}" ]; then
        DEBIAN_MIRROR=$(awk -v s="$SUITE" '$2 == s { print $1; exit }' <<<"$src")
        DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    fi
    if [ -z "${DEBIAN_SECURITY_MIRROR:-}" ]; then
        DEBIAN_SECURITY_MIRROR=$(awk -v s="$SUITE-security" '$2 == s { print $1; exit }' <<<"$src")
        DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-${DEBIAN_MIRROR%/debian}/debian-security}
    fi
    DEBIAN_MIRROR=${DEBIAN_MIRROR%/}
    DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR%/}
}

# Sets EXTRA_CA_FILES from INITD_BASE_EXTRA_CA (see the header). "auto"
# keeps only real CA certificates (basicConstraints CA:TRUE), so a
# self-signed server certificate such as ssl-cert's snakeoil is not trusted.
find_extra_cas() {
    local spec=${INITD_BASE_EXTRA_CA:-auto} f sum bc
    local -A seen=()
    EXTRA_CA_FILES=()
    case $spec in
    none | "") return 0 ;;
    auto)
        for f in /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt \
            /etc/ssl/certs/*.pem /etc/ssl/certs/*.crt; do
            if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
            [ "${f##*/}" = ca-certificates.crt ] && continue
            bc=$(openssl x509 -noout -ext basicConstraints -in "$f" 2>/dev/null) || continue
            [[ $bc == *CA:TRUE* ]] || continue
            # The same certificate often sits in both places.
            sum=$(sha256sum <"$f" | cut -d' ' -f1)
            [ -z "${seen[$sum]:-}" ] || continue
            seen[$sum]=1
            EXTRA_CA_FILES+=("$f")
        done ;;
    *)
        for f in $spec; do
            [ -r "$f" ] || die "INITD_BASE_EXTRA_CA: cannot read $f"
            EXTRA_CA_FILES+=("$f")
        done ;;
    esac
}

ensure_host_tools() {
    [ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
    command -v docker >/dev/null || die "docker CLI not found"
    docker info >/dev/null 2>&1 || die "docker engine not reachable"
    local need=()
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v flock >/dev/null || need+=(util-linux)
    command -v zstd >/dev/null || need+=(zstd)
    # find_extra_cas reads certificates with it; without it no extra CA
    # would be found, and builds behind a TLS-inspecting proxy would fail.
    command -v openssl >/dev/null || need+=(openssl)
    if ((${#need[@]})); then
        log "installing host tools: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
        }
    fi
}

# True if anything is mounted at or below $1.
mounted_below() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# Unmounts everything below a work root, deepest first, then deletes it.
# The rm only runs once nothing is mounted there any more: a bind mount that
# survived would otherwise let `rm -rf` reach into the host.
remove_root() {
    local root=$1 m
    [ -e "$root" ] || return 0
    while mounted_below "$root"; do
        # The deepest mount point first (awk alone: no `| head` to SIGPIPE).
        m=$(awk -v d="$root" '($5 == d || index($5, d "/") == 1) && length($5) > length(m) { m = $5 } END { print m }' /proc/self/mountinfo)
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    rm -rf --one-file-system "$root"
}

# ---------------------------------------------------------------------------
# Building inside a root file system
# ---------------------------------------------------------------------------

# Runs a bash script inside $ROOT with a clean, non-interactive environment.
in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH="$STD_PATH" HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
        /bin/bash -euo pipefail -c "$1"
}

# Hard-links every cached .deb from $1 into $2 that $2 doesn't have yet.
# Hard links, not a bind mount of the cache: a bind mount shares st_dev
# with the tree, so `rm --one-file-system` would not stop at it.
link_debs() {
    local f
    for f in "$1"/*.deb; do
        [ -e "$f" ] || continue
        [ -e "$2/${f##*/}" ] || ln "$f" "$2/" 2>/dev/null || cp "$f" "$2/"
    done
}

# apt-get install inside $ROOT, with the persistent .deb cache: cached
# packages are linked in before, newly downloaded ones linked out after.
apt_install() {
    link_debs "$CACHE/apt" "$ROOT/var/cache/apt/archives"
    # update + upgrade every time: the cached base tarball may be older than
    # the mirror's current security updates, and its package lists with it.
    in_root "apt-get -q update && apt-get -q -y -o Dpkg::Use-Pty=0 dist-upgrade && \
             apt-get -q -y -o Dpkg::Use-Pty=0 install --no-install-recommends $*"
    link_debs "$ROOT/var/cache/apt/archives" "$CACHE/apt"
}

# The shared Debian root file system: debootstrap minbase, the mirror's
# updates, dpkg set up to drop docs/man/locales, ca-certificates. Kept as a
# tarball in the cache (keyed by its own recipe hash), so each image starts
# from a 2-second untar instead of a 1-2 minute debootstrap, and python,
# nginx, postgres, node and rust all share one bootstrap.
make_base() {
    local tarball=$1 root="$CACHE/work/base"
    remove_root "$root"
    mkdir -p "$root" "$CACHE/debootstrap" "$CACHE/apt"
    ROOT=$root
    trap 'remove_root "$ROOT"' EXIT
    # --cache-dir keeps the bootstrap .debs between runs (debootstrap checks
    # them against the mirror's hashes, so a stale one is re-fetched).
    debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" \
        "$SUITE" "$root" "$DEBIAN_MIRROR"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $SUITE main
deb $DEBIAN_MIRROR $SUITE-updates main
deb $DEBIAN_SECURITY_MIRROR $SUITE-security main
EOF
    # Like Debian's and Ubuntu's "slim"/minimized images: docs, man pages and
    # translations are never unpacked (copyright files are kept, as policy asks).
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-initd-base-slim" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/linda/*
EOF
    # Package postinst scripts must not start daemons in the chroot (nginx,
    # postgresql would run on the host); exit 101 = "action forbidden". Kept
    # in the images, as Docker's own debootstrap recipe did, so an
    # `apt-get install` in a Dockerfile RUN doesn't start services either.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    # Extra CAs go where update-ca-certificates (run by the ca-certificates
    # package's postinst) adds them to /etc/ssl/certs/ca-certificates.crt,
    # the bundle Debian's python3-certifi, pip, cargo, curl and apt all use.
    local ca ca_name
    if ((${#EXTRA_CA_FILES[@]})); then
        mkdir -p "$root/usr/local/share/ca-certificates/initd-base"
        for ca in "${EXTRA_CA_FILES[@]}"; do
            ca_name=${ca##*/}
            cp "$ca" "$root/usr/local/share/ca-certificates/initd-base/${ca_name%.*}.crt"
        done
    fi
    apt_install ca-certificates
    # What debootstrap unpacked before the dpkg excludes existed.
    in_root 'find /usr/share/doc -mindepth 1 -not -type d -not -name copyright -delete
             find /usr/share/doc -mindepth 1 -type d -empty -delete
             find /usr/share/man /usr/share/info -not -type d -delete
             find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
             rm -f /var/cache/apt/archives/*.deb'
    umount "$root/proc"
    mkdir -p "$CACHE/rootfs"
    tar --numeric-owner -C "$root" -c . | zstd -q -T0 -3 >"$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    # Older base tarballs are of no further use.
    find "$CACHE/rootfs" -maxdepth 1 -name 'base-*.tar.zst' ! -path "$tarball" -delete
}

# Unpacks the base into a fresh work root for image $1 and mounts /proc
# (some postinst scripts read it). The EXIT trap undoes all of it.
new_root() {
    ROOT="$CACHE/work/$1"
    remove_root "$ROOT"
    mkdir -p "$ROOT"
    trap 'remove_root "$ROOT"' EXIT
    zstd -q -d -c "$BASE_TARBALL" | tar --numeric-owner -C "$ROOT" -x
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    mount -t proc proc "$ROOT/proc"
}

# Leaves $ROOT as an image should be: no package lists or caches, no logs,
# nothing of the host. Then apt is set up the way Debian's official images
# are, so a Dockerfile's `apt-get install` doesn't keep .debs in a layer.
finalize_root() {
    in_root 'apt-get clean
             rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
                    /var/lib/dpkg/*-old /var/log/apt/* /var/log/*.log /tmp/* /var/tmp/* /root/.cache'
    cat >"$ROOT/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'Acquire::Languages "none";\n' >"$ROOT/etc/apt/apt.conf.d/docker-no-languages"
    # Docker provides these at run time; the host's must not leak into images.
    rm -f "$ROOT/etc/resolv.conf"
    : >"$ROOT/etc/hostname"
    umount "$ROOT/proc"
}

# tar | docker import, with the recipe label and Dockerfile-style settings.
# Engine 20.10's import takes only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
# ONBUILD, USER, VOLUME and WORKDIR as --change lines; STOPSIGNAL and
# HEALTHCHECK go through a context-less `docker build` FROM the imported
# image, which adds config only, no layer. The image that held the tag before
# is removed once nothing refers to it, so rebuilds don't pile up.
import_root() {
    local tag=$1 hash=$2 old new c dockerfile=
    shift 2
    local changes=(--change "ENV PATH=$STD_PATH")
    for c in "$@"; do
        case $c in
        STOPSIGNAL* | HEALTHCHECK*) dockerfile+="$c"$'\n' ;;
        *) changes+=(--change "$c") ;;
        esac
    done
    changes+=(--change "LABEL $LABEL=$hash")
    old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    # /dev is left out: Docker mounts its own in every container, and the
    # device nodes debootstrap made for the chroot have no business in a layer.
    if [ -z "$dockerfile" ]; then
        new=$(tar --numeric-owner --exclude='./dev/*' -C "$ROOT" -c . |
            docker import "${changes[@]}" --message "initd-base $tag recipe $hash" - "$tag")
    else
        new=$(tar --numeric-owner --exclude='./dev/*' -C "$ROOT" -c . |
            docker import "${changes[@]}" --message "initd-base $tag recipe $hash" -)
        # DOCKER_BUILDKIT=0: the classic builder is part of every engine;
        # BuildKit needs the CLI's buildx plugin, which may be missing.
        new=$(printf 'FROM %s\n%s' "$new" "$dockerfile" | DOCKER_BUILDKIT=0 docker build -q -t "$tag" -)
    fi
    if [ -n "$old" ] && [ "$old" != "$new" ]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
}

# ---------------------------------------------------------------------------
# Recipes, one per image: build_NAME TAG HASH, and smoke_NAME TAG
# ---------------------------------------------------------------------------

# busybox: FROM scratch plus Debian's statically linked busybox, for tiny test
# images (e.g. initd as PID 1 over a shell script). No chroot needed.
build_busybox() {
    local tag=$1 hash=$2 dl="$CACHE/debs" deb
    mkdir -p "$dl"
    # apt-get download fetches the version the host's apt lists know; run
    # as root (the _apt sandbox user can't write to the cache directory).
    (cd "$dl" && rm -f busybox-static_*.deb && apt-get -q -o APT::Sandbox::User=root download busybox-static) ||
        { apt-get -q update && (cd "$dl" && apt-get -q -o APT::Sandbox::User=root download busybox-static); }
    deb=$(ls "$dl"/busybox-static_*.deb)
    ROOT="$CACHE/work/busybox"
    remove_root "$ROOT"
    trap 'remove_root "$ROOT"' EXIT
    mkdir -p "$ROOT/x" "$ROOT/bin" "$ROOT/etc" "$ROOT/root" "$ROOT/tmp" "$ROOT/var/tmp" "$ROOT/home" "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/sbin"
    dpkg-deb -x "$deb" "$ROOT/x"
    mv "$ROOT/x/bin/busybox" "$ROOT/bin/busybox"
    rm -rf "$ROOT/x"
    # One symlink per applet at the path busybox itself reports.
    local applet
    while read -r applet; do
        [ -e "$ROOT/$applet" ] || ln -s /bin/busybox "$ROOT/$applet"
    done < <("$ROOT/bin/busybox" --list-full)
    chmod 1777 "$ROOT/tmp" "$ROOT/var/tmp"
    chmod 700 "$ROOT/root"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$ROOT/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
    import_root "$tag" "$hash" 'CMD ["sh"]'
}
smoke_busybox() {
    docker run --rm "$1" sh -c 'test "$(id -u)" = 0 && echo hello | grep -q hello && ls / >/dev/null && busybox | head -n1'
}

# python: Debian's python3 (3.11 on bookworm) with pip and venv, and nothing
# else, like python:3.12-slim: an app's Dockerfile installs its own
# requirements from PyPI (images/app/Dockerfile does, into a virtualenv).
build_python() {
    local tag=$1 hash=$2
    new_root python
    apt_install python3 python3-pip python3-venv
    # Like python:slim: `python` and `pip` exist, and pip may install into the
    # system interpreter. Debian marks it "externally managed" (PEP 668), which
    # makes every `pip install` in a Dockerfile fail; PEP 668 itself says
    # container images may drop the marker.
    in_root 'rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
             ln -sf /usr/bin/python3 /usr/local/bin/python
             command -v pip >/dev/null || ln -sf /usr/bin/pip3 /usr/local/bin/pip'
    finalize_root
    # PYTHONUNBUFFERED is not set, as in python:slim; apps set it themselves.
    import_root "$tag" "$hash" 'ENV LANG=C.UTF-8' 'CMD ["python3"]'
}
smoke_python() {
    docker run --rm "$1" sh -euc '
        python -c "import ssl, sqlite3, sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)"
        pip --version >/dev/null
        python -m venv /tmp/v && /tmp/v/bin/pip --version >/dev/null'
    # Informational only (the network is not the image's business): can a
    # container reach PyPI over TLS, as a `pip install` in a Dockerfile needs?
    docker run --rm "$1" python3 -c '
import urllib.request
try:
    urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=15).read(100)
    print("PyPI reachable from containers")
except Exception as e:
    print("PyPI NOT reachable from containers:", e)' || true
}

# nginx: Debian's nginx, laid out like the official image: config snippets in
# /etc/nginx/conf.d (so a Dockerfile's COPY default.conf there takes over),
# no Debian sites-enabled default (it would clash on port 80), logs to the
# container's stdout/stderr, foreground CMD, graceful SIGQUIT stop.
# openssl is there to make self-signed certificates in tests.
build_nginx() {
    local tag=$1 hash=$2
    new_root nginx
    apt_install nginx openssl
    in_root 'rm -f /etc/nginx/sites-enabled/default
             mkdir -p /etc/nginx/conf.d /usr/share/nginx/html
             ln -sf /dev/stdout /var/log/nginx/access.log
             ln -sf /dev/stderr /var/log/nginx/error.log
             [ -e /usr/share/nginx/html/index.html ] || echo "<h1>initd-base nginx</h1>" >/usr/share/nginx/html/index.html'
    cat >"$ROOT/etc/nginx/conf.d/default.conf" <<'EOF'
# Default site, as in the official nginx image; replace this file.
server {
    listen       80;
    listen  [::]:80;
    server_name  localhost;
    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
}
EOF
    finalize_root
    import_root "$tag" "$hash" 'EXPOSE 80' 'STOPSIGNAL SIGQUIT' 'CMD ["nginx", "-g", "daemon off;"]'
}
smoke_nginx() {
    docker run --rm "$1" sh -euc 'nginx -v 2>&1; nginx -t -q; openssl version >/dev/null'
}

# postgres: Debian's PostgreSQL (15 on bookworm) behind an entrypoint with
# the official image's essentials (see postgres/docker-entrypoint.sh).
build_postgres() {
    local tag=$1 hash=$2
    new_root postgres
    # uid/gid 999 as in the official image, so a data volume's ownership
    # means the same in both.
    in_root 'groupadd -r -g 999 postgres
             useradd -r -u 999 -g postgres -d /var/lib/postgresql -s /bin/bash postgres
             mkdir -p /var/lib/postgresql && chown postgres:postgres /var/lib/postgresql'
    # The entrypoint runs initdb itself, into $PGDATA; Debian's package would
    # otherwise create a "main" cluster under /var/lib/postgresql/15 at
    # install time. Configure that off before the server package goes in.
    apt_install postgresql-common
    in_root "sed -ri 's/^#?\\s*create_main_cluster\\b.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf"
    apt_install postgresql
    install -m 755 "$HERE/postgres/docker-entrypoint.sh" "$ROOT/usr/local/bin/docker-entrypoint.sh"
    in_root 'major=$(ls /usr/lib/postgresql | sort -n | tail -n1)
             [ -x /usr/lib/postgresql/$major/bin/postgres ]
             ln -s /usr/lib/postgresql/$major /usr/lib/postgresql/current
             # The official image listens everywhere by default; pg_hba then
             # asks every non-local peer for a password.
             sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '"'"'*'"'"'!" /usr/share/postgresql/$major/postgresql.conf.sample
             grep -q "^listen_addresses = '"'"'\*'"'"'" /usr/share/postgresql/$major/postgresql.conf.sample
             mkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data /var/run/postgresql
             chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql
             chmod 1777 /var/lib/postgresql/data
             chmod 3777 /var/run/postgresql'
    finalize_root
    # /usr/lib/postgresql/current/bin holds initdb, pg_ctl, postgres and the
    # real psql/pg_isready; first on PATH so Debian's wrapper scripts (which
    # look for clusters under /etc/postgresql) are not in the way.
    import_root "$tag" "$hash" \
        "ENV PATH=/usr/lib/postgresql/current/bin:$STD_PATH" \
        'ENV LANG=C.UTF-8' 'ENV PGDATA=/var/lib/postgresql/data' \
        'VOLUME /var/lib/postgresql/data' 'EXPOSE 5432' \
        'STOPSIGNAL SIGINT' \
        'ENTRYPOINT ["docker-entrypoint.sh"]' 'CMD ["postgres"]'
}
# Full life cycle, as docker-compose will use it: first start initializes a
# named volume, password login over the network works (and a wrong password
# doesn't), `docker stop` is quick and clean, a second start reuses the data.
smoke_postgres() {
    local tag=$1 id="initd-base-smoke-$$" secret
    secret=$(mktemp -d)
    printf 's3cret-pw\n' >"$secret/pw"
    chmod 644 "$secret/pw"
    # shellcheck disable=SC2064 # expand now: these names are fixed
    # EXIT, not RETURN: this runs in its own subshell, and under set -e a
    # failing step leaves the subshell without returning from the function.
    trap "docker rm -f $id >/dev/null 2>&1; docker volume rm -f $id >/dev/null 2>&1; docker network rm $id >/dev/null 2>&1; rm -rf $secret" EXIT
    docker network create "$id" >/dev/null
    docker volume create "$id" >/dev/null
    local run
    for run in first second; do
        docker run -d --name "$id" --network "$id" --network-alias db -v "$id:/var/lib/postgresql/data" \
            -v "$secret/pw:/run/secrets/pgpw:ro" -e POSTGRES_PASSWORD_FILE=/run/secrets/pgpw \
            -e POSTGRES_USER=app -e POSTGRES_DB=appdb "$tag" >/dev/null
        local i
        for i in $(seq 60); do
            docker exec "$id" pg_isready -q -h 127.0.0.1 -U app -d appdb && break
            [ "$i" = 60 ] && { docker logs "$id" >&2; return 1; }
            sleep 1
        done
        # From another container on the network, as the app will connect.
        docker run --rm --network "$id" -e PGPASSWORD=s3cret-pw "$tag" \
            psql -h db -U app -d appdb -tAc "select 'login ok ' || current_user || ' ' || current_database() || ' ' || split_part(version(), ' ', 2)"
        if docker run --rm --network "$id" -e PGPASSWORD=wrong "$tag" psql -h db -U app -d appdb -tAc 'select 1' >/dev/null 2>&1; then
            log "postgres smoke: a wrong password was accepted"
            return 1
        fi
        local t0=$SECONDS
        docker stop -t 10 "$id" >/dev/null
        local took=$((SECONDS - t0)) code logs
        code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
        # Into a variable first: `docker logs | grep -q` can die of SIGPIPE
        # when grep quits early, and pipefail would call that a failure.
        logs=$(docker logs "$id" 2>&1)
        grep -q 'database system is shut down' <<<"$logs" || { printf '%s\n' "$logs" >&2; return 1; }
        if [ "$run" = second ] && grep -q 'initializing a new cluster' <<<"$logs"; then
            log "postgres smoke: second start re-initialized the volume"
            return 1
        fi
        echo "$run start: stopped in ${took}s, exit code $code"
        [ "$code" = 0 ] && [ "$took" -lt 10 ] || return 1
        docker rm "$id" >/dev/null
    done
}

# redis: Debian's redis-server (7.0 on bookworm), run as the public redis
# image runs it: in the foreground as PID 1, as the redis user, data in /data
# (a volume there keeps it), reachable from other containers without a
# password. redis-server's built-in default is protected mode, which refuses
# every peer but loopback when no password is set; the public image builds
# redis with it off, so the stand-in turns it off on the command line. A
# compose `command:` replaces all of CMD, as with the public image.
build_redis() {
    local tag=$1 hash=$2
    new_root redis
    apt_install redis-server
    in_root 'install -d -o redis -g redis -m 0750 /data'
    finalize_root
    import_root "$tag" "$hash" 'USER redis' 'WORKDIR /data' 'VOLUME /data' 'EXPOSE 6379' \
        'CMD ["redis-server", "--protected-mode", "no", "--dir", "/data"]'
}
smoke_redis() {
    local tag=$1 id
    id=initd-base-smoke-redis-$$
    docker network create "$id" >/dev/null
    # The smoke test runs in a subshell of its own: EXIT cleans up on failure too.
    # shellcheck disable=SC2064 # the id is fixed now
    trap "docker rm -f $id >/dev/null 2>&1; docker network rm $id >/dev/null 2>&1" EXIT
    docker run -d --name "$id" --network "$id" --network-alias redis "$tag" >/dev/null
    local i
    for i in $(seq 30); do
        docker exec "$id" redis-cli ping 2>/dev/null | grep -qx PONG && break
        [ "$i" = 30 ] && { docker logs "$id" >&2; return 1; }
        sleep 1
    done
    # From another container, as a Celery worker connects.
    docker run --rm --network "$id" "$tag" sh -euc '
        redis-cli -h redis set initd-smoke ok >/dev/null
        test "$(redis-cli -h redis get initd-smoke)" = ok
        redis-server --version'
    test "$(docker exec "$id" id -un)" = redis
    local t0=$SECONDS code
    docker stop -t 10 "$id" >/dev/null
    code=$(docker inspect -f '{{.State.ExitCode}}' "$id")
    echo "stopped in $((SECONDS - t0))s, exit code $code"
    [ "$code" = 0 ] && [ $((SECONDS - t0)) -lt 10 ]
}

# node: Debian's nodejs (18 on bookworm) and npm, for an assets build stage.
build_node() {
    local tag=$1 hash=$2
    new_root node
    apt_install nodejs npm
    finalize_root
    import_root "$tag" "$hash" 'ENV LANG=C.UTF-8' 'CMD ["node"]'
}
smoke_node() {
    docker run --rm "$1" sh -euc 'node -e "console.log(process.version)"; npm --version >/dev/null
        mkdir /tmp/p && cd /tmp/p && npm init -y >/dev/null && npm install --offline --no-audit --no-fund >/dev/null'
}

# rust: Debian's "-web" Rust toolchain (rustc-web/cargo-web, which bookworm's
# security suite keeps current for Firefox/Chromium builds: 1.96 at the time
# of writing; the plain rustc package is 1.63, too old for edition 2024),
# plus gcc and libc6-dev, whose static libc.a the crt-static build of initd
# links against. CARGO_HOME as in the rust:1 image.
build_rust() {
    local tag=$1 hash=$2
    new_root rust
    apt_install rustc-web cargo-web libc6-dev gcc
    in_root 'mkdir -p /usr/local/cargo/bin && chmod -R a+w /usr/local/cargo
             v=$(rustc --version | awk "{print \$2}")
             printf "%s\n" "1.85.0" "$v" | sort -V -C || { echo "rustc $v is older than 1.85 (edition 2024)"; exit 1; }'
    finalize_root
    import_root "$tag" "$hash" 'ENV CARGO_HOME=/usr/local/cargo' \
        "ENV PATH=/usr/local/cargo/bin:$STD_PATH" 'ENV LANG=C.UTF-8' 'CMD ["bash"]'
}
smoke_rust() {
    docker run --rm "$1" sh -euc 'rustc --version; cargo --version >/dev/null
        cd /tmp && printf "fn main() { println!(\"static ok\"); }\n" >h.rs
        rustc --edition 2024 -C target-feature=+crt-static -O h.rs -o h && ./h
        ldd ./h | grep -q "statically linked"'
}

# ---------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------

image_tag() {
    case $1 in
    busybox) echo "$PREFIX/busybox:latest" ;;
    *) echo "$PREFIX/$1:$SUITE" ;;
    esac
}

# Files an image copies in, besides what the functions say.
recipe_files() {
    case $1 in
    postgres) echo "$HERE/postgres/docker-entrypoint.sh" ;;
    esac
}

# The text of every function that shapes image contents. `declare -f`
# prints them normalized (comments dropped), so comment edits don't rebuild.
COMMON_FUNCS=(in_root link_debs apt_install new_root finalize_root import_root)
base_hash() {
    {
        echo "v$RECIPE_VERSION $SUITE"
        declare -f make_base in_root link_debs apt_install
        ((${#EXTRA_CA_FILES[@]} == 0)) || cat "${EXTRA_CA_FILES[@]}"
    } | sha256sum | cut -c1-16
}
recipe_hash() {
    local f
    {
        echo "v$RECIPE_VERSION $SUITE $(base_hash)"
        declare -f "${COMMON_FUNCS[@]}" "build_$1"
        for f in $(recipe_files "$1"); do cat "$f"; done
    } | sha256sum | cut -c1-16
}

image_label() {
    docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

# Makes sure the shared base tarball exists (building it if needed).
ensure_base() {
    [ -n "${BASE_TARBALL:-}" ] && [ -s "$BASE_TARBALL" ] && return 0
    BASE_TARBALL="$CACHE/rootfs/base-$SUITE-$(base_hash).tar.zst"
    [ -s "$BASE_TARBALL" ] && return 0
    log "base: debootstrap $SUITE from $DEBIAN_MIRROR (log: $CACHE/logs/base.log)"
    local t0=$SECONDS rc
    set +e
    (set -e; make_base "$BASE_TARBALL") >"$CACHE/logs/base.log" 2>&1
    rc=$?
    set -e
    if [ $rc != 0 ]; then
        tail -n 40 "$CACHE/logs/base.log" >&2
        die "base root file system failed (exit $rc)"
    fi
    SUMMARY+=("base-rootfs|$(du -h "$BASE_TARBALL" | cut -f1) (tar.zst)|$((SECONDS - t0))|built")
}

SUMMARY=()
FAILED=()

build_one() {
    local name=$1 tag hash t0 rc status=cached secs=0
    tag=$(image_tag "$name")
    hash=$(recipe_hash "$name")
    if [ -z "$FORCE" ] && [ "$(image_label "$tag")" = "$hash" ]; then
        log "$name: $tag is up to date (recipe $hash)"
    else
        [ "$name" = busybox ] || ensure_base
        log "$name: building $tag (recipe $hash, log: $CACHE/logs/$name.log)"
        t0=$SECONDS
        set +e
        # A subshell per image: its EXIT trap cleans the work root even on
        # failure, and set -e works in it (it would not inside an `if`).
        (set -e; "build_$name" "$tag" "$hash") >"$CACHE/logs/$name.log" 2>&1
        rc=$?
        set -e
        secs=$((SECONDS - t0))
        if [ $rc != 0 ]; then
            tail -n 40 "$CACHE/logs/$name.log" >&2
            log "$name: build FAILED (exit $rc)"
            FAILED+=("$name")
            SUMMARY+=("$tag|-|$secs|FAILED")
            return 0
        fi
        status=built
    fi
    if [ "$status" = built ] || [ -n "$VERIFY" ]; then
        log "$name: smoke test"
        set +e
        (set -e; "smoke_$name" "$tag") 2>&1 | sed "s/^/[base]   $name: /" >&2
        rc=${PIPESTATUS[0]}
        set -e
        if [ "$rc" != 0 ]; then
            # Untag it: with its recipe label in place, the next run would
            # take the broken image as up to date.
            docker rmi "$tag" >/dev/null 2>&1 || true
            log "$name: smoke test FAILED; $tag removed"
            FAILED+=("$name")
            SUMMARY+=("$tag|-|$secs|$status, smoke FAILED")
            return 0
        else
            status="$status, smoke ok"
        fi
    fi
    local size
    size=$(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1000000}')
    SUMMARY+=("$tag|$size|$secs|$status")
}

main() {
    FORCE='' VERIFY=
    local images=() a
    for a in "$@"; do
        case $a in
        --force) FORCE=1 ;;
        --verify) VERIFY=1 ;;
        --no-verify) VERIFY= ;;
        -h | --help) usage; exit 0 ;;
        -*) usage; die "unknown option $a" ;;
        *)
            [[ " ${ALL_IMAGES[*]} " == *" $a "* ]] || die "unknown image $a (have: ${ALL_IMAGES[*]})"
            images+=("$a") ;;
        esac
    done
    ((${#images[@]})) || images=("${ALL_IMAGES[@]}")

    ensure_host_tools
    mkdir -p "$CACHE/logs" "$CACHE/work"
    # One build at a time per cache (a developer and CI on one machine).
    exec 9>"$CACHE/.lock"
    flock 9
    # Leftovers of an interrupted run (mounts included).
    local w
    for w in "$CACHE"/work/*; do remove_root "$w"; done
    detect_mirrors
    find_extra_cas
    ((${#EXTRA_CA_FILES[@]} == 0)) || log "extra CA certificates for the images: ${EXTRA_CA_FILES[*]}"

    local t0=$SECONDS name
    for name in "${images[@]}"; do build_one "$name"; done

    {
        echo
        printf '%-34s %12s %8s  %s\n' IMAGE SIZE SECONDS STATUS
        local row
        for row in "${SUMMARY[@]}"; do
            IFS='|' read -r a b c d <<<"$row"
            printf '%-34s %12s %8s  %s\n' "$a" "$b" "$c" "$d"
        done
        printf 'total %ss; cache %s (%s)\n' "$((SECONDS - t0))" "$CACHE" "$(du -sh "$CACHE" 2>/dev/null | cut -f1)"
    } >&2

    for name in "${images[@]}"; do
        [[ " ${FAILED[*]} " == *" $name "* ]] && continue
        printf '%s_IMAGE=%s\n' "${name^^}" "$(image_tag "$name")"
    done
    ((${#FAILED[@]} == 0)) || die "failed: ${FAILED[*]}"
}

main "$@"
