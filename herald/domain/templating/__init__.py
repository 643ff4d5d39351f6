"""The Altcraft template language: parse once, render per message, safely.

    compiled = compile_template(source)          # cached by text; TemplateSyntaxError
    text = compiled.render(RenderContext(lead={"_fname": "Eddie"}, ...))

Where each rule lives: `lexer` (what counts as a tag; everything else is literal text),
`parser` (the grammar), `functions` (format, adddate, length, limit, urlencode, urldecode,
crypt), `conditions` (comparison and truth), `values` (how values print), `context` (the
data a render reads), `compiler` (Jinja2 sandbox and limits).

Decisions where the guide is silent:
- a missing value renders empty, in any position, and never raises;
- inserted values are not HTML-escaped (the guide inserts data and remote HTML as is);
- `{lead_<f>}` is `{lead._<f>}` for the standard fields, `{lead.<f>}` otherwise;
- system tags (SYSTEM_TAGS) are plain values the caller supplies: `{unsubscribe}`,
  `{globalunsubscribe}`, `{subscription_manager}`, `{stoplist}`, `{confirm}`, `{webversion}`,
  `{pixel}`, `{read}`, `{listname}`, `{msg_type}`, `{campid}`, `{msgname}`, `{msgid}`, ...;
  `{visitor}` is the signed token a site's links carry as `herald_visitor=` so its pixel
  knows the message's profile (Herald's addition);
- fragments and parts are templates rendered with the message's data; remote HTML is
  inserted as fetched and never evaluated; a remote URL that renders empty is not fetched;
- `randomfragment` draws from `random.Random(random_seed)` in tag order, so a message
  (seeded by its id) always gets the same choice;
- loops count their index from 0 and walk objects in the data's order;
- `{else}` of a loop runs for an empty, missing or non-iterable value.
"""

from herald.domain.templating.compiler import (
    MAX_LOOP_ITERATIONS,
    MAX_NESTING,
    MAX_OUTPUT_CHARS,
    CompiledTemplate,
    compile_template,
)
from herald.domain.templating.context import RenderContext
from herald.domain.templating.errors import TemplateRenderError, TemplateSyntaxError
from herald.domain.templating.lexer import SYSTEM_TAGS
from herald.domain.templating.parser import parse

__all__ = [
    "MAX_LOOP_ITERATIONS",
    "MAX_NESTING",
    "MAX_OUTPUT_CHARS",
    "SYSTEM_TAGS",
    "CompiledTemplate",
    "RenderContext",
    "TemplateRenderError",
    "TemplateSyntaxError",
    "compile_template",
    "parse",
]
