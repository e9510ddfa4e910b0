import os
import socket
import time

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from .models import Visit

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
