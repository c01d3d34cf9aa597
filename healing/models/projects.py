"""Tenants (projects) and their ingest keys."""

import hashlib
import re
import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


def _new_public_key() -> str:
    return secrets.token_hex(16)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Project(models.Model):
    """A monitored product (tenant). The integer id is the Sentry DSN's project id."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    allowed_origins = models.JSONField(
        default=list, blank=True, help_text='Browser origins allowed to report, e.g. ["https://app.example.com"].'
    )
    rate_limit_per_minute = models.PositiveIntegerField(default=6000, help_text="Reports accepted per minute.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        origins = self.allowed_origins
        if not isinstance(origins, list) or not all(isinstance(o, str) and _is_origin(o) for o in origins):
            raise ValidationError(
                {
                    "allowed_origins": 'A list of origins (scheme, host and port only), such as "https://app.example.com".'
                }
            )


def regexes_check(instance: models.Model, fields: tuple[str, ...]) -> None:
    """The rules and patterns the owner edits hold regular expressions: refuse one that does not compile."""
    for field in fields:
        try:
            re.compile(getattr(instance, field))
        except re.error as exc:
            raise ValidationError({field: f"Not a valid regular expression: {exc}"}) from exc


def _is_origin(value: str) -> bool:
    """What a browser sends as Origin: scheme://host[:port], nothing after it."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.rstrip("/"))
    return (
        parts.scheme in ("http", "https") and bool(parts.netloc) and not (parts.path or parts.query or parts.fragment)
    )


class ProjectKey(models.Model):
    """A key pair: the public key goes in the browser and the DSN; the secret authenticates the
    owner's server calls and is stored only as a hash (shown once, at creation)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="keys")
    public_key = models.CharField(max_length=32, unique=True, default=_new_public_key)
    secret_hash = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.public_key[:8]}… ({'active' if self.is_active else 'revoked'})"
