"""Which tracker hits are machines: crawlers, mail scanners and link checkers rather than the recipient.

A machine's hit is still recorded, flagged `bot` with the rule that matched
(`bot_rule`) and why in words (`bot_reason`), so the message's history and the
profile's say why it was not counted. It is never unique, never implies an
open, never applies a link's actions, and every report and segment leaves it
out; the summary report counts it on its own (`<channel>_bot_opens`,
`_bot_clicks`, `_bot_reads`).

The rules, in the order they are tried (`BotRules`; `HERALD_BOT_RULES` sets them):
1. `head_request`: a HEAD request (it shows nothing to anyone);
2. `empty_user_agent`: no User-Agent at all (every mail client and browser sends one);
3. people first: a User-Agent containing one of `people` is a person's, whatever follows. The
   defaults are the image proxies that fetch the pixel on the reader's behalf, when the message
   is opened: Gmail (GoogleImageProxy) and Yahoo (YahooMailProxy);
4. `user_agent`: the User-Agent contains one of `user_agents` (crawlers, HTTP libraries such as
   `curl/` and `python-requests`, and the security gateways that open links and images to scan
   them: Barracuda, Mimecast, Proofpoint, Symantec/MessageLabs, Trend Micro, Microsoft's
   SafeLinks and Defender, "Office Protocol Discovery"...) or one of `extra_user_agents`, or,
   with `bot_word`, a product token ending in "bot" (Googlebot, bingbot, AhrefsBot; not CUBOT,
   a phone brand);
5. `apple_privacy`: only when `count_apple_privacy_opens` is off, an open or read from Apple's
   network (17.0.0.0/8, Apple's own for decades). Apple Mail Privacy Protection fetches every
   image when the message arrives, read or not, through Apple's proxies, with a bare WebKit
   User-Agent no marker matches. Counted by default, as the guide's product and most ESPs count
   them (they inflate Apple readers' opens); off, they are machine opens, as Braze and Klaviyo
   can report them;
6. `prefetch`: within `prefetch_seconds` of the delivery (or before the delivery was recorded):
   no person opens a message that fast, a scanner at the receiving server does.

Address lists of scanners are not shipped (they go stale quickly); `ip` serves Apple's rule.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
PREFETCH_SECONDS = 2.0
APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
# "bot" ends a crawler's product token (Googlebot, bingbot, Slackbot, AhrefsBot); "CUBOT" is a phone brand.
_BOT_WORD = re.compile(r"\w*(?<!cu)bot\b", re.IGNORECASE)

BotRule = Literal["head_request", "empty_user_agent", "user_agent", "apple_privacy", "prefetch"]
Action = Literal["open", "read", "click"]


class BotRules(BaseModel):
    """What counts as a machine's hit (the account's setting, `HERALD_BOT_RULES`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_agents: tuple[str, ...] = Field(
        BOT_MARKERS, description="User-Agent substrings (any case) that name a machine; replaces the list"
    )
    extra_user_agents: tuple[str, ...] = Field((), description="more substrings, added to user_agents")
    people: tuple[str, ...] = Field(
        IMAGE_PROXIES, description="User-Agent substrings that are always a person's (image proxies)"
    )
    bot_word: bool = Field(True, description="a product token ending in 'bot' names a machine")
    empty_user_agent: bool = Field(True, description="a hit without a User-Agent is a machine's")
    prefetch_seconds: float = Field(
        PREFETCH_SECONDS, ge=0, le=3600, description="hits this soon after the delivery are a machine's"
    )
    count_apple_privacy_opens: bool = Field(
        True, description="opens from Apple Mail Privacy Protection's proxies count as opens"
    )


DEFAULT_BOT_RULES = BotRules()


@dataclass(frozen=True, slots=True)
class Hit:
    """A tracker request as the rules see it; `seconds_since_delivery` is None when not delivered yet."""

    action: Action
    user_agent: str
    ip: str
    seconds_since_delivery: float | None
    head: bool = False


@dataclass(frozen=True, slots=True)
class BotVerdict:
    """A hit is a machine's: the rule that matched and why, in words, for the message's history."""

    rule: BotRule
    reason: str


def classify(hit: Hit, rules: BotRules = DEFAULT_BOT_RULES) -> BotVerdict | None:
    """The rule that makes `hit` a machine's, or None for a person's."""
    agent = hit.user_agent.strip().lower()
    if hit.head:
        return BotVerdict("head_request", "a HEAD request: it shows nothing to anyone")
    if not agent:
        if rules.empty_user_agent:
            return BotVerdict("empty_user_agent", "no User-Agent: every mail client and browser sends one")
        return None
    if any(person.lower() in agent for person in rules.people if person):
        return None
    named = _named_machine(agent, rules)
    if named is not None:
        return BotVerdict(
            "user_agent", f"the User-Agent contains {named!r}, a crawler's, scanner's or HTTP library's"
        )
    if not rules.count_apple_privacy_opens and hit.action != "click" and _in_apple_network(hit.ip):
        return BotVerdict("apple_privacy", "an Apple Mail Privacy Protection proxy fetched it on arrival")
    seconds = hit.seconds_since_delivery
    if seconds is not None and seconds < rules.prefetch_seconds:
        return BotVerdict(
            "prefetch",
            f"{max(seconds, 0):.1f} s after the delivery (under {rules.prefetch_seconds:g} s): "
            "a scanner at the receiving server, not a reader",
        )
    return None


def _named_machine(agent: str, rules: BotRules) -> str | None:
    """The marker of `rules` the (lower-cased) User-Agent contains, if any."""
    for marker in (*rules.user_agents, *rules.extra_user_agents):
        if marker and marker.lower() in agent:
            return marker
    if rules.bot_word:
        word = _BOT_WORD.search(agent)
        if word is not None:
            return word.group()
    return None


def _in_apple_network(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in APPLE_NETWORK
    except ValueError:
        return False
