"""Push subscriptions from browsers and apps, the web push toolkit, and the VAPID key browsers need.

- `POST /push/subscribe` (public, on the tracking domain): the toolkit's
  `initSubscription(match, update)`. The resource token names the resource;
  a call from a page (with an `Origin`) is accepted only from the resource's
  own sites, and answered with CORS headers for that origin. The browser
  cookie the trackers set names the profile that opened an email here.
- `POST /api/v1/push/subscriptions` (an API token): an app adds its device
  token (FCM, APNs, …) with the same match/update rules.
- `GET /api/v1/resources/{id}/push-toolkit`: the toolkit as a ZIP.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from starlette.responses import Response

from herald.api.browser_cookie import browser_profile, remember_browser
from herald.api.endpoints import Call, Endpoint
from herald.api.errors import HttpError
from herald.api.push_toolkit import toolkit_zip
from herald.api.responses import json_response
from herald.domain.errors import NotFound
from herald.domain.resources import ResourceState
from herald.domain.subscriptions import MAX_OPAQUE_CONTACT
from herald.messages.rendering import tracking_base
from herald.senders.webpush import public_key_of

_BROWSERS = ("chrome", "firefox", "opera", "safari")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource_token: str = Field(min_length=1, max_length=128)
    match: dict[str, JsonValue] = Field(default_factory=dict, description="{profile_field: value}: find")
    update: dict[str, JsonValue] = Field(default_factory=dict, description="{field: value}: write")


class WebSubscription(_Body):
    subscription: dict[str, JsonValue] = Field(description="the browser's PushSubscription.toJSON()")
    browser: str | None = Field(None, description="chrome, firefox, opera or safari")


class AppSubscription(_Body):
    token: str = Field(min_length=1, max_length=MAX_OPAQUE_CONTACT, description="the device's push token")
    provider: str = Field(description="fcm, apns, hms, rustore, appmetrica")
    device: dict[str, JsonValue] = Field(default_factory=dict, description="standard device fields")


async def web_subscribe(call: Call) -> Response:
    body: WebSubscription = call.body
    herald = call.herald
    resource = _resource(call, body.resource_token)
    origin = call.request.headers.get("origin")
    if origin is not None and origin not in _origins(resource):
        raise HttpError(403, "this site is not one of the resource's", "origin")
    contact = herald.device_subscriptions.browser_subscription(body.subscription)
    device: dict[str, Any] = {"browser": body.browser} if body.browser in _BROWSERS else {}
    done = herald.device_subscriptions.subscribe(
        resource,
        contact,
        "webpush",
        body.match,
        body.update,
        device,
        browser_profile(call.request, herald.signer),
        _ip(call),
        call.context,
    )
    response = json_response({"profile_id": done.profile_id, "status": done.status}, 200)
    remember_browser(response, herald.signer, done.profile_id)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    return response


async def app_subscribe(call: Call) -> dict[str, Any]:
    body: AppSubscription = call.body
    resource = _resource(call, body.resource_token)
    done = call.herald.device_subscriptions.subscribe(
        resource,
        body.token.strip(),
        body.provider,
        body.match,
        body.update,
        body.device,
        None,
        _ip(call),
        call.context,
    )
    return {"profile_id": done.profile_id, "status": done.status}


async def push_toolkit(call: Call) -> Response:
    resource = call.herald.catalog.resource(call.path_param("resource_id"))
    if resource.settings is None:
        raise NotFound("no such resource", "resource_id")
    values = {
        "RESOURCE_NAME": resource.settings.name,
        "RESOURCE_TOKEN": resource.token,
        "SITE_URL": resource.settings.source_urls[0] if resource.settings.source_urls else "",
        "SUBSCRIBE_URL": f"{tracking_base(resource)}/push/subscribe",
        "VAPID_PUBLIC_KEY": public_key_of(call.herald.vapid_private_key),
    }
    name = f"herald-push-toolkit-{resource.resource_id}.zip"
    return Response(
        toolkit_zip(values),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _resource(call: Call, token: str) -> ResourceState:
    resource = call.herald.catalog.resource_by_token(token)
    if "push" not in resource.channels:
        raise HttpError(422, "the resource has no push channel", "resource_token")
    return resource


def _ip(call: Call) -> str | None:
    client = call.request.client
    return client.host if client is not None else None


def _origins(resource: ResourceState) -> set[str]:
    assert resource.settings is not None
    origins = set()
    for url in resource.settings.source_urls:
        parts = urlsplit(url)
        if parts.scheme and parts.netloc:
            origins.add(f"{parts.scheme}://{parts.netloc}")
    return origins


ENDPOINTS = [
    Endpoint(
        "POST",
        "/push/subscribe",
        web_subscribe,
        "A browser subscribes to web push (the toolkit's initSubscription)",
        "push",
        body=WebSubscription,
        role="public",
        # the toolkit posts its JSON as text/plain: a simple cross-origin request, with no preflight
        accepts=("text/plain",),
    ),
    Endpoint(
        "POST",
        "/api/v1/push/subscriptions",
        app_subscribe,
        "An app adds its device's push subscription",
        "push",
        body=AppSubscription,
    ),
    Endpoint(
        "GET",
        "/api/v1/resources/{resource_id}/push-toolkit",
        push_toolkit,
        "The resource's web push toolkit (ZIP)",
        "push",
        role="read",
    ),
]
