"""Which tracker hits are machines: scanners, crawlers and prefetches are; people and proxies are not."""

from __future__ import annotations

import pytest

from herald.domain.bots import PREFETCH_SECONDS, is_bot

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
    assert is_bot(user_agent, "203.0.113.7", seconds) is bot
