from django.db import models


class Report(models.Model):
    type = models.CharField(max_length=32)
    message = models.TextField()
    route = models.CharField(max_length=500, blank=True)
    release = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=64, blank=True)
    payload = models.JSONField()
