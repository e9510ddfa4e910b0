"""The example app's Celery application: `celery -A example worker`.

Its settings are the CELERY_* names in example/settings.py (the broker from
CELERY_BROKER_URL, Redis in the compose files); tasks are found in each
installed app's tasks.py (visits/tasks.py)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

app = Celery("example")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
