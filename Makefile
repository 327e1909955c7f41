# The two commands of the book. See README.md.
#   make book   [PROFILE=smoke|cpu|full] [RETRAIN=1] [EXECUTOR=local|processes|ray]
#                                          execute every notebook, then build the HTML book
#   make test                              run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?=
# RETRAIN=1: train every zoo model instead of loading the committed checkpoints (checkpoints/)
RETRAIN ?= 0
# EXECUTOR=local|processes|ray; default: processes (chapters in parallel, one per core) without a GPU,
# local (one chapter at a time) with one, ray when RAY_ADDRESS is set
EXECUTOR ?=

.PHONY: book test env clean-book

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

test: env
	$(PY) -m pytest

clean-book:
	rm -rf _build book/notebooks
