"""The console's admin site: the stock Django admin, for the owner only, past a second factor.

It is `admin.site` itself (OwnerAdminConfig.default_site), so every `@admin.register` in the apps
registers here, and every ModelAdmin registered is given AuditedAdmin: what the admin logs to its
own LogEntry table, and every admin action run, also goes to the read-only audit log with the
client's address.
"""

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.db.models.base import ModelBase
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse

from .security import two_factor
from .security.audit import console_audit
from .security.owners import console_owner, has_confirmed_device, is_owner, otp_verified

MAX_AUDITED_IDS = 200  # an action over thousands of rows records the first ones and the count


class OwnerAuthenticationForm(AdminAuthenticationForm):
    """The password step. Accounts that are not the owner's are refused with the same message as a
    wrong password, so the form tells nobody which usernames exist or who the owner is."""

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if not is_owner(user):
            raise ValidationError(
                self.error_messages["invalid_login"], code="invalid_login",
                params={"username": self.username_field.verbose_name},
            )  # fmt: skip


def _target(obj) -> str:
    return f"{obj._meta.label_lower}:{obj.pk}"


class AuditedAdmin:
    """Mixed into every registered ModelAdmin by OwnerAdminSite.register."""

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        if entry is None:  # the ModelAdmin keeps its own record (it audits what it does itself)
            return entry
        console_audit(actor=request.user.get_username(), action="admin.add", target=_target(obj),
                      detail={"object": str(obj), "change": entry.get_change_message()})  # fmt: skip
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        if not message or entry is None:  # nothing changed, or the ModelAdmin audits what it does itself
            return entry
        console_audit(actor=request.user.get_username(), action="admin.change", target=_target(obj),
                      detail={"object": str(obj), "change": entry.get_change_message()})  # fmt: skip
        return entry

    def log_deletions(self, request, queryset):
        # Called before the rows are deleted: their ids and names are still there to record.
        for obj in queryset:
            console_audit(actor=request.user.get_username(), action="admin.delete", target=_target(obj),
                          detail={"object": str(obj)})  # fmt: skip
        return super().log_deletions(request, queryset)

    def response_action(self, request, queryset):
        response = super().response_action(request, queryset)
        # An action that answers with a page (a confirmation, a report) has not acted yet; the
        # redirect (or file) it answers once done is what is recorded. Invalid choices answer None.
        if isinstance(response, HttpResponseRedirect) or (response is not None and not hasattr(response, "render")):
            selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            select_all = request.POST.get("select_across") == "1"
            console_audit(
                actor=request.user.get_username(),
                action="admin.action",
                target=self.model._meta.label_lower,
                detail={"action": request.POST.get("action", ""), "all_matching": select_all,
                        "ids": selected[:MAX_AUDITED_IDS], "count": len(selected)},
            )  # fmt: skip
        return response


class OwnerAdminSite(admin.AdminSite):
    login_form = OwnerAuthenticationForm

    def has_permission(self, request) -> bool:
        return console_owner(request=request, user=request.user)

    def login(self, request, extra_context=None):
        """After the password, the second factor: set it up on the first sign-in, else ask for a code."""
        if request.method == "GET" and is_owner(request.user) and not otp_verified(request=request, user=request.user):
            step = "admin:two_factor" if has_confirmed_device(request.user) else "admin:two_factor_setup"
            target = request.GET.get("next", "")
            return redirect(
                reverse(step, current_app=self.name) + (f"?{urlencode({'next': target}, safe='/')}" if target else "")
            )
        return super().login(request, extra_context)

    def get_urls(self):
        own = [
            path("two-factor/", two_factor.verify_view, name="two_factor"),
            path("two-factor/setup/", two_factor.setup_view, name="two_factor_setup"),
            path("two-factor/sign-out/", two_factor.sign_out_view, name="two_factor_sign_out"),
        ]
        return own + super().get_urls()

    def register(self, model_or_iterable, admin_class=None, **options):
        base = admin_class or admin.ModelAdmin
        if not issubclass(base, AuditedAdmin):
            base = type(base.__name__, (AuditedAdmin, base), {"__module__": base.__module__, "__doc__": base.__doc__})
        models = [model_or_iterable] if isinstance(model_or_iterable, ModelBase) else model_or_iterable
        return super().register(models, base, **options)
