"""Settings of the example app: everything that differs between a laptop,
CI and production comes from the environment (and so may come from a Docker
secret through initd: SECRET_KEY_FILE=/run/secrets/secret_key becomes
SECRET_KEY before Python starts)."""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def database_from_url(url):
    """DATABASES["default"] from a DATABASE_URL (postgres://user[:pw]@host[:port]/db
    or sqlite:///path). A URL without a password leaves it to libpq, which
    takes PGPASSWORD, so the password can be a secret of its own."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path[1:] or ":memory:"}
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL: unsupported scheme {parts.scheme!r} (use postgres:// or sqlite:///)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Keep connections between requests; check them before reuse so a
        # database restart costs one failed check, not a failed request.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


DEBUG = env_flag("DJANGO_DEBUG")

# No default in production: a missing key must stop the app, not run it with
# a well-known one. DEBUG (the dev server, the demo) gets a throwaway key.
SECRET_KEY = os.environ.get("SECRET_KEY") or ("dev-only-insecure-key" if DEBUG else None)
if not SECRET_KEY:
    raise RuntimeError("SECRET_KEY is not set (give it as a Docker secret: SECRET_KEY_FILE=/run/secrets/secret_key)")

ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h.strip()]

# nginx terminates TLS and says so in X-Forwarded-Proto; only trust it because
# the app is reachable from nginx alone (an internal network).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "visits",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

# The asset watcher (assets/build.mjs) writes into static/build; collectstatic
# gathers it into STATIC_ROOT at image build time, and WhiteNoise serves it
# from there with far-future caching. In DEBUG it serves straight from
# static/, so a rebuilt asset is live at the next request.
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Celery (example/celery.py): the broker and the result backend are Redis
# (the compose files' `redis` service). STARTED is recorded, so a page can
# tell a queued task from a running one (the stop test waits for it).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TRACK_STARTED = True
# A task running longer is killed: the worker's warm shutdown (docker stop)
# then never needs more than this (docs/docker.md: the stop arithmetic).
CELERY_TASK_TIME_LIMIT = 20
CELERY_RESULT_EXPIRES = 24 * 3600
# Without Redis, a request to /tasks/sum answers 503 within seconds rather
# than after the result store's default 20 retries.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"retry_policy": {"max_retries": 3}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
