"""Parse template text into the tree of `tree.py`; every syntax error names its line and column.

Grammar of a tag (words are case-insensitive, names are not):

    tag      := "if" expr | "else" | "end" | "autocomma" | "for" loop | expr
    loop     := "$"key ["," ] "$"value "=" expr | "$"value "=" expr | expr
    expr     := and ("or" and)*
    and      := not ("and" not)*
    not      := "not" not | compare
    compare  := value [operator value]          operator: equal not_equal like not_like contains
                                                 not_contains in not_in gt gte lt lte
    value    := "string" | number | true | false | "(" expr ")" | $var.path | .path
              | namespace.path | lead_<field> | system tag | loop variable without `$`
              | function "(" value* ")" | "format" value value
              | "array" "[" value* "]" | "randomfragment" "[" fragment.name+ "]"

Function arguments are separated by whitespace (commas are tolerated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herald.domain.templating import tree
from herald.domain.templating.errors import TemplateSyntaxError
from herald.domain.templating.functions import CRYPT_ALGORITHMS, cipher_key_problem
from herald.domain.templating.lexer import (
    FUNCTIONS,
    NAMESPACES,
    SYSTEM_TAGS,
    Kind,
    RemoteEnd,
    RemoteStart,
    Source,
    Tag,
    Text,
    Token,
    scan,
)

# `{lead_<name>}` is `{lead._<name>}` for these standard fields, `{lead.<name>}` otherwise.
STANDARD_FIELDS = frozenset(
    (
        "fname", "lname", "bdate", "sex", "regdate", "regip", "regcity", "regcountry", "regurl",
        "ip", "city", "country", "region", "postal_code", "tz", "vendor", "id", "xxm", "xxh", "md5",
    )
)  # fmt: skip
OPERATORS = frozenset(
    ("equal", "not_equal", "like", "not_like", "contains", "not_contains", "in", "not_in",
     "gt", "gte", "lt", "lte")
)  # fmt: skip
_ARITY = {
    "format": (2, 2),
    "adddate": (4, 4),
    "length": (1, 1),
    "limit": (2, 2),
    "urlencode": (1, 1),
    "urldecode": (1, 1),
    "crypt": (2, 3),
}
# How deep blocks and expressions may nest. The compiled program nests as the template does, and
# Python refuses more than 20 nested loops or 100 indentation levels (and recursion runs out on
# thousands of parentheses): these caps keep every template that passes the parser compilable,
# far above what real templates use.
MAX_BLOCK_DEPTH = 16
MAX_EXPRESSION_DEPTH = 32
_RELATION_FORM = "relation.<relation>.<direct|reverse>.<property>.<count|total|top>"
_STATEMENTS = frozenset(("if", "for", "else", "end", "autocomma"))
_NOT_VALUES = OPERATORS | {"and", "or", "not"}


def parse(text: str) -> tuple[tree.Node, ...]:
    """The template's statements; raises TemplateSyntaxError with the line and column."""
    return _Parser(Source(text)).parse()


@dataclass
class _Block:
    """An `{if}` or `{for}` whose `{end}` has not been reached yet."""

    offset: int
    head: tree.If | tree.For
    body: list[tree.Node] = field(default_factory=list)
    orelse: list[tree.Node] | None = None

    @property
    def loop_body(self) -> bool:
        """True while inside the body (not the `{else}`) of a loop."""
        return isinstance(self.head, tree.For) and self.orelse is None


