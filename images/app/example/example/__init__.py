# Loaded with Django, so `slow_sum.delay()` in a view uses this app's broker.
from .celery import app as celery_app

__all__ = ("celery_app",)
