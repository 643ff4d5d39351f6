"""Which tracker hits are machines: crawlers, mail scanners and link checkers rather than the recipient.

A flagged hit is still recorded (with `bot: true`) but never counts as unique
and never applies a link's actions, so reports can leave it out.

A hit is a bot when:
- its User-Agent is empty (every mail client and browser sends one);
- its User-Agent names a crawler, an HTTP library or a security gateway
  that opens links and images to scan them (`BOT_MARKERS`): Barracuda,
  Mimecast, Proofpoint, Symantec/MessageLabs, Trend Micro, Microsoft's
  SafeLinks, Defender and "Office Protocol Discovery" (Office checking a link
  before opening it), and the like;
- it comes within `PREFETCH_SECONDS` of the delivery (or before the delivery
  was recorded): no person opens a message that fast, a scanner at the
  receiving server does.

Image proxies are NOT bots: Gmail (GoogleImageProxy) and Yahoo
(YahooMailProxy) fetch the pixel on the reader's behalf, so their hit stands
for a real open; they are recognised first (`IMAGE_PROXIES`) and never
flagged, not even by the delivery-time rule. Apple Mail (and its Privacy
Protection proxy) fetches with a plain WebKit or bare "Mozilla/5.0"
User-Agent that no marker matches, so it counts as an open too, unless it
comes within `PREFETCH_SECONDS` of the delivery, where nothing tells it from a
scanner. (The proxy fetches on receipt rather than on reading, which inflates
Apple users' opens everywhere.)

`ip` is part of the signature for network-based rules (scanners' published
address ranges), which Herald does not ship: such lists go stale quickly.
"""

from __future__ import annotations

import re

PREFETCH_SECONDS = 2.0

IMAGE_PROXIES = (
    "googleimageproxy",  # Gmail: "... (via ggpht.com GoogleImageProxy)"
    "yahoomailproxy",  # Yahoo Mail and AOL
)

BOT_MARKERS = (
    "crawler",
    "crawl/",
    "spider",
    "slurp",  # Yahoo's crawler
    "facebookexternalhit",
    "headlesschrome",
    "phantomjs",
    "skype uri preview",
    "linkcheck",
    "link checker",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "go-http-client",
    "okhttp",
    "apache-httpclient",
    "java/",
    "libwww-perl",
    "scrapy",
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "messagelabs",
    "trend micro",
    "trendmicro",
    "forcepoint",
    "sophos",
    "ironport",
    "zscaler",
    "microsoft office protocol discovery",
    "safelinks",
    "microsoft defender",
    "ms-office-link-scan",
)
# "bot" ends a crawler's product token (Googlebot, bingbot, Slackbot, AhrefsBot); "CUBOT" is a phone brand.
_BOT_WORD = re.compile(r"(?<!cu)bot\b", re.IGNORECASE)


def is_bot(user_agent: str, ip: str, seconds_since_delivery: float | None) -> bool:
    """Whether a tracker hit comes from a machine; `seconds_since_delivery` is None when not delivered yet."""
    agent = user_agent.strip().lower()
    if not agent:
        return True
    if any(proxy in agent for proxy in IMAGE_PROXIES):
        return False
    if _BOT_WORD.search(agent) or any(marker in agent for marker in BOT_MARKERS):
        return True
    return seconds_since_delivery is not None and seconds_since_delivery < PREFETCH_SECONDS
