"""Rendering: the dossier's documents as self-contained HTML (inline CSS, figures as inline SVG, no script, no
network), PDF made from that HTML by WeasyPrint, and Markdown for the regulation dossiers.

Why WeasyPrint for the PDF: it is a Python library (PyPI) over the system's Pango, which is present here and
in the CI image, so the Airflow api-server can answer ``?format=pdf`` in-process without a browser; its output
for the same HTML is byte-identical (no creation date unless the HTML declares one), which a frozen dossier
needs. Headless Chromium ``--print-to-pdf`` would need a browser next to every api-server and stamps dates.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENV: Any = None


def fmt_num(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def fmt_time(value: Any) -> str:
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return str(value)


def short_json(value: Any, limit: int = 240) -> str:
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def env() -> Any:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                  autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                                  trim_blocks=True, lstrip_blocks=True)
        _ENV.filters.update(n=fmt_num, t=fmt_time, h=lambda s: str(s).replace("_", " "), short=short_json)
    return _ENV


def css() -> str:
    return (TEMPLATES / "style.css").read_text(encoding="utf-8")


def html(template: str, **context: Any) -> str:
    return env().get_template(template).render(css=css(), **context)


def markdown(template: str, **context: Any) -> str:
    import jinja2

    md = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False, trim_blocks=True,
                            lstrip_blocks=True)
    md.filters.update(n=fmt_num, t=fmt_time, h=lambda s: str(s).replace("_", " "), short=short_json,
                      cell=lambda s: str(s if s is not None else "—").replace("|", "\\|").replace("\n", " "))
    return md.get_template(template).render(**context)


def pdf(html_text: str) -> bytes:
    """The HTML as PDF (WeasyPrint). Deterministic: no creation date is written, fonts are the system's."""
    import logging

    for name in ("weasyprint", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from weasyprint import HTML

    return bytes(HTML(string=html_text, base_url=str(TEMPLATES)).write_pdf())
