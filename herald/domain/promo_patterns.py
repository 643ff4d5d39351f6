"""Promo-code patterns: the symbol classes a loyalty program's codes are generated from.

The guide builds a pattern by picking symbol classes from a menu (`</>`) and
shows one output, `PGVF-5460-GXKCS372498160`. Herald writes the pattern as
text: literal characters, and symbol classes in braces with an optional count.

| class | symbols |
|---|---|
| `{L}` | an upper-case Latin letter A–Z |
| `{l}` | a lower-case Latin letter a–z |
| `{D}` | a digit 0–9 |
| `{X}` | an upper-case letter or a digit |
| `{x}` | a lower-case letter or a digit |
| `{H}` / `{h}` | a hexadecimal digit, upper / lower case |
| `{S}` | any Latin letter or digit |

`{L4}` is four upper-case letters, so the guide's sample is
`{L4}-{D4}-{L5}{D9}`. Literal characters are printable ASCII other than the
braces and whitespace (a code is typed in by people).

Decisions where the guide is silent: a pattern must be able to make at least
`MIN_SPACE` different codes, and a generation may ask for at most a tenth of
the codes a pattern can make (beyond that, random draws collide with codes
already issued ever more often and a code becomes easy to guess). Codes are
drawn by the caller's random generator: a cryptographic one in production
(`random.SystemRandom`), a seeded one in tests.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from random import Random

from herald.domain.errors import ValidationFailed

MAX_CODE_LENGTH = 200
MIN_SPACE = 1_000_000  # about 20 bits: fewer and codes are guessable
SPACE_FRACTION = 10  # a generation takes at most 1/10 of the pattern's space

CLASSES: dict[str, str] = {
    "L": string.ascii_uppercase,
    "l": string.ascii_lowercase,
    "D": string.digits,
    "X": string.ascii_uppercase + string.digits,
    "x": string.ascii_lowercase + string.digits,
    "H": "0123456789ABCDEF",
    "h": "0123456789abcdef",
    "S": string.ascii_letters + string.digits,
}
_TOKEN = re.compile(r"\{([A-Za-z])(\d{0,3})\}|([!-z|~])")


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed pattern: each position's symbols (one symbol for a literal)."""

    positions: tuple[str, ...]

    @property
    def space(self) -> int:
        """How many different codes the pattern can make."""
        return math.prod(len(symbols) for symbols in self.positions)

    def generate(self, rng: Random, count: int) -> list[str]:
        """`count` codes drawn with `rng` (duplicates possible: the caller keeps codes unique)."""
        return ["".join(rng.choice(symbols) for symbols in self.positions) for _ in range(count)]

    def check_count(self, count: int, path: str = "count") -> None:
        """Refuse a generation that asks for more than the pattern's share of codes."""
        most = self.space // SPACE_FRACTION
        if count > most:
            raise ValidationFailed(
                f"the pattern makes {self.space:,} different codes; ask for at most {most:,} at once "
                "or make the pattern longer",
                path,
            )


def parse_pattern(text: str, path: str = "pattern") -> Pattern:
    """The pattern `text` describes, or ValidationFailed naming what is wrong and where."""
    positions: list[str] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise ValidationFailed(
                f"unexpected {text[at]!r} at character {at + 1}: use literal letters, digits and "
                "punctuation, and symbol classes like {L4} or {D}",
                path,
            )
        name, count, literal = match.groups()
        if literal is not None:
            positions.append(literal)
        elif name not in CLASSES:
            raise ValidationFailed(
                f"unknown symbol class {{{name}}}; the classes are {', '.join(CLASSES)}", path
            )
        else:
            repeat = int(count) if count else 1
            if repeat < 1:
                raise ValidationFailed(f"{{{name}{count}}} repeats nothing", path)
            positions.extend([CLASSES[name]] * repeat)
        at = match.end()
    pattern = Pattern(tuple(positions))
    if len(positions) > MAX_CODE_LENGTH:
        raise ValidationFailed(f"a code is at most {MAX_CODE_LENGTH} characters", path)
    if pattern.space < MIN_SPACE:
        raise ValidationFailed(
            f"the pattern makes only {pattern.space:,} different codes; it needs at least "
            f"{MIN_SPACE:,} (add symbol classes)",
            path,
        )
    return pattern
