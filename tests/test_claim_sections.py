"""salbook.book.claim_sections: the scorecard links each claim to the section of its chapter that decides it."""
import json

from salbook import book, config

CHAPTER = '''\
# A chapter title

```{code-cell} ipython3
record.claim("at-top", "x", 1, 1, v)
```

## The `first` section: *one* {numref}`fig-a`

```{code-cell} ipython3
# a heading-like comment in code is not a section
record.claim(
    "in-first", "x", 1, 1, v)
```

## Second (Figure 2)

Prose that names "in-first" is not where it is decided.

```{code-cell} ipython3
record.claim(f"built-{k}", "x", 1, 1, v)
```
'''


def test_sections_of_quoted_ids(tmp_path):
    (tmp_path / "notebooks" / "part").mkdir(parents=True)
    (tmp_path / "notebooks" / "part" / "ch.md").write_text(CHAPTER)
    found = book.claim_sections("part/ch", ["at-top", "in-first", "built-1", "absent"], root=tmp_path)
    assert found == {"at-top": ("A chapter title", ""),  # the page's title: the page itself, no anchor
                     "in-first": ("The first section: one fig-a", "the-first-section-one-fig-a"),
                     "built-1": ("Second (Figure 2)", "second-figure-2")}  # by its f-string's start


def test_every_recorded_claim_id_resolves_or_is_built_at_run_time():
    """On the committed cpu records most claims are found (the rest have ids built with f-strings)."""
    records = [json.loads(p.read_text()) for p in (config.PROJECT_ROOT / "results" / "cpu").rglob("*.json")]
    ids = {r["notebook"]: [c["id"] for c in r["claims"]] for r in records}
    found = sum(len(book.claim_sections(n, i)) for n, i in ids.items())
    assert found >= 0.75 * sum(map(len, ids.values()))
