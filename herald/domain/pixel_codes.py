"""A pixel's tracking codes, the three of the guide, each bound to its pixel by a signed URL.

- `js` ("Показ страницы"): a config the page pushes (`pixel`, `goals`
  URL-encoded and comma-joined, `value`, `timeout` in ms, `after_scroll`,
  `auto_load`, the guide's keys) and Herald's script (`/pixel/ak.js`), which
  reports the page view (at once, or after the first scroll, after `timeout`)
  and defines `ak_pixel_push(tags, value, match, update, matching_mode)`;
  calls made before the script loads are queued and sent once it has.
- `image` ("Показ страницы (Без JS)"): a transparent 1×1 image.
- `link` ("Переход по ссылке (Без JS)"): a link through the tracker to
  `redirect_url`, which the URL's signature covers.

URL: `<base>/pixel?k=<key>&s=<sig>&redirect_url=<url>&goals=<goals>&value=<v>`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Literal
from urllib.parse import quote, urlencode

CodeKind = Literal["js", "image", "link"]
SCRIPT_PATH = "/pixel/ak.js"
_START = "<!-- START OF HERALD PIXEL CODE -->"
_END = "<!-- END OF HERALD PIXEL CODE -->"


def joined_goals(goals: Sequence[str]) -> str:
    """The goals as the `goals` parameter carries them: comma-joined (each URL-encoded)."""
    return ",".join(quote(goal, safe="") for goal in goals)


def pixel_url(
    base_url: str,
    key: str,
    signature: str,
    goals: Sequence[str] = (),
    value: float | None = None,
    redirect_url: str | None = None,
) -> str:
    """The pixel's tracker URL with its parameters in the guide's order."""
    query = [("k", key), ("s", signature)]
    if redirect_url is not None:
        query.append(("redirect_url", redirect_url))
    if goals:
        query.append(("goals", ",".join(goals)))
    if value is not None:
        query.append(("value", _number(value)))
    return f"{base_url.rstrip('/')}/pixel?{urlencode(query, quote_via=quote)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def image_code(url: str) -> str:
    image = f'<img src="{html.escape(url)}" width="1" height="1" alt="" style="display:none">'
    return f"{_START}\n{image}\n{_END}"


def link_code(url: str, text: str = "Click!") -> str:
    return f'{_START}\n<a href="{html.escape(url)}">{html.escape(text)}</a>\n{_END}'


def js_code(
    base_url: str,
    pixel: str,
    goals: Sequence[str],
    value: float,
    timeout_ms: int,
    after_scroll: bool,
    auto_load: bool,
) -> str:
    """The page code: the config, the queue for early `ak_pixel_push` calls, and the script."""
    config = {
        "pixel": pixel,
        "goals": joined_goals(goals),
        "value": value,
        "timeout": timeout_ms,
        "after_scroll": after_scroll,
        "auto_load": auto_load,
    }
    # `</` cannot end the script element early: JSON escapes it as `<\/`.
    text = json.dumps(config, ensure_ascii=False, indent=2).replace("</", "<\\/")
    script = f"{base_url.rstrip('/')}{SCRIPT_PATH}"
    return (
        f'{_START}\n<script type="text/javascript">\n'
        "  (window.akPixelConfigs = window.akPixelConfigs || []).push(" + text.replace("\n", "\n  ") + ");\n"
        "  window.ak_pixel_push = window.ak_pixel_push || function () {\n"
        "    (window.akPixelQueue = window.akPixelQueue || []).push(arguments);\n"
        "  };\n"
        f'</script>\n<script type="text/javascript" async src="{html.escape(script)}"></script>\n{_END}'
    )
