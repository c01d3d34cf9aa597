"""What the flags API accepts and answers (the same classes document it in the OpenAPI schema)."""

from rest_framework import serializers

from flags.models import Flag, FlagStatus

MAX_BATCH = 1000

# User ids are hashed as sent: trimming whitespace would silently move a user to another bucket.
UserId = dict(max_length=200, trim_whitespace=False)


class UserQuery(serializers.Serializer):
    user = serializers.CharField(**UserId, help_text="The user whose flags to evaluate.")


class FlagsForUser(serializers.Serializer):
    user = serializers.CharField()
    version = serializers.IntegerField(help_text="The project's flag-set version these answers come from.")
    flags = serializers.DictField(child=serializers.BooleanField(), help_text="Flag key → on for this user.")


class EvaluateItem(serializers.Serializer):
    flag = serializers.CharField(max_length=100)
    user = serializers.CharField(**UserId)


class EvaluateRequest(serializers.Serializer):
    items = EvaluateItem(many=True, allow_empty=False, max_length=MAX_BATCH, help_text=f"Up to {MAX_BATCH} pairs.")


class EvaluateResult(serializers.Serializer):
    flag = serializers.CharField()
    user = serializers.CharField()
    enabled = serializers.BooleanField()
    reason = serializers.ChoiceField(choices=["killed", "override", "disabled", "rollout", "probe"])


class EvaluateResponse(serializers.Serializer):
    version = serializers.IntegerField()
    results = EvaluateResult(many=True)


class WhyBody(serializers.Serializer):
    why = serializers.CharField(max_length=2000, required=False, allow_blank=True, help_text="Kept in the history.")


class FlagUpdateBody(WhyBody):
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    enabled = serializers.BooleanField(required=False)
    rollout_percentage = serializers.IntegerField(required=False, min_value=0, max_value=100)
    group_id = serializers.CharField(required=False, allow_blank=True, max_length=100)
    status = serializers.ChoiceField(required=False, choices=FlagStatus.choices)

    def validate(self, attrs):
        if not set(attrs) - {"why"}:
            raise serializers.ValidationError("Nothing to change.", code="empty")
        return attrs


class FlagOut(serializers.ModelSerializer):
    class Meta:
        model = Flag
        fields = [
            "key", "description", "enabled", "rollout_percentage", "group_id", "status",
            "killed", "killed_at", "killed_by", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields
