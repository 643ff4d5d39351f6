"""Profile states for consumers that fold profile events themselves: the loader and a bounded cache.

A consumer that needs a profile's state as of the event it applies (the report
sink's snapshots, the segment membership processor) keeps the states it has
folded in a `ProfileStates`; a profile it does not hold is loaded from the log
as of that event (`profile_loader`) and folded on from there, so a state never
depends on where batches end or what the cache evicted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from herald.domain.events import registry
from herald.domain.profiles import ProfileState, profile_decider, profile_stream
from herald.infra.event_store import EventStore, RecordedEvent

LoadProfile = Callable[[str, int], ProfileState]
"""(profile id, position) → the profile folded from its events before that position."""

PROFILE_STREAM_PREFIX = "profile-"


def profile_loader(store: EventStore) -> LoadProfile:
    """Loads a profile's state as it was just before a log position."""

    def load_profile(profile_id: str, before_position: int) -> ProfileState:
        events = store.read_stream(profile_stream(profile_id))
        earlier = (e for e in events if e.position < before_position)
        return profile_decider.fold(registry.decode(e.type, e.schema_version, e.payload) for e in earlier)

    return load_profile


class ProfileStates:
    """The states folded so far, most recently used kept, at most `size` of them."""

    def __init__(self, load: LoadProfile, size: int) -> None:
        self._load = load
        self._size = size
        self._states: OrderedDict[str, ProfileState] = OrderedDict()

    def state(self, profile_id: str, position: int) -> ProfileState:
        """The profile as of just before `position` (the event being applied): held, else loaded."""
        state = self._states.pop(profile_id, None)
        if state is None:
            state = self._load(profile_id, position)
        self._keep(profile_id, state)
        return state

    def fold(self, event: RecordedEvent) -> tuple[ProfileState, ProfileState]:
        """The profile before and after `event`, an event of its stream; the state after is kept."""
        profile_id = event.stream[len(PROFILE_STREAM_PREFIX) :]
        first = event.version == 1 and profile_id not in self._states
        before = profile_decider.initial if first else self.state(profile_id, event.position)
        typed = registry.decode(event.type, event.schema_version, event.payload)
        after = profile_decider.evolve(before, typed)
        self._keep(profile_id, after)
        return before, after

    def held(self, profile_id: str) -> ProfileState | None:
        return self._states.get(profile_id)

    def drop(self, profile_id: str) -> None:
        self._states.pop(profile_id, None)

    def clear(self) -> None:
        self._states.clear()

    def _keep(self, profile_id: str, state: ProfileState) -> None:
        self._states[profile_id] = state
        self._states.move_to_end(profile_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)
