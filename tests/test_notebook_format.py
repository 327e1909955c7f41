"""The notebooks' code reads in the book's column: formatted by `make format` (black, 88 characters)."""
import re

from salbook import config

LINE_LENGTH = 88  # = the Makefile's `format` target; book/_ext/static/salbook.css sizes the code font to fit it
CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)


def long_lines(text: str) -> list[str]:
    return [line for cell in CODE_CELL.findall(text) for line in cell.splitlines() if len(line) > LINE_LENGTH]


def test_long_lines_are_found():
    text = "x\n```{code-cell} ipython3\n" + "a" * 89 + "\nshort\n```\n" + "b" * 200 + "\n"
    assert long_lines(text) == ["a" * 89]  # prose is not code


def test_every_code_line_fits_the_column():
    notebooks = sorted((config.PROJECT_ROOT / "notebooks").rglob("*.md"))
    assert notebooks
    found = {nb.relative_to(config.PROJECT_ROOT).as_posix(): n
             for nb in notebooks if (n := len(long_lines(nb.read_text())))}
    assert found == {}, f"code lines over {LINE_LENGTH} characters (run `make format`, then wrap comments): {found}"
