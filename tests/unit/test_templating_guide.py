"""Every example of the guide's template language (notes seed000-C §3, seed000-A §7) renders as shown."""

from __future__ import annotations

from typing import Any

import pytest

from herald.domain.templating import RenderContext, compile_template

JSON_CONTENT = {
    "number": 10,
    "text": "Hello!",
    "list": ["One", "Two", "Three"],
    "object": {"model": "x17", "price": "$99"},
    "mixed": [
        {"city": "Los Gamburger", "street": "Florence Avenue"},
        {"city": "St. Potato", "street": "Glendale Boulevard"},
    ],
    "price": 8000,
    "promo_actions1": ["spring", "summer"],
}
LOOP_JSON = {
    "Addresses": ["Lenina st, 444, 24", "Mira av, 555, 25"],
    "Information": {
        "LJ": [{"name": "Optimyss X1", "price": "$10"}, {"name": "Optimyss X2", "price": "$20"}],
        "Samsyng": [{"name": "Galaktiko 17", "price": "$50"}],
    },
}
LEAD = {
    "_fname": "Eddie",
    "_lname": "Brock",
    "Sign": "Scorpio",
    "NewsGroup": "movies",
    "_regurl": "http://test.testdomain.com/some/page",
    "date_of_birth": "1998-11-02",
    "notify_date": "2020-06-22",
    "age": 18,
    "score": 9500,
    "shop_name": "my_shop",
    "best_buy_type": "Premium watch",
    "event_activity": True,
    "field": "summer",
    "loyalty_score": 120,
}
RELATIONS = {
    "managers_loyal": {
        "direct": {"profit": {"count": 2, "total": 9327.22}},
        "reverse": {
            "profit": {
                "top": [
                    {"lead_fname": "Ann", "lead_lname": "Lee", "value": 9000.01},
                    {"lead_fname": "Bob", "lead_lname": "Ray", "value": 327.21},
                ]
            }
        },
    }
}
SYSTEM = {
    "msg_type": "email",
    "campid": "Spring sale",
    "msgname": "New items",
    "msgid": "5f1/42",
    "listname": "Shop",
}


def render(source: str, **data: Any) -> str:
    base: dict[str, Any] = {"lead": LEAD, "json": JSON_CONTENT, "relations": RELATIONS, "system": SYSTEM}
    for name in ("lead", "system"):  # an example's own values add to the shared ones
        base[name] = {**base[name], **data.pop(name, {})}
    return compile_template(source).render(RenderContext(**base, **data))


