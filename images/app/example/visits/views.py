import os
import socket
import time

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from celery.result import AsyncResult

from .models import Visit
from .tasks import slow_sum

# Shown on the front page; the dev-mode test edits this line in a
# bind-mounted checkout and expects the next request to serve the change.
GREETING = "Hello from the initd example app."

# The request headers a TLS-terminating proxy sets, shown so a deployment can
# be checked with one `curl -k https://localhost/`.
PROXY_HEADERS = ["Host", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Proto"]


def index(request):
    client = request.headers.get("X-Real-IP") or request.META.get("REMOTE_ADDR", "")
    Visit.objects.create(client=client[:64], scheme=request.scheme)
    context = {
        "greeting": GREETING,
        "headers": [(name, request.headers.get(name, "-")) for name in PROXY_HEADERS],
        "secure": request.is_secure(),
        "visits": Visit.objects.count(),
        "recent": Visit.objects.all()[:5],
        "database": connection.vendor,
        "uid": os.getuid(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }
    return render(request, "index.html", context)


def healthz(request):
    """200 when the app can reach its database and the table exists."""
    try:
        Visit.objects.exists()
    except Exception as exc:  # any database trouble makes the replica unhealthy
        return JsonResponse({"status": "error", "error": exc.__class__.__name__}, status=503)
    return JsonResponse({"status": "ok", "database": connection.vendor})


def slow(request):
    """Answers after ?s= seconds (at most 10): an in-flight request for
    graceful-stop tests."""
    try:
        seconds = min(max(float(request.GET.get("s", "2")), 0.0), 10.0)
    except ValueError:
        return HttpResponse("s must be a number of seconds\n", status=400, content_type="text/plain")
    time.sleep(seconds)
    return HttpResponse(f"done after {seconds:g}s\n", content_type="text/plain")


def _task_json(result, status=200):
    body = {"id": result.id, "state": result.state}
    if result.successful():
        body["result"] = result.result
    elif result.failed():
        body["error"] = repr(result.result)
    return JsonResponse(body, status=status)


def _number(request, name, default, low, high):
    value = float(request.GET.get(name, default))
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}")
    return value


def task_sum(request):
    """Queues slow_sum(x, y, s) for the Celery worker and answers with the
    task's id and state; with ?wait=N it waits up to N seconds for the
    result. /tasks/<id> shows the task later."""
    try:
        x = int(request.GET.get("x", "2"))
        y = int(request.GET.get("y", "3"))
        seconds = _number(request, "s", "0", 0, 15)
        wait = _number(request, "wait", "0", 0, 30)
    except ValueError as exc:
        return HttpResponse(f"{exc}\n", status=400, content_type="text/plain")
    try:
        result = slow_sum.delay(x, y, seconds)
    except Exception as exc:  # the broker is down or unreachable
        return JsonResponse({"state": "NOT QUEUED", "error": f"{exc.__class__.__name__}: {exc}"}, status=503)
    if wait:
        try:
            result.get(timeout=wait, propagate=False)
        except Exception:  # not done yet: answer with the state it is in
            pass
    return _task_json(result, status=202 if not result.ready() else 200)


def task_status(request, task_id):
    """A queued task's state (PENDING, STARTED, SUCCESS, FAILURE) and, once
    done, its result, from the result backend."""
    return _task_json(AsyncResult(task_id))
