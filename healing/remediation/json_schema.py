"""A small subset of JSON Schema, for the params an owner's webhook accepts.

Supported: type, properties, required, additionalProperties, items, enum, minLength, maxLength,
pattern, minimum, maximum (and title, description, default, $schema, which check nothing).
The schema itself is parsed by a pydantic model that forbids every other keyword, so an owner
cannot rely on one (oneOf, format…) that would silently go unchecked.
https://json-schema.org/understanding-json-schema/reference
"""

import re
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, JsonValue, NonNegativeInt, field_validator
from pydantic import ValidationError as PydanticError

JsonType = Literal["object", "array", "string", "integer", "number", "boolean", "null"]


class SchemaError(ValueError):
    """The schema uses something outside the subset, or is malformed."""


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    type: JsonType | list[JsonType] | None = None
    properties: dict[str, "Schema"] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    additionalProperties: Union[bool, "Schema"] = True  # noqa: UP007 - a forward reference cannot use |
    items: Union["Schema", None] = None  # noqa: UP007
    enum: list[JsonValue] | None = None
    minLength: NonNegativeInt | None = None
    maxLength: NonNegativeInt | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    title: str | None = None
    description: str | None = None
    default: JsonValue = None
    dialect: str | None = Field(None, alias="$schema")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


def schema_parse(data: Any) -> Schema:
    if not isinstance(data, dict):
        raise SchemaError("A JSON Schema is an object.")
    try:
        return Schema.model_validate(data)
    except PydanticError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()]
        raise SchemaError("; ".join(problems)) from exc


def _is_type(value: Any, name: str) -> bool:
    # bool is an int in Python, but not a number in JSON.
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}[name]
    return isinstance(value, expected)


def schema_problems(value: Any, schema: Schema, path: str = "params") -> list[str]:
    """Every way `value` breaks `schema`, each as "path: problem"; empty when it fits."""
    if schema.type is not None:
        types = [schema.type] if isinstance(schema.type, str) else schema.type
        if not any(_is_type(value, name) for name in types):
            return [f"{path}: expected {' or '.join(types)}"]
    problems: list[str] = []
    if schema.enum is not None and value not in schema.enum:
        problems.append(f"{path}: must be one of {schema.enum}")
    if isinstance(value, str):
        if schema.minLength is not None and len(value) < schema.minLength:
            problems.append(f"{path}: shorter than {schema.minLength} characters")
        if schema.maxLength is not None and len(value) > schema.maxLength:
            problems.append(f"{path}: longer than {schema.maxLength} characters")
        if schema.pattern is not None and not re.search(schema.pattern, value):
            problems.append(f"{path}: does not match {schema.pattern}")
    if _is_type(value, "number"):
        if schema.minimum is not None and value < schema.minimum:
            problems.append(f"{path}: below {schema.minimum:g}")
        if schema.maximum is not None and value > schema.maximum:
            problems.append(f"{path}: above {schema.maximum:g}")
    if isinstance(value, dict):
        problems += [f"{path}.{name}: required" for name in schema.required if name not in value]
        for name, item in value.items():
            if name in schema.properties:
                problems += schema_problems(item, schema.properties[name], f"{path}.{name}")
            elif schema.additionalProperties is False:
                problems.append(f"{path}.{name}: not allowed")
            elif isinstance(schema.additionalProperties, Schema):
                problems += schema_problems(item, schema.additionalProperties, f"{path}.{name}")
    if isinstance(value, list) and schema.items is not None:
        for index, item in enumerate(value):
            problems += schema_problems(item, schema.items, f"{path}[{index}]")
    return problems
