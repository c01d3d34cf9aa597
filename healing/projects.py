"""Projects and their keys: creating, rotating, and resolving a public key on the hot path."""

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from healing.audit import audit_record
from healing.models import Project, ProjectKey, hash_secret
from kaizen_site.process_cache import ProcessCache


@dataclass(frozen=True)
class ProjectAuth:
    """What the ingest path needs to know about the project a key belongs to."""

    project_id: int
    slug: str
    key_active: bool
    project_active: bool
    rate_limit_per_minute: int
    allowed_origins: frozenset[str]


@dataclass(frozen=True)
class IssuedKey:
    key: ProjectKey
    secret: str  # shown once; only its hash is stored


def key_issue(*, project: Project) -> IssuedKey:
    secret = secrets.token_hex(24)
    key = ProjectKey.objects.create(project=project, secret_hash=hash_secret(secret))
    return IssuedKey(key=key, secret=secret)


def project_create(
    *, slug: str, name: str, allowed_origins: list[str] | None = None, actor: str
) -> tuple[Project, IssuedKey]:
    with transaction.atomic():
        project = Project(slug=slug, name=name, allowed_origins=allowed_origins or [])
        project.full_clean()
        project.save()
        issued = key_issue(project=project)
        audit_record(actor=actor, action="project.create", target=f"project:{project.slug}")
    return project, issued


def project_origins_add(*, project: Project, origins: list[str], actor: str) -> list[str]:
    """Allow more browser origins for the project, keeping those it has; returns the ones added.
    Audited when anything was added."""
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        missing = [origin for origin in origins if origin not in project.allowed_origins]
        if missing:
            before = list(project.allowed_origins)
            project.allowed_origins = [*before, *missing]
            project.full_clean()
            project.save(update_fields=["allowed_origins"])
            audit_record(
                actor=actor,
                action="project.update",
                target=f"project:{project.slug}",
                detail={"before": {"allowed_origins": before}, "after": {"allowed_origins": project.allowed_origins}},
            )
    return missing


def key_rotate(*, project: Project, actor: str) -> IssuedKey:
    """Revoke every active key of the project and issue a new one."""
    with transaction.atomic():
        revoked = list(project.keys.filter(is_active=True).values_list("public_key", flat=True))
        project.keys.filter(is_active=True).update(is_active=False, revoked_at=timezone.now())
        issued = key_issue(project=project)
        audit_record(
            actor=actor,
            action="project.rotate_key",
            target=f"project:{project.slug}",
            detail={"revoked": [k[:8] for k in revoked], "new": issued.key.public_key[:8]},
        )
    forget_keys()
    return issued


# Bounded: random bad keys must not grow memory without end.
_keys: ProcessCache[ProjectAuth | None] = ProcessCache(ttl=lambda: settings.KAIZEN_KEY_CACHE_SECONDS, maxsize=10_000)


def forget_keys() -> None:
    _keys.clear()


def project_for_key(public_key: str) -> ProjectAuth | None:
    """Resolve a public key, cached in-process for KAIZEN_KEY_CACHE_SECONDS: the ingest path must
    not pay a query per report. Unknown keys are cached too, so a flood of bad keys is cheap."""
    if "\x00" in public_key:  # no key holds a NUL, and PostgreSQL refuses to even compare one
        return None
    return _keys.get(public_key, lambda: _project_auth_load(public_key))


def _project_auth_load(public_key: str) -> ProjectAuth | None:
    row = (
        ProjectKey.objects.filter(public_key=public_key)
        .values(
            "is_active",
            "project_id",
            "project__slug",
            "project__is_active",
            "project__rate_limit_per_minute",
            "project__allowed_origins",
        )  # fmt: skip
        .first()
    )
    if row is None:
        return None
    return ProjectAuth(
        project_id=row["project_id"],
        slug=row["project__slug"],
        key_active=row["is_active"],
        project_active=row["project__is_active"],
        rate_limit_per_minute=row["project__rate_limit_per_minute"],
        allowed_origins=frozenset(o.rstrip("/") for o in row["project__allowed_origins"] or []),
    )
