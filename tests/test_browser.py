"""The built book in a real browser (Chromium driven by Playwright), with the network cut off.

Two books: a two-page fixture book built here (math in prose, a notebook with a salbook.widgets explorer:
the slider must change the picture in the static page), and the smoke book of tests/test_book.py (every
page: no JavaScript error, no request outside the site, images loaded, math typeset, widgets rendered;
a screenshot of each under _build/screenshots/; every link inside the site resolves).

No browser is a failure, not a skip: this is the only check that the published pages work offline. Debian:
``apt-get install chromium`` (the Makefile does it when run as root); elsewhere set ``SALBOOK_CHROMIUM``
to a Chromium or Chrome binary.
"""
import html as htmllib
import json
import re
import shutil
import textwrap

import pytest
import yaml

import sitecheck
from salbook import book, config

DEMO = '''\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Explorer demo

A map $m_c(x)$ per value of $\\alpha$:

$$ m_c(x) = \\alpha \\, x_{ij} $$

```{code-cell} ipython3
:tags: [parameters]

profile = None
```

```{code-cell} ipython3
import numpy as np
from salbook.widgets import explorer

def square(size, shade):
    image = np.zeros((16, 16))
    image[:size, :size] = shade
    return image

grid = {"size": [4, 8, 12], "shade": [0.5, 1.0]}
explorer(square, grid, title="squares", width="96px")
```

```{code-cell} ipython3
# the formatter's line length (88 characters) fits the column: this line is 88 long ....
```
'''

INTRO = '''\
# Fixture book

Inline math \\(a^2 + b^2\\) and $c^2$, an equation

$$ \\sum_i x_i = 1, $$

and a link to the {doc}`notebooks/demo` page.
'''


@pytest.fixture(scope="module")
def chromium():
    path = sitecheck.find_chromium()
    if path is None:
        pytest.fail("no Chromium found: install Debian's `chromium` (apt-get install chromium; `make test` does it "
                    "as root) or set SALBOOK_CHROMIUM to a Chromium/Chrome binary. Playwright's own browser "
                    "download (`playwright install chromium`) needs a host outside the package registries.")
    return path


@pytest.fixture(scope="module")
def fixture_book(tmp_path_factory):
    """A two-page book built with the project's _config.yml: intro (math) and a notebook with an explorer,
    executed by papermill like the real chapters."""
    root = tmp_path_factory.mktemp("fixture-book")
    shutil.copy(config.PROJECT_ROOT / "_config.yml", root / "_config.yml")
    (root / "book").mkdir()
    shutil.copy(config.PROJECT_ROOT / "book" / "references.bib", root / "book" / "references.bib")
    shutil.copytree(config.PROJECT_ROOT / "book" / "_ext", root / "book" / "_ext")
    (root / "book" / "intro.md").write_text(INTRO)
    (root / "notebooks").mkdir()
    (root / "notebooks" / "demo.md").write_text(DEMO)
    toc = {"format": "jb-book", "root": "book/intro", "chapters": [{"file": "book/notebooks/demo"}]}
    (root / "_toc.yml").write_text(yaml.safe_dump(toc))
    book.run("smoke", root=root, executor="local")
    book.build(root)
    return root


def test_fixture_book_in_the_browser(fixture_book, chromium):
    html = fixture_book / "_build" / "html"
    report = sitecheck.check_site(html, fixture_book / "_build" / "screenshots", executable=chromium)
    assert report.problems == []
    by_page = {p.page: p for p in report.pages}
    assert set(by_page) >= {"book/intro.html", "book/notebooks/demo.html"}
    demo = by_page["book/notebooks/demo.html"]
    assert demo.widgets == 1
    # two controls (a slider for size, a slider for shade); each move shows another precomputed image
    assert len(demo.moved) == 2
    for move in demo.moved:
        assert move["before"] and move["after"] and move["before"] != move["after"], move
    shots = {p: (fixture_book / "_build" / "screenshots" / f"{p.removesuffix('.html').replace('/', '__')}.png")
             for p, r in by_page.items() if not sitecheck._redirect(html / p)}  # index.html only redirects
    assert len(shots) == len(by_page) - 1 and all(shot.exists() for shot in shots.values())


def test_fixture_book_links_and_offline_assets(fixture_book):
    html = fixture_book / "_build" / "html"
    assert sitecheck.broken_links(html) == []
    page = (html / "book" / "notebooks" / "demo.html").read_text()
    assert "_static/vendor/embed-amd.js" in page and "_static/vendor/require.js" in page
    assert "_static/vendor/mathjax/tex-chtml.js" in page
    assert "cdn" not in page.replace('data-jupyter-widgets-cdn="about:blank"', "").lower()
    # the vendor files are loaded only where needed: not added to every page as _static/ files would be
    assert "embed-amd.js" not in (html / "book" / "intro.html").read_text()


