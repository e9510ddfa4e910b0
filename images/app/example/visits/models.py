from django.db import models


class Visit(models.Model):
    """One request to the front page: the one table the example migrates."""

    at = models.DateTimeField(auto_now_add=True)
    client = models.CharField(max_length=64, blank=True)
    scheme = models.CharField(max_length=8)

    class Meta:
        ordering = ["-at"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.client} {self.scheme}"
