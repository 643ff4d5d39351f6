"""Each endpoint's access as data — which kind of object, which action, from which path parameter —
and the check every request passes.

`Access` sits on every `Endpoint`. An endpoint may declare it; otherwise it is derived from the
path by one rule (`derive`), so a route added anywhere is covered the moment it exists:
- the first path segment names the kind (`/databases`, `/profiles` → database, `/campaigns` →
  campaign, …; settings such as senders, tokens and users need the master right, the raw log and
  processors too; `/track` is ingestion);
- the object is named by the path parameter the kind table gives (`{profile_id}`, `{job_id}` and
  `{import_id}` stand for their database, `{message_id}` for its campaign);
- the action comes from the method and the last segment: a GET of the object or the list is
  `view`, a GET below it `read` (data and downloads, where the kind has `read`); `launch`,
  `activate`, `pause`, `fire`, `enter`, … are `launch` on campaigns and scenarios; `exports` is `read`;
  `publish` is a template's `moderate`; `preview`, `validate`, `check` are `view`; anything else
  that writes is `edit`.
`derive` answers None for a path it cannot read; `tests/api/test_access_matrix.py` fails for any
endpoint left without access, so such a route must declare its own.

Service tokens keep their built-in roles (`endpoints.grants`); a user's token is checked against
its user's rights (`domain/access.py`) and the object's groups.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from herald.api.errors import HttpError
from herald.api.principal import Principal
from herald.domain.access import ACTIONS, MAIN
from herald.domain.jobs import job_decider, job_stream
from herald.domain.messages import message_stream
from herald.domain.scheduled_imports import scheduled_import_decider, scheduled_import_stream

if TYPE_CHECKING:
    from starlette.requests import Request

    from herald.api.wiring import Herald
    from herald.services.aggregates import CommandContext

PUBLIC, SETTINGS, LOG, TRACK = "public", "settings", "log", "track"
# what a creation's answer and a list's items call an object's id, by kind (a job or a scheduled
# import names its database so too)
_ID_KEYS = {
    "database": "database_id",
    "resource": "resource_id",
    "template": "template_id",
    "fragment": "short_name",
    "campaign": "campaign_id",
    "segment": "segment_id",
    "scenario": "scenario_id",
    "stop_list": "list_id",
    "pixel": "pixel_id",
    "loyalty_program": "program_id",
}
_PARAM = re.compile(r"^{(\w+)(?::\w+)?}$")


@dataclass(frozen=True, slots=True)
class Access:
    """What a request to an endpoint must be allowed: `action` on `kind`, the object in `param`."""

    kind: str  # an object kind (`access.ACTIONS`), or public / settings / log / track
    action: str = "view"
    param: str | None = None


# first segment after /api/v1 → (kind, the path parameter naming its object)
_KINDS: Mapping[str, tuple[str, str | None]] = {
    "databases": ("database", "database_id"),
    "profiles": ("database", "profile_id"),
    "jobs": ("database", "job_id"),
    "scheduled-imports": ("database", "import_id"),
    "resources": ("resource", "resource_id"),
    "push": ("resource", None),
    "templates": ("template", "template_id"),
    "fragments": ("fragment", "short_name"),
    "campaigns": ("campaign", "campaign_id"),
    "messages": ("campaign", "message_id"),
    "segments": ("segment", "segment_id"),
    "segment-files": ("segment", None),
    "scenarios": ("scenario", "scenario_id"),
    "stop-lists": ("stop_list", "list_id"),
    "reports": ("report", "name"),
    "pixels": ("pixel", "pixel_id"),
    "loyalty-programs": ("loyalty_program", "program_id"),
}
_SETTINGS = frozenset(
    {
        "senders",
        "virtual-senders",
        "sending-policies",
        "scoring-rules",
        "account",
        "tokens",
        "users",
        "roles",
        "groups",
        "audit",
        "access",
        "inbound",
        "erasures",
        "settings",
    }
)
_LOG = frozenset({"events", "streams", "processors", "metrics", "parked"})
# `enter` sends a profile into a running scenario: it acts like a launch (it may send), not an edit
_LAUNCH = frozenset(
    {"launch", "activate", "deactivate", "pause", "resume", "fire", "winner", "test", "stop", "enter"}
)
_LOOKS = frozenset({"preview", "validate", "check", "check-contact", "count"})


def derive(method: str, path: str, role: str) -> Access | None:
    """The access rule's reading of an endpoint (None: it cannot tell; the endpoint must declare)."""
    if role == PUBLIC:
        return Access(PUBLIC)
    if role == TRACK:
        return Access(TRACK, "edit")
    parts = path.removeprefix("/api/v1/").split("/")
    head = parts[0]
    if head in _SETTINGS:
        return Access(SETTINGS, "edit")
    if head in _LOG:
        return Access(LOG, "view")
    if head not in _KINDS:
        return None
    kind, param = _KINDS[head]
    named = [m.group(1) for m in map(_PARAM.match, parts) if m]
    if param is not None and param not in named:
        param = None
    return Access(kind, _action(method, parts, kind, param), param)


