"""Field types: every type's valid values in stored form, its refusals with their paths, definitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from herald.domain.errors import ValidationFailed
from herald.domain.fields import (
    STANDARD_FIELDS,
    FieldDefinition,
    FieldType,
    check_definition,
    coerce_value,
    format_datetime,
    is_empty,
    is_valid_api_name,
    parse_datetime,
    standard_field_name,
)

OPTIONS = ("Basic", "Pro", "Вариант 3")


def definition(type_: FieldType, name: str = "f") -> FieldDefinition:
    return FieldDefinition(name=name, type=type_, options=OPTIONS if type_ is FieldType.LIST else ())


VALID: list[tuple[str, FieldType, Any, Any]] = [
    ("int", FieldType.INT, 12, 12),
    ("int negative text", FieldType.INT, " -3 ", -3),
    ("int whole float", FieldType.INT, 12.0, 12),
    ("int whole float text", FieldType.INT, "12.0", 12),
    ("int 64-bit max", FieldType.INT, 2**63 - 1, 2**63 - 1),
    ("float", FieldType.FLOAT, 9000.1, 9000.1),
    ("float from int", FieldType.FLOAT, 3, 3.0),
    ("float text", FieldType.FLOAT, "2.5", 2.5),
    ("string trimmed", FieldType.STRING, "  Привет мир ", "Привет мир"),
    ("string from number", FieldType.STRING, 123411111, "123411111"),
    ("date", FieldType.DATE, "2019-07-11", "2019-07-11"),
    ("date from guide ISO", FieldType.DATE, "2019-08-22T00:00:00.000Z", "2019-08-22"),
    ("date keeps written day", FieldType.DATE, "2018-02-22T21:00:00Z", "2018-02-22"),
    ("date dotted", FieldType.DATE, "22.08.2019", "2019-08-22"),
    ("date object", FieldType.DATE, date(2020, 1, 2), "2020-01-02"),
    ("date from datetime", FieldType.DATE, datetime(2020, 1, 2, 23, 0), "2020-01-02"),
    ("datetime Z", FieldType.DATETIME, "2020-04-19T23:34:57.398Z", "2020-04-19T23:34:57.398Z"),
    ("datetime offset to UTC", FieldType.DATETIME, "2020-04-20T02:34:57+03:00", "2020-04-19T23:34:57.000Z"),
    ("datetime naive is UTC", FieldType.DATETIME, "2019-06-04 00:00:00", "2019-06-04T00:00:00.000Z"),
    ("datetime bare date", FieldType.DATETIME, "2019-06-04", "2019-06-04T00:00:00.000Z"),
    (
        "datetime aware object",
        FieldType.DATETIME,
        datetime(2020, 1, 1, 3, tzinfo=timezone(timedelta(hours=3))),
        "2020-01-01T00:00:00.000Z",
    ),
    ("bool true", FieldType.BOOL, True, True),
    ("bool 0", FieldType.BOOL, 0, False),
    ("bool Да", FieldType.BOOL, "Да", True),
    ("bool no", FieldType.BOOL, "no", False),
    ("bool TRUE", FieldType.BOOL, "TRUE", True),
    ("list exact", FieldType.LIST, "Pro", "Pro"),
    ("list any case", FieldType.LIST, "basic", "Basic"),
    ("list cyrillic", FieldType.LIST, " вариант 3", "Вариант 3"),
    ("ip", FieldType.IP, " 127.0.0.1 ", "127.0.0.1"),
    (
        "tags text split",
        FieldType.TAGS,
        "Продукт-1, Продукт 2|Продукт_3;Продукт 2",
        ["Продукт 2", "Продукт-1", "Продукт_3"],
    ),
    ("tags list sorted unique", FieldType.TAGS, ["b", "a", "b", " "], ["a", "b"]),
    ("tags only separators", FieldType.TAGS, ",;|", None),
    ("json object", FieldType.JSON, {"a": [1, 2.5, None, True]}, {"a": [1, 2.5, None, True]}),
    ("json array text", FieldType.JSON, '[{"x": 1}]', [{"x": 1}]),
    ("json tuple", FieldType.JSON, ({"x": (1,)},), [{"x": [1]}]),
    ("email normalised", FieldType.EMAIL, " Ann@Example.COM ", "Ann@example.com"),
    ("phones text", FieldType.PHONES, "+7 912 345-67-89; 79123456780", ["+79123456789", "+79123456780"]),
    ("phones list deduped", FieldType.PHONES, ["+79123456789", "79123456789"], ["+79123456789"]),
    ("timezone", FieldType.TIMEZONE, "Europe/Moscow", "Europe/Moscow"),
]


@pytest.mark.parametrize(
    ("type_", "given", "stored"), [case[1:] for case in VALID], ids=[c[0] for c in VALID]
)
def test_valid_values_are_stored_in_one_form(type_: FieldType, given: Any, stored: Any) -> None:
    assert coerce_value(definition(type_), given, "fields.f") == stored


INVALID: list[tuple[str, FieldType, Any, str]] = [
    ("int fraction", FieldType.INT, 12.5, "fields.f"),
    ("int fraction text", FieldType.INT, "12.5", "fields.f"),
    ("int bool", FieldType.INT, True, "fields.f"),
    ("int words", FieldType.INT, "twelve", "fields.f"),
    ("int too big", FieldType.INT, 2**63, "fields.f"),
    ("int list", FieldType.INT, [1], "fields.f"),
    ("int infinity", FieldType.INT, float("inf"), "fields.f"),
    ("float nan", FieldType.FLOAT, float("nan"), "fields.f"),
    ("float bool", FieldType.FLOAT, False, "fields.f"),
    ("float words", FieldType.FLOAT, "abc", "fields.f"),
    ("string object", FieldType.STRING, {"a": 1}, "fields.f"),
    ("string bool", FieldType.STRING, True, "fields.f"),
    ("date nonsense", FieldType.DATE, "yesterday", "fields.f"),
    ("date impossible", FieldType.DATE, "2019-02-30", "fields.f"),
    ("date number", FieldType.DATE, 20190101, "fields.f"),
    ("datetime nonsense", FieldType.DATETIME, "soon", "fields.f"),
    ("bool maybe", FieldType.BOOL, "maybe", "fields.f"),
    ("bool 2", FieldType.BOOL, 2, "fields.f"),
    ("list unknown option", FieldType.LIST, "Gold", "fields.f"),
    ("list object", FieldType.LIST, {"a": 1}, "fields.f"),
    ("ip v6", FieldType.IP, "::1", "fields.f"),
    ("ip malformed", FieldType.IP, "256.1.1.1", "fields.f"),
    ("ip number", FieldType.IP, 2130706433, "fields.f"),
    ("tags item with separator", FieldType.TAGS, ["ok", "a,b"], "fields.f.1"),
    ("tags item object", FieldType.TAGS, ["ok", {"a": 1}], "fields.f.1"),
    ("tags number", FieldType.TAGS, 5, "fields.f"),
    ("json scalar", FieldType.JSON, 5, "fields.f"),
    ("json text scalar", FieldType.JSON, '"x"', "fields.f"),
    ("json broken text", FieldType.JSON, "{oops", "fields.f"),
    ("json nan inside", FieldType.JSON, {"a": [float("nan")]}, "fields.f.a.0"),
    ("json non-text key", FieldType.JSON, {1: "a"}, "fields.f"),
    ("email malformed", FieldType.EMAIL, "not-an-email", "fields.f"),
    ("email number", FieldType.EMAIL, 5, "fields.f"),
    ("phones bad second", FieldType.PHONES, ["+79123456789", "12"], "fields.f.1"),
    ("phones bad in text", FieldType.PHONES, "+79123456789, abc", "fields.f.1"),
    ("timezone unknown", FieldType.TIMEZONE, "Mars/Olympus", "fields.f"),
    ("timezone path escape", FieldType.TIMEZONE, "../etc/passwd", "fields.f"),
]


@pytest.mark.parametrize(
    ("type_", "given", "path"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_values_are_refused_at_their_path(type_: FieldType, given: Any, path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        coerce_value(definition(type_), given, "fields.f")
    assert caught.value.path == path
    assert caught.value.reason


@pytest.mark.parametrize("empty", [None, "", "   ", [], {}, ()], ids=repr)
@pytest.mark.parametrize("type_", list(FieldType), ids=str)
def test_an_empty_value_clears_any_field(type_: FieldType, empty: Any) -> None:
    assert is_empty(empty)
    assert coerce_value(definition(type_), empty, "fields.f") is None


@pytest.mark.parametrize("value", [0, False, "0", [0]], ids=repr)
def test_falsy_values_are_not_empty(value: Any) -> None:
    assert not is_empty(value)


def test_datetimes_round_trip_in_utc() -> None:
    moment = parse_datetime("2020-04-20T02:34:57.398+03:00", "at")
    assert moment == datetime(2020, 4, 19, 23, 34, 57, 398000, tzinfo=UTC)
    assert format_datetime(moment) == "2020-04-19T23:34:57.398Z"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("Custom_ID", True),
        ("_private", True),
        ("a1", True),
        ("1a", False),
        ("with space", False),
        ("кириллица", False),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("a-b", False),
    ],
)
def test_api_names(name: str, valid: bool) -> None:
    assert is_valid_api_name(name) is valid


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("email", "email"),
        ("Email", "email"),
        ("FirstName", "_fname"),
        ("_fname", "_fname"),
        ("LASTNAME", "_lname"),
        ("Birthday", "_bdate"),
        ("LastIP", "_ip"),
        ("LastCity", "_city"),
        ("phone", "phones"),
        ("Gender", "_sex"),
        ("RegIP", "_regip"),
        ("Timezone", "_tz"),
        ("Vendor", "_vendor"),
        ("PostalCode", "_postal_code"),
        ("Custom_ID", None),
    ],
)
def test_standard_field_aliases(given: str, canonical: str | None) -> None:
    assert standard_field_name(given) == canonical


def test_standard_fields_follow_the_guide() -> None:
    assert list(STANDARD_FIELDS)[:11] == [
        "email",
        "phones",
        "_fname",
        "_lname",
        "_bdate",
        "_sex",
        "_regdate",
        "_regip",
        "_regcity",
        "_regcountry",
        "_regurl",
    ]
    assert STANDARD_FIELDS["email"].unique and STANDARD_FIELDS["email"].in_subscription_manager
    assert STANDARD_FIELDS["_regip"].type is FieldType.IP
    assert coerce_value(STANDARD_FIELDS["_sex"], "Male", "fields._sex") == "male"


def test_a_definition_stores_its_default_coerced() -> None:
    checked = check_definition(
        FieldDefinition(name="Plan", type=FieldType.LIST, options=(" Basic ", "Pro"), default="pro")
    )
    assert checked.options == ("Basic", "Pro")
    assert checked.default == "Pro"
    assert check_definition(FieldDefinition(name="T", type=FieldType.TAGS, default="b,a")).default == [
        "a",
        "b",
    ]


BAD_DEFINITIONS: list[tuple[str, FieldDefinition, str]] = [
    ("bad name", FieldDefinition(name="1st", type=FieldType.INT), "field.name"),
    ("standard-only type", FieldDefinition(name="e", type=FieldType.EMAIL), "field.type"),
    ("list without options", FieldDefinition(name="l", type=FieldType.LIST), "field.options"),
    (
        "list blank option",
        FieldDefinition(name="l", type=FieldType.LIST, options=("a", " ")),
        "field.options",
    ),
    (
        "list same options",
        FieldDefinition(name="l", type=FieldType.LIST, options=("a", "A")),
        "field.options",
    ),
    ("options on int", FieldDefinition(name="i", type=FieldType.INT, options=("1",)), "field.options"),
    ("invalid default", FieldDefinition(name="i", type=FieldType.INT, default="x"), "field.default"),
    (
        "default not an option",
        FieldDefinition(name="l", type=FieldType.LIST, options=("a",), default="b"),
        "field.default",
    ),
    (
        "unique with default",
        FieldDefinition(name="c", type=FieldType.STRING, unique=True, default="x"),
        "field.default",
    ),
    ("unique tags", FieldDefinition(name="t", type=FieldType.TAGS, unique=True), "field.unique"),
    ("unique bool", FieldDefinition(name="b", type=FieldType.BOOL, unique=True), "field.unique"),
]


@pytest.mark.parametrize(
    ("field", "path"), [c[1:] for c in BAD_DEFINITIONS], ids=[c[0] for c in BAD_DEFINITIONS]
)
def test_bad_definitions_are_refused(field: FieldDefinition, path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_definition(field)
    assert caught.value.path == path


def test_label_falls_back_to_the_name() -> None:
    assert FieldDefinition(name="Plan", type=FieldType.STRING).label == "Plan"
    assert FieldDefinition(name="Plan", title="Тариф", type=FieldType.STRING).label == "Тариф"
