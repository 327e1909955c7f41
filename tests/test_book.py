"""Every notebook executes under the smoke profile, writes a valid run record, and the book builds."""
import json

import pytest

from salbook import book, results


@pytest.mark.book
def test_notebooks_execute_and_book_builds(smoke_book):
    root, seconds, results_dir = smoke_book  # the session's smoke build (tests/conftest.py)
    assert set(seconds) == set(book.toc_notebooks(root)) and len(seconds) >= 3

    records = {r["notebook"]: r for r in results.load("smoke", results_dir / "smoke")}
    assert set(records) == {n for n in seconds if n != "scorecard"}
    for record in records.values():
        assert record["profile"] == "smoke" and record["data_source"] and record["seconds"] > 0
        assert all(c["verdict"] in results.VERDICTS for c in record["claims"])
        json.dumps(record)  # plain JSON all the way down

    index = root / "_build" / "html" / "index.html"
    assert index.exists()
    page = (root / "_build" / "html" / "book" / "notebooks" / "mpe" / "01_mnist_mpe.html").read_text()
    assert "Figure" in page and "<img" in page
