# The two commands of the book. See README.md.
#   make book   [PROFILE=smoke|cpu|full]   execute every notebook, then build the HTML book
#   make test                              run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?=

.PHONY: book test env clean-book

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $@

book: env
	$(PY) -m salbook.book run --profile "$(PROFILE)"
	$(PY) -m salbook.book build

test: env
	$(PY) -m pytest

clean-book:
	rm -rf _build book/notebooks
