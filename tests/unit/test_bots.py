"""Which tracker hits are machines: scanners, crawlers and prefetches are; people and proxies are not."""

from __future__ import annotations

import pytest

from herald.domain.bots import PREFETCH_SECONDS, BotRules, BotVerdict, Hit, classify
from herald.infra.config import bot_rules

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
OUTLOOK = "Mozilla/4.0 (compatible; ms-office; MSOffice 16) Microsoft Outlook 16.0.17328; Pro)"


@pytest.mark.parametrize(
    ("user_agent", "seconds", "bot"),
    [
        # people: browsers and mail clients, some time after the delivery or before it is known
        (CHROME, 3600.0, False),
        (CHROME, None, False),
        (APPLE_MAIL, 120.0, False),
        (OUTLOOK, 60.0, False),
        ("Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 Chrome/120 Mobile", 60.0, False),
        # image proxies fetch for a reader: a real open, even right after the delivery
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            1.0,
            False,
        ),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", 0.5, False),
        # crawlers and HTTP libraries
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 60.0, True),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 60.0, True),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", 60.0, True),
        ("Mozilla/5.0 (compatible; AhrefsBot/7.0)", 60.0, True),
        ("SomeCrawler/1.0", 60.0, True),
        ("Baiduspider+(+http://www.baidu.com/search/spider.htm)", 60.0, True),
        ("curl/8.5.0", 60.0, True),
        ("Wget/1.21.4", 60.0, True),
        ("python-requests/2.31.0", 60.0, True),
        ("Go-http-client/1.1", 60.0, True),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36", 60.0, True),
        # mail security gateways and link scanners
        ("Barracuda Sentinel (EE)", 60.0, True),
        ("Mimecast/1.0 URL protect", 60.0, True),
        ("Proofpoint URL Defense", 60.0, True),
        ("Symantec Email Security.cloud", 60.0, True),
        ("Trend Micro InterScan Messaging Security", 60.0, True),
        ("MessageLabs link scanner", 60.0, True),
        ("Microsoft Office Protocol Discovery", 60.0, True),
        ("Mozilla/5.0 SafeLinks/1.0", 60.0, True),
        ("Microsoft Defender for Office 365", 60.0, True),
        # no User-Agent at all
        ("", 60.0, True),
        ("   ", None, True),
        # a browser User-Agent, but right at the delivery (or before it was recorded): a prefetch
        (CHROME, 0.0, True),
        (CHROME, PREFETCH_SECONDS - 0.1, True),
        (CHROME, -5.0, True),
        (CHROME, PREFETCH_SECONDS, False),
    ],
)
def test_bots_are_told_from_people(user_agent: str, seconds: float | None, bot: bool) -> None:
    assert (classify(Hit("open", user_agent, "203.0.113.7", seconds)) is not None) is bot


@pytest.mark.parametrize(
    ("hit", "rule", "reason"),
    [
        (Hit("open", CHROME, "203.0.113.7", 60.0, head=True), "head_request", "a HEAD request"),
        (Hit("open", "", "203.0.113.7", 60.0), "empty_user_agent", "no User-Agent"),
        (Hit("click", "curl/8.5.0", "127.0.0.1", 60.0), "user_agent", "the User-Agent contains 'curl/'"),
        (
            Hit("open", "Mozilla/5.0 (compatible; AhrefsBot/7.0)", "", 60.0),
            "user_agent",
            "contains 'ahrefsbot'",
        ),
        (Hit("open", CHROME, "203.0.113.7", 0.5), "prefetch", "0.5 s after the delivery (under 2 s)"),
        (Hit("open", CHROME, "203.0.113.7", -3.0), "prefetch", "0.0 s after the delivery"),
    ],
)
def test_a_bot_verdict_names_its_rule_and_says_why(hit: Hit, rule: str, reason: str) -> None:
    verdict = classify(hit)
    assert isinstance(verdict, BotVerdict) and verdict.rule == rule
    assert reason in verdict.reason


APPLE_PROXY = "17.58.101.4"  # Apple's network: Mail Privacy Protection fetches from there


@pytest.mark.parametrize(
    ("rules", "hit", "rule"),
    [
        # the defaults, for comparison
        (BotRules(), Hit("open", "curl/8.5.0", "127.0.0.1", 60.0), "user_agent"),
        (BotRules(), Hit("open", APPLE_MAIL, APPLE_PROXY, 60.0), None),
        # a tester's curl counted as a person (an allow-list entry beats every rule, the prefetch too)
        (BotRules(people=("curl/",)), Hit("open", "curl/8.5.0", "127.0.0.1", 0.1), None),
        # the list replaced: curl is no longer named; a marker of one's own added
        (BotRules(user_agents=("mimecast",)), Hit("open", "curl/8.5.0", "", 60.0), None),
        (BotRules(extra_user_agents=("AcmeScanner",)), Hit("click", "acmescanner/2", "", 60.0), "user_agent"),
        # the "...bot" word rule and the empty User-Agent rule can be turned off
        (BotRules(bot_word=False), Hit("open", "Mozilla/5.0 (compatible; AhrefsBot/7.0)", "", 60.0), None),
        (BotRules(empty_user_agent=False), Hit("open", "", "", 60.0), None),
        # a longer prefetch window; 0 turns it off
        (BotRules(prefetch_seconds=30), Hit("open", CHROME, "", 20.0), "prefetch"),
        (BotRules(prefetch_seconds=0), Hit("open", CHROME, "", 0.0), None),
        # Apple Mail Privacy Protection's opens as machine opens: opens and reads only, never clicks
        (
            BotRules(count_apple_privacy_opens=False),
            Hit("open", APPLE_MAIL, APPLE_PROXY, 60.0),
            "apple_privacy",
        ),
        (
            BotRules(count_apple_privacy_opens=False),
            Hit("read", APPLE_MAIL, APPLE_PROXY, 60.0),
            "apple_privacy",
        ),
        (BotRules(count_apple_privacy_opens=False), Hit("click", APPLE_MAIL, APPLE_PROXY, 60.0), None),
        (BotRules(count_apple_privacy_opens=False), Hit("open", APPLE_MAIL, "203.0.113.7", 60.0), None),
    ],
)
def test_the_rules_are_configurable(rules: BotRules, hit: Hit, rule: str | None) -> None:
    verdict = classify(hit, rules)
    assert (verdict.rule if verdict else None) == rule


def test_herald_bot_rules_is_a_json_object_of_the_rules_fields() -> None:
    rules = bot_rules('{"extra_user_agents": ["AcmeScanner"], "prefetch_seconds": 5}')
    assert rules == BotRules(extra_user_agents=("AcmeScanner",), prefetch_seconds=5)
    assert bot_rules("") == BotRules() and bot_rules("  ") == BotRules()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"prefetch_seconds": -1}',
            "HERALD_BOT_RULES.prefetch_seconds: Input should be greater than or equal to 0",
        ),
        ('{"user_agent": ["x"]}', "HERALD_BOT_RULES.user_agent: Extra inputs are not permitted"),
        ('{"people": "curl/"}', "HERALD_BOT_RULES.people: Input should be a valid tuple"),
        ("[1]", "HERALD_BOT_RULES.(the whole value): Input should be a valid dictionary"),
        ("{curl", "HERALD_BOT_RULES is not JSON"),
    ],
)
def test_bad_herald_bot_rules_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        bot_rules(text)
    assert str(caught.value).startswith(message)
