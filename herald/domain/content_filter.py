"""Typed predicates on free JSON: the scenario content filter and the tracked-event property filter.

A scenario entered through the special API call carries `content`, a JSON object whose
structure the user defines (guide, "Контент-фильтр"); a tracked event carries `properties`.
A filter tests them the way the guide's constructor does:
`(Строка: "Категория продукта" равно Строка: "Премиум-товары") и (Строка: "Стоимость" больше или
равно Число: 9000)`. Rules combine with `and`/`or`; groups of rules nest one level, as in segments.

A rule names a `field` and the `type` both sides compare as:
- a field is a top-level key (`"Категория продукта"`), or a JSON Pointer (RFC 6901) for a nested
  value when it starts with `/` (`/order/total`, `/items/0/sku`);
- `string`: texts; numbers and booleans are read as their JSON text;
- `number`: numbers, and texts that are decimal numbers (`"9000"`, `"12.5"`); never booleans;
- `boolean`: `true`/`false`, and the texts `"true"`/`"false"`;
- `datetime`: ISO 8601 dates and datetimes; a date is its midnight UTC, a datetime without an
  offset is UTC.

Operators by type: every type has `exists`, `not_exists`, `equal`, `not_equal`; strings add `in`,
`not_in`, `contains`, `not_contains`, `starts_with`, `ends_with`; numbers and datetimes add `gt`,
`gte`, `lt`, `lte`, `in`, `not_in`.

Semantics (like segments'): a value that is missing, null, or cannot be read as the rule's type
satisfies no positive operator, and each negative operator (`not_*`) is the exact complement of
its positive one. `equal` and `in` on strings are case-sensitive; `contains`, `starts_with` and
`ends_with` ignore case.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from herald.domain.errors import ValidationFailed

ContentType = Literal["string", "number", "boolean", "datetime"]
ContentOperator = Literal[
    "exists",
    "not_exists",
    "equal",
    "not_equal",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "gt",
    "gte",
    "lt",
    "lte",
]
MAX_FILTER_RULES = 100
MAX_IN_VALUES = 1_000

_NEGATIONS: Mapping[str, str] = {
    "not_exists": "exists",
    "not_equal": "equal",
    "not_in": "in",
    "not_contains": "contains",
}
_BASIC = frozenset({"exists", "not_exists", "equal", "not_equal"})
_OPERATORS: Mapping[str, frozenset[str]] = {
    "string": _BASIC | {"in", "not_in", "contains", "not_contains", "starts_with", "ends_with"},
    "number": _BASIC | {"gt", "gte", "lt", "lte", "in", "not_in"},
    "datetime": _BASIC | {"gt", "gte", "lt", "lte", "in", "not_in"},
    "boolean": _BASIC,
}
_NO_VALUE = frozenset({"exists", "not_exists"})
_LISTED = frozenset({"in", "not_in"})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContentRule(_Model):
    """One comparison: the value at `field`, read as `type`, against `value`."""

    field: str
    type: ContentType = "string"
    operator: ContentOperator
    value: JsonValue = None


class ContentGroup(_Model):
    condition: Literal["and", "or"] = "and"
    rules: tuple[ContentRule, ...] = ()


class ContentFilter(_Model):
    """Rules and groups of rules combined with `condition`; an empty filter holds for anything."""

    condition: Literal["and", "or"] = "and"
    rules: tuple[ContentRule, ...] = ()
    groups: tuple[ContentGroup, ...] = ()


# --- checking ----------------------------------------------------------------------------------


def check_filter(content_filter: ContentFilter, path: str) -> ContentFilter:
    """The filter with every rule's value in the form it compares as; refuses a rule that cannot hold."""
    count = len(content_filter.rules) + sum(len(g.rules) for g in content_filter.groups)
    if count > MAX_FILTER_RULES:
        raise ValidationFailed(f"a filter has at most {MAX_FILTER_RULES} rules", path)
    rules = tuple(_check_rule(r, f"{path}.rules.{i}") for i, r in enumerate(content_filter.rules))
    groups = []
    for g, group in enumerate(content_filter.groups):
        if not group.rules:
            raise ValidationFailed("a group needs at least one rule", f"{path}.groups.{g}.rules")
        checked = tuple(_check_rule(r, f"{path}.groups.{g}.rules.{i}") for i, r in enumerate(group.rules))
        groups.append(group.model_copy(update={"rules": checked}))
    return content_filter.model_copy(update={"rules": rules, "groups": tuple(groups)})


