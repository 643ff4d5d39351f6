"""Pixels: their commands, their tracking codes, and what a hit records and whom it is about.

A hit (`hit`) names its visitor by the tracker's visitor cookie (an
anonymous id, made on the first hit), and its profile by, in order:
1. a tracked link's parameter (`hv`: the signed token a message's `{visitor}`
   renders): the message's profile;
2. `match` (the JavaScript API): the profile the field names in the pixel's
   database (or `match.db_id` for a pixel of all databases), by
   `matching_mode` (email, email_profile, phone, profile_id, or a unique
   custom field); with import allowed, a profile that is not found is created
   from `match` and `update`;
3. the browser cookie (`api/browser_cookie.py`): the profile that opened or
   clicked an email in this browser;
4. the visitor cookie: the profile the visitor was identified as before (by
   one of the above, or by an `identify` with its anonymous id);
5. with import allowed, a new anonymous profile (no email, source `pixel`) in
   the pixel's database; never for a bot.
`update` changes the profile only when the pixel allows import. A visitor
identified as a profile is linked to it (`AnonymousIdLinked`): its anonymous
goals are carried to that profile (`processors/goal_carry.py`), and an
anonymous profile the pixel made for it is merged into the profile found.

Each goal of the hit is one tracked event (a hit without goals: one pixel
visit) on the profile's activity stream, or the visitor's anonymous stream
when no profile is known; see `domain/goals.py` for its properties.

Decisions where the guide is silent:
- A pixel of one database never attributes a hit to a profile of another (a
  tracked link from another database's message leaves the hit anonymous).
- An anonymous visitor of a pixel of all databases is recorded with no database.
- A match that finds nothing, on a pixel that does not allow import, leaves
  the hit to the cookie.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from herald.domain import claims
from herald.domain import pixels as px
from herald.domain.errors import DomainError, NotFound, ValidationFailed
from herald.domain.goals import PIXEL_VISIT, GoalSource, goal_properties
from herald.domain.matching import MatchMode
from herald.domain.profiles import ImportMode, is_placeholder_email, profile_decider, profile_stream
from herald.domain.tracking import ActivityTracked, activity_payload, activity_stream, anonymous_stream
from herald.infra.event_store import NewEvent, StreamAppend, WrongExpectedVersion
from herald.infra.pixel_signing import PixelSigner
from herald.messages.deliveries import DeliveryService
from herald.projections.profiles import ProfilesProjection
from herald.services.aggregates import Aggregates, CommandContext, Outcome
from herald.services.profile_lookup import ProfileLookup
from herald.services.profiles import ImportOptions, ProfileService
from herald.services.tracking import TrackingService

KEY_BYTES = 24
HitKind = Literal["js", "img", "redirect"]
MATCHING_MODES = {
    "email": MatchMode.EMAIL,
    "email_profile": MatchMode.EMAIL_PROFILE,
    "phone": MatchMode.PHONE,
    "profile_id": MatchMode.PROFILE_ID,
    "custom": MatchMode.CUSTOM,
}
_SOURCES: dict[str, GoalSource] = {"js": "pixel_js", "img": "pixel_img", "redirect": "pixel_redirect"}
_ATTEMPTS = 3


def key_stream(key: str) -> str:
    return claims.claim_stream("pixel", "key", key)


@dataclass(frozen=True, slots=True)
class PixelHit:
    """One request to a pixel, as the tracker verified and parsed it."""

    kind: HitKind
    goals: tuple[str, ...]
    value: float
    at: datetime
    visitor_id: str | None = None  # from the visitor cookie
    message_id: str | None = None  # from a tracked link's `hv`
    browser_profile: str | None = None  # from the browser cookie: who opened or clicked an email here
    match: Mapping[str, Any] | None = None
    update: Mapping[str, Any] | None = None
    matching_mode: str | None = None
    ip: str = ""
    user_agent: str = ""
    url: str = ""
    referrer: str = ""
    bot: bool = False


@dataclass(frozen=True, slots=True)
class HitResult:
    visitor_id: str
    profile_id: str | None
    fires_triggers: bool


class PixelService:
    def __init__(
        self,
        aggregates: Aggregates,
        profiles: ProfileService,
        profile_reads: ProfilesProjection,
        tracking: TrackingService,
        deliveries: DeliveryService,
        signer: PixelSigner,
    ) -> None:
        self.aggregates = aggregates
        self.profiles = profiles
        self.profile_reads = profile_reads
        self.tracking = tracking
        self.deliveries = deliveries
        self.signer = signer
        self.lookup = ProfileLookup(profiles.catalog, profile_reads)

    # --- the pixel -----------------------------------------------------------------------------

    def pixel(self, pixel_id: str, path: str = "pixel_id") -> px.PixelState:
        state = self.aggregates.load(px.pixel_decider, px.pixel_stream(pixel_id)).state
        if not state.exists:
            raise NotFound(f"no pixel {pixel_id!r}", path)
        return state

    def version(self, pixel_id: str) -> int:
        return self.aggregates.load(px.pixel_decider, px.pixel_stream(pixel_id)).version

    def by_key(self, key: str) -> px.PixelState | None:
        """The live pixel whose key is `key` (a hit's `k`)."""
        owner = self.aggregates.load(claims.claim_decider, key_stream(key)).state.owner
        if owner is None:
            return None
        state = self.aggregates.load(px.pixel_decider, px.pixel_stream(owner)).state
        return state if state.exists else None

    def create(self, settings: px.PixelSettings, seen: int, context: CommandContext) -> tuple[str, Outcome]:
        """A pixel under the next free id (after `seen` ones), with a new key claimed for it."""
        self._check_database(settings)
        key = self.aggregates.ids.token(KEY_BYTES)
        now = self.aggregates.clock.now()
        number = seen
        while True:
            number += 1
            pixel_id = str(number)
            stream = px.pixel_stream(pixel_id)
            if self.aggregates.store.stream_version(stream) != 0:
                continue
            events = px.decide(px.CreatePixel(pixel_id, key, settings, now), px.PixelState())
            claim = claims.decide(claims.ClaimValue("pixel", "key", key, pixel_id), claims.ClaimState())
            appends = [
                StreamAppend(stream, self.aggregates.new_events(stream, events, context), 0),
                StreamAppend(key_stream(key), self.aggregates.new_events(key_stream(key), claim, context), 0),
            ]
            try:
                results = self.aggregates.store.append_many(appends)
            except WrongExpectedVersion as conflict:
                if conflict.stream == stream:
                    continue
                raise
            ids = tuple(e.event_id for e in appends[0].events)
            return pixel_id, Outcome(stream, ids, results[0].stream_version, tuple(events))

    def change(
        self, pixel_id: str, settings: px.PixelSettings, context: CommandContext, expected: int | None = None
    ) -> Outcome:
        self._check_database(settings)
        command = px.ChangePixel(pixel_id, settings, self.aggregates.clock.now())
        return self.aggregates.execute(
            px.pixel_decider, px.pixel_stream(pixel_id), command, context, expected
        )

    def delete(self, pixel_id: str, context: CommandContext) -> Outcome:
        command = px.DeletePixel(pixel_id, self.aggregates.clock.now())
        return self.aggregates.execute(px.pixel_decider, px.pixel_stream(pixel_id), command, context)

    def _check_database(self, settings: px.PixelSettings) -> None:
        if settings.database_id is not None:
            self.profiles.catalog.database(settings.database_id, "database_id")

    # --- a hit ---------------------------------------------------------------------------------

    def hit(self, pixel: px.PixelState, hit: PixelHit, context: CommandContext) -> HitResult:
        """Record the hit's goals for its profile (or anonymous visitor), identifying and importing as the
        pixel allows."""
        settings = pixel.settings
        assert settings is not None
        visitor = hit.visitor_id or self.aggregates.ids.uuid().hex
        linked = self._linked(visitor, settings.database_id)
        profile, updated = self._named(pixel, hit)
        if profile is None:
            profile = self._browser(pixel, hit) or linked
        if profile is None and settings.allow_import and not hit.bot and settings.database_id is not None:
            profile, updated = (
                (settings.database_id, self._import(settings.database_id, {}, hit.update)),
                True,
            )
        if profile is not None and settings.allow_import and hit.update and not updated:
            self._import(profile[0], {"profile_id": profile[1]}, hit.update, MatchMode.PROFILE_ID)
        if profile is not None and profile != linked:
            self.identify(visitor, profile[0], profile[1], context, linked)
        fires = self._record(pixel, hit, visitor, profile, context)
        return HitResult(visitor, profile[1] if profile else None, fires)

    def identify(
        self,
        visitor: str,
        database_id: str,
        profile_id: str,
        context: CommandContext,
        linked: tuple[str, str] | None = None,
    ) -> None:
        """Link the visitor to the profile (its anonymous goals follow); an anonymous profile a pixel
        made for it in that database is merged into the profile."""
        if linked is None:
            linked = self._linked(visitor, database_id)
        if linked == (database_id, profile_id):
            return
        if linked is not None and linked[0] == database_id and self._anonymous(linked[1]):
            self.profiles.merge(linked[1], profile_id, context)
        self.tracking.link_anonymous(database_id, profile_id, visitor, context)

    def _linked(self, visitor: str, database_id: str | None) -> tuple[str, str] | None:
        """(database, profile) the visitor was identified as (in `database_id`, or in any database)."""
        links = self.profile_reads.links_of(visitor)
        if database_id is not None:
            found = links.get(database_id)
            return (database_id, found) if found else None
        for database, profile_id in sorted(links.items()):
            if self.aggregates.load(profile_decider, profile_stream(profile_id)).state.exists:
                return database, profile_id
        return None

    def _named(self, pixel: px.PixelState, hit: PixelHit) -> tuple[tuple[str, str] | None, bool]:
        """(database, profile) a tracked link or `match` names, and whether `update` was applied."""
        settings = pixel.settings
        assert settings is not None
        if hit.message_id is not None:
            try:
                ref = self.deliveries.message(hit.message_id).state.ref
            except NotFound:
                ref = None
            if ref is None or (settings.database_id not in (None, ref.database_id)):
                return None, False
            return (ref.database_id, ref.profile_id), False
        if hit.match is None:
            return None, False
        database_id, field, value = _match(settings, hit.match)
        mode = MATCHING_MODES.get(hit.matching_mode or "custom")
        if mode is None:
            raise ValidationFailed(f"matching_mode is one of {', '.join(MATCHING_MODES)}", "matching_mode")
        if settings.allow_import:
            row = {field: value}
            return (database_id, self._import(database_id, row, hit.update, mode, field)), True
        try:
            return (database_id, self.lookup.resolve(database_id, {field: value}, "match")), False
        except NotFound:
            return None, False

    def _browser(self, pixel: px.PixelState, hit: PixelHit) -> tuple[str, str] | None:
        """(database, profile) the browser cookie names, if it is a live profile of the pixel's database."""
        if hit.browser_profile is None:
            return None
        state = self.aggregates.load(profile_decider, profile_stream(hit.browser_profile)).state
        database_id = pixel.settings.database_id if pixel.settings else None
        if not state.exists or database_id not in (None, state.database_id):
            return None
        return state.database_id, state.profile_id

    def _import(
        self,
        database_id: str,
        row: dict[str, Any],
        update: Mapping[str, Any] | None,
        mode: MatchMode = MatchMode.EMAIL,
        field: str | None = None,
    ) -> str:
        """Create or update the profile `row` names with `update`; the profile's id."""
        data = {**dict(update or {}), **row}
        options = ImportOptions(
            mode=ImportMode.ADD_AND_UPDATE,
            match=mode,
            field_name=field if mode is MatchMode.CUSTOM else None,
            source="pixel",
        )
        context = CommandContext(actor="pixel", source="pixel")
        result = self.profiles.import_rows(database_id, [data], options, context)[0]
        if result.error is not None:
            raise _located(result.error, set(row))
        assert result.profile_id is not None
        return result.profile_id

    def _anonymous(self, profile_id: str) -> bool:
        """Whether a pixel made the profile for an unknown visitor, and nobody has said who it is since."""
        state = self.aggregates.load(profile_decider, profile_stream(profile_id)).state
        return (
            state.exists
            and state.source == "pixel"
            and is_placeholder_email(state.email)
            and not state.phones
        )

    def _record(
        self,
        pixel: px.PixelState,
        hit: PixelHit,
        visitor: str,
        profile: tuple[str, str] | None,
        context: CommandContext,
    ) -> bool:
        """Append the hit's goal events (and the re-fire block's firing); whether it fires triggers."""
        settings = pixel.settings
        assert settings is not None
        who = profile[1] if profile else visitor
        database_id = profile[0] if profile else (settings.database_id or "")
        stream = activity_stream(profile[1]) if profile else anonymous_stream(visitor)
        meta = context.metadata()
        for attempt in range(_ATTEMPTS):
            fired: list[StreamAppend] = []
            fires = True
            if settings.block_retrigger_minutes:
                fired, fires = self._refire(
                    pixel.pixel_id, who, settings.block_retrigger_minutes, hit.at, context
                )
            events = [
                self._goal_event(pixel.pixel_id, database_id, profile, visitor, goal, hit, fires, meta)
                for goal in (hit.goals or ("",))
            ]
            try:
                self.aggregates.store.append_many([StreamAppend(stream, events), *fired])
            except WrongExpectedVersion:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue  # another hit of this visitor fired meanwhile: decide again
            return fires
        raise AssertionError("unreachable")

    def _refire(
        self, pixel_id: str, who: str, minutes: int, at: datetime, context: CommandContext
    ) -> tuple[list[StreamAppend], bool]:
        stream = px.refire_stream(pixel_id, who)
        recorded = self.aggregates.store.read_stream(stream)
        state = px.refire_decider.fold(self.aggregates.decode(e) for e in recorded)
        events = px.decide_fire(px.FireTriggers(pixel_id, who, minutes, at), state)
        if not events:
            return [], False
        version = recorded[-1].version if recorded else 0
        return [StreamAppend(stream, self.aggregates.new_events(stream, events, context), version)], True

    def _goal_event(
        self,
        pixel_id: str,
        database_id: str,
        profile: tuple[str, str] | None,
        visitor: str,
        goal: str,
        hit: PixelHit,
        fires: bool,
        meta: dict[str, Any],
    ) -> NewEvent:
        page = {"url": hit.url, "referrer": hit.referrer}
        payload = activity_payload(
            database_id=database_id,
            name=goal or PIXEL_VISIT,
            at=hit.at,
            profile_id=profile[1] if profile else None,
            anonymous_id=None if profile else visitor,
            properties=goal_properties(goal, pixel_id, hit.value, _SOURCES[hit.kind], fires),
            context={"ip": hit.ip, "user_agent": hit.user_agent, "page": page, "bot": hit.bot},
        )
        event_id = self.aggregates.ids.uuid()
        return NewEvent(
            event_id, ActivityTracked.type_name, payload, hit.at, ActivityTracked.schema_version, meta
        )


def _match(settings: px.PixelSettings, match: Mapping[str, Any]) -> tuple[str, str, Any]:
    """(database, field, value) of a `match` object: one field, and `db_id` when the pixel has no database."""
    fields = {k: v for k, v in match.items() if k != "db_id"}
    database_id = settings.database_id
    if database_id is None:
        given = match.get("db_id")
        if given is None or isinstance(given, bool):
            raise ValidationFailed("a pixel of all databases needs match.db_id", "match.db_id")
        database_id = str(given)
    if len(fields) != 1:
        raise ValidationFailed('match names one field to find the profile by, e.g. {"email": …}', "match")
    ((field, value),) = fields.items()
    return database_id, field, value


def _located(error: DomainError, matched: set[str]) -> DomainError:
    """An import row's error at `match.…` (the fields the match named) or `update.…`."""
    head = error.path.split(".", 1)[0]
    return error.at("match" if head in matched or not error.path else "update")
