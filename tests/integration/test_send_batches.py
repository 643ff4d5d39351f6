"""The sender worker's batches: a batch's attempts are one append, its outcomes are kept and appended
together. A conflict on one message of a batch loses none of the others; a crash between the batched
steps sends nothing twice.

The email worker runs in process against an aiosmtpd sink (the real SMTP path); what another writer
does at the worst moment (another worker taking a message, a tracker's hit) is done through the
channel and gateway ports the worker calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from herald.api.wiring import Herald, build
from herald.domain import deliveries as dl
from herald.domain.messages import MessageQueued
from herald.infra.config import Settings
from herald.messages.worker import BATCH, Composed, Lookups
from herald.senders.gateway import Outbound, SendOutcome
from herald.services.aggregates import CommandContext
from tests.integration.test_email_crash import queue_messages, sink
from tests.smtp_sink import MessageCounter

__all__ = ["sink"]  # the fixture
MESSAGES = BATCH + 8  # more than one batch
OTHER = CommandContext(actor="other", source="test")


class Crash(BaseException):
    """The process dies here (nothing catches a BaseException the worker does not expect)."""


@pytest.fixture
def queued(tmp_path: Path, sink: tuple[MessageCounter, int]) -> Iterator[tuple[Herald, MessageCounter]]:
    relay, port = sink
    herald = build(Settings(data_dir=tmp_path / "data", admin_token="t", reports_engine="off"))
    try:
        queue_messages(herald, port, MESSAGES, connections=1)
        yield herald, relay
    finally:
        herald.close()


def _events(herald: Herald, kind: str) -> list[str]:
    return [e.data["message_id"] for e in herald.store.read_all(1) if e.type == kind]


def _send_all(herald: Herald) -> None:
    """Passes of the email worker, the processors keeping its queue run between them, until none is due."""
    herald.runtime.drain()
    while asyncio.run(herald.email.run_once()):
        herald.runtime.drain()
    herald.runtime.drain()


def _wrap_compose(herald: Herald, after: Callable[[MessageQueued], None]) -> None:
    channel = herald.email.channel
    compose = channel.compose

    def composed(queued: MessageQueued, lookups: Lookups, at: datetime) -> Composed:
        made = compose(queued, lookups, at)
        after(queued)
        return made

    channel.compose = composed  # type: ignore[method-assign]


def _wrap_gateway_send(herald: Herald, after: Callable[[Outbound], None]) -> None:
    channel = herald.email.channel
    build_gateway = channel.gateway

    def gateway(*args: Any) -> Any:
        made = build_gateway(*args)
        send = made.send

        async def sent(message: Outbound, before_commit: Any = None) -> SendOutcome:
            outcome = await send(message, before_commit)
            after(message)
            return outcome

        made.send = sent
        return made

    channel.gateway = gateway  # type: ignore[method-assign]


def test_a_message_another_worker_takes_leaves_the_rest_of_its_batch_sent(
    queued: tuple[Herald, MessageCounter],
) -> None:
    herald, relay = queued
    taken: list[str] = []

    def another_worker_takes(message: MessageQueued) -> None:
        if not taken:  # the first of the batch, after this worker read it
            taken.append(message.message_id)
            command = dl.StartAttempt("main", herald.clock.now())
            herald.deliveries.execute(message.message_id, command, OTHER)

    _wrap_compose(herald, another_worker_takes)
    asyncio.run(herald.email.run_once())

    assert taken and taken[0] not in relay.ids  # the other worker has it
    assert len(relay.ids) == MESSAGES - 1 and set(relay.ids.values()) == {1}
    assert sorted(_events(herald, "MessageDelivered")) == sorted(relay.ids)
    assert _events(herald, "MessageSendAttempted").count(taken[0]) == 1  # only the other's


def test_a_hit_before_the_batched_outcomes_conflicts_and_every_outcome_is_still_recorded(
    queued: tuple[Herald, MessageCounter],
) -> None:
    herald, relay = queued
    hit: list[str] = []

    def opened_at_once(message: Outbound) -> None:
        if not hit:  # its stream moves on between the commit mark and the batch's outcomes
            hit.append(message.message_id)
            herald.deliveries.hit(
                message.message_id, "open", "198.51.100.7", "Mail", None, herald.clock.now()
            )

    _wrap_gateway_send(herald, opened_at_once)
    _send_all(herald)

    assert len(relay.ids) == MESSAGES and set(relay.ids.values()) == {1}
    assert sorted(_events(herald, "MessageDelivered")) == sorted(relay.ids)
    assert hit[0] in _events(herald, "MessageOpened")


def _dies_at(herald: Herald, kind: str) -> None:
    """The process is killed right before the first append holding a `kind` event: that append and
    every one after never happen (a BaseException nothing in the worker catches, like SIGKILL)."""
    store = herald.aggregates.store
    append_many = store.append_many
    dead = [False]

    def appended(appends: Any) -> Any:
        dead[0] = dead[0] or any(e.type == kind for a in appends for e in a.events)
        if dead[0]:
            raise Crash
        return append_many(appends)

    store.append_many = appended  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("kind", "sent_before"),
    [
        ("MessageDelivered", BATCH),  # a batch's outcomes kept, the marks of all of them stored
        ("MessageCommitting", 0),  # a batch's attempts stored, none of it left
    ],
)
def test_a_crash_between_batched_steps_sends_nothing_twice(
    tmp_path: Path, queued: tuple[Herald, MessageCounter], kind: str, sent_before: int
) -> None:
    herald, relay = queued
    _dies_at(herald, kind)
    with pytest.raises(Crash):
        asyncio.run(herald.email.run_once())
    assert sent_before <= len(relay.ids) < MESSAGES and set(relay.ids.values()) <= {1}
    if sent_before == 0:
        assert not relay.ids

    restarted = build(Settings(data_dir=tmp_path / "data", admin_token="t", reports_engine="off"))
    try:
        restarted.runtime.drain()
        assert asyncio.run(restarted.email.recover()) >= BATCH  # the batch the crash cut
        _send_all(restarted)
        assert len(relay.ids) == MESSAGES and set(relay.ids.values()) == {1}  # each exactly once
        assert sorted(_events(restarted, "MessageDelivered")) == sorted(relay.ids)
    finally:
        restarted.close()
