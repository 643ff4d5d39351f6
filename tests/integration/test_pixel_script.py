"""The pixel script run in Node with a stand-in window: page views by config, `ak_pixel_push`, calls queued
before the script loads, and a tracked link's visitor token kept and sent."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any
from urllib.parse import parse_qs, urlsplit

from herald.api.pixel_script import PIXEL_SCRIPT
from herald.domain.pixel_codes import js_code

PIXEL = "https://trk.example.com/pixel?k=KEY&s=0123456789abcdef"
WINDOW = r"""
const sent = [], waits = [], listeners = {};
globalThis.window = {
  location: {search: "?a=1&herald_visitor=tok.en", href: "https://shop.example.com/p?a=1&herald_visitor=tok.en"},
  localStorage: {store: {}, getItem(k) { return k in this.store ? this.store[k] : null; },
                 setItem(k, v) { this.store[k] = String(v); }},
  setTimeout(run, ms) { waits.push(ms); run(); },
  addEventListener(type, run) { listeners[type] = run; },
  removeEventListener(type) { delete listeners[type]; },
  Image: function () {
    return {set src(url) { sent.push(url); }, get src() { return sent[sent.length - 1]; }};
  },
};
globalThis.document = {referrer: "https://ref.example.com/"};
"""


def run(page: str, after: str = "") -> dict[str, Any]:
    """Run the page's code, then the script, then `after`; what the script sent and waited for."""
    node = shutil.which("node")
    assert node is not None, "the pixel script's tests run it in Node (apt-get install nodejs)"
    inline = re.search(r"<script type=\"text/javascript\">(.*?)</script>", page, re.S)
    assert inline is not None
    program = (
        WINDOW
        + inline.group(1)
        + '\nwindow.ak_pixel_push("early", 5);\n'
        + PIXEL_SCRIPT
        + after
        + "\nconsole.log(JSON.stringify({sent, waits, scroll: 'scroll' in listeners,"
        " stored: window.localStorage.store}));"
    )
    done = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=30, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def test_a_page_view_then_the_queued_and_later_pushes() -> None:
    page = js_code("https://trk.example.com", PIXEL, ["Custom score 2"], 9000, 10000, False, True)
    result = run(
        page,
        'window.ak_pixel_push(["click", "cars"], -100.40, {"db_id": 12, "Client_ID": 1}, '
        '{"_fname": ""}, "custom");',
    )
    view, early, pushed = (query(u) for u in result["sent"])
    assert all(u.startswith(PIXEL + "&t=js") for u in result["sent"])
    assert (view["goals"], view["value"], result["waits"]) == ("Custom score 2", "9000", [10000])
    assert (early["goals"], early["value"]) == ("early", "5")
    assert (pushed["goals"], pushed["value"], pushed["matching_mode"]) == ("click,cars", "-100.4", "custom")
    assert json.loads(pushed["match"]) == {"db_id": 12, "Client_ID": 1}
    assert json.loads(pushed["update"]) == {"_fname": ""}
    assert pushed["hv"] == "tok.en" and result["stored"] == {"herald_visitor": "tok.en"}
    assert (
        pushed["url"].startswith("https://shop.example.com/p") and pushed["ref"] == "https://ref.example.com/"
    )


def test_after_scroll_waits_for_the_first_scroll() -> None:
    page = js_code("https://trk.example.com", PIXEL, ["Read"], 1, 0, True, False)
    before = run(page)
    assert [query(u)["goals"] for u in before["sent"]] == ["early"] and before["scroll"] is True
    scrolled = run(page, "listeners.scroll();")
    assert [query(u)["goals"] for u in scrolled["sent"]] == ["early", "Read"] and scrolled["scroll"] is False
