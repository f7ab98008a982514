# `make demo` and `make test` work on a fresh machine: each creates .venv if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[all]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[all,bench,dev]'
	touch $@

demo: $(VENV)/.demo-installed
	$(VENV)/bin/jaxgd demo --out runs/demo --overwrite

# pytest exits 5 when it collects no tests (e.g. a -k filter that matches nothing);
# that is reported, not treated as a crash.
test: $(VENV)/.test-installed
	@$(PY) -m pytest -q -rs $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$status

lint: $(VENV)/.test-installed
	$(PY) -m ruff check jaxgd tests benchmarks examples
	$(PY) -m ruff format --check jaxgd tests benchmarks examples

bench: $(VENV)/.test-installed
	$(PY) benchmarks/throughput.py --out runs/bench

clean:
	rm -rf $(VENV) runs .pytest_cache
