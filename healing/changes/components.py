"""Components: the parts of the product a Change touches, with their tier, owner, SLOs and
rollback plan. Written from YAML files or the command line, validated before anything is saved."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as SpecError

from healing.audit import audit_record
from healing.changes.lifecycle import ChangeError
from healing.models import Component


class ComponentSpecError(ChangeError):
    def __init__(self, *, source: str, field: str, problem: str) -> None:
        self.source, self.field = source, field
        super().__init__(f"{source}: {field}: {problem}" if field else f"{source}: {problem}")


class ComponentSpec(BaseModel):
    """A component as written in its YAML file or on the command line."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    id: str = Field(pattern=r"^[-a-zA-Z0-9_]+$", max_length=100)
    name: str = Field(min_length=1, max_length=200)
    tier: int = Field(ge=1, le=3)
    owner: str = Field(default="", max_length=200)
    slo: dict[str, float] = Field(default_factory=dict)
    rollback_plan: str = ""


def component_spec_parse(data: Any, *, source: str) -> ComponentSpec:
    """Validate one component's fields; the error names the source and the first bad field."""
    if not isinstance(data, Mapping):
        raise ComponentSpecError(source=source, field="", problem="expected a mapping of component fields")
    try:
        return ComponentSpec.model_validate(dict(data))
    except SpecError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ComponentSpecError(source=source, field=where, problem=first["msg"]) from exc


def component_save(*, spec: ComponentSpec, actor: str) -> tuple[Component, bool]:
    """Create the component or bring it to `spec`; True when created. Audited when anything changed."""
    values = spec.model_dump(exclude={"id"})
    component = Component.objects.select_for_update().filter(pk=spec.id).first()
    if component is None:
        component = Component(id=spec.id, **values)
        component.full_clean()
        component.save(force_insert=True)
        audit_record(actor=actor, action="component.create", target=f"component:{spec.id}", detail=values)
        return component, True
    before = {name: getattr(component, name) for name in values}
    if before != values:
        for name, value in values.items():
            setattr(component, name, value)
        component.updated_at = timezone.now()
        component.full_clean()
        component.save()
        audit_record(
            actor=actor,
            action="component.update",
            target=f"component:{spec.id}",
            detail={"before": before, "after": values},
        )
    return component, False


def component_create(*, spec: ComponentSpec, actor: str) -> Component:
    with transaction.atomic():
        if Component.objects.filter(pk=spec.id).exists():
            raise ChangeError(f"Component {spec.id} exists already.")
        return component_save(spec=spec, actor=actor)[0]


def component_ensure(*, spec: ComponentSpec, actor: str) -> Component:
    """The component with this id, created from `spec` if missing (an existing one is kept as is)."""
    with transaction.atomic():
        existing = Component.objects.filter(pk=spec.id).first()
        if existing is not None:
            return existing
        try:
            with transaction.atomic():
                return component_save(spec=spec, actor=actor)[0]
        except IntegrityError:  # created meanwhile by someone else
            return Component.objects.get(pk=spec.id)


def components_load(*, paths: Sequence[Path], actor: str) -> list[Component]:
    """Create or update the components described in YAML files (one mapping, or a list of them,
    per file). Every file is validated before anything is written, and all are written in one
    transaction: a bad file leaves the components as they were."""
    specs: dict[str, tuple[ComponentSpec, str]] = {}
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ComponentSpecError(source=str(path), field="", problem=f"cannot be read: {exc}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ComponentSpecError(source=str(path), field="", problem=f"not valid YAML{where}") from exc
        entries = data if isinstance(data, list) else [data]
        for index, entry in enumerate(entries):
            source = f"{path}[{index}]" if isinstance(data, list) else str(path)
            spec = component_spec_parse(entry, source=source)
            if spec.id in specs:
                also = specs[spec.id][1]
                raise ComponentSpecError(source=source, field="id", problem=f"{spec.id} is also defined in {also}")
            specs[spec.id] = (spec, source)
    with transaction.atomic():
        return [component_save(spec=spec, actor=actor)[0] for spec, _ in specs.values()]
