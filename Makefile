# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (all tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench screenshots clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

## demo: venv + install, a loopback board server, the kernelspec, the example notebook run headless
demo: $(VENV)/.installed
	$(PY) -m rpyc_ikernel.install --sys-prefix
	$(PY) scripts/demo.py

## test: venv + install, lint, then every test (real servers, kernels and notebooks on 127.0.0.1)
test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

## bench: latency, start-up, print throughput and board memory against stock ipykernel, in one table
bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

## screenshots: the browser tests, saving their pictures into doc/ (needs Debian's chromium)
screenshots: $(VENV)/.installed
	RPYC_IKERNEL_SCREENSHOTS=doc $(PY) -m pytest -q -m browser

clean:
	rm -rf $(VENV) out .pytest_cache
