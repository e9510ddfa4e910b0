"""The WSGI entry point: initd's `initd run` finds this file and starts
gunicorn with example.wsgi:application."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

application = get_wsgi_application()
