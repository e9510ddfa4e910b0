from django.urls import path

from visits import views

urlpatterns = [
    path("", views.index, name="index"),
    path("healthz", views.healthz, name="healthz"),
    path("slow", views.slow, name="slow"),
    path("tasks/sum", views.task_sum, name="task-sum"),
    path("tasks/<str:task_id>", views.task_status, name="task-status"),
]
