# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (all tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_VENV ?= .venv-demo
DEMO_PY := $(DEMO_VENV)/bin/python
# Test files run side by side (tests/conftest.py: one file, or one test board, per unit of work); most of
# a test waits on a kernel or a board, so more workers than cores pay. PYTEST_PARALLEL= runs them in turn.
PYTEST_PARALLEL ?= -n 4 --dist loadfile

.PHONY: demo test test-boards lint bench screenshots clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# the demo needs the kernel and a notebook runner only (the "demo" extra), not the test toolchain
$(DEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_PY) -m pip install --quiet --upgrade pip
	$(DEMO_PY) -m pip install --quiet -e ".[demo]"
	touch $@

## demo: a small venv (.venv-demo) with the kernel, a loopback board server, the kernelspec, the
## example notebook run headless
demo: $(DEMO_VENV)/.installed
	$(DEMO_PY) -m rpyc_ikernel.install --sys-prefix
	$(DEMO_PY) scripts/demo.py

## test: venv + install, lint, the test boards (root only: built once, cached in .boards/), then every
## test (real servers, kernels and notebooks on 127.0.0.1; tests/boards on each board)
test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@if [ "$$(id -u)" = 0 ]; then $(PY) scripts/boards.py build; \
	else echo "not root: tests/boards will skip (building boards needs debootstrap, chroot, qemu-user)"; fi
	@if [ "$$(id -u)" = 0 ]; then export RPYC_IKERNEL_BOARDS_REQUIRED=1; fi; $(PY) -m pytest $(PYTEST_PARALLEL)

## test-boards: build the test boards (cached in .boards/; needs root: debootstrap, chroot, qemu-user) and
## run tests/boards on each: Debian armhf (rpyc 5.3) and arm64 (rpyc 6.0), bullseye (3.9), pyenv 3.7, 3.8, 3.12
test-boards: $(VENV)/.installed
	$(PY) scripts/boards.py build
	RPYC_IKERNEL_BOARDS_REQUIRED=1 $(PY) -m pytest $(PYTEST_PARALLEL) -m boards tests/boards

## bench: latency, start-up, print throughput and board memory against stock ipykernel, in one table
bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

## screenshots: the browser tests, saving their pictures into doc/ (needs Debian's chromium)
screenshots: $(VENV)/.installed
	RPYC_IKERNEL_SCREENSHOTS=doc $(PY) -m pytest -q -m browser

clean:
	rm -rf $(VENV) $(DEMO_VENV) out .pytest_cache .boards
