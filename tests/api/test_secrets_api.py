"""Secrets never sit in the log in clear: sealed in events, withheld from old ones, the raw log an
admin's right, and `herald secrets reseal --scrub` for what old files still hold."""

from __future__ import annotations

import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from herald.api import cli
from herald.api.app import create_app
from herald.api.wiring import Herald, build
from herald.domain.events import registry
from herald.domain.resources import PushSettings
from herald.domain.senders import SenderSettings, SmtpRelaySettings
from herald.infra.clock import ManualClock
from herald.infra.config import Settings
from herald.infra.event_store import NO_STREAM, NewEvent
from herald.infra.ids import IdSource
from herald.infra.log_scrub import scrub_sqlite_log
from herald.infra.remote_content import RemoteContentError
from herald.infra.secret_box import KEY_FILE, SecretBox, new_key, parse_keys
from herald.senders.dkim import generate_key
from herald.senders.smtp import SmtpRelay
from herald.services.channel_secrets import bound_to
from herald.services.secrets import cleartext_rewrites, reseal_log
from herald.services.senders import PlainSenderSecrets
from tests.api.test_resources_api import create_resource, resource_body
from tests.builders import CTX, customers
from tests.conftest import ADMIN_TOKEN, START

PASSWORD = "relay-pass-7f3c9a1e"
SENDERS = "/api/v1/senders"
SENDER = {"name": "Relay", "relay": {"host": "smtp.example.com", "port": 587, "username": "shop"}}


