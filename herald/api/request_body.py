"""Request bodies read under limits: media type (415), size while streaming (413), JSON shape (422).

Every body an endpoint takes comes through here, so no handler can read one
unchecked:
- the size is checked against the declared `Content-Length` before anything
  is read, and again while the body streams in, so an oversized body is
  refused after at most one chunk past the limit, never after reading it all;
- a JSON body is refused when it nests deeper than `MAX_JSON_DEPTH`, holds a
  string (or key) longer than `MAX_STRING_CHARS`, or an integer outside the
  signed 64-bit range (SQLite's and ClickHouse's Int64, and all orjson
  writes; orjson also writes no deeper than 254 levels, so a deeper document
  could be stored and then not read back). The error names the offending place.

JSON bodies are taken as `application/json` or any `+json` type, and also
without a media type and as `application/x-www-form-urlencoded`, which is what
`curl -d` sends unless told otherwise (the body is read as JSON all the same;
the API authenticates by bearer token, so a browser's form post gains nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import from_json
from starlette.requests import Request

from herald.api.errors import HttpError

MAX_JSON_DEPTH = 32
MAX_STRING_CHARS = 1024 * 1024
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# What `curl -d` and `curl --data-binary` send when no Content-Type is given.
CURL_DEFAULT = "application/x-www-form-urlencoded"
JSON_MEDIA_TYPES = ("application/json", "application/*+json", CURL_DEFAULT)


def media_type(request: Request) -> str:
    """The request's media type, lower-cased and without parameters ("" when none is given)."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def check_media_type(request: Request, accepted: Sequence[str]) -> None:
    """415 unless the body's media type is one of `accepted` (`type/*+suffix` patterns allowed)."""
    given = media_type(request)
    if not given or any(_matches(given, pattern) for pattern in accepted):
        return
    raise HttpError(415, f"the body's media type {given[:100]!r} is not one of {', '.join(accepted)}", "body")


def _matches(given: str, pattern: str) -> bool:
    if "*" not in pattern:
        return given == pattern
    main, _, suffix = pattern.partition("/*")
    return given.startswith(f"{main}/") and given.endswith(suffix)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over `max_bytes`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def _too_large(max_bytes: int) -> HttpError:
    return HttpError(413, f"the body is over the limit of {max_bytes:,} bytes", "body")


def parse_json(raw: bytes) -> Any:
    """The JSON document `raw` holds, checked against the shape limits (422 naming the place)."""
    if not raw.strip():
        raise HttpError(422, "a JSON body is required", "body")
    try:
        # pydantic's parser (jiter): as fast as orjson here, and it keeps integers past 64 bits exact
        # (orjson turns them into floats), so the range check below sees them
        document = from_json(raw)
    except ValueError as error:
        if "recursion limit" in str(error):
            raise HttpError(422, f"JSON nests at most {MAX_JSON_DEPTH} levels deep", "body") from None
        raise HttpError(422, f"the body is not JSON: {error}", "body") from None
    check_json_limits(document, long_strings=len(raw) > MAX_STRING_CHARS)
    return document


def check_json_limits(document: Any, long_strings: bool = True) -> None:
    """422 naming the place where `document` nests too deep, holds too long a text or too big a number.

    `long_strings=False` skips measuring texts (a body shorter than the limit holds none longer)."""
    if not _within_limits(document, long_strings):
        problem = _first_problem(document)
        assert problem is not None  # the two passes check the same limits
        raise HttpError(422, problem[1], problem[0])


def _within_limits(document: Any, long_strings: bool) -> bool:
    """Whether the document keeps to the limits: a fast pass, level by level, that does not track
    where it is (this runs on every body; a 10,000-event batch takes about 10 ms)."""
    if not isinstance(document, dict | list):
        return _scalar_fits(document)
    level: list[Any] = [document]
    depth = 1
    while level:
        deeper: list[Any] = []
        push = deeper.append
        for container in level:
            if type(container) is dict:
                if long_strings and any(len(key) > MAX_STRING_CHARS for key in container):
                    return False
                items = container.values()
            else:
                items = container
            for item in items:  # the commonest kinds first: this loop sees every value of the body
                kind = type(item)
                if kind is str:
                    if long_strings and len(item) > MAX_STRING_CHARS:
                        return False
                elif kind is dict or kind is list:
                    push(item)
                elif kind is int and not _INT64_MIN <= item <= _INT64_MAX:
                    return False
        if deeper and depth >= MAX_JSON_DEPTH:
            return False
        level = deeper
        depth += 1
    return True


def _scalar_fits(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_STRING_CHARS
    if isinstance(value, int) and not isinstance(value, bool):
        return _INT64_MIN <= value <= _INT64_MAX
    return True


def _first_problem(document: Any) -> tuple[str, str] | None:
    """Where the document first breaks a limit (dotted path, "body" for the whole) and how."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        at = ".".join(path) or "body"
        if isinstance(value, dict | list) and len(path) >= MAX_JSON_DEPTH:
            return at, f"JSON nests at most {MAX_JSON_DEPTH} levels deep"
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                if len(key) > MAX_STRING_CHARS:
                    return at, f"a key is {len(key):,} characters; at most {MAX_STRING_CHARS:,}"
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, str(i))) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, str) and not _scalar_fits(value):
            return at, f"the text is {len(value):,} characters; a string holds at most {MAX_STRING_CHARS:,}"
        elif not _scalar_fits(value):
            return at, "a whole number here fits in 64 bits (-2^63 to 2^63-1)"
    return None
