"""Builders for scenario tests: trigger campaigns, scenarios and graphs, made through the services."""

from __future__ import annotations

from typing import Any

from herald.api.wiring import Herald
from herald.domain import campaigns as cp
from herald.domain import scenarios as sc
from herald.domain import templates as tp
from herald.domain.scenario_capture import Capture, ImportCapture
from herald.domain.scenario_graph import ScenarioGraph
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from tests.builders import DB, RESOURCE, create_resource, customers, email_subscription

CTX = CommandContext(actor="test", source="test")


def ready(herald: Herald) -> None:
    """The usual test database and resource (`tests.builders`)."""
    customers(herald)
    create_resource(herald)


def imported(herald: Herald, *emails: str, database_id: str = DB, **fields: Any) -> list[str]:
    """Profiles with these emails (subscribed on the resource's email channel) and fields, imported and
    processed; their ids."""
    rows = [{"email": e, "subscriptions": [email_subscription(e)], **fields} for e in emails]
    results = herald.profiles.import_rows(database_id, rows, ImportOptions(), CTX)
    herald.runtime.drain()
    return [r.profile_id or "" for r in results]


def template(herald: Herald, name: str, channel: str = "email", html: str | None = None) -> str:
    """A published template with content for `channel` (an email's HTML `html` when given)."""
    if channel == "sms":
        content = tp.TemplateContent(sms=tp.SmsContent(body=f"{name}: hi {{lead._fname}}"))
    elif channel == "telegram_bot":
        content = tp.TemplateContent(telegram_bot=tp.TelegramContent(text=f"{name}: hi {{lead._fname}}"))
    else:
        content = tp.TemplateContent(
            email=tp.EmailContent(subject=name, html=html or f"<p>{name}, {{lead.email}}</p>")
        )
    template_id, _ = herald.templates.create_template(tp.TemplateCard(name=name), content, False, CTX)
    return template_id


def trigger(
    herald: Herald,
    name: str,
    channel: str = "email",
    templates: int = 1,
    database_id: str = DB,
    resource_id: str = RESOURCE,
    active: bool = True,
    html: str | None = None,
) -> str:
    """An active trigger campaign of `database_id` with `templates` templates (of email HTML `html`)."""
    template_ids = tuple(template(herald, f"{name} {i + 1}", channel, html) for i in range(templates))
    settings = cp.CampaignSettings(
        name=name,
        type=cp.CampaignType.TRIGGER,
        channel=channel,  # type: ignore[arg-type]
        resource_id=resource_id,
        template_ids=template_ids,
        database_id=database_id,
        trigger=cp.TriggerOptions(),
    )
    campaign_id, _ = herald.campaigns.create(settings, CTX)
    if active:
        herald.campaigns.activate(campaign_id, CTX)
    return campaign_id


def graph(*nodes: dict[str, Any], start: str | None = None) -> ScenarioGraph:
    return ScenarioGraph.model_validate({"start": start, "nodes": list(nodes)})


def settings(
    capture: Capture | None = None,
    reentry: sc.ReentryMode = sc.ReentryMode.ALLOW_PARALLEL,
    sleeping: bool = False,
    database_id: str = DB,
) -> sc.ScenarioSettings:
    return sc.ScenarioSettings(
        name="Scenario",
        database_id=database_id,
        reentry=reentry,
        sleeping_profiles=sleeping,
        capture=capture or ImportCapture(),
    )


def scenario(herald: Herald, the_graph: ScenarioGraph, active: bool = True, **options: Any) -> str:
    scenario_id, _ = herald.scenarios.create(settings(**options), the_graph, CTX)
    if active:
        herald.scenarios.activate(scenario_id, CTX)
    return scenario_id


def campaign_node(node_id: str, campaign_id: str, next_: str | None = None) -> dict[str, Any]:
    return {"id": node_id, "type": "campaign", "campaign_id": campaign_id, "next": next_}


def pause_node(node_id: str, next_: str | None = None, **wait: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "pause", "wait": wait or {"kind": "relative", "days": 1}, "next": next_}


def journey_types(herald: Herald, scenario_id: str, profile_id: str) -> list[str]:
    """The journey's event types, in order."""
    stream = f"journey-{scenario_id}-{profile_id}"
    return [e.type for e in herald.store.read_stream(stream)]


def messages_of(herald: Herald, campaign_id: str) -> dict[str, list[str]]:
    """Each profile's decided messages of a campaign: profile → [message id...]."""
    found: dict[str, list[str]] = {}
    for event in herald.store.read_all(1):
        if event.type in ("MessageQueued", "MessageSuppressed", "MessageFailed") and (
            event.data["campaign_id"] == campaign_id
        ):
            found.setdefault(event.data["profile_id"], []).append(event.data["message_id"])
    return found
