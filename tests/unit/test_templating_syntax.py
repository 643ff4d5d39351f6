"""Syntax errors: refused at compile time with the line, the column and what was expected."""

from __future__ import annotations

import pytest

from herald.domain.errors import DomainError, ValidationFailed
from herald.domain.templating import RenderContext, TemplateSyntaxError, compile_template, parse, tree

ERRORS = [
    ("if-not-closed", "{if true}yes", 1, 1, "`{if}` is not closed with `{end}`"),
    ("for-not-closed", "a\n{for array[1]}x", 2, 1, "`{for}` is not closed with `{end}`"),
    ("inner-block-not-closed", "{if true}{for array[1]}{end}", 1, 1, "`{if}` is not closed"),
    ("stray-end", "text {end}", 1, 6, "`{end}` without an open"),
    ("stray-else", "{else}", 1, 1, "`{else}` without an open"),
    ("second-else", "{if true}a{else}b{else}c{end}", 1, 18, "only one `{else}`"),
    ("else-with-words", "{if true}{else if false}{end}", 1, 16, "`{else}` takes nothing"),
    ("tag-not-closed", "Hi {lead._fname\nthere", 1, 4, "not closed with `}`"),
    ("string-not-closed", '{if lead.x equal "abc}', 1, 18, 'not closed with `"`'),
    ("brace-inside-tag", "{lead.x {lead.y}}", 1, 9, "cannot contain `{`"),
    ("unexpected-character", "{lead.x @}", 1, 9, "unexpected character `@`"),
    ("if-without-condition", "{if}{end}", 1, 1, "`{if}` needs a condition"),
    ("for-without-iterable", "{for}{end}", 1, 1, "`{for}` needs something to loop over"),
    ("for-without-iterable-after-equals", "{for $i $x =}{end}", 1, 12, "after `=`"),
    ("for-same-names", "{for $a $a = json.x}{end}", 1, 6, "different names"),
    ("unknown-name", "{if foo.bar}{end}", 1, 5, "unknown name `foo.bar`"),
    ("unknown-namespace", "Hi {laed._fname}", 1, 5, "unknown namespace `laed`"),
    ("unknown-namespace-in-single-of-double", "{{laed._fname}", 1, 3, "unknown namespace `laed`"),
    ("unknown-function", "Total: {summ(json.a json.b)}", 1, 9, "unknown function `summ`"),
    ("unknown-function-no-arguments", "{b()}", 1, 2, "unknown function `b`"),
    ("operator-without-left", "{if equal 1}{end}", 1, 5, "found the operator `equal`"),
    ("operator-without-right", "{if lead.x equal}{end}", 1, 17, "a value after `equal`"),
    ("two-values", "{lead.x lead.y}", 1, 9, "unexpected `lead.y`"),
    ("chained-comparison", "{if 1 equal 1 equal 1}{end}", 1, 15, "unexpected `equal`"),
    ("paren-not-closed", "{if (true}{end}", 1, 10, "expected `)` to close `(`"),
    ("relation-short", "{relation.managers.direct.profit}", 1, 2, "relation.<relation>.<direct|reverse>"),
    ("relation-bad-direction", "{relation.m.sideways.p.count}", 1, 2, "<direct|reverse>"),
    ("relation-bad-aggregate", "{relation.m.direct.p.max}", 1, 2, "<count|total|top>"),
    ("loyalty-without-promocode", "{loyalty.vip}", 1, 2, "loyalty.<program>.promocode"),
    ("fragment-two-names", "{fragment.a.b}", 1, 2, "`fragment.<name>` with one name"),
    ("part-two-names", "{part.a.b}", 1, 2, "`part.<name>` with one name"),
    ("namespace-alone-in-expression", "{if json}{end}", 1, 5, "`json` needs a name"),
    ("crypt-unknown-algorithm", "{crypt(rot13 lead.x)}", 1, 8, "one of base58, base64"),
    ("crypt-aes-short-key", '{crypt(aes lead.x "short")}', 1, 2, "aes key must be 16, 24 or 32 bytes"),
    ("crypt-blowfish-short-key", '{crypt(blowfish lead.x "abc")}', 1, 2, "4 to 56 bytes"),
    ("crypt-aes-without-key", "{crypt(aes lead.x)}", 1, 2, "needs a key"),
    ("crypt-base64-with-key", '{crypt(base64 lead.x "salt")}', 1, 2, "takes no key"),
    ("length-arity", '{length("a" "b")}', 1, 2, "`length` takes 1 arguments, got 2"),
    ("adddate-arity", "{adddate(lead.d 1)}", 1, 2, "`adddate` takes 4 arguments"),
    ("call-not-closed", "{limit(array[1 2] 1}", 1, 20, "`limit(` is not closed with `)`"),
    ("array-not-closed", "{array[1 2}", 1, 11, "`array[` is not closed with `]`"),
    ("format-missing-layout", "{format lead.x}", 1, 15, "expected a format"),
    ("randomfragment-of-values", "{randomfragment[lead.x]}", 1, 2, "randomfragment[fragment.<name>"),
    ("randomfragment-empty", "{randomfragment[]}", 1, 2, "randomfragment[fragment.<name>"),
    ("dot-outside-loop", "{.}", 1, 2, "only inside an anonymous `{for}`"),
    ("dot-in-named-loop", "{for $x = array[1]}{.}{end}", 1, 21, "only inside an anonymous"),
    ("dot-in-loop-else", "{for array[1]}{else}{.}{end}", 1, 22, "only inside an anonymous"),
    ("autocomma-outside-loop", "{autocomma}", 1, 1, "only inside a `{for}` loop"),
    ("autocomma-in-loop-else", "{for array[1]}{else}{autocomma}{end}", 1, 21, "only inside a `{for}`"),
    ("remote-not-closed", "{[http://example.com", 1, 1, "`{[` is not closed with `]}`"),
    ("remote-nested", "{[http://a/{[http://b]}]}", 1, 12, "cannot contain another one"),
    ("remote-with-block", "{[http://a/{if true}x{end}]}", 1, 12, "only text and values"),
    ("position-on-later-line", "line one\nline two\n    {if lead.x equal}{end}", 3, 21, "after `equal`"),
]


