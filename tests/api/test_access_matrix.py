"""Every route × role × group, derived from the route list: who gets in, who gets 403, who gets 401.

For each endpoint of `herald.api.app.endpoints()` (whatever routes exist, other branches' included)
the access declared or derived on it (`api/access.py`) is read, and requests are made as:
- a user whose role allows exactly that action on that kind, in the group the named object is in
  (let in: any status but 401 and 403), and the same role in another group (403 when the route names
  an object, let in when it names none: lists and creations);
- a user whose role allows only `view` on the kind (403 unless the route needs `view`), and one with
  every right on another kind (403);
- a master user (let in), no token (401), and for settings and the raw log a user with every right
  on every kind but not master (403).
Bodies are not valid: a request that is let in answers 4xx for its body, or does what it does; the
check happens before either. Every endpoint must have an access rule.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.api.access import LOG, PUBLIC, SETTINGS, TRACK, Access, derive
from herald.api.app import create_app, endpoints
from herald.api.endpoints import Endpoint
from herald.api.wiring import Herald, build
from herald.domain.access import ACTIONS, MAIN
from herald.domain.exports import ExportSpec
from herald.domain.mass_updates import Source
from herald.domain.scheduled_imports import ScheduledImportSettings
from herald.domain.users import UserProfile
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.ids import IdSource
from tests.builders import CTX, DB, customers
from tests.conftest import ADMIN_TOKEN, START

OBJECT = "x1"  # the id every path parameter names, except those standing for a database
UNRESOLVED = {"message_id"}  # no message exists here: the check falls back to the kind
_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
_numbers = count()


class World:
    """A Herald with objects in group g1, and users' tokens made on demand."""

    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        self.tokens: dict[tuple[Any, ...], str] = {}
        users = herald.users
        for group in ("g1", "g2"):
            users.save_group(group, group.upper(), CTX)
        herald.runtime.drain()
        for kind in ACTIONS:
            users.set_object_groups(kind, OBJECT, ["g1"], CTX)
        users.set_object_groups("database", DB, ["g1"], CTX)
        self.profile_id = herald.profiles.create(DB, {"email": "ann@example.org"}, CTX).profile_id or ""
        spec = ExportSpec(source=Source(kind="database", id=DB))
        self.job_id, _ = herald.exports.start(DB, spec, CTX)
        scheduled = ScheduledImportSettings.model_validate(
            {
                "name": "CRM",
                "database_id": DB,
                "url": "https://crm.example.com/people.csv",
                "columns": [{"column": 1, "field": "email"}],
                "schedule": {"kind": "daily", "time": "03:00:00"},
            }
        )
        self.import_id, _ = herald.scheduled_imports.create(scheduled, False, False, CTX)
        herald.runtime.drain()

    def value(self, param: str) -> str:
        return {
            "database_id": DB,
            "profile_id": self.profile_id,
            "job_id": self.job_id,
            "import_id": self.import_id,
            "kind": "database",
        }.get(param, OBJECT)

    def token(self, groups: tuple[str, ...], rules: dict[str, list[str]], master: bool = False) -> str:
        key = (groups, tuple(sorted((k, tuple(v)) for k, v in rules.items())), master)
        if key not in self.tokens:
            herald = self.herald
            role_ids: tuple[str, ...] = ()
            if rules:
                role_id, _ = herald.users.save_role(None, "role", list(groups), rules, CTX)
                role_ids = (role_id,)
            herald.runtime.drain()
            profile = UserProfile(login=f"user{next(_numbers)}", roles=role_ids, groups=groups, master=master)
            user_id, _ = herald.users.create_user(profile, None, CTX)
            _, secret, _ = herald.tokens.issue("matrix", "user", CTX, user_id=user_id)
            herald.runtime.drain()
            self.tokens[key] = secret
        return self.tokens[key]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data: Path = tmp_path_factory.mktemp("matrix") / "data"
    herald = build(
        Settings(data_dir=data, admin_token=ADMIN_TOKEN, reports_engine="off"),
        clock=ManualClock(START),
        ids=IdSource(7),
    )
    customers(herald)
    yield World(herald)
    herald.close()


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=create_app(world.herald, run_processors=False), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as http:
        yield http


def _id(endpoint: Endpoint) -> str:
    return f"{endpoint.method} {endpoint.path}"


async def _status(client: httpx.AsyncClient, world: World, endpoint: Endpoint, token: str | None) -> int:
    path = _PARAM.sub(lambda m: world.value(m.group(1)), endpoint.path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if endpoint.method in ("GET", "DELETE"):
        response = await client.request(endpoint.method, path, headers=headers)
    else:
        response = await client.request(endpoint.method, path, headers=headers, json={})
    return response.status_code


def test_every_endpoint_has_an_access_rule() -> None:
    missing = [_id(e) for e in endpoints() if e.access is None]
    assert missing == [], f"declare Endpoint.access on {missing}"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v1/scenarios", Access("scenario", "view")),
        ("POST", "/api/v1/scenarios/{scenario_id}/activate", Access("scenario", "launch", "scenario_id")),
        ("POST", "/api/v1/scenarios/{scenario_id}/enter", Access("scenario", "launch", "scenario_id")),
        ("PUT", "/api/v1/scenarios/{scenario_id}", Access("scenario", "edit", "scenario_id")),
        (
            "GET",
            "/api/v1/scenarios/{scenario_id}/profiles/{profile_id}",
            Access("scenario", "view", "scenario_id"),
        ),
        ("GET", "/api/v1/jobs/{job_id}/file", Access("database", "read", "job_id")),
        ("POST", "/api/v1/databases/{database_id}/exports", Access("database", "read", "database_id")),
        ("GET", "/api/v1/processors", Access(LOG, "view")),
    ],
)
def test_the_path_rule_reads_an_endpoint(method: str, path: str, expected: Access) -> None:
    assert derive(method, path, "write") == expected


def _other_kind(kind: str) -> str:
    return next(k for k in ACTIONS if k != kind)


@pytest.mark.parametrize("endpoint", endpoints(), ids=_id)
async def test_route_by_role_and_group(client: httpx.AsyncClient, world: World, endpoint: Endpoint) -> None:
    access = endpoint.access
    assert isinstance(access, Access)
    status = _status
    if access.kind == PUBLIC:
        assert await status(client, world, endpoint, None) not in (401, 403)
        return
    assert await status(client, world, endpoint, None) == 401
    master = world.token((), {}, master=True)
    assert await status(client, world, endpoint, master) not in (401, 403)
    everything = {kind: list(actions) for kind, actions in ACTIONS.items()}
    if access.kind in (SETTINGS, LOG):
        assert await status(client, world, endpoint, world.token((MAIN,), everything)) == 403
        return
    if access.kind == TRACK:
        assert await status(client, world, endpoint, world.token((MAIN,), {"database": ["edit"]})) not in (
            401,
            403,
        )
        assert await status(client, world, endpoint, world.token((MAIN,), {"database": ["view"]})) == 403
        return
    kind, action = access.kind, access.action
    right = {kind: [action]}
    assert await status(client, world, endpoint, world.token(("g1",), right)) not in (401, 403)
    names_object = access.param is not None and access.param not in UNRESOLVED
    elsewhere = await status(client, world, endpoint, world.token(("g2",), right))
    assert (elsewhere == 403) is names_object, elsewhere
    if action != "view":
        assert await status(client, world, endpoint, world.token(("g1",), {kind: ["view"]})) == 403
    other = _other_kind(kind)
    assert await status(client, world, endpoint, world.token(("g1",), {other: list(ACTIONS[other])})) == 403
