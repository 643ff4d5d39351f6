"""Fetches an external rule's set of values from a POST URL, and reads its answer (JSON, XML or lines).

A segment's `external` rule with a `post_url` source (`domain/segments.PostUrlSource`) asks a URL for
the values a profile field is matched against. `ExternalSets.post_url` POSTs to it under the remote
content policy (`infra/remote_content.py`: one timeout, a body cap, no private or loopback address
unless the policy allows its network, checked on the address connected to) and reads the answer
with `parse_answer`:
- JSON: `path` names a list by dotted keys (`segment.emails`); an empty path takes the whole answer,
  which must then be an array. The list's items are texts or numbers.
- XML: `path` names elements by tag, slash-separated from the root (`names/name` for
  `<names><name>a</name>…</names>`); each element's text is one value.
- Lines: with an empty path, an answer that is not JSON is one value per line (blank lines skipped).

Anything else fails the whole fetch with `ExternalSetFailed` naming the rule's path, so a segment is
never evaluated against half a set: a timeout, a refused address, a non-2xx status (redirects are
not followed: a POST is not replayed elsewhere), a body that is not what the path expects.

Decisions where the guide is silent: the request is an empty POST (`Content-Length: 0`) with
`Accept: application/json, application/xml, text/plain`; values are returned as text, and the
caller coerces them to the field's type; a document type declaration in XML is refused (entities
are the XML bombs' vehicle, and a list of values needs none).
"""

from __future__ import annotations

import codecs
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpcore
import httpx
import orjson

from herald.domain.errors import ValidationFailed
from herald.domain.segments import PostUrlSource
from herald.infra.remote_content import RemoteContentPolicy, guarded_client

ACCEPT = "application/json, application/xml;q=0.9, text/plain;q=0.8"
USER_AGENT_SUFFIX = " (external segment sets)"


class ExternalSetFailed(ValidationFailed):
    """An external set could not be fetched or read; `path` is the rule's, and nothing was applied."""


class ExternalSets:
    """Fetches POST URL sets under a remote content policy; thread-safe, one per process.

    `transport` defaults to `GuardedTransport(policy)` (the address check); tests may pass another.
    """

    def __init__(self, policy: RemoteContentPolicy, transport: httpx.BaseTransport | None = None) -> None:
        self._policy = policy
        self._client = guarded_client(policy, transport, {"Accept": ACCEPT}, USER_AGENT_SUFFIX)

    def post_url(self, source: PostUrlSource, path: str = "source", url: str | None = None) -> list[str]:
        """The values the source's URL answers with; `path` (the rule's) goes into any error.

        `url` is the one to call when it differs from the one to name in errors (the source's URL with
        its credentials opened: errors show them masked)."""
        body, charset = self._post(url or source.url, path, shown=source.url)
        return parse_answer(body, charset, source.path, path)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ExternalSets:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _post(self, url: str, path: str, shown: str) -> tuple[bytes, str | None]:
        """POST to `url`; errors name `shown` (the URL with its credentials masked) instead."""
        deadline = time.monotonic() + self._policy.timeout_seconds
        try:
            request = self._client.build_request("POST", url, content=b"")
            if request.url.scheme not in ("http", "https"):
                raise ExternalSetFailed("the URL must be an http or https address", f"{path}.url")
            response = self._client.send(request, stream=True)
            with closing(response):
                if not response.is_success:
                    raise ExternalSetFailed(f"{shown} answered HTTP {response.status_code}", path)
                return _read(
                    response, self._policy.max_bytes, deadline, shown, path
                ), response.charset_encoding
        except ExternalSetFailed:
            raise
        except (httpx.TimeoutException, httpcore.TimeoutException):
            raise ExternalSetFailed(
                f"{shown} did not answer within {self._policy.timeout_seconds:g} s", path
            ) from None
        except Exception as error:
            # The guarded transport refuses a private address with its own error; httpx and httpcore
            # raise theirs for every network failure. Whatever it was, the set is not applied.
            reason = str(error).replace(url, shown) or type(error).__name__
            raise ExternalSetFailed(f"could not fetch {shown}: {reason}", path) from None


