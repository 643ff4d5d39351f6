"""The webhook worker: makes the calls of scenario webhook nodes off the processor, and records each answer.

The scenario processor never waits on the network: an instance that enters a webhook node waits
for its call (`Awaiting.kind == "call"`), which the `scenario_calls` read model lists. The worker
takes those calls, renders the URL and the "указать свое" parameters with the template language
(`{lead.email}`, `{json.order.id}`, `{loyalty.<program>.promocode}`, which is empty when the profile
has no code of that program), reads the "из подписчика" parameters from the profile's fields, calls
(`infra.webhooks`, in threads, at most `concurrency` at once) and appends `ScenarioWebhookAnswered`
to the journey, with an id derived from the step and the attempt. The processor then goes on, or
schedules a retry.

Delivery is at least once: a worker stopped between a call and recording its answer calls again
(the receiver sees the same `X-Herald-Request-Id`). A call being made is not taken again by the
next pass while the read model still lists it. A scenario that is not active makes no calls; its
instances wait and are called when it is active again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from herald.domain.events import registry
from herald.domain.profiles import ProfileState
from herald.domain.scenario_graph import WebhookNode
from herald.domain.scenario_instances import (
    JourneyState,
    ScenarioWebhookAnswered,
    evolve,
    journey_key,
)
from herald.domain.scenarios import ScenarioState
from herald.domain.secrets import redacted_url
from herald.domain.templating import RenderContext, TemplateRenderError, TemplateSyntaxError, compile_template
from herald.infra.clock import Clock
from herald.infra.event_store import EventStore, NewEvent
from herald.infra.ids import deterministic_id
from herald.infra.secret_box import SecretBox
from herald.infra.webhooks import WebhookAnswer, WebhookCaller, WebhookRequest
from herald.messages.rendering import lead_of
from herald.projections.scenario_instances import ScenarioInstancesProjection
from herald.services.scenario_secrets import opened_url, opened_value

ACTOR = "scenario-webhooks"
BATCH = 100


class WebhookPorts(Protocol):
    def scenario(self, scenario_id: str) -> ScenarioState: ...

    def profile(self, profile_id: str) -> ProfileState: ...

    def promo_codes(self, profile_id: str) -> Mapping[str, str]:
        """The profile's promo codes by loyalty program (empty without loyalty programs)."""
        ...


@dataclass(frozen=True, slots=True)
class _Call:
    stream: str
    entry: int
    visit: int
    attempt: int
    request: WebhookRequest

    @property
    def key(self) -> tuple[str, int, int, int]:
        return self.stream, self.entry, self.visit, self.attempt


class ScenarioWebhooks:
    def __init__(
        self,
        store: EventStore,
        instances: ScenarioInstancesProjection,
        caller: WebhookCaller,
        ports: WebhookPorts,
        clock: Clock,
        box: SecretBox,
        concurrency: int = 8,
    ) -> None:
        self._store = store
        self._instances = instances
        self._caller = caller
        self._ports = ports
        self._clock = clock
        self._box = box
        self._concurrency = concurrency
        self._taken: set[tuple[str, int, int, int]] = set()  # being made, or answered and not yet projected

    def call_due(self) -> int:
        """Make the due calls one after another and record their answers (tests; a worker without a loop)."""
        calls = self._take()
        self._record(calls, [self._caller.call(call.request) for call in calls])
        return len(calls)

    async def run_once(self) -> int:
        """Make the due calls, `concurrency` at a time in threads; record the answers on the loop."""
        calls = self._take()
        limit = asyncio.Semaphore(self._concurrency)

        async def one(call: _Call) -> WebhookAnswer:
            async with limit:
                return await asyncio.to_thread(self._caller.call, call.request)

        self._record(calls, list(await asyncio.gather(*(one(call) for call in calls))))
        return len(calls)

    def close(self) -> None:
        self._caller.close()

    def _take(self) -> list[_Call]:
        listed = self._instances.calls(BATCH + len(self._taken))
        self._taken &= set(listed)  # the projection dropped the rest: their answers are in
        calls = []
        for row in listed:
            if row in self._taken:
                continue
            call = self._prepare(*row)
            if call is not None:
                calls.append(call)
                self._taken.add(row)
            if len(calls) >= BATCH:
                break
        return calls

    def _prepare(self, stream: str, entry: int, visit: int, attempt: int) -> _Call | None:
        scenario_id, profile_id = journey_key(stream)
        scenario = self._ports.scenario(scenario_id)
        if not scenario.exists or not scenario.active:
            return None
        journey = _fold(self._store, stream)
        instance = journey.instances.get(entry)
        if instance is None or instance.awaiting is None or instance.awaiting.kind != "call":
            return None
        node = scenario.node(instance.node_id or "", instance.version)
        if not isinstance(node, WebhookNode):
            return None
        profile = self._ports.profile(profile_id)
        context = RenderContext(
            lead=lead_of(profile),
            json=instance.content or {},
            loyalty={
                program: {"promocode": code} for program, code in self._ports.promo_codes(profile_id).items()
            },
        )
        params = [
            (p.name, _param(p.source, opened_value(self._box, node, p), profile, context))
            for p in node.params
        ]
        request = WebhookRequest(
            method=node.method,
            url=_render(opened_url(self._box, node), context),
            params=params,
            timeout_seconds=node.timeout_seconds,
            request_id=f"{stream}-{entry}-{visit}",
        )
        return _Call(stream, entry, visit, attempt, request)

    def _record(self, calls: Sequence[_Call], answers: Sequence[WebhookAnswer]) -> None:
        now = self._clock.now()
        for call, answer in zip(calls, answers, strict=True):
            scenario_id, profile_id = journey_key(call.stream)
            answered = ScenarioWebhookAnswered(
                scenario_id=scenario_id,
                profile_id=profile_id,
                entry=call.entry,
                visit=call.visit,
                attempt=call.attempt,
                method=call.request.method,
                url=redacted_url(call.request.url),  # what was called, its credentials masked
                status=answer.status,
                body=answer.body,
                error=answer.error,
                retryable=answer.retryable,
                duration_ms=answer.duration_ms,
                at=now,
            )
            event = NewEvent(
                event_id=deterministic_id(ACTOR, *call.key),
                type=answered.type_name,
                data=answered.to_data(),
                occurred_at=now,
                metadata={"actor": ACTOR},
            )
            self._store.append(call.stream, [event])


def _fold(store: EventStore, stream: str) -> JourneyState:
    state = JourneyState()
    for recorded in store.read_stream(stream):
        state = evolve(state, registry.decode(recorded.type, recorded.schema_version, recorded.data))
    return state


def _param(source: str, value: str, profile: ProfileState, context: RenderContext) -> str:
    if source == "custom":
        return _render(value, context)
    held: Any = profile.fields.get(value)
    if isinstance(held, list):
        return ",".join(str(item) for item in held)
    return "" if held is None else str(held)


def _render(text: str, context: RenderContext) -> str:
    """A template checked at save; one that fails when rendered gives the empty text (the call then fails)."""
    try:
        return compile_template(text).render(context)
    except (TemplateSyntaxError, TemplateRenderError):
        return ""
