# Two commands do everything: `make serve` runs the gateway on the embedded demo, `make test` runs the checks.
# Each creates the virtual environment with the pinned dependencies first (once, and again when
# pyproject.toml changes).

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: serve test test-slow lint bench bench-workload clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/gateway serve $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway tests load_tests
	$(VENV)/bin/mypy

# Long soak tests are marked @pytest.mark.slow and skipped here; run them with `make test-slow`.
test: lint
	$(PY) -m pytest -q -m "not slow" $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(ARGS)

bench: $(STAMP)
	$(PY) -m load_tests.trino_protocol $(ARGS)

bench-workload: $(STAMP)
	$(PY) -m load_tests.workload $(ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
