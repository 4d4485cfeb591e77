# Terrain: `make run` starts a local PostGIS and the API with demo data; `make test` runs the
# whole suite against real PostGIS. Both install what is missing first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432
PG_USER ?= postgres
DB_NAME ?= terrain
HOST ?= 127.0.0.1
PORT ?= 8000
PSQL := psql -h $(PG_HOST) -p $(PG_PORT) -U $(PG_USER) -v ON_ERROR_STOP=1 -qtA
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

export TERRAIN_DB_URL ?= postgresql+asyncpg://$(PG_USER)@$(PG_HOST):$(PG_PORT)/$(DB_NAME)
export TERRAIN_TEST_DB_ADMIN_URL ?= postgresql+asyncpg://$(PG_USER)@$(PG_HOST):$(PG_PORT)/postgres

.PHONY: run test deps lock audit postgis database migrate seed lint bench-nearby bench-routing \
	bench-route-endpoint bench-assignments bench-validation bench-load clean chromium

# Logs as text in a terminal (production logs JSON, the default).
run: export TERRAIN_LOG_FORMAT ?= text
# The local photo store's signed URLs point at this server, wherever HOST and PORT put it.
run: export TERRAIN_STORAGE_PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)
run: deps postgis database migrate seed
	$(BIN)/python -m api.background.jobs worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; trap 'exit 130' INT TERM; \
	$(BIN)/uvicorn api.main:create_app --factory --host $(HOST) --port $(PORT) --no-access-log

test: deps postgis chromium
	$(BIN)/pytest -q

deps: $(VENV)/.installed

# Installed with the lock file as constraints: every dependency at the version CI ran.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

# Pin every dependency, direct and transitive, at what a fresh install resolves now.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install -q -e '.[dev]'
	{ echo "# Every dependency of '.[dev]', direct and transitive, pinned: \`make deps\` installs with it as"; \
	  echo "# constraints, so every machine runs what CI ran. Regenerate with \`make lock\`."; \
	  .lockenv/bin/pip freeze --exclude-editable; } > requirements.lock
	rm -rf .lockenv

# Known vulnerabilities in the locked set, from the OSV database. A canary first: a release
# with published advisories must be reported, or the service is out of reach and nothing
# could be audited, which is said rather than passed off as a clean audit.
AUDIT := $(BIN)/pip-audit --no-deps --disable-pip --vulnerability-service osv --progress-spinner off
audit: deps
	$(BIN)/pip install -q -c requirements.lock pip-audit
	@echo 'requests==2.19.0' > $(VENV)/audit-canary.txt
	@if $(AUDIT) -r $(VENV)/audit-canary.txt 2>/dev/null | grep -q 'PYSEC-\|GHSA-'; then \
		$(AUDIT) -r requirements.lock; \
	else \
		echo "audit: NOT RUN, the OSV vulnerability service cannot be reached from this machine"; \
	fi

# Headless Chromium for the console's browser tests: Debian's package, installed with apt when
# missing (Playwright drives it; it never downloads a browser of its own).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# PostgreSQL with PostGIS: installed with apt when missing, started when stopped.
postgis:
	@if ! command -v pg_lsclusters >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib; \
	fi
	@version=$$(ls /etc/postgresql | sort -n | tail -1); \
	if ! ls /usr/share/postgresql/$$version/extension/postgis.control >/dev/null 2>&1; then \
		echo "installing PostGIS for PostgreSQL $$version"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-$$version-postgis-3; \
	fi; \
	if ! pg_lsclusters -h | awk '{print $$4}' | grep -q online; then \
		echo "starting PostgreSQL $$version"; \
		$(SUDO) pg_ctlcluster --skip-systemctl-redirect $$version main start; \
	fi
	@for i in $$(seq 1 30); do pg_isready -q -h $(PG_HOST) -p $(PG_PORT) && exit 0; sleep 1; done; \
		echo "PostgreSQL is not answering on $(PG_HOST):$(PG_PORT)"; exit 1

database: postgis
	@$(PSQL) -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$(DB_NAME)'" | grep -q 1 \
		|| $(PSQL) -d postgres -c 'CREATE DATABASE "$(DB_NAME)"'
	@$(PSQL) -d $(DB_NAME) -c 'CREATE EXTENSION IF NOT EXISTS postgis'

migrate: deps database
	$(BIN)/alembic upgrade head

seed: deps migrate
	$(BIN)/python -m api.cli seed-demo

lint: deps
	$(BIN)/ruff check api geo storage validation checklists recurrence sim tests bench
	$(BIN)/ruff format --check api geo storage validation checklists recurrence sim tests bench
	$(BIN)/mypy api geo storage validation checklists recurrence sim

bench-nearby: deps postgis
	@command -v wrk >/dev/null 2>&1 || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
	$(BIN)/python bench/nearby.py

bench-route-endpoint: deps postgis
	$(BIN)/python bench/route_endpoint.py

bench-assignments: deps postgis
	$(BIN)/python bench/assignments.py

bench-load: deps postgis
	$(BIN)/python bench/load.py

bench-validation: deps
	$(BIN)/python bench/validation.py

bench-routing: deps
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/routing.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