def _read(response: httpx.Response, max_bytes: int, deadline: float, url: str, path: str) -> bytes:
    """The body, refused past `max_bytes` (decoded) or past the fetch's deadline (a slow drip)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ExternalSetFailed(f"{url} answered more than {max_bytes} bytes", path)
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():  # gzip decoded by httpx, so the cap counts what is kept
        total += len(chunk)
        if total > max_bytes:
            raise ExternalSetFailed(f"{url} answered more than {max_bytes} bytes", path)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the fetch's deadline passed")
        chunks.append(chunk)
    return b"".join(chunks)


# --- reading an answer -------------------------------------------------------------------------


def parse_answer(body: bytes, charset: str | None, answer_path: str, rule_path: str = "source") -> list[str]:
    """The values in an answer: JSON at `answer_path`, XML at `answer_path`, or lines (empty path)."""
    text = _text(body, charset, rule_path).lstrip("\ufeff")
    stripped = text.strip()
    where = f"{rule_path}.path"
    try:
        document = orjson.loads(stripped) if stripped else None
        is_json = bool(stripped)
    except orjson.JSONDecodeError:
        document, is_json = None, False
    if is_json:
        return _from_json(document, answer_path, where)
    if stripped.startswith("<"):
        if not answer_path:
            raise ExternalSetFailed("the answer is XML: give the path of the values, e.g. names/name", where)
        return _from_xml(stripped, answer_path, rule_path)
    if answer_path:
        raise ExternalSetFailed(
            f"the answer is neither JSON nor XML, so path {answer_path!r} names nothing", where
        )
    return [line.strip() for line in text.splitlines() if line.strip()]


def _text(body: bytes, charset: str | None, rule_path: str) -> str:
    name = charset or "utf-8"
    try:
        codecs.lookup(name)
    except LookupError:
        name = "utf-8"
    try:
        text = body.decode(name)
    except UnicodeDecodeError:
        raise ExternalSetFailed(f"the answer is not text in {name}", rule_path) from None
    if "\x00" in text:
        raise ExternalSetFailed("the answer is binary, not text", rule_path)
    return text


def _from_json(document: Any, answer_path: str, where: str) -> list[str]:
    found = document
    walked: list[str] = []
    for key in answer_path.split(".") if answer_path else []:
        walked.append(key)
        if not isinstance(found, dict) or key not in found:
            raise ExternalSetFailed(f"the JSON answer has no {'.'.join(walked)!r}", where)
        found = found[key]
    if not isinstance(found, list):
        named = f"{answer_path!r} in the JSON answer" if answer_path else "the JSON answer"
        raise ExternalSetFailed(f"{named} is not a list", where)
    return [_json_item(item, index, where) for index, item in enumerate(found)]


def _json_item(item: Any, index: int, where: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, int | float) and not isinstance(item, bool):
        return str(item)
    raise ExternalSetFailed(f"item {index} of the list is not a text or a number", where)


def _from_xml(text: str, answer_path: str, rule_path: str) -> list[str]:
    """The texts of the elements at `answer_path`; a bad answer is the source's fault, a path that
    names nothing the path's."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ExternalSetFailed("XML answers with a document type declaration are refused", rule_path)
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise ExternalSetFailed(f"the answer is not valid XML ({error})", rule_path) from None
    where = f"{rule_path}.path"
    tags = [tag for tag in answer_path.strip("/").split("/") if tag]
    if tags and tags[0] == root.tag:
        return [_element_text(element) for element in _descend([root], tags[1:])]
    found = list(_descend([root], tags))
    if not found:
        raise ExternalSetFailed(f"the XML answer has no {answer_path!r}", where)
    return [_element_text(element) for element in found]


def _descend(elements: list[ElementTree.Element], tags: list[str]) -> Iterator[ElementTree.Element]:
    for tag in tags:
        elements = [child for element in elements for child in element if child.tag == tag]
    yield from elements


def _element_text(element: ElementTree.Element) -> str:
    return "".join(element.itertext()).strip()
