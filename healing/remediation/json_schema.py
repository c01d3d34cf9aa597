"""The JSON Schema an owner's webhook states for its params, checked with `jsonschema` — limited
to the keywords below, so an owner cannot rely on one (oneOf, format…) this check would not
apply as they expect; each problem is reported as "path: problem", as the console shows it.
https://json-schema.org/understanding-json-schema/reference
"""

import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema import SchemaError as JsonSchemaError

# Keywords that check something, and those that only describe.
CHECKED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
    }
)
DESCRIPTIVE = frozenset({"title", "description", "default", "$schema"})


class SchemaError(ValueError):
    """The schema uses a keyword outside the allow-list, or is malformed."""


def _keyword_problems(schema: Any, where: str) -> Iterator[str]:
    if not isinstance(schema, dict):
        yield f"{where or '(top)'}: a schema is an object"
        return
    prefix = f"{where}." if where else ""
    for keyword in sorted(schema.keys() - CHECKED - DESCRIPTIVE):
        yield f"{prefix}{keyword}: not a keyword Kaizen checks"
    if isinstance(schema.get("pattern"), str):
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            yield f"{prefix}pattern: not a valid regular expression: {exc}"
    for name, sub in (schema.get("properties") or {}).items() if isinstance(schema.get("properties"), dict) else ():
        yield from _keyword_problems(sub, f"{prefix}properties.{name}")
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            yield from _keyword_problems(schema[keyword], f"{prefix}{keyword}")


def schema_parse(data: Any) -> Draft202012Validator:
    """The validator for `data`, once it is a well-formed schema using only allowed keywords."""
    if not isinstance(data, dict):
        raise SchemaError("A JSON Schema is an object.")
    problems = list(_keyword_problems(data, ""))
    if problems:
        raise SchemaError("; ".join(problems))
    try:
        Draft202012Validator.check_schema(data)
    except JsonSchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top)"
        raise SchemaError(f"{where}: {exc.message}") from exc
    return Draft202012Validator(data)


def _path(error: ValidationError, root: str) -> str:
    return root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def _messages(error: ValidationError, path: str) -> list[str]:
    keyword, expected, value = error.validator, error.validator_value, error.instance
    if keyword == "type":
        return [f"{path}: expected {' or '.join([expected] if isinstance(expected, str) else expected)}"]
    if keyword == "enum":
        return [f"{path}: must be one of {expected}"]
    if keyword == "minLength":
        return [f"{path}: shorter than {expected} characters"]
    if keyword == "maxLength":
        return [f"{path}: longer than {expected} characters"]
    if keyword == "pattern":
        return [f"{path}: does not match {expected}"]
    if keyword == "minimum":
        return [f"{path}: below {expected:g}"]
    if keyword == "maximum":
        return [f"{path}: above {expected:g}"]
    if keyword == "required":
        return [f"{path}.{name}: required" for name in expected if name not in value]
    if keyword == "additionalProperties":
        known = error.schema.get("properties") or {}
        return [f"{path}.{name}: not allowed" for name in value if name not in known]
    return [f"{path}: {error.message}"]


def schema_problems(value: Any, schema: Draft202012Validator, path: str = "params") -> list[str]:
    """Every way `value` breaks `schema`, each as "path: problem"; empty when it fits. A value of
    the wrong type gets that one problem: the rest of its checks would only repeat it."""
    errors = list(schema.iter_errors(value))
    mistyped = {_path(e, path) for e in errors if e.validator == "type"}
    problems: list[str] = []
    for error in errors:
        where = _path(error, path)
        if error.validator != "type" and any(where == p or where.startswith((p + ".", p + "[")) for p in mistyped):
            continue
        for message in _messages(error, where):
            if message not in problems:  # `required` reports one error per missing name
                problems.append(message)
    return problems
