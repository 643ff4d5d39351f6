"""The web push toolkit of a resource (guide: README.txt, ak-push.js, manifest.json, service-worker.js).

The four files in `api/toolkit/` are filled in with the resource's name, its
token, its site, the subscribe URL on its tracking domain and the account's
VAPID public key, and zipped for download. Values go into the JavaScript and
JSON as JSON strings with `/` escaped, so no resource name can end a comment
or a script.
"""

from __future__ import annotations

import io
import json
import zipfile
from importlib import resources

FILES = ("README.txt", "ak-push.js", "manifest.json", "service-worker.js")


def toolkit_zip(values: dict[str, str]) -> bytes:
    """The toolkit's files, filled in with `values` (placeholder name → value), as a ZIP archive."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in FILES:
            archive.writestr(name, filled(name, values))
    return out.getvalue()


def filled(name: str, values: dict[str, str]) -> str:
    text = resources.files("herald.api").joinpath("toolkit", name).read_text(encoding="utf-8")
    for key, value in values.items():
        if name.endswith((".js", ".json")):
            text = text.replace(f'"{{{{{key}}}}}"', json.dumps(value, ensure_ascii=False).replace("/", "\\/"))
            text = text.replace(f"{{{{{key}}}}}", _comment_safe(value))
        else:
            text = text.replace(f"{{{{{key}}}}}", value)
    return text


def _comment_safe(value: str) -> str:
    return value.replace("*/", "* /").replace("\n", " ")
