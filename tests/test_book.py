"""Every notebook executes under the smoke profile, writes a valid run record, and the book builds."""
import json
import shutil

import pytest

from salbook import book, config, results


@pytest.mark.book
def test_notebooks_execute_and_book_builds(tmp_path, monkeypatch):
    root = tmp_path / "book-root"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(config.PROJECT_ROOT / name, root / name)
    shutil.copytree(config.PROJECT_ROOT / "notebooks", root / "notebooks")
    shutil.copytree(config.PROJECT_ROOT / "book", root / "book", ignore=shutil.ignore_patterns("notebooks"))
    monkeypatch.setenv("SALBOOK_RESULTS", str(tmp_path / "results"))

    seconds = book.run("smoke", root=root)
    assert set(seconds) == set(book.toc_notebooks(root)) and len(seconds) >= 3

    records = {r["notebook"]: r for r in results.load("smoke", tmp_path / "results" / "smoke")}
    assert set(records) == {n for n in seconds if n != "scorecard"}
    for record in records.values():
        assert record["profile"] == "smoke" and record["data_source"] and record["seconds"] > 0
        assert all(c["verdict"] in results.VERDICTS for c in record["claims"])
        json.dumps(record)  # plain JSON all the way down

    index = book.build(root)
    assert index.exists()
    page = (root / "_build" / "html" / "book" / "notebooks" / "mpe" / "01_mnist_mpe.html").read_text()
    assert "Figure" in page and "<img" in page
