"""Make sure the demo project and an admin account exist, and print how to report to it."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from flags.models import Flag, PromotionPolicy
from flags.services import flag_create
from healing.demo import DEMO_FLAGS, HOOK_RESYNC_CREDITS, hook_secret
from healing.models import Project, RemediationHook
from healing.projects import key_issue, project_create

DEMO_ORIGINS = ["http://localhost:8000", "http://127.0.0.1:8000"]


class Command(BaseCommand):
    help = "Create the demo project (and an admin user) if missing; print its ingest key."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1:8000", help="Where the API is served, for the examples.")

    @transaction.atomic
    def handle(self, *args, host: str, **options):
        secret = None
        project = Project.objects.filter(slug="demo").first()
        if project is None:
            project, issued = project_create(
                slug="demo", name="Demo product", allowed_origins=DEMO_ORIGINS, actor="kaizen"
            )
            key, secret = issued.key, issued.secret
        else:
            key = project.keys.filter(is_active=True).order_by("-created_at").first()
            if key is None:
                issued = key_issue(project=project)
                key, secret = issued.key, issued.secret

        for flag_key, description in DEMO_FLAGS.items():
            if not Flag.objects.filter(project=project, key=flag_key).exists():
                # On, at 0 %: nobody has the fix until the healing loop turns it on for a user.
                flag_create(project=project, key=flag_key, description=description, enabled=True, actor="kaizen")

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
                "updated_by": "kaizen",
            },
        )

        User = get_user_model()
        password = None
        if not User.objects.filter(username="admin").exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "", password)

        out = self.stdout.write
        out(self.style.SUCCESS(f"Demo project '{project.slug}' (id {project.id})"))
        out(f"  ingest key : {key.public_key}")
        if secret:
            out(f"  secret key : {secret}   (shown once)")
        out(f"  Sentry DSN : http://{key.public_key}@{host}/{project.id}")
        out(
            f"  try it     : curl -X POST 'http://{host}/api/v1/issues' -H 'X-Kaizen-Key: {key.public_key}' "
            '-H \'Content-Type: application/json\' -d \'{"type": "SILENT_FAILURE", "message": "Generate did nothing"}\''
        )
        if password:
            out(f"  console    : http://{host}/admin/  user admin, password {password}   (shown once)")
        else:
            out(f"  console    : http://{host}/admin/  user admin")
        out(f"  demo       : http://{host}/demo/  (with KAIZEN_DEMO=1, as `make run` sets)")
