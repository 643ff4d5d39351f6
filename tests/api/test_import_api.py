"""Batch profile import through HTTP: modes, match keys, empty values, subscriptions, per-row errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from herald.api.wiring import Herald
from herald.domain.databases import StandardFieldConfig
from herald.domain.fields import FieldDefinition, FieldType
from herald.infra.ids import IdSource
from tests.builders import (
    DB,
    card,
    create_database,
    create_profile,
    create_resource,
    customers,
    email_subscription,
    import_rows,
    log_size,
)

P = "/api/v1/profiles"
IMPORT = f"/api/v1/databases/{DB}/profiles/import"
PUSH = {"resource_id": "7", "channel": "push", "token": "tok-1", "provider": "fcm"}


@pytest.fixture(autouse=True)
def catalog(herald: Herald) -> None:
    customers(herald)
    create_resource(herald)


@pytest.fixture
async def ann(api: httpx.AsyncClient) -> str:
    """An existing profile that every match mode can find."""
    return await create_profile(
        api,
        {
            "email": "ann@example.org",
            "phones": "+79123456789",
            "crm_id": "c-1",
            "age": 30,
            "_fname": "Ann",
            "_lname": "Lee",
            "subscriptions": [email_subscription("ann.work@example.com"), PUSH],
        },
    )


async def _ids_by_email(api: httpx.AsyncClient, herald: Herald, email: str) -> list[str]:
    herald.runtime.drain()
    response = await api.get(f"{P}/lookup", params={"database_id": DB, "by": "email_profile", "value": email})
    return [c["profile_id"] for c in response.json()["profiles"]]


def _statuses(body: dict[str, Any]) -> list[str]:
    return [r["status"] for r in body["results"]]


# --- the three modes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "email", "outcome", "age"),
    [
        ("add_and_update", "ann@example.org", "updated", 31),
        ("add_and_update", "new@example.org", "created", 31),
        ("add_only", "ann@example.org", "unchanged", 30),
        ("add_only", "new@example.org", "created", 31),
        ("update_only", "ann@example.org", "updated", 31),
        ("update_only", "new@example.org", "error", None),
    ],
    ids=[
        "add-and-update-existing",
        "add-and-update-missing",
        "add-only-existing",
        "add-only-missing",
        "update-only-existing",
        "update-only-missing",
    ],
)
async def test_each_import_mode_on_an_existing_and_a_missing_profile(
    api: httpx.AsyncClient, herald: Herald, ann: str, mode: str, email: str, outcome: str, age: int | None
) -> None:
    body = await import_rows(api, [{"email": email, "age": 31}], mode=mode)
    [result] = body["results"]
    assert result["status"] == outcome
    if outcome == "error":
        assert result["error"]["status"] == 404
        assert result["error"]["path"].startswith("rows.0")
        assert await _ids_by_email(api, herald, email) == []
        return
    assert (result["profile_id"] == ann) == (email == "ann@example.org")
    assert (await card(api, herald, result["profile_id"]))["fields"]["age"] == age


async def test_an_unknown_mode_or_option_refuses_the_whole_request(api: httpx.AsyncClient) -> None:
    bodies: tuple[dict[str, Any], ...] = (
        {"rows": [], "mode": "replace"},
        {"rows": [], "match": "fax"},
        {"rows": {}},
        {"rows": [], "x": 1},
        {"rows": [], "ignore_empty": {"a": 1}},
    )
    for body in bodies:
        response = await api.post(IMPORT, json=body)
        assert response.status_code == 422, body
    missing_db = await api.post(
        "/api/v1/databases/404/profiles/import", json={"rows": [{"email": "a@example.org"}]}
    )
    assert missing_db.status_code == 404


# --- match modes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "row", "finds_ann"),
    [
        ({"match": "email"}, {"email": "ANN@example.org"}, True),
        ({"match": "email"}, {"subscriptions": [email_subscription("ann.work@example.com")]}, True),
        ({"match": "email_profile"}, {"subscriptions": [email_subscription("ann.work@example.com")]}, False),
        ({"match": "email_profile"}, {"email": "Ann@EXAMPLE.org"}, True),
        ({"match": "phone"}, {"phones": "+7 (912) 345-67-89"}, True),
        (
            {"match": "phone"},
            {"subscriptions": [{"resource_id": "7", "channel": "sms", "phone": "+79123456789"}]},
            True,
        ),
        ({"match": "push"}, {"subscriptions": [PUSH]}, True),
        ({"match": "custom", "field_name": "crm_id"}, {"crm_id": " c-1 "}, True),
        ({"match": "custom", "field_name": "CRM_ID"}, {"Crm_Id": "c-1"}, True),
        ({"match": "custom", "field_name": "crm_id"}, {"crm_id": "c-2"}, False),
        ({"match": "custom", "field_name": "email"}, {"email": "ann@example.org"}, True),
    ],
    ids=[
        "email",
        "email-of-a-subscription",
        "email-profile-ignores-subscriptions",
        "email-profile",
        "phone",
        "phone-of-an-sms-subscription",
        "push-token",
        "custom",
        "custom-any-case",
        "custom-missing",
        "custom-email",
    ],
)
async def test_each_match_mode_finds_the_profile_it_should(
    api: httpx.AsyncClient,
    herald: Herald,
    ann: str,
    options: dict[str, Any],
    row: dict[str, Any],
    finds_ann: bool,
) -> None:
    herald.runtime.drain()  # non-unique keys (phones, tokens, subscription emails) come from the projection
    [result] = (await import_rows(api, [{**row, "age": 55}], **options))["results"]
    assert result["status"] == ("updated" if finds_ann else "created"), result
    assert (result["profile_id"] == ann) is finds_ann
    assert (await card(api, herald, result["profile_id"]))["fields"]["age"] == 55


async def test_match_by_profile_id_updates_that_profile_and_reports_unknown_ids(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    body = await import_rows(
        api,
        [{"profile_id": ann, "age": 1}, {"profile_id": "nobody", "age": 2}, {"age": 3}],
        match="profile_id",
    )
    assert _statuses(body) == ["updated", "error", "created"]
    assert body["results"][0]["profile_id"] == ann
    assert body["results"][1]["error"]["path"] == "rows.1.profile_id"
    assert body["results"][1]["error"]["status"] == 404
    assert (await card(api, herald, ann))["fields"]["age"] == 1


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"match": "custom"}, "field_name"),
        ({"match": "custom", "field_name": "age"}, "field_name"),
        ({"match": "custom", "field_name": "nope"}, "field_name"),
    ],
    ids=["no-field-name", "not-unique", "unknown-field"],
)
async def test_a_bad_custom_match_field_refuses_the_request(
    api: httpx.AsyncClient, herald: Herald, options: dict[str, Any], path: str
) -> None:
    before = log_size(herald)
    response = await api.post(IMPORT, json={"rows": [{"crm_id": "c-9"}], **options})
    assert response.status_code == 422
    assert response.json()["error"]["path"] == path
    assert log_size(herald) == before


# --- empty values, resubscribe, defaults and required ------------------------------------------


@pytest.mark.parametrize(
    ("ignore_empty", "fields"),
    [
        (False, {"email": "ann@example.org", "_lname": "Lee"}),
        (True, {"email": "ann@example.org", "_lname": "Lee", "age": 30, "_fname": "Ann"}),
        (["age"], {"email": "ann@example.org", "_lname": "Lee", "age": 30}),
        (["FirstName", "AGE"], {"email": "ann@example.org", "_lname": "Lee", "age": 30, "_fname": "Ann"}),
        ([], {"email": "ann@example.org", "_lname": "Lee"}),
    ],
    ids=["clear", "ignore-all", "ignore-listed", "ignore-by-alias-any-case", "ignore-none"],
)
async def test_ignore_empty_as_a_flag_or_a_field_list(
    api: httpx.AsyncClient, herald: Herald, ann: str, ignore_empty: bool | list[str], fields: dict[str, Any]
) -> None:
    await import_rows(
        api, [{"email": "ann@example.org", "age": "", "_fname": None}], ignore_empty=ignore_empty
    )
    shown = (await card(api, herald, ann))["fields"]
    assert {k: v for k, v in shown.items() if k in ("email", "_lname", "age", "_fname")} == fields


async def test_resubscribe_sets_the_global_status_back_to_subscribed(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    await api.put(f"{P}/{ann}/status", json={"status": "unsubscribed"})
    plain = await import_rows(api, [{"email": "ann@example.org"}])
    assert _statuses(plain) == ["unchanged"]
    assert (await card(api, herald, ann))["global_status"] == "unsubscribed"
    again = await import_rows(api, [{"email": "ann@example.org"}], resubscribe=True)
    assert _statuses(again) == ["updated"]
    assert (await card(api, herald, ann))["global_status"] == "subscribed"


async def test_defaults_fill_new_profiles_and_required_fields_are_enforced(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    create_database(
        herald,
        "2",
        custom_fields=(
            FieldDefinition(name="lang", type=FieldType.STRING, default="en", required=True),
            FieldDefinition(name="score", type=FieldType.INT, default=10),
        ),
        standard_fields={"_fname": StandardFieldConfig(required=True)},
    )
    body = await import_rows(
        api,
        [
            {"email": "a@example.org", "_fname": "A"},
            {"email": "b@example.org"},
            {"email": "c@example.org", "FirstName": "C", "lang": "ru", "score": None},
        ],
        database_id="2",
    )
    assert _statuses(body) == ["created", "error", "created"]
    assert body["results"][1]["error"]["path"] == "rows.1._fname"
    assert body["results"][1]["error"]["status"] == 422
    a = await card(api, herald, body["results"][0]["profile_id"])
    assert a["fields"] == {"email": "a@example.org", "_fname": "A", "lang": "en", "score": 10}
    c = await card(api, herald, body["results"][2]["profile_id"])
    assert c["fields"]["lang"] == "ru" and c["fields"]["score"] == 10
    update = await import_rows(
        api,
        [{"email": "a@example.org", "score": 3}, {"email": "c@example.org", "_fname": ""}],
        database_id="2",
    )
    assert _statuses(update) == [
        "updated",
        "error",
    ]  # an update need not repeat required fields, nor clear them
    assert update["results"][1]["error"]["path"] == "rows.1._fname"


# --- subscriptions in rows ---------------------------------------------------------------------


async def test_rows_subscribe_with_flat_and_nested_contacts_on_every_channel(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    row = {
        "email": "ann@example.org",
        "subscriptions": [
            {
                "resource_id": "7",
                "channel": "email",
                "email": "Ann@Example.org",
                "fields": {"source": "form"},
                "categories": {"news": "unsubscribed"},
            },
            {
                "resource_id": "7",
                "channel": "email",
                "email_data": {"email": "ann.work@example.com"},
                "status": "unconfirmed",
                "priority": 0,
            },
            {"resource_id": "7", "channel": "sms", "phone": "+7 912 345-67-89"},
            {"resource_id": "7", "channel": "sms", "sms_data": {"phone": "+44 20 7946 0958"}},
            {**PUSH, "device": {"platform": "Android", "app_version": "1.2"}},
        ],
    }
    [result] = (await import_rows(api, [row]))["results"]
    assert result["status"] == "created", result
    subs = {
        (s["channel"], s["contact"]): s
        for s in (await card(api, herald, result["profile_id"]))["subscriptions"]
    }
    assert set(subs) == {
        ("email", "ann@example.org"),
        ("email", "ann.work@example.com"),
        ("sms", "+79123456789"),
        ("sms", "+442079460958"),
        ("push", "tok-1"),
    }
    assert subs["email", "ann@example.org"]["fields"] == {"source": "form"}
    assert subs["email", "ann@example.org"]["categories"] == {"news": "unsubscribed"}
    assert subs["email", "ann.work@example.com"]["status"] == "unconfirmed"
    assert subs["email", "ann.work@example.com"]["priority"] == 0
    assert subs["push", "tok-1"]["provider"] == "fcm"
    assert subs["push", "tok-1"]["device"] == {"platform": "android", "app_version": "1.2"}


@pytest.mark.parametrize(
    ("subscription", "path"),
    [
        ({"resource_id": "7", "channel": "email", "email": "broken@"}, "rows.0.subscriptions.0.email"),
        (
            {"resource_id": "7", "channel": "email", "email_data": {"email": "x@"}},
            "rows.0.subscriptions.0.email_data.email",
        ),
        ({"resource_id": "7", "channel": "sms", "phone": "12"}, "rows.0.subscriptions.0.phone"),
        ({"resource_id": "7", "channel": "email"}, "rows.0.subscriptions.0.contact"),
        ({"channel": "email", "email": "a@example.org"}, "rows.0.subscriptions.0.resource_id"),
        (
            {"resource_id": "404", "channel": "email", "email": "a@example.org"},
            "rows.0.subscriptions.0.resource_id",
        ),
        ({"resource_id": "7", "channel": "fax", "contact": "1"}, "rows.0.subscriptions.0.channel"),
        (
            {"resource_id": "7", "channel": "email", "email": "a@example.org", "colour": "red"},
            "rows.0.subscriptions.0.colour",
        ),
        (
            {"resource_id": "7", "channel": "email", "email": "a@example.org", "fields": {"nope": 1}},
            "rows.0.subscriptions.0.fields.nope",
        ),
        (
            {"resource_id": "7", "channel": "email", "email": "a@example.org", "priority": -1},
            "rows.0.subscriptions.0.priority",
        ),
        (
            {"resource_id": "7", "channel": "email", "email": "a@example.org", "status": "maybe"},
            "rows.0.subscriptions.0.status",
        ),
        (
            {"resource_id": "7", "channel": "email", "email": "a@example.org", "categories": {"news": "no"}},
            "rows.0.subscriptions.0.categories.news",
        ),
        (
            {
                "resource_id": "7",
                "channel": "email",
                "email": "a@example.org",
                "categories": {"service": "unsubscribed"},
            },
            "rows.0.subscriptions.0.categories.service",
        ),
        ({"resource_id": "7", "channel": "push", "token": "t"}, "rows.0.subscriptions.0.provider"),
    ],
    ids=[
        "flat-email",
        "nested-email",
        "phone",
        "no-contact",
        "no-resource",
        "unknown-resource",
        "unknown-channel",
        "unknown-key",
        "unknown-field",
        "negative-priority",
        "bad-status",
        "bad-category-status",
        "mandatory-category",
        "push-provider",
    ],
)
async def test_a_bad_subscription_fails_its_row_with_the_path_and_writes_nothing(
    api: httpx.AsyncClient, herald: Herald, subscription: dict[str, Any], path: str
) -> None:
    before = log_size(herald)
    body = await import_rows(api, [{"email": "a@example.org", "subscriptions": [subscription]}])
    [result] = body["results"]
    assert result["status"] == "error"
    assert result["error"]["path"] == path, result
    assert result["error"]["reason"]
    assert log_size(herald) == before


# --- one batch ---------------------------------------------------------------------------------


async def test_rows_naming_one_email_resolve_to_one_profile(api: httpx.AsyncClient, herald: Herald) -> None:
    body = await import_rows(
        api,
        [
            {"email": "ann@example.org", "age": 1},
            {"email": "ANN@example.org", "_fname": "Ann"},
            {"subscriptions": [email_subscription("ann@example.org")]},
            {"email": "bob@example.org"},
        ],
    )
    assert _statuses(body) == ["created", "updated", "updated", "created"]
    ids = [r["profile_id"] for r in body["results"]]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    shown = await card(api, herald, ids[0])
    assert shown["fields"]["age"] == 1 and shown["fields"]["_fname"] == "Ann"
    assert [s["contact"] for s in shown["subscriptions"]] == ["ann@example.org"]
    assert await _ids_by_email(api, herald, "ann@example.org") == [ids[0]]


class _DrawsTakenIdFirst(IdSource):
    """Ids as seeded, except that the first profile id drawn is one already taken."""

    def __init__(self, taken: str) -> None:
        super().__init__(7)
        self.taken = [taken]

    def profile_id(self) -> str:
        return self.taken.pop() if self.taken else super().profile_id()


async def test_a_new_profile_whose_drawn_id_is_taken_gets_another_and_the_owner_is_untouched(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    herald.aggregates.ids = _DrawsTakenIdFirst(ann)  # a create reads nothing under the id it draws
    before = await card(api, herald, ann)

    body = await import_rows(api, [{"email": "new@example.org", "_fname": "Nell"}])

    assert _statuses(body) == ["created"]
    created = body["results"][0]["profile_id"]
    assert created != ann and herald.aggregates.ids.taken == []
    assert (await card(api, herald, created))["fields"]["email"] == "new@example.org"
    assert await card(api, herald, ann) == before


async def test_rows_naming_one_unique_value_resolve_to_one_profile(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    body = await import_rows(
        api, [{"crm_id": "c-5", "age": 1}, {"crm_id": "c-5", "age": 2}], match="custom", field_name="crm_id"
    )
    assert _statuses(body) == ["created", "updated"]
    assert body["results"][0]["profile_id"] == body["results"][1]["profile_id"]


async def test_an_email_another_profile_owns_is_a_409_row_error(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    bob = await create_profile(api, {"email": "bob@example.org", "crm_id": "c-2"})
    bob_version = (await card(api, herald, bob))["version"]
    body = await import_rows(
        api,
        [
            {"crm_id": "c-2", "Email": "ANN@example.org", "age": 7},  # Bob's row takes Ann's email
            {"crm_id": "c-3", "email": "carol@example.org"},
            {"crm_id": "c-4", "email": "carol@example.org"},  # Carol's email, taken by the row before
            {"crm_id": "c-5", "email": "dan@example.org"},
            {"crm_id": "c-6", "email": "dan@example.org"},
            {"crm_id": "c-1", "email": "erin@example.org"},  # Ann moves to a new address…
            {"crm_id": "c-7", "email": "ann@example.org"},  # …which frees hers for a new profile
        ],
        match="custom",
        field_name="crm_id",
    )
    assert _statuses(body) == ["error", "created", "error", "created", "error", "updated", "created"]
    for index in (0, 2, 4):
        error = body["results"][index]["error"]
        assert error["status"] == 409
        assert error["path"] == f"rows.{index}.{'Email' if index == 0 else 'email'}"
        assert "already used" in error["reason"]
    shown = await card(api, herald, bob)
    assert shown["version"] == bob_version and "age" not in shown["fields"]
    assert await _ids_by_email(api, herald, "ann@example.org") == [body["results"][6]["profile_id"]]
    assert await _ids_by_email(api, herald, "erin@example.org") == [ann]


async def test_a_bad_row_stops_nothing_else_and_is_never_half_written(
    api: httpx.AsyncClient, herald: Herald, ann: str
) -> None:
    version = (await card(api, herald, ann))["version"]
    body = await import_rows(
        api,
        [
            {"email": "new@example.org", "age": 5},
            {
                "email": "half@example.org",
                "age": 6,
                "subscriptions": [email_subscription("half@example.org", "404")],
            },
            {"email": "ann@example.org", "_fname": "Annie", "age": "old"},  # a good change next to a bad one
            "not an object",
            {"email": "other@example.org", "shoe_size": 9},
            {"email": "ann@example.org", "_lname": "Smith"},
        ],
    )
    assert _statuses(body) == ["created", "error", "error", "error", "error", "updated"]
    assert body["counts"] == {"created": 1, "updated": 1, "unchanged": 0, "error": 4}
    assert [r["error"]["path"] for r in body["results"] if r["status"] == "error"] == [
        "rows.1.subscriptions.0.resource_id",
        "rows.2.age",
        "rows.3",
        "rows.4.shoe_size",
    ]
    assert await _ids_by_email(api, herald, "half@example.org") == []
    assert await _ids_by_email(api, herald, "other@example.org") == []
    shown = await card(api, herald, ann)
    assert shown["version"] == version + 1
    assert shown["fields"]["_fname"] == "Ann" and shown["fields"]["_lname"] == "Smith"
    created = [e for e in herald.store.read_all() if e.type == "ProfileCreated"]
    assert sorted(e.data["fields"]["email"] for e in created) == ["ann@example.org", "new@example.org"]


async def test_the_counts_add_up(api: httpx.AsyncClient, ann: str) -> None:
    body = await import_rows(
        api,
        [
            {"email": "ann@example.org"},
            {"email": "ann@example.org", "age": 77},
            {"email": "x@example.org"},
            {"email": "y@example.org"},
            {"email": "bad"},
        ],
    )
    assert body["counts"] == {"created": 2, "updated": 1, "unchanged": 1, "error": 1}
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3, 4]


async def test_more_than_10000_rows_is_422_and_writes_nothing(api: httpx.AsyncClient, herald: Herald) -> None:
    at_the_limit = await import_rows(api, [0] * 10_000)  # cheap rows: each is an error, none is refused
    assert at_the_limit["counts"]["error"] == 10_000
    before = log_size(herald)
    response = await api.post(IMPORT, json={"rows": [{}] * 10_001})
    assert response.status_code == 422
    assert response.json()["error"]["path"] == "rows"
    assert log_size(herald) == before


async def test_an_empty_batch_is_fine(api: httpx.AsyncClient) -> None:
    body = await import_rows(api, [])
    assert body == {"counts": {"created": 0, "updated": 0, "unchanged": 0, "error": 0}, "results": []}
