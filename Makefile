# featx: `make reproduce` and `make test` work on a fresh machine; both bootstrap .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast reproduce data demo bench bench-real bench-scale bench-spread bench-guidance clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The papers' tables for every benchmark under data/ (or $$FEATX_DATA), one report each in
# work/reports/ (untracked; reports/ holds the committed reference of the offline run); with
# none present (offline), the same chain on the shipped flower photos.
# ARGS="--plan" prints the plan only; see docs/reproduce.md for the other overrides.
reproduce: install
	$(VENV)/bin/featx reproduce $(ARGS)

# Downloads the benchmarks and ImageNet weights (needs internet); see docs/reproduce.md.
data:
	bash scripts/get_data.sh

# Extraction demo: real ImageNet weights (EfficientNet-Lite0, shipped by pip), sample photos.
demo: install
	FEATX=$(VENV)/bin/featx PY=$(PY) bash scripts/demo_extract.sh work/demo

bench: install
	for b in extract fit encode fisher svm; do $(PY) benchmarks/$$b.py || exit 1; done

# Real labelled photos (../shared/data when present; say so and stop when absent): ImageNet
# top-1 of featx's extraction against the weights' own transforms, and every representation
# against a linear probe on the flower photos' development set (~8 minutes).
bench-real: install
	$(PY) benchmarks/backbone_accuracy.py --ablate
	$(PY) benchmarks/real_photos.py

# make reproduce at benchmark scale, simulated on N synthetic VOC-layout images (docs/scale.md)
bench-scale: install
	$(PY) benchmarks/reproduce_scale.py --images $(or $(IMAGES),60)
	$(PY) benchmarks/scale_out.py

# the reproduction again under portable kernels and on one thread: each row's spread in the
# report (docs/reproduce.md, "Across CPUs"); about 3x make reproduce
bench-spread: install
	$(VENV)/bin/featx reproduce --spread $(ARGS)

# how far scheme 2's trained guidance moves when one rounding changes (docs/reproduce.md)
bench-guidance: install
	$(PY) benchmarks/guidance_stability.py

clean:
	rm -rf work .pytest_cache
