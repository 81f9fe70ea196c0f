"""Configuration files validated by pydantic models, with messages a user can act on.

The rules file (tiering.rules) and expectations/gates.yml (tiering.quality) are checked by
pydantic models: types, allowed values and ranges on the fields, cross-field rules in model
validators. `problems()` turns a ValidationError into one line per problem that names the key
(dotted, e.g. `value.pareto.a_share`), what is allowed and what the file has.

Model validators raise ValueError with `{loc}` standing for the dotted key of their section.
"""
from __future__ import annotations

from typing import Any, get_args

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError

# The models of every configuration file: unknown keys are refused and values are not coerced
# (a quoted "0.8" is not a number, 1 is not true).
STRICT = ConfigDict(extra="forbid", strict=True)

# what a regular expression of a field means, for the message
PATTERN_HELP: dict[str, str] = {}


def dotted(loc: tuple) -> str:
    """('value', 'pareto', 'a_share') -> value.pareto.a_share; list positions as [i]."""
    text = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _field(model: type[BaseModel], loc: tuple):
    """The FieldInfo of the model field at `loc` (None when loc ends inside a dict or a list)."""
    info = None
    current: Any = model
    for part in loc:
        # an optional section (`Potential | None`): its model
        current = next((a for a in (get_args(current) or (current,))
                        if isinstance(a, type) and issubclass(a, BaseModel)), current)
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            info = current.model_fields[part]
            current = info.annotation
        else:
            return None
    return info


def _bounds(info, ctx: dict) -> tuple[Any, Any]:
    lo = hi = None
    for meta in getattr(info, "metadata", ()) if info is not None else ():
        if isinstance(meta, (annotated_types.Ge, annotated_types.Gt)):
            lo = getattr(meta, "ge", getattr(meta, "gt", None))
        if isinstance(meta, (annotated_types.Le, annotated_types.Lt)):
            hi = getattr(meta, "le", getattr(meta, "lt", None))
    lo = ctx.get("ge", ctx.get("gt", lo)) if lo is None else lo
    hi = ctx.get("le", ctx.get("lt", hi)) if hi is None else hi
    return lo, hi


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f" from {_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f" of at least {_num(lo)}"
    if hi is not None:
        return f" of at most {_num(hi)}"
    return ""


def _choices(expected: str) -> str:
    """pydantic's "'A', 'B' or 'C'" -> "one of A, B, C"; two choices -> "X or Y"."""
    items = [item.strip().strip("'") for item in expected.replace(" or ", ", ").split(", ")]
    return f"{items[0]} or {items[1]}" if len(items) == 2 else "one of " + ", ".join(items)


def problem_text(model: type[BaseModel], error: dict) -> str:
    """One line for one pydantic error: the key, what is allowed, what was given."""
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx") or {}
    key = dotted(loc)
    given = error.get("input")
    info = _field(model, loc)
    integer = info is not None and info.annotation is int
    if kind == "missing":
        return f"missing key '{key}'"
    if kind == "extra_forbidden":
        parent = _field(model, loc[:-1])
        section = parent.annotation if parent is not None else (model if len(loc) == 1 else None)
        section = next((a for a in (get_args(section) or (section,))
                        if isinstance(a, type) and issubclass(a, BaseModel)), section)
        if isinstance(section, type) and issubclass(section, BaseModel):
            return f"unknown key '{key}'; allowed keys: {', '.join(section.model_fields)}"
        return f"unknown key '{key}'"
    if kind == "literal_error":
        return f"'{key}' must be {_choices(ctx['expected'])}, got {given!r}"
    if kind == "bool_type":
        return f"'{key}' must be true or false, got {given!r}"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"'{key}' must be a whole number{_range(*_bounds(info, ctx))}, got {given!r}"
    if kind in ("float_type", "float_parsing"):
        return f"'{key}' must be a number{_range(*_bounds(info, ctx))}, got {given!r}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        lo, hi = _bounds(info, ctx)
        if integer:
            return f"'{key}' must be a whole number{_range(lo, hi)}, got {given!r}"
        if lo is not None and hi is not None:
            return f"'{key}' = {_num(given)} is outside [{_num(lo)}, {_num(hi)}]"
        limit = f"at least {_num(lo)}" if lo is not None else f"at most {_num(hi)}"
        return f"'{key}' must be {limit}, got {_num(given)}"
    if kind == "string_type":
        return f"'{key}' must be a text (quote it in YAML), got {given!r}"
    if kind == "string_pattern_mismatch":
        help_text = PATTERN_HELP.get(ctx.get("pattern", ""), f"text matching {ctx.get('pattern')}")
        return f"'{key}' must be {help_text}, got {given!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"'{key}' must be a mapping of keys to values, got {given!r}"
    if kind in ("list_type", "tuple_type"):
        return f"'{key}' must be a list, got {given!r}"
    if kind == "too_short":
        if ctx.get("min_length") in (None, 1):
            return f"'{key}' must be a non-empty list"
        return f"'{key}' must have {ctx['min_length']} items, got {given!r}"
    if kind == "too_long":
        return f"'{key}' must have at most {ctx['max_length']} items, got {given!r}"
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        return message.replace("{loc}", key) if "{loc}" in message else f"'{key}': {message}" if key else message
    return f"'{key}': {error['msg']}" if key else error["msg"]


def problems(model: type[BaseModel], exc: ValidationError) -> list[str]:
    """One line per problem of a validation, in the order of the file's keys."""
    return [problem_text(model, error) for error in exc.errors()]


def validate(model: type[BaseModel], data: Any) -> tuple[BaseModel | None, list[str]]:
    """(the model instance, []) or (None, the problems); a file that is not a mapping is one problem."""
    if not isinstance(data, dict):
        return None, [f"the file must be a mapping of keys to values, got {type(data).__name__}"]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, problems(model, exc)