EXAMPLES = [
    # §3.1 variables
    ("lead-alias", "Hello, {lead_fname}!", {}, "Hello, Eddie!"),
    ("lead-custom-field", "Daily horoscope for {lead.Sign}.", {}, "Daily horoscope for Scorpio."),
    ("relation-count", "{relation.managers_loyal.direct.profit.count}", {}, "2"),
    ("relation-total", "{relation.managers_loyal.direct.profit.total}", {}, "9327.22"),
    (
        "relation-top-loop",
        "{for $index $item = relation.managers_loyal.reverse.profit.top}\n"
        "{$item.lead_fname} {$item.lead_lname} ({$item.value} profit)\n"
        "{else} There is no 'profit' for you :(\n{end}",
        {},
        "\nAnn Lee (9000.01 profit)\n\nBob Ray (327.21 profit)\n",
    ),
    (
        "relation-top-loop-empty",
        "{for $index $item = relation.managers_loyal.direct.profit.top}\n"
        "{$item.lead_fname}\n{else} There is no 'profit' for you :(\n{end}",
        {},
        " There is no 'profit' for you :(\n",
    ),
    ("loyalty", "{loyalty.products.promocode}", {"loyalty": {"products": {"promocode": "PR-1"}}}, "PR-1"),
    (
        "loyalty-dashed-name",
        "{loyalty.black-friday.promocode}",
        {"loyalty": {"black-friday": {"promocode": "BF-7"}}},
        "BF-7",
    ),
    (
        "json-number-and-text",
        "<p>{json.number} число</p><p>{json.text} строка</p>",
        {},
        "<p>10 число</p><p>Hello! строка</p>",
    ),
    ("json-object-key", "{json.object.model} {json.object.price}", {}, "x17 $99"),
    (
        "json-list-screenshot-loop",
        "{for $index $element = json.list}<p>{index}</p><p>{element}</p>{else}<p>empty</p>{end}",
        {},
        "<p>0</p><p>One</p><p>1</p><p>Two</p><p>2</p><p>Three</p>",
    ),
    (
        "query-loop",
        "{for $index $el = query.products}<b>{$el.type}</b> {$el.model} {$el.price}\n"
        "{else}if empty array{end}",
        {"query": {"products": [{"type": "Dress", "model": "Rosso-Orient", "price": "3600"}]}},
        "<b>Dress</b> Rosso-Orient 3600\n",
    ),
    (
        "utm-parameters",
        "utm_source={msg_type}&utm_medium=altcraft&utm_campaign={urlencode(campid)}"
        "&utm_term={urlencode(msgname)}&utm_content={urlencode(msgid)}",
        {},
        "utm_source=email&utm_medium=altcraft&utm_campaign=Spring%20sale&utm_term=New%20items"
        "&utm_content=5f1%2F42",
    ),
    (
        "unsubscribe-text-version",
        "Unsubscribe: {unsubscribe}",
        {"system": {"unsubscribe": "https://t/u/1"}},
        "Unsubscribe: https://t/u/1",
    ),
    # §3.2 output functions
    ("format-thousands", '{format 1000000000 ","}', {}, "1,000,000,000"),
    ("format-price", '<p>Price {format json.price "."} RUR</p>', {}, "<p>Price 8.000 RUR</p>"),
    ("format-date", '<p> {format lead.date_of_birth "%D.%m.%Y"} </p>', {}, "<p> 02.11.1998 </p>"),
    (
        "adddate",
        "<p>Event starts on {adddate(lead.notify_date 0 0 10)}</p>",
        {},
        "<p>Event starts on 2020-07-02</p>",
    ),
    (
        "adddate-inside-format",
        '<p>Event starts on {format adddate(lead.notify_date 0 0 10) "%Y-%m-%D"}</p>',
        {},
        "<p>Event starts on 2020-07-02</p>",
    ),
    ("length", '{length("abc ")}', {}, "4"),
    ("array", '{array[1 "2" 3.3]}', {}, "1, 2, 3.3"),
    ("limit", "{limit(array[1 2 3] 2)}", {}, "1, 2"),
    ("urlencode", "{urlencode(lead._regurl)}", {}, "http:%2F%2Ftest.testdomain.com%2Fsome%2Fpage"),
    (
        "urldecode",
        "{urldecode(lead.encoded)}",
        {"lead": {"encoded": "http:%2F%2Ftest.testdomain.com%2Fsome%2Fpage"}},
        "http://test.testdomain.com/some/page",
    ),
    # §3.4 logic
    ("if-gte", "{if lead.age gte 18}\n    adult\n{else}\n    minor\n{end}", {}, "\n    adult\n"),
    ("if-in-json-list", "{if lead.field in json.promo_actions1}in{else}out{end}", {}, "in"),
    ("if-string", '{if "par1"}\n  if true\n{else}\n  if false\n{end}', {}, "\n  if true\n"),
    (
        "if-complex",
        '{if "par1" in array["par1" "par2"] and ( 5 equal length("par 3") or false )} if true\n'
        "{else}\n  if false\n{end}",
        {},
        " if true\n",
    ),
    ("if-equal", '{if "par1" equal "par2"} if\n  true\n{else}\n  if false\n{end}', {}, "\n  if false\n"),
    (
        "if-not-equal",
        '{if "par1" not_equal "par2"} if\n  true\n{else}\n  if false\n{end}',
        {},
        " if\n  true\n",
    ),
    ("if-like", '{if "par1" like "PAR1"}true{else}false{end}', {}, "true"),
    ("if-like-guide", '{if "par1" like "par2"}true{else}false{end}', {}, "false"),
    ("if-not-like", '{if "par1" not_like "par2"}true{else}false{end}', {}, "true"),
    ("if-contains-guide", '{if "par1" contains "par2"}true{else}false{end}', {}, "false"),
    (
        "if-shop-example-balanced",
        '{if lead.shop_name and lead.best_buy_type}{if lead.shop_name equal "my_shop"}'
        '{if lead.best_buy_type contains "premium"}<p>42%</p>{else}<p>20%</p>{end}{end}'
        "{else}<p>20%</p>{end}",
        {},
        "<p>42%</p>",
    ),
    (
        "parts-by-score",
        "{if lead.score gte 9000}\n{part.part_1}\n{else}\n{part.part_2}\n{end}",
        {"parts": {"part_1": "Gold: {lead.loyalty_score}!", "part_2": "Silver"}},
        "\nGold: 120!\n",
    ),
    # §3.5 loops
    (
        "loop-anonymous",
        '{for array[1 "2" 3.3]}\n  {.}\n{else}\n  if empty array\n{end}',
        {},
        "\n  1\n\n  2\n\n  3.3\n",
    ),
    (
        "loop-named-comma",
        '{for $index, $el = array[1 "2" 3.3]}\n  {$index}: {$el}\n{else}\n  if empty array\n{end}',
        {},
        "\n  0: 1\n\n  1: 2\n\n  2: 3.3\n",
    ),
    ("loop-empty", "{for array[]}\n  {.}\n{else}\n  if empty array\n{end}", {}, "\n  if empty array\n"),
    # fragments (§1.8, §3.1)
    (
        "fragments",
        "{fragment.header}\n{if lead.event_activity}\n{fragment.expo}\n{end}\n"
        "{randomfragment[fragment.body2]}",
        {"fragments": {"header": "<h1>Hi {lead_fname}</h1>", "expo": "<p>Expo</p>", "body2": "<p>Body</p>"}},
        "<h1>Hi Eddie</h1>\n\n<p>Expo</p>\n\n<p>Body</p>",
    ),
    # dynamic content (§3.1 external HTML)
    (
        "remote-horoscope",
        "Hello, {lead_fname}!\n\nDaily horoscope for {lead.Sign}.\n\n{[http://127.0.0.1/horoscopes?sign={lead.Sign}]}",
        {"fetch_remote": lambda url: f"<p>{url}</p>"},
        "Hello, Eddie!\n\nDaily horoscope for Scorpio.\n\n<p>http://127.0.0.1/horoscopes?sign=Scorpio</p>",
    ),
    (
        "remote-news",
        "{[http://www.example.news?index=1&news_group={lead.NewsGroup}]}|{[http://www.example.news?index=2&news_group={listname}]}",
        {"fetch_remote": lambda url: url.rsplit("?", 1)[1]},
        "index=1&news_group=movies|index=2&news_group=Shop",
    ),
    # seed000-A §7: segment sync SQL with $batch and {autocomma}
    (
        "segment-sync-sql",
        "INSERT INTO mysegment (segId, clientId, updated)\nVALUES\n"
        '{for $index, $lead = $batch}\n  ({segment_id}, "{$lead.CustomID}", NOW()){autocomma}\n{end}\n'
        "ON DUPLICATE KEY UPDATE\n  updated = NOW();",
        {"variables": {"batch": [{"CustomID": "c1"}, {"CustomID": "c2"}]}, "system": {"segment_id": 7}},
        "INSERT INTO mysegment (segId, clientId, updated)\nVALUES\n"
        '\n  (7, "c1", NOW()),\n\n  (7, "c2", NOW())\n\n'
        "ON DUPLICATE KEY UPDATE\n  updated = NOW();",
    ),
]


