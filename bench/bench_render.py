# ruff: noqa: E501  (the email's HTML keeps its long lines, as real email HTML does)
"""Renders/s of a ~30 KB marketing email in the Altcraft template language, against plain Jinja2.

Herald: `compile_template(source).render(RenderContext(...))` of an HTML email (tables,
inline CSS and a `<style>` block full of braces) with 20 values from `lead.*`,
`subscription.*` and `json.*`, a `{format}` call, two `{if}` conditions (one with `and`
and a comparison) and a `{for}` loop over 10 products printing 3 fields each.

Baseline, same run: the equivalent hand-written Jinja2 template rendered by a plain
`jinja2.Environment` (autoescape off): the engine with no sandbox, no limits and no
missing-value rules. The ratio is taken against its fastest spelling, subscripts
(`{{ lead['_fname'] }}`, `{% if lead['points'] >= 1000 and json['promo']['code'] %}`),
which index the dicts directly. Printed for context: Jinja2's `SandboxedEnvironment` on
the same template, and the plain environment on the dotted spelling most Jinja authors
write (`{{ lead._fname }}`), which tries a Python attribute first and is much slower on
dicts. The templates are written around one shared HTML skeleton, and every output is
checked equal to Herald's for every message before the clock starts.

Every message has its own data (name, city, plan, points, email, order), built before the
clock starts; the templates are compiled once beforehand. The renderers are timed in
alternating rounds over the same messages and each one's best round counts.

    python bench/bench_render.py [--messages 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from common import machine, report, run
from jinja2 import Environment, Template
from jinja2.sandbox import SandboxedEnvironment

from herald.domain.templating import RenderContext, compile_template

# ---- the two templates ----------------------------------------------------------------------

# Each `<<name>>` of the skeleton is a tag, spelled per language below; the rest is shared text.
HERALD_TAGS = {
    "fname": "{lead._fname}",
    "lname": "{lead._lname}",
    "city": "{lead._city}",
    "plan": "{lead.plan}",
    "points": '{format lead.points ","}',
    "manager": "{lead.manager}",
    "email": "{subscription.email}",
    "email_domain": "{subscription.email_domain}",
    "phone": "{subscription.phone}",
    "order_id": "{json.order.id}",
    "order_total": "{json.order.total}",
    "currency": "{json.order.currency}",
    "order_date": "{json.order.date}",
    "promo_code": "{json.promo.code}",
    "promo_discount": "{json.promo.discount}",
    "promo_until": "{json.promo.until}",
    "store_name": "{json.store.name}",
    "store_url": "{json.store.url}",
    "store_phone": "{json.store.phone}",
    "store_address": "{json.store.address}",
    "if_pro": '{if lead.plan equal "pro"}',
    "if_promo": "{if lead.points gte 1000 and json.promo.code}",
    "else": "{else}",
    "end_if": "{end}",
    "for_products": "{for $p = json.products}",
    "p_name": "{$p.name}",
    "p_price": "{$p.price}",
    "p_url": "{$p.url}",
    "end_for": "{end}",
}
JINJA_TAGS = {
    "fname": "{{ lead['_fname'] }}",
    "lname": "{{ lead['_lname'] }}",
    "city": "{{ lead['_city'] }}",
    "plan": "{{ lead['plan'] }}",
    "points": "{{ '{:,}'.format(lead['points']) }}",
    "manager": "{{ lead['manager'] }}",
    "email": "{{ subscription['email'] }}",
    "email_domain": "{{ subscription['email_domain'] }}",
    "phone": "{{ subscription['phone'] }}",
    "order_id": "{{ json['order']['id'] }}",
    "order_total": "{{ json['order']['total'] }}",
    "currency": "{{ json['order']['currency'] }}",
    "order_date": "{{ json['order']['date'] }}",
    "promo_code": "{{ json['promo']['code'] }}",
    "promo_discount": "{{ json['promo']['discount'] }}",
    "promo_until": "{{ json['promo']['until'] }}",
    "store_name": "{{ json['store']['name'] }}",
    "store_url": "{{ json['store']['url'] }}",
    "store_phone": "{{ json['store']['phone'] }}",
    "store_address": "{{ json['store']['address'] }}",
    "if_pro": "{% if lead['plan'] == 'pro' %}",
    "if_promo": "{% if lead['points'] >= 1000 and json['promo']['code'] %}",
    "else": "{% else %}",
    "end_if": "{% endif %}",
    "for_products": "{% for p in json['products'] %}",
    "p_name": "{{ p['name'] }}",
    "p_price": "{{ p['price'] }}",
    "p_url": "{{ p['url'] }}",
    "end_for": "{% endfor %}",
}

_STYLE = """
    body { margin: 0; padding: 0; background-color: #f2f4f7; -webkit-text-size-adjust: 100%; }
    table { border-collapse: collapse; mso-table-lspace: 0pt; mso-table-rspace: 0pt; }
    img { border: 0; height: auto; line-height: 100%; outline: none; text-decoration: none; }
    a { color: #1a73e8; text-decoration: none; }
    .wrapper { width: 100%; background-color: #f2f4f7; padding: 24px 0; }
    .container { width: 640px; margin: 0 auto; background: #ffffff; border-radius: 8px; }
    .header { padding: 24px 32px; background: #0b3d91; color: #ffffff; }
    .header h1 { margin: 0; font: bold 24px/32px Arial, Helvetica, sans-serif; }
    .hero { padding: 32px; text-align: center; }
    .hero h2 { margin: 0 0 12px; font: bold 28px/36px Arial, Helvetica, sans-serif; color: #111; }
    .hero p { margin: 0; font: 16px/24px Arial, Helvetica, sans-serif; color: #444; }
    .btn { display: inline-block; padding: 12px 28px; background: #ff6a00; color: #fff !important; }
    .btn:hover { background: #e65f00; }
    .card { width: 33%; padding: 12px; vertical-align: top; text-align: center; }
    .card img { width: 160px; border-radius: 4px; }
    .card .price { font: bold 18px/24px Arial, sans-serif; color: #0b3d91; }
    .promo { margin: 24px 32px; padding: 20px; border: 2px dashed #ff6a00; text-align: center; }
    .promo .code { font: bold 26px/32px 'Courier New', monospace; letter-spacing: 4px; }
    .muted { color: #8a8f98; font: 12px/18px Arial, Helvetica, sans-serif; }
    .footer { padding: 24px 32px; background: #f7f8fa; }
    .footer a { color: #8a8f98; text-decoration: underline; }
    .divider { border-top: 1px solid #e3e6ea; height: 1px; line-height: 1px; font-size: 1px; }
    @media only screen and (max-width: 660px) {
      .container { width: 100% !important; border-radius: 0 !important; }
      .card { display: block !important; width: 100% !important; }
      .hero h2 { font-size: 22px !important; line-height: 28px !important; }
      .stack { display: block !important; width: 100% !important; }
    }
    @media (prefers-color-scheme: dark) {
      .container { background: #1e1f22 !important; }
      .hero h2, .hero p { color: #f2f4f7 !important; }
    }
    [data-ogsc] .header { background: #06245a !important; }
    u + .body .wrapper { width: 100vw !important; }
"""

_CATEGORIES = (
    ("Laptops", "Ultrabooks, gaming rigs and workstations for every budget"),
    ("Phones", "Flagships and mid-range smartphones with free screen insurance"),
    ("Audio", "Noise-cancelling headphones, earbuds and home speakers"),
    ("Smart home", "Lights, plugs, thermostats and hubs that work together"),
    ("Cameras", "Mirrorless bodies, lenses and action cameras"),
    ("Gaming", "Consoles, controllers and the season's top titles"),
    ("Wearables", "Watches and fitness bands that track what matters"),
    ("Accessories", "Chargers, cables, cases and everything in between"),
    ("TV & video", "4K and OLED televisions, projectors and streaming boxes"),
)
_ARTICLES = (
    ("How to choose a laptop for studying", "battery life, weight and a keyboard you like"),
    ("Five accessories that make a phone last longer", "cases, glass, chargers and the right cable"),
    ("Setting up a smart home in one evening", "start with lights, add sensors, then automate"),
    ("Headphones for commuting: what to look for", "noise cancelling, comfort and codecs"),
    ("Our repair service: fast, fair, official", "original parts and a 12-month guarantee"),
    ("Trade in your old device", "get up to 40% of its price back towards a new one"),
)
_LEGAL = (
    "Prices and availability are correct at the time of sending and may change without notice. "
    "Promotional codes cannot be exchanged for cash, combined with other offers or applied to "
    "orders already placed. Delivery times depend on your region and the carrier's schedule. "
    "Images are for illustration only; actual products may differ in colour and packaging. "
)


def _category_row(items: tuple[tuple[str, str], ...]) -> str:
    cells = "".join(
        f"""
            <td class="card" style="width:33%;padding:12px;vertical-align:top;text-align:center;">
              <a href="<<store_url>>/catalog/{title.lower().replace(" ", "-").replace("&", "and")}?utm_source=email&amp;utm_medium=newsletter&amp;utm_campaign=weekly" style="color:#1a73e8;text-decoration:none;">
                <img src="https://cdn.example.com/img/categories/{title.lower().replace(" ", "_").replace("&", "and")}.png" width="160" alt="{title}" style="display:block;margin:0 auto;width:160px;border-radius:4px;" />
                <span style="display:block;margin-top:8px;font:bold 16px/22px Arial,sans-serif;color:#111111;">{title}</span>
              </a>
              <p style="margin:6px 0 0;font:13px/19px Arial,Helvetica,sans-serif;color:#555555;">{text}</p>
            </td>"""
        for title, text in items
    )
    return f"""
          <tr>{cells}
          </tr>"""


def _article(title: str, summary: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"""
      <tr>
        <td class="stack" style="padding:16px 32px;border-top:1px solid #e3e6ea;">
          <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">
            <tr>
              <td width="120" style="vertical-align:top;padding-right:16px;">
                <img src="https://cdn.example.com/img/blog/{slug}.jpg" width="120" alt="" style="display:block;width:120px;border-radius:4px;" />
              </td>
              <td style="vertical-align:top;">
                <a href="<<store_url>>/blog/{slug}?utm_source=email&amp;utm_medium=newsletter" style="font:bold 17px/23px Arial,Helvetica,sans-serif;color:#0b3d91;text-decoration:none;">{title}</a>
                <p style="margin:6px 0 0;font:14px/21px Arial,Helvetica,sans-serif;color:#444444;">In short: {summary}. Read the full guide on our blog, with photos, comparison tables and the questions our customers ask most often in the shop and on the phone.</p>
              </td>
            </tr>
          </table>
        </td>
      </tr>"""


_PRODUCT = """
          <tr>
            <td class="stack" style="padding:12px 32px;border-bottom:1px solid #eef0f3;">
              <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">
                <tr>
                  <td style="font:bold 15px/21px Arial,Helvetica,sans-serif;color:#111111;"><a href="<<p_url>>?utm_source=email&amp;utm_medium=newsletter&amp;utm_content=recommended" style="color:#111111;text-decoration:none;"><<p_name>></a></td>
                  <td align="right" class="price" style="font:bold 16px/22px Arial,sans-serif;color:#0b3d91;white-space:nowrap;"><<p_price>> <<currency>></td>
                </tr>
              </table>
            </td>
          </tr>"""

_SKELETON = (
    """<!DOCTYPE html>
<html lang="en" xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <meta name="x-apple-disable-message-reformatting" />
  <title><<store_name>>: your weekly picks, <<fname>></title>
  <!--[if mso]><xml><o:OfficeDocumentSettings><o:PixelsPerInch>96</o:PixelsPerInch></o:OfficeDocumentSettings></xml><![endif]-->
  <style type="text/css">"""
    + _STYLE
    + """  </style>
</head>
<body class="body" style="margin:0;padding:0;background-color:#f2f4f7;">
  <div style="display:none;max-height:0;overflow:hidden;">Hi <<fname>>, new arrivals in <<city>> and an offer for you inside.</div>
  <table role="presentation" class="wrapper" width="100%" cellpadding="0" cellspacing="0" border="0" style="background-color:#f2f4f7;">
    <tr>
      <td align="center" style="padding:24px 0;">
        <table role="presentation" class="container" width="640" cellpadding="0" cellspacing="0" border="0" style="width:640px;background:#ffffff;border-radius:8px;">
          <tr>
            <td class="header" style="padding:24px 32px;background:#0b3d91;color:#ffffff;">
              <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">
                <tr>
                  <td><a href="<<store_url>>/?utm_source=email" style="color:#ffffff;text-decoration:none;"><h1 style="margin:0;font:bold 24px/32px Arial,Helvetica,sans-serif;"><<store_name>></h1></a></td>
                  <td align="right" style="font:13px/18px Arial,sans-serif;color:#c9d6f2;">Order <<order_id>> &middot; <<order_date>></td>
                </tr>
              </table>
            </td>
          </tr>
          <tr>
            <td class="hero" style="padding:32px;text-align:center;">
              <h2 style="margin:0 0 12px;font:bold 28px/36px Arial,Helvetica,sans-serif;color:#111111;">Hello, <<fname>> <<lname>>!</h2>
              <p style="margin:0;font:16px/24px Arial,Helvetica,sans-serif;color:#444444;">Thank you for your order <<order_id>> of <<order_total>> <<currency>>. Your manager <<manager>> has picked the week's best offers for shoppers in <<city>>.</p>
              <p style="margin:16px 0 0;font:16px/24px Arial,Helvetica,sans-serif;color:#444444;">You have <strong><<points>></strong> loyalty points on the <<plan>> plan.</p>
"""
    + "<<if_pro>>"
    + """
              <p style="margin:16px 0 0;font:15px/22px Arial,Helvetica,sans-serif;color:#0b3d91;">As a Pro member you get free express delivery and a personal manager on every order. Call <<store_phone>> any time.</p>
"""
    + "<<else>>"
    + """
              <p style="margin:16px 0 0;font:15px/22px Arial,Helvetica,sans-serif;color:#444444;">Upgrade to Pro for free express delivery and a personal manager: <a href="<<store_url>>/pro?utm_source=email&amp;utm_medium=newsletter" style="color:#ff6a00;">see the plans</a>.</p>
"""
    + "<<end_if>>"
    + """
              <a class="btn" href="<<store_url>>/account/orders/<<order_id>>?utm_source=email" style="display:inline-block;margin-top:24px;padding:12px 28px;background:#ff6a00;color:#ffffff;border-radius:4px;font:bold 16px/20px Arial,sans-serif;">Track your order</a>
            </td>
          </tr>
"""
    + "<<if_promo>>"
    + """
          <tr>
            <td class="promo" style="padding:20px;border:2px dashed #ff6a00;text-align:center;">
              <p style="margin:0;font:16px/24px Arial,Helvetica,sans-serif;color:#111111;">With <<points>> points you unlocked an extra <strong><<promo_discount>>%</strong> off, until <<promo_until>>:</p>
              <p class="code" style="margin:12px 0 0;font:bold 26px/32px 'Courier New',monospace;letter-spacing:4px;color:#ff6a00;"><<promo_code>></p>
            </td>
          </tr>
"""
    + "<<end_if>>"
    + """
          <tr>
            <td style="padding:24px 32px 8px;font:bold 20px/28px Arial,Helvetica,sans-serif;color:#111111;">Recommended for you</td>
          </tr>"""
    + "<<for_products>>"
    + _PRODUCT
    + "<<end_for>>"
    + """
          <tr>
            <td style="padding:32px 32px 8px;font:bold 20px/28px Arial,Helvetica,sans-serif;color:#111111;">Shop by category</td>
          </tr>
          <tr>
            <td style="padding:0 20px;">
              <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">"""
    + "".join(_category_row(_CATEGORIES[i : i + 3]) for i in range(0, len(_CATEGORIES), 3))
    + """
              </table>
            </td>
          </tr>
          <tr>
            <td style="padding:32px 32px 8px;font:bold 20px/28px Arial,Helvetica,sans-serif;color:#111111;">From our blog</td>
          </tr>"""
    + "".join(_article(title, summary) for title, summary in _ARTICLES)
    + """
          <tr>
            <td class="footer" style="padding:24px 32px;background:#f7f8fa;">
              <p class="muted" style="margin:0 0 8px;font:12px/18px Arial,Helvetica,sans-serif;color:#8a8f98;"><<store_name>> &middot; <<store_address>> &middot; <<store_phone>></p>
              <p class="muted" style="margin:0 0 8px;font:12px/18px Arial,Helvetica,sans-serif;color:#8a8f98;">This email was sent to <<email>> (<<email_domain>>) because you subscribed at <<store_url>>. SMS notices go to <<phone>>.</p>
              <p class="muted" style="margin:0 0 8px;font:12px/18px Arial,Helvetica,sans-serif;color:#8a8f98;">"""
    + _LEGAL * 3
    + """</p>
              <p class="muted" style="margin:0;font:12px/18px Arial,Helvetica,sans-serif;color:#8a8f98;"><a href="<<store_url>>/account/subscriptions?email=<<email>>" style="color:#8a8f98;">Manage subscriptions</a> &middot; <a href="<<store_url>>/privacy" style="color:#8a8f98;">Privacy policy</a></p>
            </td>
          </tr>
        </table>
      </td>
    </tr>
  </table>
</body>
</html>"""
)


def spell(tags: dict[str, str]) -> str:
    """The skeleton with every `<<name>>` written in one language's spelling."""
    text = re.sub(r"<<(\w+)>>", lambda match: tags[match.group(1)], _SKELETON)
    assert "<<" not in text
    return text


def dotted(jinja_source: str) -> str:
    """The Jinja template with `x['key']` subscripts written as `x.key`."""
    return re.sub(r"\['(\w+)'\]", r".\1", jinja_source)


# ---- per-message data -----------------------------------------------------------------------

_PRODUCTS = [
    {
        "name": f"Product {n}: {name}",
        "price": price,
        "url": f"https://shop.example.com/p/{1000 + n}",
        "sku": f"SKU-{1000 + n}",
        "stock": 5 + n,
    }
    for n, (name, price) in enumerate(
        [
            ("Noise-cancelling headphones", 249.9),
            ("USB-C charger 65 W", 39),
            ("Smart bulb, pack of 4", 54.5),
            ("Mechanical keyboard", 129),
            ("4K action camera", 299.99),
            ("Fitness band", 49.9),
            ("Wireless mouse", 29),
            ("27-inch monitor", 319),
            ("Portable SSD 1 TB", 109.5),
            ("Phone case", 19.9),
        ]
    )
]
_STORE = {
    "name": "Gadget Hub",
    "url": "https://shop.example.com",
    "phone": "+1 800 555 0199",
    "address": "221 Market Street, Springfield",
}
_CITIES = ("Moscow", "Kazan", "Perm", "Samara", "Tver")
_PLANS = ("basic", "plus", "pro")


def message(n: int) -> dict[str, Any]:
    """The n-th message's data: per-profile lead and subscription, a per-message order."""
    return {
        "lead": {
            "_fname": f"Anna{n}",
            "_lname": "Ivanova",
            "_city": _CITIES[n % len(_CITIES)],
            "plan": _PLANS[n % len(_PLANS)],
            "points": (n * 137) % 3000,
            "manager": "Olga Petrova",
            "email": f"user{n}@example.org",
        },
        "subscription": {
            "email": f"user{n}@example.org",
            "email_domain": "example.org",
            "phone": f"+7900{n:07d}",
        },
        "json": {
            "order": {
                "id": f"A-{100000 + n}",
                "total": 100 + n % 900 + 0.5,
                "currency": "USD",
                "date": "2026-11-20",
            },
            "promo": {"code": f"SAVE{n % 97:02d}", "discount": 15, "until": "2026-12-01"},
            "store": _STORE,
            "products": _PRODUCTS,
        },
    }


# ---- timing ---------------------------------------------------------------------------------


def _best(work: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Each work's shortest time over `rounds` rounds, the works alternating within a round."""
    best = dict.fromkeys(work, float("inf"))
    for _ in range(rounds):
        for name, job in work.items():
            started = time.perf_counter()
            job()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def main() -> None:
    """Check the outputs equal, then print renders/s of Herald and of each Jinja2 environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages (renders) per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each renderer's best one counts")
    args = parser.parse_args()

    herald = compile_template(spell(HERALD_TAGS))
    jinja_source = spell(JINJA_TAGS)
    jinja = {
        "plain": Environment(autoescape=False).from_string(jinja_source),
        "sandboxed": SandboxedEnvironment(autoescape=False).from_string(jinja_source),
        "dotted": Environment(autoescape=False).from_string(dotted(jinja_source)),
    }
    data = [message(n) for n in range(args.messages)]
    contexts = [RenderContext(**names) for names in data]
    outputs = [herald.render(context) for context in contexts]
    for names, ours in zip(data, outputs, strict=True):
        for name, template in jinja.items():
            if template.render(**names) != ours:
                raise RuntimeError(f"Jinja2 {name} and Herald differ for {names['lead']['_fname']}")
    print(
        f"{machine()}; template {len(herald.source):,} chars (Jinja {len(jinja_source):,}), "
        f"output {min(map(len, outputs)):,}-{max(map(len, outputs)):,} chars; "
        f"{args.messages:,} messages x best of {args.rounds} rounds",
        flush=True,
    )

    def render_herald() -> None:
        for context in contexts:
            herald.render(context)

    work = {"herald": render_herald} | {name: partial(_render_all, t, data) for name, t in jinja.items()}
    rate = {name: args.messages / seconds for name, seconds in _best(work, args.rounds).items()}
    against = {
        "plain": "plain jinja2.Environment",
        "sandboxed": "jinja2 SandboxedEnvironment",
        "dotted": "plain jinja2.Environment, dotted spelling",
    }
    for name, label in against.items():
        report(f"render, Herald against {label}", rate["herald"], "renders", rate[name])


def _render_all(template: Template, data: list[dict[str, Any]]) -> None:
    """Render `template` once per message (the output is dropped, as Herald's is)."""
    for names in data:
        template.render(**names)


if __name__ == "__main__":
    run(main)