def _action(method: str, parts: list[str], kind: str, param: str | None) -> str:
    last = parts[-1]
    actions = ACTIONS[kind]
    if method == "GET":
        below = param is not None and parts[-1] != "{" + param + "}"
        return "read" if below and "read" in actions else "view"
    if last in _LAUNCH and "launch" in actions:
        return "launch"
    if last == "exports" and "read" in actions:
        return "read"
    if last == "publish" and "moderate" in actions:
        return "moderate"
    if last in _LOOKS:
        return "view"
    return "edit"


class AccessCheck:
    """Answers 403 when a principal may not do an endpoint's action on the object the path names."""

    def __init__(self, herald: Herald) -> None:
        self._herald = herald

    def check(self, principal: Principal, access: Access, params: Mapping[str, str]) -> None:
        if access.kind == PUBLIC:
            return
        rights = principal.rights
        if access.kind in (SETTINGS, LOG):
            if not rights.master:
                raise HttpError(403, "this needs the master right", "authorization")
            return
        if access.kind == TRACK:
            if not (rights.master or rights.allows("database", "edit", None)):
                raise HttpError(403, "tracking needs the right to edit a database", "authorization")
            return
        target = self._object(access, params)
        groups = None if target is None else self._herald.projections.access.object_groups(*target)
        if not rights.allows(access.kind, access.action, groups):
            shown = f"{access.kind} {target[1]!r}" if target else f"{access.kind} objects"
            raise HttpError(403, f"no right to {access.action} {shown}", "authorization")

    def visible(self, principal: Principal, access: Access | None, result: dict[str, Any]) -> dict[str, Any]:
        """A list as a user may see it: the objects whose groups give them `view` (groups control
        visibility, the guide says); what the request names no object of, unchanged."""
        key = _ID_KEYS.get(access.kind) if access is not None and access.param is None else None
        if access is None or key is None or principal.rights.master:
            return result
        shown = dict(result)
        for name, items in result.items():
            if not isinstance(items, list) or not all(isinstance(i, dict) and key in i for i in items):
                continue
            groups = self._herald.projections.access.groups_of(access.kind, (str(i[key]) for i in items))
            rights = principal.rights
            shown[name] = [i for i in items if rights.allows(access.kind, "view", groups[str(i[key])])]
        return shown

    def place_created(
        self,
        principal: Principal,
        access: Access | None,
        result: Mapping[str, object],
        request: Request,
        context: CommandContext,
    ) -> None:
        """Put an object a user just created into their current group (the guide: a new object gets the
        user's current group): the `X-Herald-Group` header's, else their first group besides main."""
        if access is None or access.kind not in ACTIONS or access.param is not None:
            return
        created = result.get(_ID_KEYS.get(access.kind, ""))
        groups = sorted(principal.rights.groups - {MAIN})
        chosen = request.headers.get("x-herald-group")
        group = chosen if chosen in principal.rights.groups else (groups[0] if groups else None)
        if created is None or group is None or group == MAIN:
            return
        self._herald.users.set_object_groups(access.kind, str(created), [group], context)

    def _object(self, access: Access, params: Mapping[str, str]) -> tuple[str, str] | None:
        """The object whose groups decide: the path's, or the database a profile, job or import is in."""
        if access.param is None or access.param not in params:
            return None
        value = str(params[access.param])
        herald = self._herald
        if access.param == "profile_id":
            card = herald.projections.profiles.card(value)
            return ("database", card["database_id"]) if card else None
        if access.param == "job_id":
            job = herald.aggregates.load(job_decider, job_stream(value)).state
            return ("database", job.database_id) if job.started else None
        if access.param == "import_id":
            state = herald.aggregates.load(scheduled_import_decider, scheduled_import_stream(value)).state
            return ("database", state.settings.database_id) if state.settings else None
        if access.param == "message_id":
            first = herald.store.read_stream(message_stream(value))[:1]
            return ("campaign", str(first[0].data.get("campaign_id"))) if first else None
        return (access.kind, value)