def test_sitecheck_catches_what_it_should(tmp_path, chromium):
    """The checker itself: an outside request, a missing image, raw TeX, a code cell wider than the column
    and a broken link are reported."""
    (tmp_path / "index.html").write_text(textwrap.dedent("""\
        <html><body><main>
        <p>raw math $$x$$ here</p>
        <img src="missing.png">
        <img src="https://example.invalid/a.png">
        <a href="nowhere.html">x</a> <a href="index.html#nope">y</a>
        <div class="cell_input"><pre>short\nLONG_LINE</pre></div>
        <script>throw new Error("boom")</script>
        </main></body></html>""").replace("LONG_LINE", "x" * 300))
    report = sitecheck.check_site(tmp_path, executable=chromium, move_controls=False)
    problems = " | ".join(report.problems)
    for expected in ("request outside the site: https://example.invalid/a.png", "HTTP 404", "image did not load",
                     "math left as TeX", "JavaScript error: boom",
                     "code line wider than the column: 'xxxx"):
        assert expected in problems
    assert sitecheck.broken_links(tmp_path) == ["index.html: missing.png (no missing.png)",
                                                "index.html: nowhere.html (no nowhere.html)",
                                                "index.html: index.html#nope (no id 'nope')"]


def launch_links(root, html):
    """Per page, the Binder and Colab links: {page: {"binder": path, "colab": path}} (paths in the repository)."""
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    org, repo = cfg["repository"]["url"].rstrip("/").split("/")[-2:]
    branch = cfg["repository"]["branch"]
    buttons = cfg["launch_buttons"]
    prefixes = {"binder": f"{buttons['binderhub_url']}/v2/gh/{org}/{repo}/{branch}?urlpath=lab/tree/",
                "colab": f"{buttons['colab_url']}/github/{org}/{repo}/blob/{branch}/"}
    found = {}
    for page in sitecheck.pages(html):
        for href in map(htmllib.unescape, re.findall(r'href="([^"]+)"', page.read_text())):
            for kind, prefix in prefixes.items():
                if href.startswith(prefix):
                    found.setdefault(page.relative_to(html).as_posix(), {})[kind] = href[len(prefix):]
                elif kind in href and ("mybinder" in href or "colab" in href):
                    raise AssertionError(f"{page}: launch link {href} is not on {org}/{repo}@{branch}")
    return found


def check_launch_and_download(root):
    """Every notebook page launches its own executed notebook on Binder and Colab, at a path that exists in
    what the workflow publishes on the launch branch (the tree plus book/notebooks/), and offers that
    executed .ipynb for download."""
    html = root / "_build" / "html"
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    workflow = (config.PROJECT_ROOT / ".github" / "workflows" / "book.yml").read_text()
    assert f"SALBOOK_EXECUTED_BRANCH: {cfg['repository']['branch']}" in workflow
    assert 'git add -f book/notebooks' in workflow and 'git push -f origin "$SALBOOK_EXECUTED_BRANCH"' in workflow
    links = launch_links(root, html)
    notebooks = {f"book/notebooks/{n}.html": f"book/notebooks/{n}.ipynb" for n in book.toc_notebooks(root)}
    assert notebooks and set(notebooks) <= set(links)
    for page, kinds in links.items():
        assert set(kinds) == {"binder", "colab"}, page
        for path in kinds.values():
            assert path == notebooks.get(page), (page, path)  # the page's own notebook
            assert (root / path).exists() and path.startswith("book/notebooks/")  # published by the workflow
        download = html / "_sources" / path
        page_text = (html / page).read_text()
        assert f"_sources/{path}" in page_text, f"{page}: no download link for its .ipynb"
        executed = json.loads(download.read_text())
        assert any(c.get("outputs") for c in executed["cells"] if c["cell_type"] == "code"), download
    assert (config.PROJECT_ROOT / "binder" / "requirements.txt").exists()  # Binder installs salbook from the tree


def test_fixture_book_launch_and_download_buttons(fixture_book):
    check_launch_and_download(fixture_book)


@pytest.mark.book
def test_smoke_book_in_the_browser(smoke_book, chromium):
    """Every page of the smoke book, as a reader's browser shows it with no network; screenshots of each in
    _build/screenshots/ of the project."""
    root = smoke_book[0]
    html = root / "_build" / "html"
    shots = config.PROJECT_ROOT / "_build" / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    report = sitecheck.check_site(html, shots, executable=chromium)
    print(f"browser check: {len(report.pages)} pages in {report.seconds} s")
    assert report.problems == []
    visited = [p for p in report.pages if p.screenshot]
    assert len(visited) >= len(book.toc_notebooks(root)) + 3
    for page in report.pages:  # wherever a page has an explorer, its controls change the picture
        for move in page.moved:
            assert move["before"] and move["before"] != move["after"], (page.page, move)
    # every chapter (so one per part at least) has an explorer with a slider, moved here with no kernel
    by_page = {p.page: p for p in report.pages}
    chapters = [n for n in book.toc_notebooks(root) if "/" in n]
    assert {n.split("/")[0] for n in chapters} == {"mpe", "roar", "pertmap", "decoys", "robust", "leaderboard"}
    without = [n for n in chapters
               if not any(m["control"] == "slider" for m in by_page[f"book/notebooks/{n}.html"].moved)]
    assert without == [], f"chapters without an explorer slider: {without}"
    assert sitecheck.broken_links(html) == []
    check_launch_and_download(root)
