"""Credentials in a segment's external URLs: sealed when the segment is saved, opened only to fetch.

A `post_url` source whose URL holds a login or a credential-looking parameter
is saved with `url` masked (`domain/secrets.redacted_url`) and the whole URL in
`sealed_url`. Sending the masked URL back, as a read of the segment shows it,
keeps the sealed one; the fetch opens it, while errors name the masked URL.
"""

from __future__ import annotations

from herald.domain.secrets import redacted_url
from herald.domain.segments import ExternalRule, PostUrlSource, SegmentQuery, iter_rules, with_post_urls
from herald.infra.secret_box import SecretBox


def _bound_to(shown_url: str) -> str:
    return f"segment.post_url.{shown_url}"


def sealed_urls(box: SecretBox, query: SegmentQuery, stored: SegmentQuery | None) -> SegmentQuery:
    """`query` with the credentials of its external URLs sealed (or kept, when sent back masked)."""
    kept = {
        rule.source.url: rule.source.sealed_url
        for _, rule in iter_rules(stored or SegmentQuery())
        if isinstance(rule, ExternalRule)
        and isinstance(rule.source, PostUrlSource)
        and rule.source.sealed_url is not None
    }

    def seal(source: PostUrlSource) -> PostUrlSource:
        # whatever `sealed_url` a body brings is replaced: only Herald seals
        if source.url in kept:
            return source.model_copy(update={"sealed_url": kept[source.url]})
        shown = redacted_url(source.url)
        if shown == source.url:
            return source.model_copy(update={"sealed_url": None})
        return source.model_copy(update={"url": shown, "sealed_url": box.seal(source.url, _bound_to(shown))})

    return with_post_urls(query, seal)


def opened_url(box: SecretBox, source: PostUrlSource) -> str:
    """The URL to call: the sealed one opened, or the URL as given when it holds no credentials."""
    if source.sealed_url is None:
        return source.url
    return box.open(source.sealed_url, _bound_to(source.url))
