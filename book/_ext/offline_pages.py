"""Sphinx extension of the book (``_config.yml``: ``sphinx.local_extensions``): pages that load cleanly.

Jupyter Book 1 runs the ``env-before-read-docs`` handlers of sphinx-thebe and sphinx-togglebutton twice,
so each page declared ``const THEBE_JS_URL`` twice (a JavaScript error) and the toggle selector twice.
Each page keeps the first of identical ``<script>``/``<link>`` entries (the handler runs after the others
that add page assets, such as myst-nb's widget scripts).

It also adds the book's stylesheet, ``static/salbook.css`` (code cells that wrap at the column).
"""
from pathlib import Path

STATIC = Path(__file__).parent / "static"


def _dedupe(assets):
    seen, kept = set(), []
    for asset in assets:
        # an inline script is registered once with filename None and again with filename ""
        key = (getattr(asset, "filename", None) or None, repr(sorted(getattr(asset, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(asset)
    return kept


def _page_context(app, pagename, templatename, context, doctree):
    for name in ("script_files", "css_files"):
        if name in context:
            context[name] = _dedupe(context[name])


def _add_static(app):
    app.config.html_static_path.append(str(STATIC))


def setup(app):
    app.connect("builder-inited", _add_static)
    app.add_css_file("salbook.css")
    app.connect("html-page-context", _page_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