class _Parser:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.blocks: list[_Block] = []
        self.root: list[tree.Node] = []

    def parse(self) -> tuple[tree.Node, ...]:
        remote: list[tree.Text | tree.Output] | None = None
        remote_at = 0
        for segment in scan(self.source):
            if isinstance(segment, Text):
                (self.out if remote is None else remote).append(tree.Text(segment.text))
            elif isinstance(segment, RemoteStart):
                remote, remote_at = [], segment.offset
            elif isinstance(segment, RemoteEnd):
                assert remote is not None  # the lexer pairs the markers
                self.out.append(tree.Remote(tuple(remote), self.source.line(remote_at)))
                remote = None
            elif remote is not None:
                if segment.tokens and not segment.bare and _word(segment.tokens[0]) in _STATEMENTS:
                    raise self.source.error(
                        segment.offset, "the URL of `{[...]}` may hold only text and values"
                    )
                remote.append(self.tag(segment))
            else:
                self.statement(segment)
        if self.blocks:
            block = self.blocks[-1]
            word = "if" if isinstance(block.head, tree.If) else "for"
            raise self.source.error(block.offset, f"`{{{word}}}` is not closed with `{{end}}`")
        return tuple(self.root)

    @property
    def out(self) -> list[tree.Node]:
        if not self.blocks:
            return self.root
        block = self.blocks[-1]
        return block.body if block.orelse is None else block.orelse

    def statement(self, tag: Tag) -> None:
        word = _word(tag.tokens[0]) if tag.tokens and not tag.bare else ""
        if word not in _STATEMENTS:
            self.out.append(self.tag(tag))
            return
        line = self.source.line(tag.offset)
        rest = tag.tokens[1:]
        if word in ("else", "end", "autocomma") and rest:
            raise self.source.error(rest[0].offset, f"`{{{word}}}` takes nothing after it")
        if word in ("if", "for") and len(self.blocks) >= MAX_BLOCK_DEPTH:
            raise self.source.error(
                tag.offset, f"blocks nest at most {MAX_BLOCK_DEPTH} deep (`{{if}}` and `{{for}}` together)"
            )
        if word == "if":
            if not rest:
                raise self.source.error(tag.offset, "`{if}` needs a condition")
            condition = _Expression(self, tag, rest).whole()
            self.blocks.append(_Block(tag.offset, tree.If(condition, (), (), line)))
        elif word == "for":
            self.blocks.append(_Block(tag.offset, self.loop(tag, rest, line)))
        elif word == "else":
            if not self.blocks:
                raise self.source.error(tag.offset, "`{else}` without an open `{if}` or `{for}`")
            if self.blocks[-1].orelse is not None:
                raise self.source.error(tag.offset, "a block can have only one `{else}`")
            self.blocks[-1].orelse = []
        elif word == "end":
            if not self.blocks:
                raise self.source.error(tag.offset, "`{end}` without an open `{if}` or `{for}`")
            block = self.blocks.pop()
            body, orelse = tuple(block.body), tuple(block.orelse or ())
            if isinstance(block.head, tree.If):
                self.out.append(tree.If(block.head.condition, body, orelse, block.head.line))
            else:
                head = block.head
                self.out.append(tree.For(head.key, head.value, head.iterable, body, orelse, head.line))
        else:
            if not any(block.loop_body for block in self.blocks):
                raise self.source.error(tag.offset, "`{autocomma}` is allowed only inside a `{for}` loop")
            self.out.append(tree.AutoComma(line))

    def loop(self, tag: Tag, tokens: tuple[Token, ...], line: int) -> tree.For:
        if not tokens:
            raise self.source.error(tag.offset, "`{for}` needs something to loop over")
        names, rest = _loop_names(tokens)
        if len(names) == 2 and names[0] == names[1]:
            raise self.source.error(tokens[0].offset, "the two loop variables need different names")
        if names and not rest:
            raise self.source.error(tokens[-1].offset, "expected what to loop over after `=`")
        iterable = _Expression(self, tag, rest).whole()
        key, value = (names[0], names[1]) if len(names) == 2 else (None, names[0] if names else None)
        return tree.For(key, value, iterable, (), (), line)

    def tag(self, tag: Tag) -> tree.Text | tree.Output:
        """A non-statement tag: a value to insert, or text for a bare name that is no loop variable."""
        line = self.source.line(tag.offset)
        if tag.bare:
            name = tag.tokens[0].segments
            if name[0] in self.bound():
                return tree.Output(tree.Variable(name[0], name[1:], True), line)
            if len(name) > 1 and not self.in_double_braces(tag):
                raise self.source.error(
                    tag.offset + 1,
                    f"unknown namespace `{name[0]}`: use {', '.join(NAMESPACES)}, or a loop variable",
                )
            return tree.Text(self.source.text[tag.offset : tag.end])
        if not tag.tokens:
            raise self.source.error(tag.offset, "empty tag")
        return tree.Output(_Expression(self, tag, tag.tokens).whole(), line)

    def in_double_braces(self, tag: Tag) -> bool:
        """True for `{{a.b}}`: mustache (AMP for email), which passes through as text."""
        text = self.source.text
        return text[tag.offset - 1 : tag.offset] == "{" and text[tag.end : tag.end + 1] == "}"

    def bound(self) -> set[str]:
        """Loop variable names visible here."""
        names: set[str] = set()
        for block in self.blocks:
            if block.loop_body and isinstance(block.head, tree.For):
                names.update(n for n in (block.head.key, block.head.value) if n is not None)
        return names

    def in_anonymous_loop(self) -> bool:
        return any(
            block.loop_body and isinstance(block.head, tree.For) and block.head.anonymous
            for block in self.blocks
        )


