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

# The JavaScript Trino clients the tests run (tests/test_js_clients.py), pinned by tests/js/package-lock.json.
JS_CLIENTS := tests/js/node_modules/.installed-stamp
$(JS_CLIENTS): tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --silent
	touch $(JS_CLIENTS)

# dbt-trino, in an environment of its own (its pins conflict with the dev tools'); tests/test_python_clients.py.
DBT := .venv-clients/.installed-stamp
$(DBT): tests/clients/requirements.txt
	test -x .venv-clients/bin/python || python3 -m venv .venv-clients
	.venv-clients/bin/python -m pip install --quiet -r tests/clients/requirements.txt
	touch $(DBT)

# fakesnow, in an environment of its own (it pins an older sqlglot); tests/test_snowflake_backend.py.
FAKESNOW := .venv-fakesnow/.installed-stamp
$(FAKESNOW): tests/fakesnow/requirements.txt
	test -x .venv-fakesnow/bin/python || python3 -m venv .venv-fakesnow
	.venv-fakesnow/bin/python -m pip install --quiet -r tests/fakesnow/requirements.txt
	touch $(FAKESNOW)

# Long soak tests are marked @pytest.mark.slow and skipped here; run them with `make test-slow`.
# Two pytest processes (pytest-xdist), each taking a whole test file at a time, so a file's module
# fixtures (gateway processes, databases) are made once; TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: lint $(JS_CLIENTS) $(DBT) $(FAKESNOW)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(ARGS)

test-slow: $(STAMP) $(JS_CLIENTS) $(DBT) $(FAKESNOW)
	$(PY) -m pytest -q -m slow -n $(TEST_WORKERS) --dist loadfile $(ARGS)

bench: $(STAMP)
	$(PY) -m load_tests.trino_protocol $(ARGS)

bench-workload: $(STAMP)
	$(PY) -m load_tests.workload $(ARGS)

clean:
	rm -rf $(VENV) .venv-clients .venv-fakesnow tests/js/node_modules data .pytest_cache .mypy_cache .ruff_cache
