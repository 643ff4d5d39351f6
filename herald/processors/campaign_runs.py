"""The campaign run processor: a started run, in chunks, from frozen audience to decided messages.

When a run starts it freezes its audience (`RunAudiences`); then each chunk
of recipients passes the send gate, gets its template (equal shares, by place
in the frozen list) and is rendered; every recipient's decision (queued,
suppressed with the reason, or failed with the reason) is appended together
with the run's progress, in one atomic append. The progress event wakes the
processor for the next chunk, so a run is a chain of small appends: it
yields to other work between chunks, pausing stops it between two chunks,
and a crash resumes at the last recorded chunk.

Every message's id derives from (campaign, run, profile) and its decision
event's id from the message id, so a redelivered chunk writes nothing twice.

A chunk is all or nothing, the send gate's memory included: the gate of a
chunk starts from the contacts the run's recorded chunks used, kept in memory
under the offset their progress event names, so only a chunk whose append
went through is remembered. A chunk tried again (after a failure, or after a
restart) starts from the contacts the `campaigns` read model holds for the
run, never from what a failed try had seen.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from herald.domain import campaigns as cp
from herald.domain import messages as ms
from herald.domain.messages import MessageDraft
from herald.domain.profiles import ProfileState
from herald.domain.schedules import Run, local_run_instant, profile_due_at
from herald.domain.send_gate import SendGate
from herald.infra.event_store import EventFilter, RecordedEvent
from herald.infra.run_audiences import RunAudiences
from herald.processors.runtime import Dispatch, Emission, Reaction

CHUNK = 1000
_IDS = uuid.UUID("0b6f1c63-1d8e-5f0e-8d1c-7a4b9e2f3c10")


# The events that make a run decide its next chunk.
_WAKES = ("CampaignRunStarted", "CampaignRunProgressed", "CampaignResumed")


class RunPorts(Protocol):
    """What a run reads from the rest of Herald (wired in `api/wiring.py`)."""

    account_timezone: str

    def campaign(self, campaign_id: str) -> cp.CampaignState: ...
    def audience(self, state: cp.CampaignState, phase: str) -> Iterable[str]: ...
    def profile(self, profile_id: str) -> ProfileState: ...
    def gate(self, settings: cp.CampaignSettings, at: datetime) -> SendGate: ...
    def run_contacts(self, campaign_id: str, run_id: str, seen_at: int) -> set[str]:
        """The contacts the run's recorded messages used, as of the log position `seen_at`."""
        ...

    def lookups(self) -> object:
        """A cache the decisions of one chunk share (the chunk's messages see one state of the catalog)."""
        ...

    def decide(self, draft: MessageDraft, gate: SendGate, profile: ProfileState) -> ms.MessageDecision:
        """Gate, render and record what becomes of one message (queued, suppressed or failed)."""
        ...

    def chunk_effects(self, lookups: object, seed: str) -> Sequence[Emission]:
        """What the chunk's renders gave out (promo codes), appended with its decisions; ids from `seed`."""
        ...


