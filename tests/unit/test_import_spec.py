"""A file import's mapping: columns by number or header, fields by alias, rows and error columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from herald.domain import databases
from herald.domain.errors import ValidationFailed
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.import_spec import (
    ColumnMapping,
    ImportSpec,
    SubscriptionSource,
    check_spec,
    suggest_columns,
)

AT = datetime(2026, 3, 2, tzinfo=UTC)
DATABASE = databases.database_decider.fold(
    databases.decide(
        databases.CreateDatabase(
            "1", "Customers", AT, custom_fields=(FieldDefinition(name="crm_id", type=FieldType.STRING),)
        ),
        databases.DatabaseState(),
    )
)
HEADER = ["E-mail", "FirstName", "CRM_ID", "Phone"]


def spec(**values: Any) -> ImportSpec:
    return ImportSpec.model_validate({"file_id": "f", "format": "csv", **values})


def test_columns_are_named_by_number_or_header_and_fields_by_alias() -> None:
    mapped = check_spec(
        spec(
            columns=[
                {"column": "e-mail", "field": "Email"},
                {"column": 2, "field": "FirstName"},
                {"column": "crm_id", "field": "CRM_ID", "ignore_empty": True},
            ],
            subscriptions=[{"column": 4, "resource_id": "7", "channel": "sms"}],
        ),
        DATABASE,
        HEADER,
    )
    cells = ["a@example.org", "Ann", "", "+79123456789"]
    assert mapped.row(cells) == {
        "email": "a@example.org",
        "_fname": "Ann",
        "crm_id": "",
        "subscriptions": [{"resource_id": "7", "channel": "sms", "contact": "+79123456789"}],
    }
    assert mapped.ignore_empty == frozenset({"crm_id"})
    assert mapped.column_of("_fname", cells) == "FirstName"
    assert mapped.column_of("subscriptions.0.phone", cells) == "Phone"
    assert mapped.column_of("profile_id", cells) is None


def test_a_short_row_leaves_the_fields_of_its_missing_cells_alone_and_an_empty_row_is_none() -> None:
    mapped = check_spec(
        spec(columns=[{"column": 1, "field": "email"}, {"column": 3, "field": "crm_id"}]), DATABASE, HEADER
    )
    assert mapped.row(["a@example.org"]) == {"email": "a@example.org"}
    assert mapped.row(["", " ", ""]) is None
    # an empty contact adds no subscription
    with_sub = check_spec(
        spec(
            columns=[{"column": 1, "field": "email"}],
            subscriptions=[SubscriptionSource(column=4, resource_id="7", channel="sms")],
        ),
        DATABASE,
        HEADER,
    )
    assert with_sub.row(["a@example.org", "", "", ""]) == {"email": "a@example.org"}


@pytest.mark.parametrize(
    ("values", "header", "path"),
    [
        ({"columns": [{"column": 1, "field": "nickname"}]}, HEADER, "columns.0.field"),
        (
            {"columns": [{"column": 1, "field": "email"}, {"column": 2, "field": "Email"}]},
            HEADER,
            "columns.1.field",
        ),
        ({"columns": [{"column": "Surname", "field": "_lname"}]}, HEADER, "columns.0.column"),
        ({"columns": [{"column": 0, "field": "email"}]}, HEADER, "columns.0.column"),
        ({"header": False, "columns": [{"column": "E-mail", "field": "email"}]}, [], "columns.0.column"),
        ({"match": "custom", "columns": [{"column": 1, "field": "email"}]}, HEADER, "field_name"),
        (
            {
                "columns": [{"column": 1, "field": "email"}],
                "subscriptions": [{"column": "Fax", "resource_id": "7", "channel": "sms"}],
            },
            HEADER,
            "subscriptions.0.column",
        ),
    ],
    ids=[
        "unknown-field",
        "field-twice",
        "unknown-header",
        "column-zero",
        "name-without-header",
        "custom-without-field",
        "unknown-contact-column",
    ],
)
def test_a_bad_mapping_is_refused_at_its_path(values: dict[str, Any], header: list[str], path: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_spec(spec(**values), DATABASE, header)
    assert caught.value.path == path


def test_headers_that_name_fields_are_suggested_once() -> None:
    suggested = suggest_columns(["Email", "Notes", "first_name", "crm_id", "EMAIL"], DATABASE)
    assert suggested == [
        ColumnMapping(column=1, field="email"),
        ColumnMapping(column=3, field="_fname"),
        ColumnMapping(column=4, field="crm_id"),
    ]
