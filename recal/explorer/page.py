"""One self-contained HTML page per report: data, script and style inline, no network.

    write_page(explorer_document(report, collapser), "runs/x/report-normalized/report.html")

The document (:mod:`recal.explorer.data`) is embedded in a ``<script>`` element that the browser
never runs: as JSON with every ``<``, ``>`` and ``&`` written as a ``\\u`` escape and every
non-ASCII character too (so ``</script>``, U+2028/2029, right-to-left marks and lone surrogates
in a model's text cannot end the element or change the page; ``JSON.parse`` gives back the exact
string), or, above ``COMPRESS_ABOVE`` bytes, as that JSON gzipped and base64-encoded (only
``A-Za-z0-9+/=``), which the page inflates with the browser's ``DecompressionStream``. The page
writes every text from the data with ``textContent``, never as markup.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["COMPRESS_ABOVE", "embed_json", "pack", "render_page", "write_page"]

COMPRESS_ABOVE = 256 * 1024
"""Documents larger than this (bytes of JSON) are embedded gzipped (a 5,000 x 50 run is tens of
MB as JSON, a few MB gzipped)."""


def embed_json(value: Any) -> str:
    """``value`` as JSON that is safe inside ``<script type="application/json">``: ASCII only,
    with ``<``, ``>`` and ``&`` escaped (``\\u003c`` ...); ``JSON.parse`` reads back the value."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def pack(value: Any) -> str:
    """``value`` as gzipped JSON in base64 (deterministic: no timestamp in the gzip header)."""
    raw = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return base64.b64encode(gzip.compress(raw.encode("ascii"), compresslevel=9,
                                          mtime=0)).decode("ascii")


def _asset(name: str) -> str:
    return resources.files("recal.explorer").joinpath(name).read_text(encoding="utf-8")


def render_page(document: dict[str, Any], *, compress: bool | None = None) -> str:
    """The HTML page of ``document``. ``compress``: embed gzipped (``True``), as escaped JSON
    (``False``), or by size (``None``: above :data:`COMPRESS_ABOVE`)."""
    data = embed_json(document)
    if compress is None:
        compress = len(data) > COMPRESS_ABOVE
    if compress:
        data, form = pack(document), "gzip-base64"
    else:
        form = "json"
    title = html.escape(str(document.get("title", "recal report")))
    script = _asset("explorer.js").replace("</", "<\\/")  # cannot end its element either
    return "\n".join([
        "<!doctype html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        # no request leaves the page: inline script and style only, images from data: URLs
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{title}</title>",
        f"<style>{_asset('explorer.css')}</style></head>",
        "<body><div id='app'><p id='loading'>Loading the report (needs JavaScript)...</p></div>",
        f"<script id='recal-data' type='application/json' data-format='{form}'>{data}</script>",
        f"<script>{script}</script>",
        "</body></html>", ""])


def write_page(document: dict[str, Any], path: str | Path, *,
               compress: bool | None = None) -> Path:
    """Write :func:`render_page` of ``document`` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.write_text(render_page(document, compress=compress), encoding="utf-8")
    return path