@pytest.mark.parametrize(
    ("source", "line", "column", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_syntax_errors_name_the_line_column_and_reason(
    source: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(source)
    error = caught.value
    assert (error.line, error.column) == (line, column), error
    assert message in error.message
    assert error.reason.startswith(f"line {line}, column {column}: ")


def test_a_syntax_error_is_a_validation_error_and_keeps_its_position_under_a_path() -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template("\n\n  {end}")
    error = caught.value.at("email.html")
    assert isinstance(error, ValidationFailed) and isinstance(error, DomainError)
    assert (error.path, error.line, error.column) == ("email.html", 3, 3)
    assert str(error) == "email.html: line 3, column 3: `{end}` without an open `{if}` or `{for}`"


def test_the_guides_unbalanced_condition_example_is_refused_at_its_first_if() -> None:
    # The guide's shop example has three `{if}` and two `{end}` (a comment was lost).
    source = (
        '{if lead.shop_name and lead.best_buy_type}\n  {if lead.shop_name equal "my_shop"}\n'
        '  {if lead.best_buy_type contains "premium"}\n    <p> 42%.</p>\n  {else}\n'
        "    <p>! 20% !</p>\n  {end}\n{else}\n  <p>! 20% !</p>\n{end}"
    )
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(source)
    assert (caught.value.line, caught.value.column) == (1, 1)


TREES = [
    ("text", "Hi", (tree.Text("Hi"),)),
    ("field", "{lead.Sign}", (tree.Output(tree.Field("lead", ("Sign",)), 1),)),
    ("alias-standard", "{lead_fname}", (tree.Output(tree.Field("lead", ("_fname",)), 1),)),
    ("alias-custom", "{lead_Sign}", (tree.Output(tree.Field("lead", ("Sign",)), 1),)),
    ("alias-email", "{lead_email}", (tree.Output(tree.Field("lead", ("email",)), 1),)),
    ("system", "{msgid}", (tree.Output(tree.Field("system", ("msgid",)), 1),)),
    ("free-variable", "{$batch}", (tree.Output(tree.Variable("batch", (), False), 1),)),
    (
        "relation",
        "{relation.m.Direct.profit.TOP}",
        (tree.Output(tree.Field("relation", ("m", "direct", "profit", "top")), 1),),
    ),
    (
        "format-prefix-and-call-forms-agree",
        '{format lead.x ","}{format(lead.x ",")}',
        (tree.Output(tree.Call("format", (tree.Field("lead", ("x",)), tree.Literal(","))), 1),) * 2,
    ),
    (
        "crypt-algorithm-is-a-literal",
        '{crypt(SHA1 lead.x "s")}',
        (
            tree.Output(
                tree.Call("crypt", (tree.Literal("sha1"), tree.Field("lead", ("x",)), tree.Literal("s"))), 1
            ),
        ),
    ),
    (
        "and-binds-tighter-than-or",
        "{if true or false and false}{end}",
        (
            tree.If(
                tree.Logic(
                    "or",
                    tree.Literal(True),
                    tree.Logic("and", tree.Literal(False), tree.Literal(False)),
                ),
                (),
                (),
                1,
            ),
        ),
    ),
    (
        "commas-between-arguments-are-tolerated",
        "{adddate(lead.d, 0, 0, 10)}",
        (
            tree.Output(
                tree.Call(
                    "adddate",
                    (tree.Field("lead", ("d",)), tree.Literal(0), tree.Literal(0), tree.Literal(10)),
                ),
                1,
            ),
        ),
    ),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in TREES], ids=[c[0] for c in TREES])
def test_parse_trees(source: str, expected: tuple[tree.Node, ...]) -> None:
    assert parse(source) == expected


@pytest.mark.parametrize(
    "head",
    ["{for $i, $x = json.l}", "{for $i $x = json.l}", "{for $x = json.l}", "{for json.l}", "{for $l}"],
)
def test_every_loop_head_form_parses(head: str) -> None:
    (loop,) = parse(head + "{end}")
    assert isinstance(loop, tree.For)


def test_compiling_is_cached_by_text() -> None:
    assert compile_template("{lead.x} cached") is compile_template("{lead.x} cached")


# --- nesting limits: refused with a position, never a crash of the compiler ---------------------

_PATH_33 = "lead." + ".".join(["a"] * 32)
LIMITS = [
    ("for-21-deep", "{for $x = lead.l}" * 21 + "{end}" * 21, 1, 1 + 17 * 16, "nest at most 16 deep"),
    ("if-99-deep", "{if lead.x}" * 99 + "{end}" * 99, 1, 1 + 11 * 16, "nest at most 16 deep"),
    ("mixed-17-deep", "{if true}{for $x = lead.l}" * 9, 1, 1 + 26 * 8, "nest at most 16 deep"),
    ("long-dotted-path", "x\n{lead." + ".".join(["a"] * 5000) + "}", 2, 2, "at most 32 dotted parts"),
    ("long-loop-variable-path", "{for $x = lead.l}{$x." + ".".join(["a"] * 40) + "}{end}", 1, 19, "32"),
    ("parentheses", "{if " + "(" * 500 + "true" + ")" * 500 + "}{end}", 1, 37, "nests at most 32"),
    ("nots", "{if " + "not " * 2000 + "true}{end}", 1, 133, "nests at most 32"),
    ("and-chain", "{if " + " and ".join(["true"] * 3000) + "}{end}", 1, 298, "nests at most 32"),
    ("calls", "{" + "length(" * 40 + "lead.x" + ")" * 40 + "}", 1, 226, "nests at most 32"),
    ("huge-integer", "{if lead.x gt " + "9" * 5000 + "}{end}", 1, 15, "fits in 64 bits"),
    ("integer-over-int64", "{if lead.x gt 9223372036854775808}{end}", 1, 15, "fits in 64 bits"),
]


@pytest.mark.parametrize(
    ("source", "line", "column", "message"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS]
)
def test_nesting_past_the_limits_is_a_syntax_error_at_its_place(
    source: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(source)
    assert (caught.value.line, caught.value.column) == (line, column), caught.value
    assert message in caught.value.message


def test_everything_up_to_the_limits_compiles_and_renders() -> None:
    path = "lead." + ".".join(["a"] * 31)
    condition = "not " + "(" * 30 + path + ")" * 30
    block = "{for $x = lead.l}{autocomma}{if " + condition + "}a{else}b"
    source = block * 8 + "{" + path + "}" + "{end}{else}c{end}" * 8
    compiled = compile_template(source)
    assert "a" in compiled.render(RenderContext(lead={"l": [1, 2]}))
    compile_template("{if " + " or ".join(["true"] * 16) + " and " + " and ".join(["true"] * 16) + "}{end}")
    compile_template("{if lead.x gt 9223372036854775807}{end}")
