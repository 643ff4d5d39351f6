"""SMS links end to end: a launched SMS campaign's links are short (`/s/<code>`) and click-tracked."""

from __future__ import annotations

import re

import httpx

from herald.api.wiring import Herald
from herald.domain.messages import message_stream
from herald.domain.sms import sms_length
from tests.builders import RESOURCE, create_resource, customers, import_rows, launched_message

PHONE = "+79161234567"
SALE = "https://shop.example.com/sale?from=sms&x=1"
_SHORT = re.compile(r"https://trk\.example\.com(/s/[0-9A-Za-z]{10})\b")


async def launched_sms(api: httpx.AsyncClient, herald: Herald) -> str:
    customers(herald)
    create_resource(herald)
    rows = [
        {"_fname": "Анна", "subscriptions": [{"resource_id": RESOURCE, "channel": "sms", "phone": PHONE}]}
    ]
    await import_rows(api, rows)
    body = f"Привет, {{lead._fname}}! Распродажа: {SALE} и новинки: https://shop.example.com/new"
    return await launched_message(api, herald, "sms", {"sms": {"body": body}})


async def test_sms_links_are_short_and_a_click_on_one_is_recorded_and_redirected(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    message_id = await launched_sms(api, herald)
    rendered = herald.queued.render_queued(herald.deliveries.queued(message_id))
    text = rendered.body.body  # type: ignore[union-attr]
    paths = _SHORT.findall(text)
    assert len(paths) == 2 and sms_length(text).parts == 2  # counted as sent: short links, Cyrillic
    assert set(rendered.short_links) == {p.removeprefix("/s/") for p in paths}
    again = herald.queued.render_queued(herald.deliveries.queued(message_id))
    assert again.short_links == rendered.short_links  # rendered again to be resent: the same codes

    herald.deliveries.record_short_links(message_id, rendered.short_links, herald.clock.now())
    herald.deliveries.record_short_links(message_id, rendered.short_links, herald.clock.now())  # a retry
    herald.runtime.drain()
    response = await api.get(paths[0], headers={"User-Agent": "Mozilla/5.0 (Linux; Android 14)"})
    assert response.status_code == 302 and response.headers["location"] == SALE

    events = [e for e in herald.store.read_stream(message_stream(message_id))]
    assert [e.type for e in events].count("MessageLinksShortened") == 1
    clicks = [e.data for e in events if e.type == "LinkClicked"]
    assert [(c["url"], c["channel"], c["contact"], c["unique"]) for c in clicks] == [
        (SALE, "sms", PHONE, True)
    ]


async def test_a_code_no_message_was_sent_with_is_404_and_records_nothing(
    api: httpx.AsyncClient, herald: Herald
) -> None:
    message_id = await launched_sms(api, herald)
    rendered = herald.queued.render_queued(herald.deliveries.queued(message_id))
    code = next(iter(rendered.short_links))
    head = herald.store.head_position()
    # rendered but never recorded as sent (no MessageLinksShortened): unknown
    assert (await api.get(f"/s/{code}")).status_code == 404
    herald.deliveries.record_short_links(message_id, rendered.short_links, herald.clock.now())
    herald.runtime.drain()
    head = herald.store.head_position()
    for forged in (code[:-1] + ("A" if code[-1] != "A" else "B"), "0000000000", "x"):
        assert (await api.get(f"/s/{forged}")).status_code == 404
    assert herald.store.head_position() == head
