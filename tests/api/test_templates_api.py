"""Templates and fragments through HTTP: create, versions, publish, clone, validate, errors."""

from __future__ import annotations

from typing import Any

import httpx

TS = "/api/v1/templates"
FS = "/api/v1/fragments"
EMAIL = {"subject": "Hi {lead._fname}", "html": "<p>Hello {lead._fname}</p>{fragment.social}"}


def template_body(**overrides: Any) -> dict[str, Any]:
    return {"name": "Welcome", "content": {"email": EMAIL}, **overrides}


async def create_fragment(
    api: httpx.AsyncClient, short_name: str = "social", content: str = "<b>X</b>"
) -> None:
    response = await api.post(FS, json={"short_name": short_name, "name": "Social", "content": content})
    assert response.status_code == 201, response.text


async def create_template(api: httpx.AsyncClient, **overrides: Any) -> str:
    response = await api.post(TS, json=template_body(**overrides))
    assert response.status_code == 201, response.text
    return str(response.json()["template_id"])


async def test_a_template_is_created_read_listed_and_versioned(api: httpx.AsyncClient, herald: Any) -> None:
    await create_fragment(api)
    template_id = await create_template(api, tags=["onboarding"])
    assert template_id == "1"
    got = (await api.get(f"{TS}/1")).json()
    assert got["name"] == "Welcome" and got["tags"] == ["onboarding"] and got["content_version"] == 1
    assert got["channels"] == ["email"]
    assert got["uses"] == {"fragments": ["social"], "parts": [], "system_tags": [], "external_content": False}
    assert got["content"]["email"]["no_css_inline"] is True

    changed = {"email": {**EMAIL, "subject": "Welcome, {lead._fname}"}, "sms": {"body": "Hi {lead._fname}"}}
    response = await api.patch(f"{TS}/1", json={"content": changed, "expected_version": got["version"]})
    assert response.status_code == 200, response.text
    response = await api.patch(f"{TS}/1", json={"name": "Welcome!"})
    assert response.status_code == 200, response.text

    got = (await api.get(f"{TS}/1")).json()
    assert (got["name"], got["content_version"], got["channels"]) == ("Welcome!", 2, ["email", "sms"])
    versions = (await api.get(f"{TS}/1/versions")).json()["versions"]
    assert [v["content_version"] for v in versions] == [1, 2]
    first = (await api.get(f"{TS}/1/versions/1")).json()
    assert first["content"]["email"]["subject"] == "Hi {lead._fname}" and first["content"]["sms"] is None
    assert (await api.get(f"{TS}/1/versions/3")).status_code == 404
    assert (await api.get(f"{TS}/1/versions/x")).status_code == 404

    herald.runtime.drain()
    listed = (await api.get(TS)).json()["templates"]
    assert [(t["template_id"], t["name"], t["content_version"], t["channels"]) for t in listed] == [
        ("1", "Welcome!", 2, ["email", "sms"])
    ]


async def test_a_stale_expected_version_is_a_conflict(api: httpx.AsyncClient) -> None:
    await create_fragment(api)
    await create_template(api)
    response = await api.patch(f"{TS}/1", json={"name": "x", "expected_version": 0})
    assert response.status_code == 409


async def test_syntax_errors_answer_422_with_every_position(api: httpx.AsyncClient) -> None:
    content = {"email": {"subject": "Hi {lead._fname", "html": "<p>\n {for $x = json.l}</p>"}}
    response = await api.post(TS, json=template_body(content=content))
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["path"], error["line"], error["column"]) == ("content.email.subject", 1, 4)
    assert [(e["path"], e["line"], e["column"]) for e in error["errors"]] == [
        ("content.email.subject", 1, 4),
        ("content.email.html", 2, 2),
    ]
    assert all(e["reason"] for e in error["errors"])