class CampaignRunner:
    name = "campaign-runs"
    consumes = EventFilter(frozenset(_WAKES))

    def __init__(self, ports: RunPorts, audiences: RunAudiences, chunk: int = CHUNK) -> None:
        self.ports = ports
        self.audiences = audiences
        self.chunk = chunk
        # per run: the contacts its recorded chunks used, and the offset their last progress names
        self._contacts: dict[str, tuple[int, set[str]]] = {}

    def handle(self, event: RecordedEvent) -> Sequence[Reaction]:
        if event.type not in _WAKES:
            return []
        state = self.ports.campaign(event.data["campaign_id"])
        run = state.current_run
        if run is None or state.settings is None or state.status is not cp.CampaignStatus.RUNNING:
            return []
        if event.type == "CampaignRunProgressed" and event.data["offset"] != run.offset:
            return []  # a redelivered, older progress: the chunk after it is already decided
        size = self.audiences.size(run.run_id)
        if size is None:  # the run's first chunk: freeze its audience (read once, not per chunk)
            size = self.audiences.freeze(run.run_id, self._audience(state, run))
        if run.offset >= size:
            self._contacts.pop(run.run_id, None)
            return [self._finish(state, run, size, event.occurred_at)]
        return self._chunk(state, state.settings, run, event)

    def _audience(self, state: cp.CampaignState, run: cp.RunState) -> Iterable[str]:
        ids: Iterable[str] = self.ports.audience(state, run.phase)
        if run.phase == "test":
            split = state.settings.split_test if state.settings else None
            assert split is not None
            ids = (
                p
                for p in ids
                if split.sample_from_pct <= _percentile(state.campaign_id, p) < split.sample_to_pct
            )
        if run.limit is not None:
            ids = _first(ids, run.limit)
        return ids

    def _chunk(
        self, state: cp.CampaignState, settings: cp.CampaignSettings, run: cp.RunState, cause: RecordedEvent
    ) -> list[Reaction]:
        at = cause.occurred_at
        recipients = self.audiences.page(run.run_id, run.offset, self.chunk)
        gate = self.ports.gate(settings, at)
        if settings.check_contact_uniqueness:
            gate.remember(self._used_contacts(state.campaign_id, run, cause.position))
        lookups = self.ports.lookups()
        templates = _templates(state, settings, run)
        reactions: list[Reaction] = []
        counts = {"queued": 0, "suppressed": 0, "failed": 0, "skipped": 0}
        for place, profile_id in enumerate(recipients, start=run.offset):
            template_id = templates[place % len(templates)]
            decision = self._decide(state, settings, run, gate, profile_id, template_id, at, lookups)
            if decision is None:
                counts["skipped"] += 1
                continue
            counts[_COUNTED[type(decision)]] += 1
            reactions.append(_emission(decision))
        # what the renders gave out goes first: the decisions that carry it follow in the same append
        reactions[:0] = self.ports.chunk_effects(lookups, f"{run.run_id}/{run.offset}")
        offset = run.offset + len(recipients)
        self._contacts[run.run_id] = (offset, gate.used_contacts())  # valid once this chunk is recorded
        progress = cp.CampaignRunProgressed(
            campaign_id=state.campaign_id, run_id=run.run_id, offset=offset, **counts
        )
        reactions.append(
            Emission(
                cp.campaign_stream(state.campaign_id),
                "CampaignRunProgressed",
                progress.model_dump(mode="json"),
                at,
                event_id=uuid.uuid5(_IDS, f"{run.run_id}/{offset}"),
            )
        )
        return reactions

    def _used_contacts(self, campaign_id: str, run: cp.RunState, seen_at: int) -> set[str]:
        """The contacts the run's recorded chunks used: remembered from the chunk before, when that
        chunk is the one the run's state says was recorded last; else read back from the read model.
        The memory is taken, not shared: the gate adds to it, and a try that fails leaves none behind."""
        remembered = self._contacts.pop(run.run_id, None)
        if remembered is not None and remembered[0] == run.offset:
            return remembered[1]
        if run.offset == 0:
            return set()
        return self.ports.run_contacts(campaign_id, run.run_id, seen_at)

    def _decide(
        self,
        state: cp.CampaignState,
        settings: cp.CampaignSettings,
        run: cp.RunState,
        gate: SendGate,
        profile_id: str,
        template_id: str,
        at: datetime,
        lookups: object,
    ) -> ms.MessageDecision | None:
        """The profile's message; None when its local time for this run has passed (it waits for the next)."""
        message_id = ms.message_id(state.campaign_id, run.run_id, profile_id)
        profile = self.ports.profile(profile_id)
        due = _due_at(settings, run, profile, at, self.ports.account_timezone)
        if due is None:
            return None
        draft = MessageDraft(
            state.campaign_id, settings, run.run_id, message_id, template_id, at, due, lookups
        )
        return self.ports.decide(draft, gate, profile)

    def _finish(self, state: cp.CampaignState, run: cp.RunState, size: int, at: datetime) -> Reaction:
        # a profile whose local time had passed is still to be sent to by the next run
        exhausted = (run.limit is None or size < run.limit) and run.skipped == 0
        cursor = self.audiences.page(run.run_id, size - 1, 1)[0] if size else None
        command = cp.FinishRun(
            state.campaign_id, run.run_id, size, exhausted, cursor, self.ports.account_timezone, at
        )
        return Dispatch(cp.campaign_decider, cp.campaign_stream(state.campaign_id), command)


_COUNTED: dict[type, str] = {
    ms.MessageQueued: "queued",
    ms.MessageSuppressed: "suppressed",
    ms.MessageFailed: "failed",
}


def _emission(decision: ms.MessageDecision) -> Emission:
    return Emission(
        ms.message_stream(decision.message_id),
        type(decision).__name__,
        decision.model_dump(mode="json"),
        decision.at,
        event_id=uuid.uuid5(_IDS, decision.message_id),
    )


def _due_at(
    settings: cp.CampaignSettings,
    run: cp.RunState,
    profile: ProfileState,
    at: datetime,
    account_timezone: str,
) -> datetime | None:
    """When the message falls due: at once, or at the run's wall time in the profile's time zone."""
    schedule = settings.schedule
    if schedule is None or run.wall is None or run.closes_at is None:
        return at
    instant = local_run_instant(run.wall, schedule.timezone or account_timezone)
    window = Run(run.wall, instant, run.started_at or at, run.closes_at)
    return profile_due_at(schedule, window, profile.timezone, run.started_at or at)


def _templates(state: cp.CampaignState, settings: cp.CampaignSettings, run: cp.RunState) -> tuple[str, ...]:
    """The templates this run shares out: the winner alone once a split test has one."""
    if run.phase in ("winner", "launch_now", "run") and state.winner_template_id is not None:
        return (state.winner_template_id,)
    return settings.template_ids


def _percentile(campaign_id: str, profile_id: str) -> float:
    """Where a profile falls in [0, 100) for a campaign's test slice: stable, and independent per campaign."""
    digest = hashlib.sha256(f"{campaign_id}/{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def _first(ids: Iterable[str], limit: int) -> Iterable[str]:
    for place, profile_id in enumerate(ids):
        if place >= limit:
            return
        yield profile_id
