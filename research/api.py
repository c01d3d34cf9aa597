"""GET /api/v1/whats-new: what shipped from the proposals, for the product to show its users.
Public: it says only what the owner has already released."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import WhatsNew


class WhatsNewQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    since = serializers.DateTimeField(required=False, help_text="Only entries published after this.")


class WhatsNewEntry(serializers.ModelSerializer):
    class Meta:
        model = WhatsNew
        fields = ("id", "title", "body", "changelog_line", "published_at")


class WhatsNewView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(parameters=[WhatsNewQuery], responses=WhatsNewEntry(many=True))
    def get(self, request: Request) -> Response:
        query = WhatsNewQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        entries = WhatsNew.objects.all()
        if "since" in query.validated_data:
            entries = entries.filter(published_at__gt=query.validated_data["since"])
        data = WhatsNewEntry(entries[: query.validated_data["limit"]], many=True).data
        return Response({"entries": data, "changelog": [entry["changelog_line"] for entry in data]})
