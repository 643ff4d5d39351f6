"""A message's tracked actions: the unique rule, machines' hits with their reason, a click's implied open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.domain import deliveries as dl
from herald.domain.bots import BotVerdict
from herald.domain.events import Event
from herald.domain.messages import MessageQueued
from tests.unit.decider_table import then

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
QUEUED = MessageQueued(
    message_id="m1",
    campaign_id="c1",
    run_id="r1",
    profile_id="p1",
    database_id="1",
    resource_id="1",
    channel="email",
    contact="ann@example.org",
    template_id="t1",
    template_version=1,
    due_at=T0,
    local_day=T0.date(),
    at=T0,
)
REF = {k: v for k, v in QUEUED.model_dump().items() if k in dl.MessageOpened.model_fields and k != "at"}
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
SCANNER = BotVerdict(
    "user_agent", "the User-Agent contains 'curl/', a crawler's, scanner's or HTTP library's"
)
PERSON = {"ip": "203.0.113.7", "user_agent": UA, "bot": False, "bot_rule": "", "bot_reason": ""}
MACHINE = {
    "ip": "127.0.0.1",
    "user_agent": "curl/8.5.0",
    "bot": True,
    "bot_rule": SCANNER.rule,
    "bot_reason": SCANNER.reason,
}
LINK = {"link_id": "html.1", "url": "https://shop.example.com/", "link_name": ""}


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def opened(hours: float, unique: bool, **fields: Any) -> dl.MessageOpened:
    return dl.MessageOpened(**REF, **{**PERSON, **fields}, unique=unique, at=at(hours))


def clicked(hours: float, unique: bool, **fields: Any) -> dl.LinkClicked:
    return dl.LinkClicked(**REF, **{**PERSON, **fields}, **LINK, unique=unique, at=at(hours))


def hit(action: str, hours: float, bot: BotVerdict | None = None) -> dl.RecordHit:
    agent = "curl/8.5.0" if bot else UA
    ip = "127.0.0.1" if bot else "203.0.113.7"
    return dl.RecordHit(action, ip, agent, bot, at(hours), **LINK if action == "click" else {})  # type: ignore[arg-type]


CASES: list[tuple[str, list[Event], dl.RecordHit, list[Event]]] = [
    ("a first open is unique", [QUEUED], hit("open", 1), [opened(1, True)]),
    ("again within 24 h it is not", [QUEUED, opened(1, True)], hit("open", 20), [opened(20, False)]),
    ("after 24 h it is again", [QUEUED, opened(1, True)], hit("open", 25), [opened(25, True)]),
    (
        "a machine's open is recorded with its rule and reason, never unique",
        [QUEUED],
        hit("open", 1, SCANNER),
        [opened(1, False, **MACHINE)],
    ),
    (
        "a click with no open before it implies the open",
        [QUEUED],
        hit("click", 1),
        [opened(1, True, implied=True), clicked(1, True)],
    ),
    (
        "a click after a counted open implies nothing",
        [QUEUED, opened(1, True)],
        hit("click", 2),
        [clicked(2, True)],
    ),
    (
        "a click 24 h after the last counted open implies a new one",
        [QUEUED, opened(1, True), clicked(2, True)],
        hit("click", 26),
        [opened(26, True, implied=True), clicked(26, True)],
    ),
    (
        "a machine's click implies no open",
        [QUEUED],
        hit("click", 1, SCANNER),
        [clicked(1, False, **MACHINE)],
    ),
    (
        "a machine's open counts for nothing: a person's click still implies the open",
        [QUEUED, opened(1, False, **MACHINE)],
        hit("click", 2),
        [opened(2, True, implied=True), clicked(2, True)],
    ),
]


@pytest.mark.parametrize(("given", "when", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_tracked_actions(given: list[Event], when: dl.RecordHit, expected: list[Event]) -> None:
    assert then(dl.delivery_decider, given, when) == expected
