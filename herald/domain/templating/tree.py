"""The parsed form of a template: statements holding expressions, all frozen values."""

from __future__ import annotations

from dataclasses import dataclass

# ---- expressions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    """A quoted string, a number, `true` or `false`."""

    value: str | int | float | bool


@dataclass(frozen=True, slots=True)
class ArrayLiteral:
    """`array[1 "2" 3.3]`."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Field:
    """A value from a namespace: `lead.Sign` is Field("lead", ("Sign",)); system tags use "system"."""

    namespace: str
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Variable:
    """`$name.path`: a loop variable when `bound`, else a value the caller supplies (`$batch`)."""

    name: str
    path: tuple[str, ...]
    bound: bool


@dataclass(frozen=True, slots=True)
class Current:
    """`{.}` or `{.city}`: the element of the innermost anonymous loop."""

    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Fragment:
    """`fragment.<short_name>`: a shared fragment, rendered with the same data."""

    name: str


@dataclass(frozen=True, slots=True)
class Part:
    """`part.<name>`: a part local to the template, rendered with the same data."""

    name: str


@dataclass(frozen=True, slots=True)
class RandomFragment:
    """`randomfragment[fragment.a fragment.b]`: one of the fragments, chosen per message."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Call:
    """A function call; `format x "sep"` and `format(x "sep")` are both Call("format", ...)."""

    function: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    """`left <operator> right` with one of the comparison words (`equal`, `like`, `gte`, ...)."""

    operator: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Logic:
    """`left and right` / `left or right`."""

    operator: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    """`not operand`."""

    operand: Expr


Expr = (
    Literal
    | ArrayLiteral
    | Field
    | Variable
    | Current
    | Fragment
    | Part
    | RandomFragment
    | Call
    | Compare
    | Logic
    | Not
)

# ---- statements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    """Literal template text."""

    text: str


@dataclass(frozen=True, slots=True)
class Output:
    """A tag whose value is inserted: `{lead._fname}`."""

    expr: Expr
    line: int


@dataclass(frozen=True, slots=True)
class If:
    """`{if condition}body{else}orelse{end}`."""

    condition: Expr
    body: tuple[Node, ...]
    orelse: tuple[Node, ...]
    line: int


@dataclass(frozen=True, slots=True)
class For:
    """A loop: named (`key`/`value` variable names, either may be None) or anonymous (both None)."""

    key: str | None
    value: str | None
    iterable: Expr
    body: tuple[Node, ...]
    orelse: tuple[Node, ...]
    line: int

    @property
    def anonymous(self) -> bool:
        """True for `{for <iterable>}`, whose element is `{.}`."""
        return self.key is None and self.value is None


@dataclass(frozen=True, slots=True)
class AutoComma:
    """`{autocomma}`: a comma after every iteration of the innermost loop but the last."""

    line: int


@dataclass(frozen=True, slots=True)
class Remote:
    """`{[url]}`: the URL (text and values) is fetched per message and its body inserted as is."""

    url: tuple[Text | Output, ...]
    line: int


Node = Text | Output | If | For | AutoComma | Remote
