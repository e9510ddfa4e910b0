"""Process handling shared by the Python drivers of benches/reload.sh and
benches/poll.sh: start each measured program in a session of its own, find
the PID 1 that `unshare --pid --fork` made, read CPU time from /proc, and
leave nothing running when a driver ends or is interrupted."""
import os
import signal
import subprocess
import time

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
started = []


def spawn(argv, cwd, env, log):
    """argv in its own session, output appended to log; remembered for kill_all."""
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    started.append(p)
    return p


def stop(p):
    """TERM to p's session, then KILL after 15 s."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def kill_all():
    """KILL every session spawn() started that still runs."""
    for p in started:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def init_pid(unshare_pid):
    """The host pid of the PID 1 that unshare started (waits up to 30 s)."""
    for _ in range(6000):
        try:
            with open(f"/proc/{unshare_pid}/task/{unshare_pid}/children") as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit(f"no child of unshare {unshare_pid} after 30 s")


def cpu_ticks(pids):
    """utime + stime of the processes (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total
