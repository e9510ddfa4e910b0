#!/usr/bin/env bash
# The wheel, as a user gets it: `make wheel` builds it from this checkout
# (maturin and wheel from PyPI into target/wheel-tools, kept between runs),
# then this checks what a publisher would upload and a user would install:
#
#   - one wheel, named initd-pid1 at Cargo.toml's version, tagged for glibc
#     (manylinux_2_17) and musl (musllinux_1_1) x86_64, any Python 3;
#   - holding the initd executable (installed into bin/) and the metadata
#     pip needs, nothing else;
#   - `pip install initd-pid1` from it, into a fresh virtualenv, offline,
#     puts `initd` on the virtualenv's PATH; it is static (no ELF
#     interpreter, no dynamic section);
#   - that `initd` runs as PID 1 of a new pid namespace: `initd exec -- true`
#     exits 0, a child's exit status comes back, the child's parent is PID 1;
#     `initd version` names the version and "installed from: wheel";
#   - it runs where no libc is installed at all: as PID 1, chrooted into a
#     directory holding nothing but the binary, it execs a copy of itself.
#
#   bash tests/wheel.sh        (tests/run.sh runs it before cargo test)
#
# Needs root (unshare, chroot), python3 with venv, make, cargo, and PyPI the
# first time. Exits non-zero with one line naming what failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

fail() {
    echo "tests/wheel.sh: FAILED: $*" >&2
    exit 1
}
ok() { echo "tests/wheel.sh: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (unshare --pid, chroot); run it as root or through tests/run.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/initd-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
DIST=$WORK/dist

if ! make -s -C "$ROOT" wheel WHEEL_DIR="$DIST" >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    fail "make wheel did not build the wheel"
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || fail "no version in Cargo.toml"
mapfile -t wheels < <(find "$DIST" -maxdepth 1 -name '*.whl' -printf '%f\n')
[ "${#wheels[@]}" = 1 ] || fail "make wheel left ${#wheels[@]} wheels in $DIST (${wheels[*]}), not one"
whl=${wheels[0]}
want="initd_pid1-$version-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.musllinux_1_1_x86_64.whl"
[ "$whl" = "$want" ] || fail "the wheel is $whl, not $want"
ok "built $whl"

# The archive: its file list and the tags its WHEEL file declares.
python3 - "$DIST/$whl" "$version" <<'EOF' || fail "the wheel's contents are not the executable and its metadata alone"
import sys, zipfile
path, version = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(path)
names = sorted(z.namelist())
info = f"initd_pid1-{version}.dist-info"
want = sorted([f"initd_pid1-{version}.data/scripts/initd",
               f"{info}/METADATA", f"{info}/WHEEL", f"{info}/RECORD"])
if names != want:
    sys.exit(f"files {names}, expected {want}")
exe = z.getinfo(f"initd_pid1-{version}.data/scripts/initd")
if not (exe.external_attr >> 16) & 0o111:
    sys.exit("initd is not executable in the archive")
tags = sorted(l.split(": ", 1)[1] for l in z.read(f"{info}/WHEEL").decode().splitlines() if l.startswith("Tag: "))
want_tags = sorted(["py3-none-manylinux2014_x86_64", "py3-none-manylinux_2_17_x86_64", "py3-none-musllinux_1_1_x86_64"])
if tags != want_tags:
    sys.exit(f"WHEEL tags {tags}, expected {want_tags}")
meta = z.read(f"{info}/METADATA").decode()
if f"Name: initd-pid1\n" not in meta or f"Version: {version}\n" not in meta:
    sys.exit("METADATA does not name initd-pid1 " + version)
EOF
ok "the wheel holds bin/initd and its metadata, nothing else; tags manylinux_2_17 and musllinux_1_1"

# A fresh virtualenv, the wheel installed by name from the build directory
# only: no index, so nothing else can be picked up.
python3 -m venv "$WORK/venv" || fail "python3 -m venv failed"
"$WORK/venv/bin/pip" install -q --disable-pip-version-check --no-index --find-links "$DIST" initd-pid1 >"$WORK/pip.log" 2>&1 ||
    { cat "$WORK/pip.log" >&2; fail "pip install initd-pid1 from the wheel"; }
INITD=$WORK/venv/bin/initd
[ -x "$INITD" ] || fail "pip install put no executable initd into the virtualenv's bin/"
ok "pip install --no-index --find-links DIR initd-pid1: $INITD"

python3 - "$INITD" <<'EOF' || fail "the installed initd is not a static executable"
import struct, sys
data = open(sys.argv[1], "rb").read()
if data[:4] != b"\x7fELF" or data[4] != 2:
    sys.exit("not a 64-bit ELF file")
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
PT_DYNAMIC, PT_INTERP = 2, 3
if PT_INTERP in types or PT_DYNAMIC in types:
    sys.exit("it has an ELF interpreter or a dynamic section: it needs a libc to run")
EOF
ok "the installed initd is static (no ELF interpreter, no dynamic section)"

# As PID 1, found on the virtualenv's PATH as an activated one would be, with
# a clean environment.
pid1() {
    unshare --pid --fork --mount-proc --kill-child \
        env -i PATH="$WORK/venv/bin:/usr/local/bin:/usr/bin:/bin" INITD_SOCKET=off INITD_ALLOW_ROOT=true LANG=C.UTF-8 "$@"
}
out=$(pid1 initd exec -- true 2>&1) || fail "initd exec -- true as PID 1 exited $? ($out)"
set +e
pid1 initd exec -- sh -c 'exit 7' >/dev/null 2>&1
rc=$?
set -e
[ "$rc" = 7 ] || fail "initd exec -- sh -c 'exit 7' as PID 1 exited $rc, not the child's 7"
parent=$(pid1 initd exec -- sh -c 'echo "$PPID"' 2>/dev/null) || fail "initd exec -- sh -c 'echo \$PPID' failed"
[ "$parent" = 1 ] || fail "the child's parent is $parent, not initd as PID 1"
ok "from the virtualenv, as PID 1: initd exec -- true exits 0, a child's exit 7 comes back, the child's parent is PID 1"

text=$(pid1 initd version) || fail "initd version failed"
grep -qx "initd $version (.*)" <<<"$text" || fail "initd version does not start with 'initd $version': $text"
grep -qx "installed from: wheel" <<<"$text" || fail "initd version does not say 'installed from: wheel': $text"
ok "initd version: $(head -n1 <<<"$text"), installed from: wheel"

# No libc at all: a root holding the binary and nothing else (no /lib, no
# ld.so, no shell). PID 1 there execs a copy of itself.
mkdir -p "$WORK/bare"
install -m 755 "$INITD" "$WORK/bare/initd"
text=$(unshare --pid --fork --mount-proc --kill-child \
    env -i INITD_SOCKET=off INITD_ALLOW_ROOT=true "$(command -v chroot)" "$WORK/bare" /initd exec -- /initd version 2>&1) ||
    fail "in a root with nothing but the binary, initd exec -- /initd version failed: $text"
grep -qx "installed from: wheel" <<<"$text" || fail "in a root with nothing but the binary: $text"
[ -z "$(find "$WORK/bare" -mindepth 1 ! -name initd -print -quit)" ] || fail "the bare root was not bare"
ok "in a root with no libc, no loader and no shell, initd as PID 1 runs /initd version"
echo "tests/wheel.sh: all passed"
