"""What every page of the Manager's Console shares: who is acting, the before → after of a form
for the audit log, and read-only admins for the rows Kaizen writes itself."""

from typing import Any

from django import forms

from kaizen_site.diff import changes_between


def request_actor(request) -> str:
    """The console user, as the audit log names them."""
    return request.user.get_username()


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool | list | dict) else str(value)


def form_changes(form: forms.ModelForm, obj: Any, *, created: bool = False) -> dict[str, dict[str, Any]]:
    """Before → after of what the form changed (every field, for a new row), for the audit log.

    Call it before saving: `form.initial` holds the row as it was, `obj` the validated new values.
    """
    names = list(form.fields) if created else form.changed_data
    after = {name: _jsonable(getattr(obj, obj._meta.get_field(name).attname)) for name in names}
    before = {} if created else {name: _jsonable(form.initial.get(name)) for name in names}
    return changes_between(before, after)


class ReadOnlyMixin:
    """Rows written by Kaizen itself: the console shows them and nothing more."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
