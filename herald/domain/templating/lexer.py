"""Split template text into literal text and tags, and tags into tokens.

A `{` opens a tag only when the characters right after it (no whitespace in
between) are one of these heads; every other brace is literal text, so CSS
(`a { color: red }`, `@media{.col{width:100%}}`), JSON (`{"a": 1}`, `{ "a": 1 }`),
double braces (`{{ x }}`) and stray `{`/`}` pass through untouched:

| head after `{` | example |
|---|---|
| `if`, `for` followed by whitespace or `}` | `{if lead.age gte 18}`, `{for $i $x = json.list}` |
| `else`, `end`, `autocomma` followed by whitespace or `}` | `{else}` |
| `format` followed by whitespace or `(` | `{format json.price "."}` |
| a function name and `(` | `{length("abc ")}`, `{crypt(md5 lead.email)}` |
| `array[` or `randomfragment[` | `{array[1 "2" 3.3]}` |
| a namespace and `.` | `{lead.Sign}`, `{json.object.key}`, `{fragment.header}` |
| `lead_` (the alias form) | `{lead_fname}` |
| a system tag name, then `}` | `{unsubscribe}`, `{msgid}` |
| `$` and a letter | `{$el.name}` |
| `.` with an optional member path, then `}` | `{.}`, `{.city}` |
| `[` then `http://`, `https://` or a tag | `{[https://example.com/news?s={lead.Sign}]}` |
| a bare name, then `}` | `{index}`: a loop variable without `$` (as in the guide's screenshots) |

A bare `{name}` is a tag only when `name` is a loop variable in scope; otherwise it is
text. A bare dotted `{name.path}` whose `name` is neither a namespace nor a loop variable is
refused as an unknown namespace (a typo such as `{laed._fname}` would otherwise be mailed
as it is), except inside double braces: `{{item.name}}` is mustache (AMP for email) text.
Likewise a whole tag shaped like a call, `{name(...)}` with no space after the brace, whose
name is no function is refused as an unknown function: email clients run no script, so
such text is far likelier a misspelt function than JavaScript.

Words in heads (keywords, namespaces, functions, system tags) are matched
case-insensitively (`{PART.NEW}`, `{lastItem}`); field, fragment and variable
names keep their case. Once a head is recognised the tag is strict: it must
tokenise and close with `}`, or the template is refused with the position.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from enum import Enum

from herald.domain.templating.errors import TemplateSyntaxError

NAMESPACES = ("lead", "subscription", "relation", "loyalty", "json", "query", "fragment", "part")
FUNCTIONS = ("format", "adddate", "length", "limit", "urlencode", "urldecode", "crypt")
SYSTEM_TAGS = (
    "unsubscribe",
    "globalunsubscribe",
    "subscription_manager",
    "stoplist",
    "confirm",
    "webversion",
    "pixel",
    "read",
    "listname",
    "msg_type",
    "campid",
    "msgname",
    "msgid",
    "send_message_id",
    "resource_token",
    "segment_id",
    "lastitem",
    "visitor",
)

_NAME = r"[^\W\d][\w-]*"
_PATH = rf"{_NAME}(?:\.[\w-]+)*"

_HEAD = re.compile(
    rf"""
      (?P<remote>\[\s*(?:https?://|\{{))
    | (?P<dot>\.(?:{_PATH})?\s*\}})
    | (?P<var>\$[^\W\d])
    | (?P<keyword>(?:if|for|else|end|autocomma)(?=[\s}}])|format(?=[\s(]))
    | (?P<function>(?:{"|".join(FUNCTIONS)})\(|(?:array|randomfragment)\[)
    | (?P<namespace>(?:{"|".join(NAMESPACES)})\.[\w-]|lead_\w)
    | (?P<system>(?:{"|".join(SYSTEM_TAGS)})\s*\}})
    | (?P<bare>{_PATH}\s*\}})
    """,
    re.VERBOSE | re.IGNORECASE,
)

# A whole tag shaped like a call: `{name(` ... `)}` with no brace between.
_CALL_SHAPED = re.compile(r"([^\W\d]\w*)\([^{}]*\)\s*\}")

_TOKEN = re.compile(
    rf"""
      (?P<space>\s+)
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
    | (?P<var>\${_PATH})
    | (?P<dot>\.(?:{_PATH})?)
    | (?P<name>{_PATH})
    | (?P<punct>[()\[\]=,])
    | (?P<close>\}})
    """,
    re.VERBOSE,
)

# Limits on what one tag may hold, so that no template text can make compiling it fail: a name of
# thousands of parts nests as deep in the compiled program, and Python refuses an int literal of
# thousands of digits. Both are far beyond any real template.
MAX_PATH_PARTS = 32
_INT64 = range(-(2**63), 2**63)

_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class Kind(Enum):
    """What a token inside a tag is."""

    STRING = "string"
    NUMBER = "number"
    NAME = "name"  # a word or a dotted path: `lead.Sign`, `equal`, `sha1`
    VAR = "var"  # `$el.name`
    DOT = "dot"  # `.` or `.city`: the current element of an anonymous loop
    PUNCT = "punct"  # ( ) [ ] = ,


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a tag: `text` is the source text (strings unquoted, paths without `$`/`.`)."""

    kind: Kind
    text: str
    offset: int
    value: str | int | float = ""

    @property
    def segments(self) -> tuple[str, ...]:
        """The dotted parts of a NAME, VAR or DOT path."""
        return tuple(self.text.split(".")) if self.text else ()


