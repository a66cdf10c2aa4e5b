# featx: `make reproduce` and `make test` work on a fresh machine; both bootstrap .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast reproduce bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# Until the full paper tables land, the offline extraction demo: real ImageNet weights
# (EfficientNet-Lite0, shipped by pip) over scikit-image's sample photos.
reproduce: install
	FEATX=$(VENV)/bin/featx PY=$(PY) bash scripts/demo_extract.sh work/demo

bench: install
	$(PY) benchmarks/extract.py

clean:
	rm -rf work .pytest_cache
