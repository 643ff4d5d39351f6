"""Credentials in scenario webhooks: sealed when the scenario is saved, opened only to make the call.

A webhook node's URL holding a login or a credential-looking query parameter is saved with `url`
masked (`domain/secrets.redacted_url`) and the whole URL in `sealed_url`; a custom parameter whose
name says it is a credential (`api_key`, `token`, `password`…) is saved as `***` with its value in
`sealed_value`. Sending the masked value back, as a read of the scenario shows it, keeps the sealed
one (an edit of other nodes does not have to send secrets again); the webhook worker opens them.
"""

from __future__ import annotations

from collections.abc import Mapping

from herald.domain.scenario_graph import ScenarioGraph, WebhookNode, WebhookParam
from herald.domain.secrets import MASK, SealedSecret, looks_like_credential, redacted_url
from herald.infra.secret_box import SecretBox


def _url_context(shown: str) -> str:
    return f"scenario.webhook.url.{shown}"


def _param_context(node_id: str, name: str) -> str:
    return f"scenario.webhook.param.{node_id}.{name}"


def sealed_webhooks(box: SecretBox, graph: ScenarioGraph, stored: ScenarioGraph | None) -> ScenarioGraph:
    """`graph` with its webhooks' credentials sealed (or kept, where sent back masked)."""
    before = {node.id: node for node in (stored.nodes if stored else ()) if isinstance(node, WebhookNode)}
    nodes = tuple(
        _sealed(box, node, before.get(node.id)) if isinstance(node, WebhookNode) else node
        for node in graph.nodes
    )
    return graph.model_copy(update={"nodes": nodes})


def _sealed(box: SecretBox, node: WebhookNode, stored: WebhookNode | None) -> WebhookNode:
    # whatever sealed values a body brings are replaced: only Herald seals
    sealed_url: SealedSecret | None
    if stored is not None and stored.sealed_url is not None and node.url == stored.url:
        url, sealed_url = node.url, stored.sealed_url
    else:
        url = redacted_url(node.url)
        sealed_url = None if url == node.url else box.seal(node.url, _url_context(url))
    kept = {p.name: p.sealed_value for p in (stored.params if stored else ()) if p.sealed_value is not None}
    params = tuple(_sealed_param(box, node.id, param, kept) for param in node.params)
    return node.model_copy(update={"url": url, "sealed_url": sealed_url, "params": params})


def _sealed_param(
    box: SecretBox, node_id: str, param: WebhookParam, kept: Mapping[str, SealedSecret]
) -> WebhookParam:
    if param.source != "custom" or not looks_like_credential(param.name):
        return param.model_copy(update={"sealed_value": None})
    if param.value == MASK and param.name in kept:
        return param.model_copy(update={"sealed_value": kept[param.name]})
    sealed = box.seal(param.value, _param_context(node_id, param.name))
    return param.model_copy(update={"value": MASK, "sealed_value": sealed})


def opened_url(box: SecretBox, node: WebhookNode) -> str:
    """The URL template to call: the sealed one opened, or the URL as saved when it holds no credentials."""
    return node.url if node.sealed_url is None else box.open(node.sealed_url, _url_context(node.url))


def opened_value(box: SecretBox, node: WebhookNode, param: WebhookParam) -> str:
    """A parameter's value template: the sealed one opened, or the value as saved."""
    if param.sealed_value is None:
        return param.value
    return box.open(param.sealed_value, _param_context(node.id, param.name))