def _word(token: Token) -> str:
    """The token as a lower-cased keyword, or "" when it is not a single word."""
    return token.text.lower() if token.kind is Kind.NAME and "." not in token.text else ""


def _loop_names(tokens: tuple[Token, ...]) -> tuple[tuple[str, ...], tuple[Token, ...]]:
    """The named loop's variables (`$k, $v =` / `$k $v =` / `$v =`) and the tokens after `=`."""

    def var(i: int) -> bool:
        return i < len(tokens) and tokens[i].kind is Kind.VAR and "." not in tokens[i].text

    def punct(i: int, text: str) -> bool:
        return i < len(tokens) and tokens[i].kind is Kind.PUNCT and tokens[i].text == text

    if var(0) and punct(1, "="):
        return (tokens[0].text,), tokens[2:]
    if var(0) and punct(1, ",") and var(2) and punct(3, "="):
        return (tokens[0].text, tokens[2].text), tokens[4:]
    if var(0) and var(1) and punct(2, "="):
        return (tokens[0].text, tokens[1].text), tokens[3:]
    return (), tokens


class _Expression:
    """A recursive-descent parser over the tokens of one tag."""

    def __init__(self, parser: _Parser, tag: Tag, tokens: tuple[Token, ...]) -> None:
        self.parser = parser
        self.source = parser.source
        self.tokens = tokens
        self.pos = 0
        self.end = tag.end - 1  # the closing `}`, where "expected ..." errors point
        self.depth = 0  # how many sub-expressions are open: parentheses, `not`, calls, `and`/`or` operands

    def whole(self) -> tree.Expr:
        expr = self.expr()
        if self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            raise self.error(token, f"unexpected `{_shown(token)}`: a tag holds one value or condition")
        return expr

    # ---- token helpers ----

    def error(self, token: Token | None, message: str) -> TemplateSyntaxError:
        return self.source.error(self.end if token is None else token.offset, message)

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, what: str) -> Token:
        token = self.peek()
        if token is None:
            raise self.error(None, f"expected {what} before `}}`")
        self.pos += 1
        return token

    def at_punct(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.kind is Kind.PUNCT and token.text == text

    def expect_punct(self, text: str, context: str) -> None:
        token = self.peek()
        if not self.at_punct(text):
            found = "the end of the tag" if token is None else f"`{_shown(token)}`"
            raise self.error(token, f"expected `{text}` {context}, found {found}")
        self.pos += 1

    def at_word(self, *words: str) -> str:
        token = self.peek()
        word = _word(token) if token is not None else ""
        return word if word in words else ""

    # ---- grammar ----

    def deeper(self, token: Token | None) -> None:
        """One more level of nesting (a chain of `and`/`or` nests one level per operand)."""
        self.depth += 1
        if self.depth > MAX_EXPRESSION_DEPTH:
            raise self.error(token, f"an expression nests at most {MAX_EXPRESSION_DEPTH} deep")

    def expr(self) -> tree.Expr:
        opened = self.depth
        left = self.conjunction()
        while self.at_word("or"):
            self.deeper(self.take("or"))
            left = tree.Logic("or", left, self.conjunction())
        self.depth = opened
        return left

    def conjunction(self) -> tree.Expr:
        opened = self.depth
        left = self.negation()
        while self.at_word("and"):
            self.deeper(self.take("and"))
            left = tree.Logic("and", left, self.negation())
        self.depth = opened
        return left

    def negation(self) -> tree.Expr:
        if self.at_word("not"):
            token = self.take("not")
            self.deeper(token)
            inner = tree.Not(self.negation())
            self.depth -= 1
            return inner
        return self.comparison()

    def comparison(self) -> tree.Expr:
        left = self.value()
        operator = self.at_word(*OPERATORS)
        if not operator:
            return left
        self.pos += 1
        return tree.Compare(operator, left, self.value(f"a value after `{operator}`"))

    def value(self, what: str = "a value") -> tree.Expr:
        token = self.take(what)
        if token.kind is Kind.STRING or token.kind is Kind.NUMBER:
            return tree.Literal(token.value)
        if token.kind is Kind.VAR:
            name, *path = token.segments
            return tree.Variable(name, tuple(path), name in self.parser.bound())
        if token.kind is Kind.DOT:
            if not self.parser.in_anonymous_loop():
                raise self.error(token, "`{.}` is allowed only inside an anonymous `{for}` loop")
            return tree.Current(token.segments)
        if token.kind is Kind.NAME:
            return self.name(token)
        if token.text == "(":
            self.deeper(token)
            inner = self.expr()
            self.expect_punct(")", "to close `(`")
            self.depth -= 1
            return inner
        raise self.error(token, f"expected {what}, found `{token.text}`")

    def name(self, token: Token) -> tree.Expr:
        head, *rest = token.segments
        word = head.lower()
        path = tuple(rest)
        if not path:
            if word in ("true", "false"):
                return tree.Literal(word == "true")
            if word in FUNCTIONS:
                self.deeper(token)
                called = self.call(token, word)
                self.depth -= 1
                return called
            if word == "array":
                return tree.ArrayLiteral(self.items(token))
            if word == "randomfragment":
                return self.random_fragment(token)
            if word in SYSTEM_TAGS:
                return tree.Field("system", (word,))
            if word.startswith("lead_") and len(word) > 5:
                name = head[5:]
                standard = name.lower() in STANDARD_FIELDS
                return tree.Field("lead", (f"_{name.lower()}",) if standard else (name,))
        if word in NAMESPACES:
            return self.namespace(token, word, path)
        if head in self.parser.bound():
            return tree.Variable(head, path, True)
        if word in _NOT_VALUES:
            raise self.error(token, f"expected a value, found the operator `{token.text}`")
        raise self.error(
            token,
            f"unknown name `{token.text}`: use a namespace ({', '.join(NAMESPACES)}), "
            "a function, a system tag or a loop variable",
        )

    def namespace(self, token: Token, namespace: str, path: tuple[str, ...]) -> tree.Expr:
        if not path:
            raise self.error(token, f"`{namespace}` needs a name after it: `{namespace}.<name>`")
        if namespace in ("fragment", "part"):
            if len(path) != 1:
                raise self.error(token, f"write `{namespace}.<name>` with one name")
            return tree.Fragment(path[0]) if namespace == "fragment" else tree.Part(path[0])
        if namespace == "relation":
            direction, aggregate = (path[1].lower(), path[3].lower()) if len(path) == 4 else ("", "")
            if direction not in ("direct", "reverse") or aggregate not in ("count", "total", "top"):
                raise self.error(token, f"write relations as `{_RELATION_FORM}`")
            return tree.Field("relation", (path[0], direction, path[2], aggregate))
        if namespace == "loyalty":
            if len(path) != 2 or path[1].lower() != "promocode":
                raise self.error(token, "write promocodes as `loyalty.<program>.promocode`")
            return tree.Field("loyalty", (path[0], "promocode"))
        return tree.Field(namespace, path)

    def call(self, token: Token, function: str) -> tree.Call:
        if function == "format" and not self.at_punct("("):
            return tree.Call("format", (self.value("the value to format"), self.value("a format")))
        self.expect_punct("(", f"after `{function}`")
        args: list[tree.Expr] = []
        if function == "crypt":
            args.append(self.crypt_algorithm())
        while not self.at_punct(")"):
            if self.peek() is None:
                raise self.error(None, f"`{function}(` is not closed with `)`")
            if self.at_punct(","):
                self.pos += 1
                continue
            args.append(self.value(f"an argument of `{function}`"))
        self.pos += 1
        low, high = _ARITY[function]
        if not low <= len(args) <= high:
            count = str(low) if low == high else f"{low} or {high}"
            raise self.error(token, f"`{function}` takes {count} arguments, got {len(args)}")
        if function == "crypt":
            self.check_cipher_key(token, args)
        return tree.Call(function, tuple(args))

    def crypt_algorithm(self) -> tree.Literal:
        token = self.take("an algorithm")
        algorithm = str(token.value if token.kind is Kind.STRING else token.text).lower()
        if token.kind not in (Kind.NAME, Kind.STRING) or algorithm not in CRYPT_ALGORITHMS:
            raise self.error(token, f"`crypt` needs an algorithm first: one of {', '.join(CRYPT_ALGORITHMS)}")
        return tree.Literal(algorithm)

    def check_cipher_key(self, token: Token, args: list[tree.Expr]) -> None:
        algorithm = args[0]
        assert isinstance(algorithm, tree.Literal)
        key = args[2] if len(args) == 3 else None
        if algorithm.value in ("aes", "blowfish"):
            if key is None:
                raise self.error(token, f"`crypt({algorithm.value} ...)` needs a key as its third argument")
            if isinstance(key, tree.Literal):
                problem = cipher_key_problem(str(algorithm.value), str(key.value))
                if problem:
                    raise self.error(token, problem)
        elif algorithm.value in ("base58", "base64") and key is not None:
            raise self.error(token, f"`crypt({algorithm.value} ...)` takes no key or salt")

    def items(self, token: Token) -> tuple[tree.Expr, ...]:
        self.expect_punct("[", f"after `{token.text}`")
        items: list[tree.Expr] = []
        while not self.at_punct("]"):
            if self.peek() is None:
                raise self.error(None, f"`{token.text}[` is not closed with `]`")
            if self.at_punct(","):
                self.pos += 1
                continue
            items.append(self.value(f"an item of `{token.text}`"))
        self.pos += 1
        return tuple(items)

    def random_fragment(self, token: Token) -> tree.RandomFragment:
        items = self.items(token)
        names = tuple(item.name for item in items if isinstance(item, tree.Fragment))
        if not items or len(names) != len(items):
            raise self.error(token, "write `randomfragment[fragment.<name> fragment.<name> ...]`")
        return tree.RandomFragment(names)


def _shown(token: Token) -> str:
    if token.kind is Kind.STRING:
        return f'"{token.text}"'
    if token.kind is Kind.VAR:
        return f"${token.text}"
    if token.kind is Kind.DOT:
        return f".{token.text}"
    return token.text
