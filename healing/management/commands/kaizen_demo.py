"""Make sure the demo project and an admin account exist, and print how to report to it.

Every address it prints and the browser origins the demo project accepts come from
KAIZEN_PUBLIC_URL, the address `make run` serves on.
"""

import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from flags.models import Flag, PromotionPolicy
from flags.services import flag_create
from healing.audit import AUTOMATIC
from healing.demo.product import DEMO_FLAGS, HOOK_RESYNC_CREDITS, hook_secret
from healing.models import Project, RemediationHook
from healing.projects import key_issue, project_create, project_origins_add
from kaizen_site.runtime import public_origins

# The demo admin's address when KAIZEN_OWNER_EMAILS names none (`make run` lists this one there).
DEMO_OWNER_EMAIL = "owner@kaizen.localhost"


def sentry_dsn(*, public_url: str, public_key: str, project_id: int) -> str:
    parts = urlsplit(public_url)
    return f"{parts.scheme}://{public_key}@{parts.netloc}{parts.path}/{project_id}"


class Command(BaseCommand):
    help = "Create the demo project (and an admin user) if missing; print its ingest key."

    @transaction.atomic
    def handle(self, *args, **options):
        base = settings.KAIZEN_PUBLIC_URL
        origins = public_origins(base)
        secret = None
        project = Project.objects.filter(slug="demo").first()
        if project is None:
            project, issued = project_create(slug="demo", name="Demo product", allowed_origins=origins, actor=AUTOMATIC)
            key, secret = issued.key, issued.secret
        else:
            # KAIZEN_PUBLIC_URL may have moved since the project was made: the page must still report.
            project_origins_add(project=project, origins=origins, actor=AUTOMATIC)
            key = project.keys.filter(is_active=True).order_by("-created_at").first()
            if key is None:
                issued = key_issue(project=project)
                key, secret = issued.key, issued.secret

        for flag_key, description in DEMO_FLAGS.items():
            if not Flag.objects.filter(project=project, key=flag_key).exists():
                # On, at 0 %: nobody has the fix until the healing loop turns it on for a user.
                flag_create(project=project, key=flag_key, description=description, enabled=True, actor=AUTOMATIC)

        RemediationHook.objects.update_or_create(
            project=project,
            name=HOOK_RESYNC_CREDITS,
            defaults={
                "description": "Demo: ask the payment provider again and apply the user's pending credits.",
                "url": settings.KAIZEN_SANDBOX_URL.rstrip("/") + "/demo/hooks/resync-credits",
                "secret": hook_secret(),
            },
        )

        # The demo lets Kaizen take a verified fix to everyone on its own, at any hour, and run the
        # owner's credit-resync webhook (medium risk) unattended, so a person can watch an issue go all
        # the way through; a real project starts from the stricter default.
        PromotionPolicy.objects.get_or_create(
            project=project,
            defaults={
                "max_auto_risk": "medium",
                "max_auto_exposure": 100,
                "blocked_from_hour": None,
                "blocked_to_hour": None,
                "updated_by": AUTOMATIC,
            },
        )

        # The console admits only KAIZEN_OWNER_EMAILS (`make run` puts DEMO_OWNER_EMAIL there): the
        # demo's admin account carries the first of them, so a newcomer only adds an authenticator app.
        owner_email = next(iter(settings.KAIZEN_OWNER_EMAILS), DEMO_OWNER_EMAIL)
        User = get_user_model()
        password = None
        admin_user = User.objects.filter(username="admin").first()
        if admin_user is None:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", owner_email, password)
        elif not admin_user.email:
            admin_user.email = owner_email
            admin_user.save(update_fields=["email"])
        else:
            owner_email = admin_user.email

        out = self.stdout.write
        out(self.style.SUCCESS(f"Demo project '{project.slug}' (id {project.id})"))
        out(f"  ingest key : {key.public_key}")
        if secret:
            out(f"  secret key : {secret}   (shown once)")
        out(f"  Sentry DSN : {sentry_dsn(public_url=base, public_key=key.public_key, project_id=project.id)}")
        out(
            f"  try it     : curl -X POST '{base}/api/v1/issues' -H 'X-Kaizen-Key: {key.public_key}' "
            '-H \'Content-Type: application/json\' -d \'{"type": "SILENT_FAILURE", "message": "Generate did nothing"}\''
        )
        if password:
            out(f"  console    : {base}/admin/  user admin, password {password}   (shown once)")
        else:
            out(f"  console    : {base}/admin/  user admin")
        out(f"  2FA        : at the first sign-in, scan the QR code with an authenticator app (owner {owner_email})")
        if owner_email.lower() not in {address.lower() for address in settings.KAIZEN_OWNER_EMAILS}:
            out(self.style.WARNING(f"  KAIZEN_OWNER_EMAILS does not list {owner_email}: the console will refuse admin"))
        out(f"  demo       : {base}/demo/  (with KAIZEN_DEMO=1, as `make run` sets)")
        out(f"  API docs   : {base}/api/docs/")
        out(f"  streams    : {settings.KAIZEN_STREAM_URL}/api/v1/sessions/<id>/events  (the users' live popups)")
