"""Included at admin/, before the admin site: the console's manifest and service worker."""

from django.urls import path

from . import views

urlpatterns = [
    path("manifest.webmanifest", views.manifest, name="console-manifest"),
    path("sw.js", views.service_worker, name="console-service-worker"),
    path("push/beams/<str:name>", views.beams_module, name="console-beams-module"),
]
