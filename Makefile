# The two entry points. Each creates .venv with the Python found on the machine (3.11+) and
# installs everything the project needs into it, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test clean

demo: $(STAMP)
	$(PY) -m workbench.demo

test: $(STAMP) chromium
	# one BLAS thread per worker: two workers already use both cores, oversubscription is 3-8x slower
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not gpu" --durations=15 tests

# tests/test_browser.py drives Debian's chromium: install it where we can (apt-get, as root or with
# passwordless sudo); anywhere else this says so and the browser tests skip with that reason.
.PHONY: chromium
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "no apt-get: chromium not installed, browser tests skip"; \
	elif [ "$$(id -u)" = 0 ]; then (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
	  || echo "apt-get could not install chromium: browser tests skip"; \
	elif sudo -n true 2>/dev/null; then (sudo -n apt-get update -q && sudo -n env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q chromium) || echo "apt-get could not install chromium: browser tests skip"; \
	else echo "not root and no passwordless sudo: chromium not installed, browser tests skip"; fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,notebook]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.wbplan
