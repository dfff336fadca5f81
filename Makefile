# `make serve` and `make test` work on a fresh machine: each creates .venv and installs first.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
RUNTIME_STAMP = $(VENV)/.runtime-stamp
STAMP = $(VENV)/.installed-stamp
# setuptools' editable-install advisory (a UserWarning) is the only output pip gives otherwise.
PIP = PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip
PORT ?= 5006
ADDRESS ?= 127.0.0.1
STREAMING_CORE = technic_panel/streaming/contract.py,technic_panel/streaming/jsonsafe.py,technic_panel/streaming/streamer.py,technic_panel/streaming/termination.py,technic_panel/streaming/run.py,technic_panel/streaming/manager.py,technic_panel/streaming/tally.py,technic_panel/streaming/subscription.py,technic_panel/streaming/retention.py,technic_panel/streaming/export.py

MYPY_PACKAGES = technic_panel/engine technic_panel/data technic_panel/streaming technic_panel/live

.PHONY: install serve test bench lint notebooks screenshot clean

# `make serve` installs the runtime and the dask extra only; `make test` adds the test stack.
$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dask]'
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(PIP) install --quiet -e '.[test,dask,yahoo]'
	touch $(STAMP)

install: $(STAMP)

serve: $(RUNTIME_STAMP)
	$(BIN)/panel serve app.py --plugins technic_panel.api.serve --address $(ADDRESS) --port $(PORT) \
		--auth-module technic_panel/api/auth.py --exclude-headers=Cookie --exclude-cookies=technic_dashboard \
		--allow-websocket-origin=$(ADDRESS):$(PORT) --allow-websocket-origin=localhost:$(PORT)

test: $(STAMP)
	$(BIN)/ruff check technic_panel tests benchmarks app.py
	$(BIN)/mypy $(MYPY_PACKAGES)
	$(BIN)/python -m pytest --cov=technic_panel --cov-branch \
		--cov-report=term-missing:skip-covered tests $(wildcard notebooks/*.ipynb) --nbval-lax
	$(BIN)/coverage report --include='$(STREAMING_CORE)' --show-missing --fail-under=100

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_stream.py
	$(BIN)/python benchmarks/bench_api.py
	$(BIN)/python benchmarks/bench_dashboard.py
	$(BIN)/python benchmarks/bench_bokeh_ws.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_signals.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_files.py
	$(BIN)/python benchmarks/bench_live.py

# The README's picture: the browser test's screenshot, written to docs/ instead of a temp file.
screenshot: $(STAMP)
	TECHNIC_SCREENSHOT=docs/screenshot.png $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_browser.py -k screenshot

notebooks: $(STAMP)
	$(BIN)/jupyter execute --inplace notebooks/*.ipynb

lint: $(STAMP)
	$(BIN)/ruff check technic_panel tests benchmarks app.py
	$(BIN)/mypy $(MYPY_PACKAGES)

clean:
	rm -rf $(VENV) .pytest_cache .coverage htmlcov
