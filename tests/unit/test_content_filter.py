"""The content filter: typed rules on free JSON, negations as exact complements, paths into nested values."""

from __future__ import annotations

from typing import Any

import pytest

from herald.domain.content_filter import ContentFilter, check_filter, holds
from herald.domain.errors import ValidationFailed


def checked(**data: Any) -> ContentFilter:
    return check_filter(ContentFilter.model_validate(data), "filter")


def rule(field: str, operator: str, value: Any = None, type_: str = "string") -> dict[str, Any]:
    return {"field": field, "type": type_, "operator": operator, "value": value}


GUIDE = checked(
    rules=[
        rule("Категория продукта", "equal", "Премиум-товары"),
        rule("Стоимость", "gte", 9000, "number"),
    ]
)


@pytest.mark.parametrize(
    ("content", "passes"),
    [
        ({"Категория продукта": "Премиум-товары", "Стоимость": 9000}, True),
        ({"Категория продукта": "Премиум-товары", "Стоимость": "12500.50"}, True),  # a numeric text
        ({"Категория продукта": "Премиум-товары", "Стоимость": 8999}, False),
        ({"Категория продукта": "премиум-товары", "Стоимость": 9000}, False),  # equal is case-sensitive
        ({"Категория продукта": "Премиум-товары"}, False),
        ({"Категория продукта": "Премиум-товары", "Стоимость": "дорого"}, False),
        (None, False),
    ],
)
def test_the_guides_example_filter(content: dict[str, Any] | None, passes: bool) -> None:
    assert holds(GUIDE, content) is passes


@pytest.mark.parametrize(
    ("one", "content", "passes"),
    [
        (rule("/order/total", "gt", 100, "number"), {"order": {"total": 150}}, True),
        (rule("/items/1/sku", "equal", "B"), {"items": [{"sku": "A"}, {"sku": "B"}]}, True),
        (rule("/items/5/sku", "exists"), {"items": []}, False),
        (rule("/a~1b", "equal", "x"), {"a/b": "x"}, True),
        (rule("tag", "contains", "SALE"), {"tag": "big-sale-now"}, True),
        (rule("tag", "not_contains", "sale"), {}, True),  # a negation holds where the value is missing
        (rule("tag", "not_equal", "x"), {"tag": None}, True),
        (rule("tag", "in", ["a", "b"]), {"tag": "b"}, True),
        (rule("tag", "not_in", ["a", "b"]), {"tag": "c"}, True),
        (rule("vip", "equal", True, "boolean"), {"vip": "true"}, True),
        (rule("vip", "equal", True, "boolean"), {"vip": 1}, False),
        (rule("n", "equal", 1, "number"), {"n": True}, False),  # a boolean is not a number
        (rule("when", "gt", "2026-03-01", "datetime"), {"when": "2026-03-01T10:00:00Z"}, True),
        (rule("when", "lt", "2026-03-01T00:00:00+03:00", "datetime"), {"when": "2026-02-28"}, True),
        (rule("when", "exists", None, "datetime"), {"when": "not a date"}, False),
        (rule("x", "not_exists"), {"x": {"nested": 1}}, True),  # objects are no value of any type
    ],
)
def test_each_operator(one: dict[str, Any], content: dict[str, Any], passes: bool) -> None:
    assert holds(checked(rules=[one]), content) is passes


def test_or_and_groups_combine_like_segment_rules() -> None:
    either = checked(
        condition="or",
        rules=[rule("a", "equal", "1")],
        groups=[{"condition": "and", "rules": [rule("b", "equal", "2"), rule("c", "equal", "3")]}],
    )
    assert holds(either, {"b": "2", "c": "3"})
    assert not holds(either, {"b": "2"})
    assert holds(checked(), {})  # an empty filter lets everything through


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"rules": [rule("", "exists")]}, "filter.rules.0.field"),
        ({"rules": [rule("a", "gt", 1)]}, "filter.rules.0"),  # strings do not order
        ({"rules": [rule("a", "equal", "x", "number")]}, "filter.rules.0.value"),
        ({"rules": [rule("a", "exists", 1)]}, "filter.rules.0.value"),
        ({"rules": [rule("a", "in", "x")]}, "filter.rules.0.value"),
        ({"groups": [{"rules": []}]}, "filter.groups.0.rules"),
        ({"rules": [rule("/a~2", "exists")]}, "filter.rules.0.field"),
    ],
)
def test_a_rule_that_cannot_hold_is_refused_with_its_path(bad: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        checked(**bad)
    assert caught.value.path == path