@pytest.mark.parametrize(
    ("source", "data", "expected"), [c[1:] for c in EXAMPLES], ids=[c[0] for c in EXAMPLES]
)
def test_guide_example(source: str, data: dict[str, Any], expected: str) -> None:
    assert render(source, **data) == expected


def test_nested_loops_over_an_object_render_as_the_guide_shows() -> None:
    source = (
        "<h5>Models:</h5>\n{for $vendor $models = json.Information}\n  <p>{$vendor}</p>\n  <ol>\n"
        "    {for $index $model = $models}\n      <li>{$model.name} {$model.price}</li>\n"
        "    {else}\n      <p>Empty array!</p>\n    {end}\n  </ol>\n{else}\n  <p>Empty array!</p>\n{end}\n"
        "<h5>Addresses:</h5>\n<ol>\n{for $index $address = json.Addresses}\n  <li>{$address}</li>\n"
        "{else}\n  <p>Empty array!</p>\n{end}\n</ol>"
    )
    out = compile_template(source).render(RenderContext(json=LOOP_JSON))
    # The guide's "Результат", whitespace aside (its `<p>LJ<p>` and stray `&gt;` are typos).
    expected = (
        "<h5>Models:</h5> <p>LJ</p> <ol> <li>Optimyss X1 $10</li> <li>Optimyss X2 $20</li> </ol> "
        "<p>Samsyng</p> <ol> <li>Galaktiko 17 $50</li> </ol> <h5>Addresses:</h5> <ol> "
        "<li>Lenina st, 444, 24</li> <li>Mira av, 555, 25</li> </ol>"
    )
    assert " ".join(out.split()) == expected


CRYPT_EXAMPLES = [
    "{crypt(base58 lead._fname)}",
    "{crypt(base64 lead._lname)}",
    '{crypt(sha256 lead.custom_field "salt")}',
    '{crypt(sha1 lead._city "salt")}',
    '{crypt(aes lead.score "key1234567891234")}',
    '{crypt(blowfish lead._tz "key12345")}',
    '{crypt(base58 "value")}',
    "{crypt(base64 42)}",
    '{crypt(md5 subscription.email "salt")}',
    '{crypt(xxh32 loyalty.new2.promocode "salt")}',
    '{crypt(xxh64 json.text "salt")}',
]


@pytest.mark.parametrize("source", CRYPT_EXAMPLES)
def test_every_crypt_example_of_the_guide_compiles_and_renders_something(source: str) -> None:
    context = RenderContext(
        lead={**LEAD, "custom_field": "c", "_city": "Moscow", "_tz": "Europe/Moscow"},
        subscription={"email": "a@b.c"},
        loyalty={"new2": {"promocode": "N2"}},
        json=JSON_CONTENT,
    )
    assert compile_template(source).render(context)