@dataclass(frozen=True, slots=True)
class Text:
    """Literal text, copied to the output as it is."""

    text: str
    offset: int


@dataclass(frozen=True, slots=True)
class Tag:
    """A `{...}` tag; `bare` marks `{name}` that is a tag only if `name` is a loop variable."""

    tokens: tuple[Token, ...]
    offset: int
    end: int
    bare: bool = False


@dataclass(frozen=True, slots=True)
class RemoteStart:
    """`{[`: the start of a remote HTML block whose URL follows as text and tags."""

    offset: int


@dataclass(frozen=True, slots=True)
class RemoteEnd:
    """`]}`: the end of a remote HTML block."""

    offset: int


Segment = Text | Tag | RemoteStart | RemoteEnd


class Source:
    """Template text with offset → (line, column) for error messages."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def error(self, offset: int, message: str) -> TemplateSyntaxError:
        """A syntax error at `offset`, with its 1-based line and column."""
        line = bisect.bisect_right(self._line_starts, offset)
        column = offset - self._line_starts[line - 1] + 1
        return TemplateSyntaxError(message, line=line, column=column)

    def line(self, offset: int) -> int:
        """The 1-based line of `offset`."""
        return bisect.bisect_right(self._line_starts, offset)


def scan(source: Source) -> list[Segment]:
    """The template as a flat list of text, tags and remote-block markers."""
    text = source.text
    segments: list[Segment] = []
    pos = 0
    text_start = 0
    remote_at = -1  # offset of the open `{[`, or -1 outside a remote block

    def flush(until: int) -> None:
        if until > text_start:
            segments.append(Text(text[text_start:until], text_start))

    while True:
        brace = text.find("{", pos)
        close = text.find("]}", pos) if remote_at >= 0 else -1
        if close >= 0 and (brace < 0 or close < brace):
            flush(close)
            segments.append(RemoteEnd(close))
            remote_at = -1
            pos = text_start = close + 2
            continue
        if brace < 0:
            break
        head = _HEAD.match(text, brace + 1)
        if head is None:
            _refuse_unknown_function(source, brace)
            pos = brace + 1
            continue
        flush(brace)
        if head.lastgroup == "remote":
            if remote_at >= 0:
                raise source.error(brace, "remote content `{[...]}` cannot contain another one")
            segments.append(RemoteStart(brace))
            remote_at = brace
            pos = text_start = brace + 2
            continue
        tokens, end = _tokenize(source, brace)
        segments.append(Tag(tokens, brace, end, bare=head.lastgroup == "bare"))
        pos = text_start = end
    if remote_at >= 0:
        raise source.error(remote_at, "remote content `{[` is not closed with `]}`")
    flush(len(text))
    return segments


def _refuse_unknown_function(source: Source, brace: int) -> None:
    """Refuse `{name(...)}` when `name` is no function: a misspelt call would be mailed as it is."""
    call = _CALL_SHAPED.match(source.text, brace + 1)
    if call is not None:
        known = ", ".join(FUNCTIONS)
        raise source.error(brace + 1, f"unknown function `{call.group(1)}`: use {known}")


def _tokenize(source: Source, start: int) -> tuple[tuple[Token, ...], int]:
    """The tokens of the tag opened at `start` and the offset just past its `}`."""
    text = source.text
    tokens: list[Token] = []
    pos = start + 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            char = text[pos]
            if char == '"':
                raise source.error(pos, 'the string is not closed with `"`')
            if char == "{":
                raise source.error(pos, "a tag cannot contain `{`; close the previous tag with `}`")
            raise source.error(pos, f"unexpected character `{char}` in a tag")
        kind = match.lastgroup
        pos = match.end()
        if kind == "close":
            return tuple(tokens), pos
        if kind == "space":
            continue
        token_text = match.group()
        if kind == "string":
            value = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group()), token_text[1:-1])
            tokens.append(Token(Kind.STRING, value, match.start(), value))
        elif kind == "number":
            tokens.append(Token(Kind.NUMBER, token_text, match.start(), _number(source, match)))
        elif kind in ("var", "dot", "name") and token_text.count(".") >= MAX_PATH_PARTS:
            raise source.error(match.start(), f"a name has at most {MAX_PATH_PARTS} dotted parts")
        elif kind == "var":
            tokens.append(Token(Kind.VAR, token_text[1:], match.start()))
        elif kind == "dot":
            tokens.append(Token(Kind.DOT, token_text[1:], match.start()))
        elif kind == "name":
            tokens.append(Token(Kind.NAME, token_text, match.start()))
        else:
            tokens.append(Token(Kind.PUNCT, token_text, match.start()))
    raise source.error(start, "the tag is not closed with `}`")


def _number(source: Source, match: re.Match[str]) -> int | float:
    text = match.group()
    if "." in text:
        return float(text)
    if len(text) > 20 or int(text) not in _INT64:
        raise source.error(match.start(), "a whole number in a template fits in 64 bits")
    return int(text)