def _check_rule(rule: ContentRule, path: str) -> ContentRule:
    if not rule.field.strip():
        raise ValidationFailed("name the field the rule reads", f"{path}.field")
    if rule.field.startswith("/"):
        _pointer(rule.field, f"{path}.field")
    if rule.operator not in _OPERATORS[rule.type]:
        allowed = ", ".join(sorted(_OPERATORS[rule.type]))
        raise ValidationFailed(f"{rule.operator} does not apply to {rule.type}; use one of {allowed}", path)
    return rule.model_copy(update={"value": _checked_value(rule, f"{path}.value")})


def _checked_value(rule: ContentRule, path: str) -> JsonValue:
    if rule.operator in _NO_VALUE:
        if rule.value is not None:
            raise ValidationFailed(f"{rule.operator} takes no value", path)
        return None
    if rule.operator in _LISTED:
        if not isinstance(rule.value, list) or not 1 <= len(rule.value) <= MAX_IN_VALUES:
            raise ValidationFailed(f"expected a list of 1 to {MAX_IN_VALUES} values", path)
        return [_one(rule.type, item, f"{path}.{i}") for i, item in enumerate(rule.value)]
    return _one(rule.type, rule.value, path)


def _one(kind: str, value: JsonValue, path: str) -> JsonValue:
    read = _read(kind, value)
    if read is None:
        raise ValidationFailed(f"expected a {kind} value, not {value!r}", path)
    if kind == "number":
        return int(read) if read == read.to_integral_value() else float(read)
    if kind == "datetime":
        return value  # kept as written; it compares as the instant it names
    return read  # type: ignore[no-any-return]


# --- evaluating --------------------------------------------------------------------------------


def holds(content_filter: ContentFilter, content: Mapping[str, Any] | None) -> bool:
    """Whether `content` satisfies the (checked) filter."""
    document = content or {}
    results = [
        *(_rule_holds(rule, document) for rule in content_filter.rules),
        *(
            _combine(group.condition, (_rule_holds(rule, document) for rule in group.rules))
            for group in content_filter.groups
        ),
    ]
    return _combine(content_filter.condition, iter(results))


def _combine(condition: str, results: Iterator[bool]) -> bool:
    return all(results) if condition == "and" else any(results)


def _rule_holds(rule: ContentRule, document: Mapping[str, Any]) -> bool:
    positive = _NEGATIONS.get(rule.operator)
    if positive is not None:
        return not _positive(positive, rule, document)
    return _positive(rule.operator, rule, document)


def _positive(operator: str, rule: ContentRule, document: Mapping[str, Any]) -> bool:
    held = _read(rule.type, _lookup(document, rule.field))
    if held is None:
        return False
    if operator == "exists":
        return True
    if operator == "in":
        assert isinstance(rule.value, list)
        return any(held == _read(rule.type, item) for item in rule.value)
    wanted = _read(rule.type, rule.value)
    if operator == "equal":
        return bool(held == wanted)
    if operator in ("contains", "starts_with", "ends_with"):
        text, part = str(held).lower(), str(wanted).lower()
        if operator == "contains":
            return part in text
        return text.startswith(part) if operator == "starts_with" else text.endswith(part)
    comparisons = {"gt": held > wanted, "gte": held >= wanted, "lt": held < wanted, "lte": held <= wanted}
    return bool(comparisons[operator])


def _lookup(document: Mapping[str, Any], field: str) -> Any:
    if not field.startswith("/"):
        return document.get(field)
    current: Any = document
    for token in _pointer(field, "field"):
        if isinstance(current, Mapping):
            current = current.get(token)
        elif isinstance(current, Sequence) and not isinstance(current, str) and token.isdigit():
            index = int(token)
            current = current[index] if index < len(current) else None
        else:
            return None
    return current


def _pointer(field: str, path: str) -> list[str]:
    """The reference tokens of a JSON Pointer (`~1` is `/`, `~0` is `~`)."""
    tokens = field[1:].split("/")
    for token in tokens:
        if "~" in token.replace("~0", "").replace("~1", ""):
            raise ValidationFailed(f"{field!r} is not a JSON Pointer: `~` is written ~0", path)
    return [token.replace("~1", "/").replace("~0", "~") for token in tokens]


def _read(kind: str, value: Any) -> Any:
    """`value` as `kind` compares it, or None when it cannot be read so."""
    if value is None or isinstance(value, Mapping | list):
        return None
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        return {"true": True, "false": False}.get(str(value).strip().lower())
    if kind == "number":
        return _number(value)
    return _instant(value)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
