"""Checks of a built book as a reader's browser sees it (used by tests/test_browser.py).

:func:`check_site` serves ``_build/html`` on 127.0.0.1, opens every page in Chromium (Playwright) with
every request outside the site aborted, and reports per page: JavaScript errors, requests that left the
site, responses ≥ 400, images that did not load, math left as TeX, widgets that did not render, code lines
wider than the column; it moves
every widget slider and dropdown and says whether the shown image changed; it saves a screenshot of each
page. :func:`broken_links` checks every ``href``/``src`` inside the site, fragments included, from the files.
"""
from __future__ import annotations

import contextlib
import functools
import html.parser
import http.server
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

# Console messages that are not faults of the book, allowed by exact text (each with its reason).
BENIGN_CONSOLE = {
}

SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "_panels_static"}


def pages(html_dir: Path) -> list[Path]:
    """Every HTML page of the site (not the theme's static files)."""
    return sorted(p for p in Path(html_dir).rglob("*.html")
                  if not SKIP_DIRS & set(p.relative_to(html_dir).parts[:-1]))


def find_chromium() -> str | None:
    """A Chromium binary: ``SALBOOK_CHROMIUM``, Debian's ``chromium`` (or ``chromium-browser``,
    ``google-chrome``) on PATH, else Playwright's own download if one is installed."""
    explicit = os.environ.get("SALBOOK_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            path = p.chromium.executable_path
        return path if Path(path).exists() else None
    except Exception:
        return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(html_dir: Path):
    """Serve ``html_dir`` on 127.0.0.1 (a free port); yield the base URL."""
    handler = functools.partial(_Quiet, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class PageReport:
    page: str
    problems: list[str] = field(default_factory=list)
    widgets: int = 0            # widget views in the page
    moved: list[dict] = field(default_factory=list)  # one per control moved: before/after of the shown image
    screenshot: str = ""


@dataclass
class SiteReport:
    pages: list[PageReport]
    seconds: float

    @property
    def problems(self) -> list[str]:
        return [f"{p.page}: {problem}" for p in self.pages for problem in p.problems]


# Run in the page once it has loaded: waits for MathJax and the widget manager, then looks.
INSPECT = r"""
async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  const rendered = s => s.parentElement && s.parentElement.querySelector('.jupyter-widgets, .widget-container, .lm-Widget');
  for (let i = 0; i < 100 && views.some(s => !rendered(s)); i++) { await sleep(100); }
  await sleep(views.length ? 300 : 0);
  const out = {views: views.length, unrendered: views.filter(s => !rendered(s)).length};
  out.widgetErrors = Array.from(document.querySelectorAll('.jupyter-widgets'))
      .filter(e => /Error displaying widget|Error creating widget/.test(e.textContent)).length;
  out.brokenImages = Array.from(document.images).filter(i => i.offsetParent !== null || i.closest('.jupyter-widgets'))
      .filter(i => !i.complete || i.naturalWidth === 0).map(i => (i.currentSrc || i.src || '').slice(0, 120));
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight').forEach(e => e.remove());
  const text = main.textContent;
  out.rawMath = ['$$', '\\(', '\\[', '\\begin{'].filter(t => text.includes(t));
  out.mathUnrendered = Array.from(document.querySelectorAll('span.math, div.math'))
      .filter(e => !e.querySelector('mjx-container')).length;
  out.math = document.querySelectorAll('mjx-container').length;
  // code lines wider than the column: they wrap (or scroll) instead of reading as written
  const ctx = document.createElement('canvas').getContext('2d');
  out.wideCode = Array.from(document.querySelectorAll('.cell_input pre')).filter(p => p.offsetParent !== null)
      .flatMap(p => {
        const cs = getComputedStyle(p);
        ctx.font = `${cs.fontSize} ${cs.fontFamily}`;
        const inner = p.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
        return p.textContent.split('\n').filter(l => ctx.measureText(l).width > inner + 1).map(l => l.slice(0, 60));
      });
  return out;
}
"""

# The image a widget control currently shows (the first visible <img> in the same output), as a digest of
# its bytes: a re-rendered view gets a new blob: URL even for the same picture.
SHOWN = r"""
async (el) => {
  const root = el.closest('.cell_output, .jp-OutputArea-output, .output') || document;
  const img = Array.from(root.querySelectorAll('.jupyter-widgets img')).find(i => i.offsetParent !== null);
  if (!img) { return null; }
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let h = 2166136261;
  for (const b of bytes) { h = Math.imul(h ^ b, 16777619) >>> 0; }
  return `${bytes.length}:${h.toString(16)}`;
}
"""


def check_site(html_dir: Path, screenshots: Path | None = None, executable: str | None = None,
               move_controls: bool = True, timeout_ms: int = 30_000) -> SiteReport:
    """Open every page of ``html_dir`` in Chromium with the network cut off (see module doc)."""
    from playwright.sync_api import sync_playwright

    html_dir = Path(html_dir)
    if screenshots:
        screenshots.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    reports = []
    with serve(html_dir) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable or find_chromium(),
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        origin = urlsplit(base).netloc
        for path in pages(html_dir):
            rel = path.relative_to(html_dir).as_posix()
            report = PageReport(rel)
            reports.append(report)
            page = context.new_page()
            page.set_default_timeout(timeout_ms)

            def route(r, request, report=report):
                url = request.url
                if urlsplit(url).scheme in {"data", "blob", "about"} or urlsplit(url).netloc == origin:
                    return r.continue_()
                report.problems.append(f"request outside the site: {url}")
                return r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda e, report=report: report.problems.append(f"JavaScript error: {e}"))
            page.on("console", lambda m, report=report: m.type == "error" and m.text not in BENIGN_CONSOLE
                    and report.problems.append(f"console error: {m.text}"))
            page.on("response", lambda r, report=report: r.status >= 400
                    and report.problems.append(f"HTTP {r.status}: {r.url}"))
            if _redirect(path):  # the root index.html: broken_links checks where it points
                continue
            page.goto(base + rel, wait_until="load")
            seen = page.evaluate(INSPECT)
            report.widgets = seen["views"]
            if seen["unrendered"]:
                report.problems.append(f"{seen['unrendered']} of {seen['views']} widgets did not render")
            if seen["widgetErrors"]:
                report.problems.append(f"{seen['widgetErrors']} widgets show an error")
            for src in seen["brokenImages"]:
                report.problems.append(f"image did not load: {src}")
            if seen["rawMath"]:
                report.problems.append(f"math left as TeX: {seen['rawMath']}")
            for line in seen["wideCode"]:
                report.problems.append(f"code line wider than the column: {line!r}")
            if seen["mathUnrendered"]:
                report.problems.append(f"{seen['mathUnrendered']} math elements not typeset")
            if screenshots:
                shot = screenshots / (rel.removesuffix(".html").replace("/", "__") + ".png")
                page.screenshot(path=str(shot), full_page=True)
                report.screenshot = str(shot)
            if move_controls and seen["views"]:
                report.moved = _move_controls(page)
            page.close()
        browser.close()
    return SiteReport(reports, round(time.perf_counter() - start, 1))


def _move_controls(page) -> list[dict]:
    """Move each widget slider one step right (keyboard) and each dropdown to its next option; record
    the image shown by the same output before and after."""
    moved = []
    for handle in page.query_selector_all(".jupyter-widgets .noUi-handle"):
        if not handle.is_visible():
            continue
        before = handle.evaluate(SHOWN)
        handle.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
        moved.append({"control": "slider", "before": before, "after": handle.evaluate(SHOWN)})
    for select in page.query_selector_all(".jupyter-widgets select"):
        if not select.is_visible():
            continue
        options = select.evaluate("s => s.options.length")
        if options < 2:
            continue
        before = select.evaluate(SHOWN)
        select.select_option(index=(select.evaluate("s => s.selectedIndex") + 1) % options)
        page.wait_for_timeout(300)
        moved.append({"control": "dropdown", "before": before, "after": select.evaluate(SHOWN)})
    return moved


def _redirect(path: Path) -> str | None:
    """Where a page that only redirects (``<meta http-equiv="refresh" content="0; url=...">``) points."""
    match = re.search(r'<meta http-equiv="refresh" content="\d+;\s*url=([^"]+)"', path.read_text(errors="replace"), re.I)
    return match.group(1) if match else None


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            self.refs.append(re.sub(r"^\d+;\s*url=", "", attrs.get("content", ""), flags=re.I))
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") in ("preconnect", "dns-prefetch")):
                self.refs.append(attrs[key])


def broken_links(html_dir: Path) -> list[str]:
    """Every ``href``/``src`` of every page that points inside the site and does not resolve: a missing
    file, or a ``#fragment`` with no such id in its target page."""
    html_dir = Path(html_dir).resolve()
    parsed: dict[Path, _Links] = {}

    def parse(path: Path) -> _Links:
        if path not in parsed:
            parser = _Links()
            parser.feed(path.read_text(errors="replace"))
            parsed[path] = parser
        return parsed[path]

    broken = []
    for page in pages(html_dir):
        base = "http://site/" + page.relative_to(html_dir).as_posix()
        for ref in parse(page).refs:
            url = urlsplit(urljoin(base, ref))
            if url.scheme in ("mailto", "data", "javascript", "about") or (url.scheme in ("http", "https")
                                                                             and url.netloc != "site"):
                continue
            target = html_dir / unquote(url.path.lstrip("/"))
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(html_dir)}: {ref} (no {target.relative_to(html_dir)})")
            elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in parse(target).ids:
                broken.append(f"{page.relative_to(html_dir)}: {ref} (no id {url.fragment!r})")
    return broken


def main(argv: list[str] | None = None) -> int:
    """``python tests/sitecheck.py _build/html [--screenshots DIR]``: check a built book; exit 1 on a problem."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args(argv)
    executable = find_chromium()
    if executable is None:
        print("no Chromium found (apt-get install chromium, or set SALBOOK_CHROMIUM)")
        return 2
    report = check_site(args.html, args.screenshots, executable=executable)
    problems = report.problems + [f"broken link: {b}" for b in broken_links(args.html)]
    moved = [m for p in report.pages for m in p.moved]
    unchanged = [f"{p.page}: a {m['control']} did not change the picture" for p in report.pages for m in p.moved
                 if m["before"] == m["after"]]
    problems += unchanged
    print(f"{len(report.pages)} pages in {report.seconds} s; {sum(p.widgets for p in report.pages)} widgets, "
          f"{len(moved)} controls moved; {len(problems)} problems")
    for problem in problems:
        print("  " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
