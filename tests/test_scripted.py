"""Chapters run without Jupyter (salbook.scripted) write the record papermill's run would."""
import json

from salbook import scripted, zoo

NOTEBOOK = '''---
jupytext:
  text_representation: {format_name: myst}
---
# A chapter

```{code-cell} ipython3
:tags: [parameters]

profile = None
```

Some prose with a fenced block that is not code:

```python
raise AssertionError("not a code cell")
```

```{code-cell} ipython3
:tags: [remove-cell]

from myst_nb import glue
glue("x", 1, display=False)
display({"profile": profile})
seen.append(profile)
```
'''


def test_code_cells_and_their_tags():
    cells = scripted.code_cells(NOTEBOOK)
    assert [tags for tags, _ in cells] == [["parameters"], ["remove-cell"]]
    assert cells[0][1].strip() == "profile = None"
    assert "not a code cell" not in "".join(code for _, code in cells)


def test_a_notebook_runs_as_a_script_with_the_profile_injected(tmp_path, monkeypatch, capsys):
    path = tmp_path / "chapter.md"
    path.write_text(NOTEBOOK.replace("seen.append(profile)", "open('seen.json', 'w').write(json.dumps(profile))")
                    .replace("from myst_nb import glue", "import json\nfrom myst_nb import glue"))
    zoo._LOADED["earlier-chapter"] = {"name": "earlier-chapter"}
    seconds = scripted.run_notebook(path, "smoke")
    assert zoo.loaded() == []  # a model of an earlier chapter is not listed in this one's record
    assert seconds >= 0 and json.loads((tmp_path / "seen.json").read_text()) == "smoke"  # ran in the notebook's folder
    assert "'profile': 'smoke'" in capsys.readouterr().out
