"""The baseline: a plain DRF ModelViewSet.create of the same payload into one table."""

from django.urls import include, path
from rest_framework import routers, serializers, viewsets

from .models import Report


class ReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = Report
        fields = ["id", "type", "message", "route", "release", "environment"]


class ReportViewSet(viewsets.ModelViewSet):
    queryset = Report.objects.all()
    serializer_class = ReportSerializer

    def perform_create(self, serializer):
        serializer.save(payload=self.request.data)  # the whole report, as the native endpoint keeps it


router = routers.SimpleRouter(trailing_slash=False)
router.register("api/v1/issues", ReportViewSet)
urlpatterns = [path("", include(router.urls))]
