#!/usr/bin/env python3
"""Run a command on a fresh pseudo-terminal as a person at a keyboard would.

    keyboard.py --wait REGEX [--timeout S] [--keys ctrl-c] [--exit-within S] -- CMD...

Starts CMD with its standard streams on the slave side of a new pty (its
controlling terminal), echoes what it prints to stderr, waits until the
output matches REGEX, then types the keys (Ctrl-C by default) and waits for
CMD to end. Prints one line on stdout: `exit=N seconds=S` (N is 128+signal
when CMD died of a signal). Exits 0 when CMD ended within --exit-within
seconds of the keys, 1 otherwise (CMD is then killed), 2 when REGEX never
showed within --timeout.
"""
import argparse
import os
import pty
import re
import select
import signal
import sys
import time

KEYS = {"ctrl-c": b"\x03", "ctrl-d": b"\x04", "ctrl-backslash": b"\x1c"}


def read_some(fd, deadline):
    """What the terminal shows before the deadline: bytes, or None at its end."""
    left = max(0.0, deadline - time.monotonic())
    ready, _, _ = select.select([fd], [], [], left)
    if not ready:
        return b""
    try:
        data = os.read(fd, 65536)
    except OSError:  # EIO: every slave descriptor is closed
        return None
    if not data:
        return None
    sys.stderr.buffer.write(data)
    sys.stderr.flush()
    return data


def reap(pid, deadline):
    """The child's exit code, waiting until the deadline; None if still running."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wait", required=True, help="regular expression to wait for in the output")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--keys", default="ctrl-c", choices=sorted(KEYS))
    parser.add_argument("--exit-within", type=float, default=10.0)
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command after --")

    pid, master = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)

    wanted = re.compile(args.wait.encode())
    seen = b""
    deadline = time.monotonic() + args.timeout
    while not wanted.search(seen):
        data = read_some(master, deadline)
        if data is None or time.monotonic() >= deadline:
            print(f"keyboard.py: '{args.wait}' did not show within {args.timeout:.0f}s", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)
            reap(pid, time.monotonic() + 5)
            return 2
        seen = seen[-65536:] + data

    os.write(master, KEYS[args.keys])
    typed = time.monotonic()
    end = typed + args.exit_within
    code = None
    while code is None and time.monotonic() < end:
        if read_some(master, min(end, time.monotonic() + 0.1)) is None:
            code = reap(pid, end)
            break
        code = reap(pid, time.monotonic())
    took = time.monotonic() - typed
    if code is None:
        print(f"keyboard.py: still running {args.exit_within:.0f}s after {args.keys}; killing it", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
        reap(pid, time.monotonic() + 5)
        print(f"exit=none seconds={took:.2f}")
        return 1
    print(f"exit={code} seconds={took:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