async def test_validate_checks_without_saving(api: httpx.AsyncClient, herald: Any) -> None:
    size = herald.store.head_position()
    good = {"email": {"subject": "s", "html": '<a href="{unsubscribe}">x</a>{[https://e.com/{lead.Sign}]}'}}
    response = await api.post(f"{TS}/validate", json={"content": good})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "valid": True,
        "uses": {"fragments": [], "parts": [], "system_tags": ["unsubscribe"], "external_content": True},
    }
    bad = {"sms": {"body": "{lead.x | upper}"}}
    response = await api.post(f"{TS}/validate", json={"content": bad})
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["path"] == "content.sms.body"
    unknown = {"sms": {"body": "{fragment.nope}"}}
    response = await api.post(f"{TS}/validate", json={"content": unknown})
    assert response.status_code == 422 and "nope" in response.json()["error"]["reason"]
    assert herald.store.head_position() == size


async def test_a_draft_is_published_and_marked_again(api: httpx.AsyncClient) -> None:
    await create_fragment(api)
    await create_template(api, draft=True)
    assert (await api.get(f"{TS}/1")).json()["draft"] is True
    assert (await api.post(f"{TS}/1/publish")).status_code == 200
    assert (await api.get(f"{TS}/1")).json()["draft"] is False
    assert (await api.post(f"{TS}/1/draft")).status_code == 200
    assert (await api.get(f"{TS}/1")).json()["draft"] is True


async def test_clone_and_delete(api: httpx.AsyncClient) -> None:
    await create_fragment(api)
    await create_template(api)
    response = await api.post(f"{TS}/1/clone", json={})
    assert response.status_code == 201, response.text
    clone = (await api.get(f"{TS}/{response.json()['template_id']}")).json()
    assert clone["name"] == "Welcome (copy)" and clone["content_version"] == 1
    assert (await api.delete(f"{TS}/1")).status_code == 200
    assert (await api.get(f"{TS}/1")).status_code == 404
    assert (await api.patch(f"{TS}/1", json={"name": "x"})).status_code == 404


async def test_fragments_are_versioned_and_named_by_short_name(api: httpx.AsyncClient, herald: Any) -> None:
    await create_fragment(api, content="<b>{lead._fname}</b>")
    response = await api.post(FS, json={"short_name": "social", "name": "Again", "content": "x"})
    assert response.status_code == 409
    response = await api.put(f"{FS}/social", json={"name": "Social", "content": "<i>{lead._fname}</i>"})
    assert response.status_code == 200, response.text
    got = (await api.get(f"{FS}/social")).json()
    assert (got["content"], got["content_version"], got["type"]) == ("<i>{lead._fname}</i>", 2, "html")
    assert [v["content_version"] for v in (await api.get(f"{FS}/social/versions")).json()["versions"]] == [
        1,
        2,
    ]
    assert (await api.get(f"{FS}/social/versions/1")).json()["content"] == "<b>{lead._fname}</b>"
    bad = await api.put(f"{FS}/social", json={"name": "Social", "content": "{if lead.a}"})
    assert bad.status_code == 422 and bad.json()["error"]["path"] == "content"
    herald.runtime.drain()
    assert [f["short_name"] for f in (await api.get(FS)).json()["fragments"]] == ["social"]
    assert (await api.delete(f"{FS}/social")).status_code == 200
    assert (await api.get(f"{FS}/social")).status_code == 404


async def test_a_template_stop_list_must_exist_and_is_used_at_send_time(
    api: httpx.AsyncClient, herald: Any
) -> None:
    content = {"sms": {"body": "hi"}, "stop_list_id": "404"}
    response = await api.post(TS, json=template_body(content=content))
    assert response.status_code == 404 and response.json()["error"]["path"] == "content.stop_list_id"
    created = await api.post("/api/v1/stop-lists", json={"name": "Template list"})
    assert created.status_code == 201, created.text
    list_id = created.json()["list_id"]
    template_id = await create_template(api, content={"sms": {"body": "hi"}, "stop_list_id": list_id})
    herald.runtime.drain()
    assert herald.catalog.stop_list_lookup.template_list(template_id) == list_id
