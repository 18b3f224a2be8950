"""Checking a tool's input against the JSON Schema that Claude was shown.

A small validator for the subset of JSON Schema our tools declare; no third-party validator
is installed and the subset is small. ``check_schema`` refuses, when the tools are wired, any
keyword or type outside the subset, so a schema can never promise Claude a rule that is not
enforced here. ``validate`` answers the first problem with an input, as text for Claude.

The subset: ``type`` (object, string, integer, number, boolean), ``properties``,
``required``, ``additionalProperties`` (a boolean), ``enum``, ``minLength``, ``maxLength``,
``pattern``, ``minimum``, ``maximum``, ``array`` with ``items``, ``minItems`` and ``maxItems``
(an array always has a ``maxItems``: what Claude sends is bounded), plus the annotations ``description`` and ``title``.
``pattern`` matches anywhere in the string, as JSON Schema says; Python's ``$`` also matches
before a final newline, which is one reason values bound for a URL path are checked again,
whole, by ``integrations.routes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from integrations.errors import SchemaError

_ANNOTATIONS = frozenset({"description", "title"})
_KEYWORDS: Mapping[str, frozenset[str]] = {
    "object": frozenset({"type", "properties", "required", "additionalProperties"}),
    "string": frozenset({"type", "enum", "minLength", "maxLength", "pattern"}),
    "integer": frozenset({"type", "enum", "minimum", "maximum"}),
    "number": frozenset({"type", "enum", "minimum", "maximum"}),
    "boolean": frozenset({"type", "enum"}),
    "array": frozenset({"type", "items", "minItems", "maxItems"}),
}


def check_schema(schema: Mapping[str, Any]) -> None:
    """Refuses a tool's input schema that is not an object or leaves the subset."""
    if schema.get("type") != "object":
        raise SchemaError("a tool's input schema must have type object")
    _check(schema, "input")


def _check(schema: Mapping[str, Any], where: str) -> None:
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _KEYWORDS:
        raise SchemaError(f"{where}: type must be one of {', '.join(_KEYWORDS)}")
    if unknown := sorted(set(schema) - _KEYWORDS[kind] - _ANNOTATIONS):
        raise SchemaError(f"{where}: unsupported keyword(s) for {kind}: {', '.join(unknown)}")
    if kind == "object":
        _check_object(schema, where)
    if kind == "array":
        _check_array(schema, where)
    _check_bounds(schema, where)
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise SchemaError(f"{where}: enum must be a non-empty list")
        if wrong := [v for v in values if _type_problem(kind, v)]:
            raise SchemaError(f"{where}: enum value {wrong[0]!r} is not of type {kind}")


def _check_bounds(schema: Mapping[str, Any], where: str) -> None:
    for bound in ("minLength", "maxLength", "minItems", "maxItems"):
        if bound in schema and not _is_int(schema[bound]):
            raise SchemaError(f"{where}: {bound} must be an integer")
    for bound in ("minimum", "maximum"):
        if bound in schema and not _is_number(schema[bound]):
            raise SchemaError(f"{where}: {bound} must be a number")
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as exc:
            raise SchemaError(f"{where}: pattern does not compile: {exc}") from None


def _check_object(schema: Mapping[str, Any], where: str) -> None:
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise SchemaError(f"{where}: properties must be an object")
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            raise SchemaError(f"{where}.{name}: a property's schema must be an object")
        _check(sub, f"{where}.{name}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(r in properties for r in required):
        raise SchemaError(f"{where}: required must list declared properties")
    if not isinstance(schema.get("additionalProperties", True), bool):
        raise SchemaError(f"{where}: additionalProperties must be true or false")


def _check_array(schema: Mapping[str, Any], where: str) -> None:
    items = schema.get("items")
    if not isinstance(items, Mapping):
        raise SchemaError(f"{where}: an array declares the schema of its items")
    if "maxItems" not in schema:
        raise SchemaError(f"{where}: an array declares maxItems")
    _check(items, f"{where}[]")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_problem(kind: str, value: object) -> str | None:
    ok = {
        "object": isinstance(value, Mapping),
        "string": isinstance(value, str),
        "integer": _is_int(value),
        "number": _is_number(value),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
    }[kind]
    return None if ok else f"must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def validate(schema: Mapping[str, Any], value: object, where: str = "input") -> str | None:
    """The first way ``value`` breaks ``schema`` (checked by ``check_schema``), or None."""
    if problem := _type_problem(schema["type"], value):
        return f"{where} {problem}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of: {', '.join(map(str, schema['enum']))}"
    check = _VALIDATORS.get(schema["type"])
    return check(schema, value, where) if check is not None else None


def _validate_array(schema: Mapping[str, Any], value: list[Any], where: str) -> str | None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        return f"{where} must have at least {schema['minItems']} items"
    if len(value) > schema["maxItems"]:
        return f"{where} must have at most {schema['maxItems']} items"
    for i, item in enumerate(value):
        if problem := validate(schema["items"], item, f"{where}[{i}]"):
            return problem
    return None


def _validate_number(schema: Mapping[str, Any], value: float, where: str) -> str | None:
    if "minimum" in schema and value < schema["minimum"]:
        return f"{where} must be at least {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"{where} must be at most {schema['maximum']}"
    return None


def _validate_object(schema: Mapping[str, Any], value: Mapping[Any, Any], where: str) -> str | None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            return f"{where}.{name} is required"
    extra = sorted(str(k) for k in value if k not in properties)
    if extra and not schema.get("additionalProperties", True):
        return f"{where} has unknown field(s): {', '.join(extra)}"
    for name, sub in properties.items():
        if name in value and (problem := validate(sub, value[name], f"{where}.{name}")):
            return problem
    return None


def _validate_string(schema: Mapping[str, Any], value: str, where: str) -> str | None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"{where} must be at least {schema['minLength']} characters"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{where} must be at most {schema['maxLength']} characters"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return f"{where} must match the pattern {schema['pattern']}"
    return None


_VALIDATORS: Mapping[str, Callable[[Mapping[str, Any], Any, str], str | None]] = {
    "object": _validate_object,
    "array": _validate_array,
    "string": _validate_string,
    "integer": _validate_number,
    "number": _validate_number,
}
