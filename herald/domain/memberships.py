"""Segment membership as events: a profile entered or left a segment, and why.

Every change of a segment's membership is one event on the segment's
membership stream (`segmentmembers-<segment_id>`), whatever the segment's
kind:
- a dynamic segment's realtime membership is kept by the membership processor
  (`processors/segment_membership.py`): a profile enters or leaves when an
  event changes its result (`cause.kind` "event", naming that event), when a
  behavioural window or relative date runs out (`"timer"`, naming the
  `SegmentWindowElapsed` that fired), or when the segment's query is saved
  (`"segment_saved"`) or the segment is deleted (`"segment_deleted"`, everyone leaves);
- a static segment's membership changes when it is recalculated
  (`"recalculation"`) or edited by hand (`"added"`, `"removed"`), with the
  recalculation's or edit's id in `cause.ref`.

Saving a dynamic segment evaluates its databases' profiles in chunks (so other
processors run in between): each chunk ends with a `SegmentPopulationContinued`
bookmark the processor picks up to do the next.

So a profile's current segments and its membership "as of" any instant are a
fold of these events (`projections/segment_memberships.py`).

`SegmentWindowElapsed` is a durable timer that fired: the processor keeps each
profile's next instant of change (`segment_eval.next_change`) and the timer
tick appends this event at that instant; the processor then evaluates the
profile again as of `due_at`, so a window expires at its exact moment, not
when a scan passes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from herald.domain.events import Event, registry

CauseKind = Literal["event", "timer", "segment_saved", "segment_deleted", "recalculation", "added", "removed"]


def membership_stream(segment_id: str) -> str:
    """The stream of one segment's membership changes."""
    return f"segmentmembers-{segment_id}"


class MembershipCause(BaseModel):
    """What made a membership change: an event of the log, a timer, a save, a recalculation, an edit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: CauseKind
    event_id: str | None = None  # "event" and "timer": the causing event's id
    event_type: str | None = None
    stream: str | None = None
    ref: str | None = None  # "recalculation", "added", "removed": its id


@registry.register("ProfileEnteredSegment")
class ProfileEnteredSegment(Event):
    segment_id: str
    profile_id: str
    at: datetime
    cause: MembershipCause


@registry.register("ProfileLeftSegment")
class ProfileLeftSegment(Event):
    segment_id: str
    profile_id: str
    at: datetime
    cause: MembershipCause


@registry.register("SegmentWindowElapsed")
class SegmentWindowElapsed(Event):
    """A realtime-membership timer fired: evaluate the profile again as of `due_at`."""

    segment_id: str
    profile_id: str
    due_at: datetime


@registry.register("SegmentPopulationContinued")
class SegmentPopulationContinued(Event):
    """The membership processor's bookmark while it evaluates a saved dynamic segment's profiles in
    chunks: evaluate the next `chunk` ones after `after_profile_id`, as the save at `saved_at` asked.

    The chunk is in the event so that a rebuild takes the same steps (1,000: bookmarks written before
    steps were sized)."""

    segment_id: str
    saved_event_id: str
    saved_event_type: str
    saved_stream: str
    saved_at: datetime
    after_profile_id: str
    chunk: int = 1000


MembershipChange = ProfileEnteredSegment | ProfileLeftSegment
