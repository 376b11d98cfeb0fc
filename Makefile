# All set-up happens here: a fresh machine needs only Python >= 3.10 and pip.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: venv install test unit demo bench bench-smoke protos lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[testbed,test]'
	touch $(STAMP)

venv: $(PY)
install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

demo: $(STAMP)
	$(VENV)/bin/seldon-load demo --results results/demo

bench: $(STAMP)
	$(PIP) install --quiet -e '.[bench]'
	$(PY) benchmarks/run_all.py --out docs/performance-data.json

protos: $(STAMP)
	$(PY) -m seldon_load.oip.gen_protos

lint: $(STAMP)
	$(VENV)/bin/ruff check seldon_load tests benchmarks locustfiles

clean:
	rm -rf $(VENV) results .pytest_cache
