# Kaizen: `make run` brings the whole service up on the embedded default; `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PROM_DIR := var/prometheus

.PHONY: run test test-sqlite bench lint clean assets

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

# Browser libraries (rrweb, rrweb-player) from the npm registry at the versions package-lock.json
# pins. Without npm the service still runs: session recording is off and says so.
assets: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else \
	  echo "npm not found: browser session recording stays off (install Node.js and npm to turn it on)"; \
	fi

# Migrations, the demo project (its key and addresses are printed), then web + the users' event
# streams + ingest consumer + the worker groups (two `critical` processes) + beat under honcho.
# Ctrl-C stops them all.
# Everything is served at KAIZEN_PUBLIC_URL (default http://127.0.0.1:8000): honcho is started at
# that URL's port, which it hands to the Procfile's first process, granian, as PORT (left alone,
# honcho would hand it 5000 and nothing would answer at the address printed). The event streams are
# served by uvicorn at KAIZEN_STREAM_URL (default: the next port), also printed.
run: export DEBUG ?= 1
run: export KAIZEN_DEMO ?= 1
run: export KAIZEN_SANDBOX_MODE ?= 1
# The console admits only these addresses; kaizen_demo gives its admin account this one.
run: export KAIZEN_OWNER_EMAILS ?= owner@kaizen.localhost
# Short rollout phases, so a demo fix goes canary → 10 % → 100 % in a couple of minutes.
run: export KAIZEN_ROLLOUT_CANARY_SECONDS ?= 30
run: export KAIZEN_ROLLOUT_PARTIAL_SECONDS ?= 30
run: export KAIZEN_ROLLOUT_FULL_SECONDS ?= 30
run: $(VENV)/.installed assets
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py kaizen_demo
	rm -rf $(PROM_DIR) && mkdir -p $(PROM_DIR)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PROMETHEUS_MULTIPROC_DIR=$(PROM_DIR) \
	  $(VENV)/bin/honcho start -f Procfile --port "$$($(PY) -m kaizen_site.runtime)" \
	    --concurrency "$$($(PY) -m kaizen_site.runtime concurrency)"

# The suite against the machine's PostgreSQL and Redis (see kaizen_site/test_settings.py).
test: $(VENV)/.installed assets
	$(VENV)/bin/pytest

# The same suite on the SQLite default.
test-sqlite: $(VENV)/.installed assets
	DATABASE_URL= $(VENV)/bin/pytest

# The import contracts are in pyproject.toml ([tool.importlinter]).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

bench: $(VENV)/.installed
	$(PY) bench/ingest.py
	$(PY) bench/queue_isolation.py

clean:
	rm -rf var $(VENV) node_modules
