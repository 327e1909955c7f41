# The two commands of the book. See README.md.
#   make book   [PROFILE=smoke|cpu|full] [RETRAIN=1] [EXECUTOR=local|processes|ray]
#                                          execute every notebook, then build the HTML book
#   make test                              run the whole test suite
#   make format                            format the notebooks' code (black, 88 characters)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?=
# RETRAIN=1: train every zoo model instead of loading the committed checkpoints (checkpoints/)
RETRAIN ?= 0
# EXECUTOR=local|processes|ray; default: processes (chapters in parallel, one per core) without a GPU,
# local (one chapter at a time) with one, ray when RAY_ADDRESS is set
EXECUTOR ?=

.PHONY: book test env vendor browser clean-book format

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	# Independent implementations the cross-check tests compare against, installed without their pins:
	# quantus pins opencv-python (clashes with opencv-python-headless; its other needs, scikit-learn and
	# cachetools, are in the dev extra); rai-toolbox needs torchmetrics only for code we do not use;
	# torchattacks pins an old requests that it never imports.
	$(PY) -m pip install --no-deps "quantus==0.6.0" "rai-toolbox==0.2.1" "torchattacks==3.5.1"
	touch $@

book: env
	SALBOOK_RETRAIN=$(RETRAIN) $(PY) -m salbook.book run --profile "$(PROFILE)" --executor "$(EXECUTOR)"
	$(PY) -m salbook.book build

# The pages' MathJax and widget manager, pinned by package-lock.json (npm ci), copied to _vendor/; `book` does it too
vendor: env
	$(PY) -m salbook.book vendor

# Chromium for tests/test_browser.py: Debian's package, installed when missing and make runs as root
# (CI); otherwise it says what to install. Playwright's own browser download needs a host outside the registries.
browser:
	@if [ -n "$$SALBOOK_CHROMIUM" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else echo "tests/test_browser.py needs Chromium: sudo apt-get install chromium, or set SALBOOK_CHROMIUM"; fi

test: env browser
	$(PY) -m pytest

# The notebooks' code cells at the book's column width (tests/test_notebook_format.py): black with its string
# splitting (--unstable), through jupytext so the MyST text files keep their prose and cell options. Comments
# and docstrings longer than 88 characters are left to the author (the test names the notebook).
format: env
	for nb in $$(find notebooks -name '*.md'); do \
	  $(VENV)/bin/jupytext -q --pipe "$(VENV)/bin/black -q --unstable --line-length 88 {}" "$$nb" || exit 1; \
	done

clean-book:
	rm -rf _build _vendor book/notebooks
