"""Builders for the API tests: databases and resources made through their deciders, plus HTTP helpers.

Databases and resources are created through the same commands their routes
send (the catalog routes are tested on their own), so the profile and tracking
APIs are exercised against real aggregates.
"""

from __future__ import annotations

from typing import Any

import httpx

from herald.api.wiring import Herald
from herald.domain.databases import CreateDatabase, StandardFieldConfig, database_decider, database_stream
from herald.domain.fields import FieldDefinition, FieldType
from herald.domain.resources import (
    AddCategory,
    Category,
    CreateResource,
    CustomChannelSettings,
    DefineSubscriptionField,
    EmailSettings,
    EnableChannel,
    PushPlatform,
    PushProvider,
    PushSettings,
    ResourceSettings,
    SmsSettings,
    resource_decider,
    resource_stream,
)
from herald.domain.secrets import SealedSecret
from herald.services.aggregates import CommandContext

SEALED_KEY = SealedSecret(key_id="test-key", ciphertext="c2VhbGVk")  # what the domain stores

CTX = CommandContext(actor="test", source="test")
DB = "1"
RESOURCE = "7"


def create_database(
    herald: Herald,
    database_id: str = DB,
    custom_fields: tuple[FieldDefinition, ...] = (),
    standard_fields: dict[str, StandardFieldConfig] | None = None,
) -> str:
    """A profile database with the given custom fields and standard field settings."""
    command = CreateDatabase(
        database_id,
        f"Customers {database_id}",
        herald.clock.now(),
        custom_fields=custom_fields,
        standard_fields=standard_fields or {},
    )
    herald.aggregates.execute(database_decider, database_stream(database_id), command, CTX)
    return database_id


def customers(herald: Herald, database_id: str = DB) -> str:
    """The usual test database: a unique `crm_id`, an int `age`, a `tier` list with a default."""
    return create_database(
        herald,
        database_id,
        custom_fields=(
            FieldDefinition(name="crm_id", type=FieldType.STRING, unique=True),
            FieldDefinition(name="age", type=FieldType.INT),
            FieldDefinition(name="tier", type=FieldType.LIST, options=("basic", "gold"), default="basic"),
        ),
    )


def create_resource(
    herald: Herald,
    resource_id: str = RESOURCE,
    database_ids: tuple[str, ...] = (DB,),
    categories: tuple[str, ...] = ("news", "offers"),
    mandatory: tuple[str, ...] = ("service",),
) -> str:
    """A resource with email, sms and push (FCM) channels, categories, and a `source` field on email."""
    settings = ResourceSettings(
        name=f"Shop {resource_id}",
        database_ids=database_ids,
        source_urls=("https://shop.example.com",),
        default_tracking_domain="trk.example.com",
    )
    run = _resource_runner(herald, resource_id)
    run(CreateResource(resource_id, f"rt-{resource_id}", settings))
    run(
        EnableChannel(
            resource_id,
            EmailSettings(from_name="Shop", from_email="news@example.com", list_id="news.example.com"),
        )
    )
    run(EnableChannel(resource_id, SmsSettings(caller_id="Shop")))
    run(
        EnableChannel(
            resource_id,
            PushSettings(
                platforms=(PushPlatform.ANDROID,), providers=(PushProvider.FCM,), firebase_api_key=SEALED_KEY
            ),
        )
    )
    run(DefineSubscriptionField(resource_id, "email", FieldDefinition(name="source", type=FieldType.STRING)))
    for name in categories:
        run(AddCategory(resource_id, Category(api_name=name, title=name.title())))
    for name in mandatory:
        run(AddCategory(resource_id, Category(api_name=name, title=name.title(), mandatory=True)))
    return resource_id


def _resource_runner(herald: Herald, resource_id: str) -> Any:
    def run(command: object) -> None:
        herald.aggregates.execute(resource_decider, resource_stream(resource_id), command, CTX)

    return run


def email_subscription(email: str, resource_id: str = RESOURCE, **extra: Any) -> dict[str, Any]:
    return {"resource_id": resource_id, "channel": "email", "email": email, **extra}


async def import_rows(
    api: httpx.AsyncClient, rows: list[Any], database_id: str = DB, **options: Any
) -> dict[str, Any]:
    """POST a batch import and return its body (asserting 200)."""
    response = await api.post(
        f"/api/v1/databases/{database_id}/profiles/import", json={"rows": rows, **options}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_profile(api: httpx.AsyncClient, data: dict[str, Any], database_id: str = DB) -> str:
    response = await api.post(f"/api/v1/databases/{database_id}/profiles", json=data)
    assert response.status_code == 201, response.text
    return str(response.json()["profile_id"])


async def card(api: httpx.AsyncClient, herald: Herald, profile_id: str) -> dict[str, Any]:
    """The profile card after the projections caught up."""
    herald.runtime.drain()
    response = await api.get(f"/api/v1/profiles/{profile_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def launched_message(
    api: httpx.AsyncClient, herald: Herald, channel: str, content: dict[str, Any], resource_id: str = RESOURCE
) -> str:
    """A broadcast on `channel` with one template of `content`, launched to database 1: the id of the
    first message it queued."""
    template = await api.post("/api/v1/templates", json={"name": f"{channel} template", "content": content})
    assert template.status_code == 201, template.text
    campaign = await api.post(
        "/api/v1/campaigns",
        json={
            "name": f"{channel} campaign",
            "type": "broadcast",
            "channel": channel,
            "resource_id": resource_id,
            "template_ids": [template.json()["template_id"]],
            "audience": {"kind": "database", "id": DB},
        },
    )
    assert campaign.status_code == 201, campaign.text
    launched = await api.post(f"/api/v1/campaigns/{campaign.json()['campaign_id']}/launch")
    assert launched.status_code == 200, launched.text
    herald.runtime.drain()
    return next(str(e.data["message_id"]) for e in herald.store.read_all() if e.type == "MessageQueued")


def telegram_bot_resource(herald: Herald) -> None:
    """Database 1 and the resource, with a `telegram_bot` channel for the bot `shop_bot`."""
    customers(herald)
    create_resource(herald)
    enable_telegram_bot(herald, RESOURCE)


def enable_telegram_bot(herald: Herald, resource_id: str, bot_username: str = "shop_bot") -> None:
    """A `telegram_bot` channel on the resource for the bot `bot_username`."""
    channel = CustomChannelSettings(name="telegram_bot", options={"bot_username": bot_username})
    _resource_runner(herald, resource_id)(EnableChannel(resource_id, channel))
    herald.runtime.drain()


async def march_summary(api: httpx.AsyncClient, herald: Herald, metrics: tuple[str, ...]) -> dict[str, Any]:
    """The summary report's one row for March 2026 (the test clock's month), `metrics` by name, once
    the processors and the report sink caught up."""
    herald.runtime.drain()
    assert herald.reports_runtime is not None
    herald.reports_runtime.drain()
    params = {"start": "2026-03-01", "end": "2026-03-31", "metrics": ",".join(metrics)}
    summary = await api.get("/api/v1/reports/summary", params=params)
    assert summary.status_code == 200, summary.text
    return dict(zip(summary.json()["columns"], summary.json()["rows"][0], strict=True))


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


def log_size(herald: Herald) -> int:
    return herald.store.head_position()
