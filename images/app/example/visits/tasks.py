import os
import socket
import time

from celery import shared_task

from .models import Visit

# Part of every result; the dev-mode test edits this line in a bind-mounted
# checkout and expects the next task to return the change (the worker is
# restarted by `initd dev`).
TASK_NOTE = "Summed by the initd example worker."


@shared_task
def slow_sum(x, y, seconds=0.0):
    """x + y after `seconds` of sleep: a task that is still running when a
    `docker stop` comes, for the warm-shutdown test. Also reads the database,
    which the worker reaches with the same secrets as the web app."""
    time.sleep(seconds)
    return {
        "sum": x + y,
        "note": TASK_NOTE,
        "slept": seconds,
        "visits": Visit.objects.count(),
        "worker": socket.gethostname(),
        "uid": os.getuid(),
    }