@pytest.fixture
async def bare(herald: Herald) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(herald, run_processors=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
        yield client


def _stored_bytes(herald: Herald) -> bytes:
    """Everything the log's files hold on disk (the database and its WAL)."""
    path = herald.settings.event_store_path
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def _put_sender(api: httpx.AsyncClient, private_key: str) -> None:
    body = {**SENDER, "password": PASSWORD, "dkim_selector": "s1", "dkim_domain": "shop.example",
            "dkim_private_key": private_key}  # fmt: skip
    response = await api.put(f"{SENDERS}/main", json=body)
    assert response.status_code == 200, response.text


async def test_sender_secrets_are_sealed_in_the_log_and_shown_to_no_one(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    private_key, _ = generate_key(1024)
    await _put_sender(api, private_key)
    key_body = private_key.splitlines()[1]  # a line of the PEM's base64
    log = (await api.get("/api/v1/events", params={"limit": 1000})).text
    stream = (await api.get("/api/v1/streams/sender-main")).json()
    card = (await api.get(f"{SENDERS}/main")).json()
    for shown in (log, str(stream), str(card)):
        assert PASSWORD not in shown and key_body not in shown
    secrets = stream["events"][0]["data"]["secrets"]
    assert set(secrets) == {"password", "dkim_private_key"}
    assert secrets["password"]["key_id"] == herald.box.current_key_id
    assert card["has_password"] is True and card["has_dkim_key"] is True
    assert PASSWORD.encode() not in _stored_bytes(herald)
    opened = herald.senders.for_sending("main")
    assert (opened.password, opened.dkim_private_key) == (PASSWORD, private_key)


async def test_putting_the_same_secret_again_changes_nothing(api: httpx.AsyncClient, herald: Herald) -> None:
    private_key, _ = generate_key(1024)
    await _put_sender(api, private_key)
    head = herald.store.head_position()
    await _put_sender(api, private_key)
    assert herald.store.head_position() == head
    await api.put(f"{SENDERS}/main", json={**SENDER, "dkim_selector": "s1", "dkim_domain": "shop.example"})
    assert herald.store.head_position() == head  # empty secrets keep the stored ones
    assert herald.senders.for_sending("main").password == PASSWORD


@pytest.mark.parametrize("role", ["read", "write", "track"])
async def test_reading_the_raw_log_is_an_admin_right(
    api: httpx.AsyncClient, bare: httpx.AsyncClient, herald: Herald, role: str
) -> None:
    issued = (await api.post("/api/v1/tokens", json={"name": role, "role": role})).json()
    herald.runtime.drain()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    for url in ("/api/v1/events", "/api/v1/streams/sender-main"):
        response = await bare.get(url, headers=headers)
        assert response.status_code == 403, (url, response.text)
        assert "'admin'" in response.json()["error"]["reason"]


# --- logs written before secrets were sealed -----------------------------------------------------


def _legacy_sender(herald: Herald, password: str = PASSWORD) -> None:
    """A sender as version 1 stored it: the password in clear in the event."""
    data = {
        "sender_id": "main",
        "settings": {**SENDER, "rate_per_second": 10.0, "connections": 2, "retry_deadline_hours": 48},
        "secrets": {"password": password, "dkim_private_key": ""},
        "at": START.isoformat(),
    }
    event = NewEvent(
        event_id=uuid4(),
        type="SenderCreated",
        data=data,
        occurred_at=START,
        schema_version=1,
        metadata={"actor": "admin"},  # as the API wrote it then
    )
    herald.store.append("sender-main", [event], NO_STREAM)


async def test_an_old_events_clear_secret_is_withheld_on_read_and_sealed_at_first_use(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    _legacy_sender(herald)
    log = (await api.get("/api/v1/events")).json()["events"]
    assert PASSWORD not in str(log) and PASSWORD not in (await api.get("/api/v1/streams/sender-main")).text
    assert log[0]["schema_version"] == 2
    assert log[0]["data"]["secrets"] == {"password": {"key_id": "withheld", "ciphertext": ""}}
    assert (await api.get(f"{SENDERS}/main")).json()["has_password"] is True
    # the worker opens it: sealed from the old event's bytes, once
    assert herald.senders.for_sending("main").password == PASSWORD
    assert herald.senders.for_sending("main").password == PASSWORD
    stream = herald.store.read_stream("sender-main")
    assert [(e.type, e.schema_version) for e in stream] == [("SenderCreated", 1), ("SenderChanged", 2)]
    assert stream[1].data["secrets"]["password"]["key_id"] == herald.box.current_key_id


def test_reseal_scrub_removes_the_old_clear_text_from_the_files(tmp_path: Path, clock: ManualClock) -> None:
    settings = Settings(data_dir=tmp_path / "data", admin_token=ADMIN_TOKEN, reports_engine="off")
    herald = build(settings, clock=clock, ids=IdSource(1))
    _legacy_sender(herald)
    herald.runtime.drain()
    assert PASSWORD.encode() in _stored_bytes(herald)
    herald.close()
    assert cli.main(["--data-dir", str(settings.data_dir), "secrets", "reseal", "--scrub"]) == 0
    again = build(settings, clock=clock, ids=IdSource(2))
    try:
        assert PASSWORD.encode() not in _stored_bytes(again)
        assert again.senders.for_sending("main").password == PASSWORD  # sealed before the scrub
        first = again.store.read_stream("sender-main")[0]
        assert (first.schema_version, first.data["secrets"]["password"]["key_id"]) == (2, "withheld")
    finally:
        again.close()


# --- the key ---------------------------------------------------------------------------------------


def test_the_key_file_is_made_readable_by_its_owner_only(herald: Herald) -> None:
    path = herald.settings.data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SecretBox(parse_keys(path.read_text())).current_key_id == herald.box.current_key_id
    for name in ("admin-token", "secret-key"):
        made = herald.settings.data_dir / name
        assert not made.exists() or stat.S_IMODE(made.stat().st_mode) == 0o600


async def test_a_rotated_key_seals_again_and_the_old_one_can_go(tmp_path: Path, clock: ManualClock) -> None:
    old, new = new_key(), new_key()
    data_dir = tmp_path / "data"

    def herald_with(keys: str) -> Herald:
        settings = Settings(
            data_dir=data_dir, admin_token=ADMIN_TOKEN, reports_engine="off", secrets_key=keys
        )
        return build(settings, clock=clock, ids=IdSource(5))

    first = herald_with(old)
    relay = SenderSettings(name="Relay", relay=SmtpRelaySettings(host="smtp.example.com"))
    first.senders.set_sender("main", relay, PlainSenderSecrets(password=PASSWORD), CTX, create=True)
    first.close()
    assert not (data_dir / KEY_FILE).exists()  # the environment's keys are used, none is made
    rotated = herald_with(f"{new},{old}")
    assert reseal_log(rotated.store, rotated.senders, rotated.catalog).resealed == 1
    rotated.close()
    only_new = herald_with(new)
    try:
        assert only_new.senders.for_sending("main").password == PASSWORD
    finally:
        only_new.close()


# --- channel credentials -----------------------------------------------------------------------------

FIREBASE_KEY = "AIza-firebase-9d2e"
BOT_TOKEN = "123456:bot-token-51c0"


async def test_channel_credentials_are_sealed_write_only_and_kept_when_left_out(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    push = {"kind": "push", "platforms": ["android"], "providers": ["fcm"], "firebase_api_key": FIREBASE_KEY}
    created = await api.post("/api/v1/resources", json={**resource_body(), "channels": [push]})
    assert created.status_code == 201, created.text
    resource = f"/api/v1/resources/{created.json()['resource_id']}"
    bot = {"options": {"parse_mode": "HTML"}, "secrets": {"bot_token": BOT_TOKEN}}
    assert (await api.put(f"{resource}/channels/telegram_bot", json=bot)).status_code == 200
    head = herald.store.head_position()
    # left out, or given again unchanged: the stored ones stay and nothing is appended
    same = {"platforms": ["android"], "providers": ["fcm"]}
    assert (await api.put(f"{resource}/channels/push", json=same)).status_code == 200
    assert (await api.put(f"{resource}/channels/telegram_bot", json=bot)).status_code == 200
    assert herald.store.head_position() == head
    herald.runtime.drain()
    channels = {c["kind"]: c for c in (await api.get(resource)).json()["channels"]}
    listed = (await api.get("/api/v1/resources")).text
    log = (await api.get("/api/v1/events", params={"limit": 1000})).text
    for shown in (str(channels), listed, log):
        assert FIREBASE_KEY not in shown and BOT_TOKEN not in shown
    assert channels["push"]["has_firebase_api_key"] is True
    assert channels["custom"]["secret_names"] == ["bot_token"]
    for text in (FIREBASE_KEY, BOT_TOKEN):
        assert text.encode() not in _stored_bytes(herald)
        assert text.encode() not in herald.settings.readmodel_path.read_bytes()


async def test_a_credential_among_a_custom_channels_options_is_refused(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    resource = f"/api/v1/resources/{await create_resource(api)}"
    response = await api.put(f"{resource}/channels/telegram_bot", json={"options": {"bot_token": BOT_TOKEN}})
    assert response.status_code == 422
    assert response.json()["error"]["path"] == "options.bot_token"
    assert BOT_TOKEN not in response.text


async def test_an_old_channel_events_clear_key_is_withheld_then_resealed_and_scrubbed(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    customers(herald)
    resource_id = await create_resource(api)
    stream = f"resource-{resource_id}"
    push = {"kind": "push", "platforms": ["android"], "providers": ["fcm"], "firebase_api_key": FIREBASE_KEY}
    data = {"resource_id": resource_id, "channel": "push", "settings": push}
    event = NewEvent(
        uuid4(), "ResourceChannelEnabled", data, START, schema_version=1, metadata={"actor": "admin"}
    )
    herald.store.append(stream, [event], herald.store.stream_version(stream))
    herald.runtime.drain()
    assert FIREBASE_KEY not in (await api.get(f"/api/v1/streams/{stream}")).text
    assert FIREBASE_KEY not in (await api.get(f"/api/v1/resources/{resource_id}")).text
    assert reseal_log(herald.store, herald.senders, herald.catalog).resealed == 1
    channel = herald.catalog.resource(resource_id).channels["push"]
    assert isinstance(channel, PushSettings) and channel.firebase_api_key is not None
    where = bound_to(resource_id, "push", "firebase_api_key")
    assert herald.box.open(channel.firebase_api_key, where) == FIREBASE_KEY
    assert reseal_log(herald.store, herald.senders, herald.catalog).resealed == 0  # nothing left to do
    rewrites = list(cleartext_rewrites(herald.store, registry))
    assert scrub_sqlite_log(herald.settings.event_store_path, rewrites) >= 1
    assert FIREBASE_KEY.encode() not in _stored_bytes(herald)


def test_secrets_stay_out_of_everything_printed_or_logged(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = new_key()
    settings = Settings(
        data_dir=tmp_path / "data",
        admin_token="admin-token-0a1b",
        secret_key="signing-key-2c3d",
        secrets_key=keys,
        reports_engine="off",
    )
    herald = build(settings, clock=clock, ids=IdSource(9))
    try:
        relay = SenderSettings(name="Relay", relay=SmtpRelaySettings(host="smtp.example.com", username="u"))
        herald.senders.set_sender("main", relay, PlainSenderSecrets(password=PASSWORD), CTX, create=True)
        opened = herald.senders.for_sending("main")
        caplog.set_level(logging.DEBUG)
        logging.getLogger("herald").info(
            "%r %r %r %r %s",
            settings,
            herald,
            opened,
            SmtpRelay(host="smtp.example.com", username="u", password=opened.password),
            PlainSenderSecrets(password=PASSWORD),
        )
        with pytest.raises(RemoteContentError) as failed:
            herald.remote.for_message()(f"http://user:{PASSWORD}@nowhere.invalid/x?token={PASSWORD}")
        logging.getLogger("herald").exception("fetch failed", exc_info=failed.value)
    finally:
        herald.close()
    assert "fetch failed" in caplog.text
    for secret in ("admin-token-0a1b", "signing-key-2c3d", keys, PASSWORD):
        assert secret not in caplog.text
