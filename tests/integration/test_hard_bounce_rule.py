"""The hard-bounce rule: a hard-bounced email lands on the platform invalid list, once, and blocks sends."""

from __future__ import annotations

from herald.api.wiring import Herald
from herald.domain.statuses import Status
from herald.domain.stop_lists import PLATFORM_INVALID_LIST_ID, StopListLevel, check, stop_list_stream
from herald.domain.subscriptions import Cause, ChangeSubscriptionStatus
from herald.infra.readmodel_db import SqliteCheckpoints
from herald.processors.runtime import InProcessRuntime
from herald.processors.stop_list_rules import HardBounceRule
from herald.services.aggregates import CommandContext
from herald.services.profiles import ImportOptions
from tests.builders import create_resource, customers

CTX = CommandContext()


def _subscribed_profile(herald: Herald) -> str:
    customers(herald)
    create_resource(herald)
    row = {
        "email": "ann@example.org",
        "subscriptions": [{"resource_id": "7", "channel": "email", "email": "ann@example.org"}],
    }
    result = herald.profiles.import_rows("1", [row], ImportOptions(), CTX)[0]
    assert result.status == "created", result
    return str(result.profile_id)


def _hard_bounce(herald: Herald, profile_id: str) -> None:
    command = ChangeSubscriptionStatus(
        resource_id="7",
        channel="email",
        contact="ann@example.org",
        at=herald.clock.now(),
        status=Status.HARD_BOUNCED,
        cause=Cause.HARD_BOUNCE,
    )
    herald.profiles.execute(profile_id, command, CTX)


def test_a_hard_bounce_puts_the_address_on_the_platform_invalid_list(herald: Herald) -> None:
    profile_id = _subscribed_profile(herald)
    _hard_bounce(herald, profile_id)
    herald.runtime.drain()
    entries = herald.projections.catalog.entries(PLATFORM_INVALID_LIST_ID)
    assert [(e["kind"], e["value"], e["reason"]) for e in entries] == [
        ("email", "ann@example.org", "hard_bounce")
    ]
    hit = check(herald.catalog.stop_list_lookup, channel="email", contact="Ann@Example.org", database_id="1")
    assert hit is not None and hit.level is StopListLevel.PLATFORM and hit.list_id == PLATFORM_INVALID_LIST_ID


def test_redelivering_the_bounce_to_the_rule_adds_nothing_twice(herald: Herald) -> None:
    profile_id = _subscribed_profile(herald)
    _hard_bounce(herald, profile_id)
    herald.runtime.drain()
    before = herald.store.read_stream(stop_list_stream(PLATFORM_INVALID_LIST_ID))
    SqliteCheckpoints(herald.projections.profiles.conn).save("hard-bounce-to-stop-list", 0)
    rerun = InProcessRuntime(
        herald.store,
        SqliteCheckpoints(herald.projections.profiles.conn),
        reactors=[HardBounceRule(herald.catalog.stop_lists)],
        execute=herald.aggregates.execute_request,
    )
    rerun.drain()
    assert herald.store.read_stream(stop_list_stream(PLATFORM_INVALID_LIST_ID)) == before


def test_other_status_changes_leave_stop_lists_alone(herald: Herald) -> None:
    profile_id = _subscribed_profile(herald)
    command = ChangeSubscriptionStatus(
        resource_id="7",
        channel="email",
        contact="ann@example.org",
        at=herald.clock.now(),
        status=Status.UNSUBSCRIBED,
        cause=Cause.API,
    )
    herald.profiles.execute(profile_id, command, CTX)
    herald.runtime.drain()
    assert herald.store.read_stream(stop_list_stream(PLATFORM_INVALID_LIST_ID)) == []
