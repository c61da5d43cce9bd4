# joinedup — the menu. On a fresh machine: `make demo`, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# comorbidipy (the Charlson reference) needs pandas 1.5 and numpy 1: it gets a venv of its own.
COMORBIDIPY_VENV := .venv-comorbidipy
COMORBIDIPY_STAMP := $(COMORBIDIPY_VENV)/.installed
# fhir4ds (the SQL-on-FHIR peer in `make bench`) also gets a venv of its own.
FHIR4DS_VENV := .venv-fhir4ds
FHIR4DS_STAMP := $(FHIR4DS_VENV)/.installed
DEMO_PEOPLE ?= 1200000
DEMO_SEED ?= 42
WAREHOUSE ?= data/joinedup.duckdb
# Public reference data for tests and acceptance checks; the product itself takes paths as options.
REFERENCE_DIR ?= $(abspath ../shared/data/reference)
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
# The NHS.UK frontend, served by the dashboard from its own host (no CDN): npm, then a copy.
NHSUK := frontend/node_modules/nhsuk-frontend/dist/nhsuk
NHSUK_VERSION := 10.6.1
ASSETS_STAMP := src/joinedup/web/static/nhsuk/.installed
# The API's documentation pages (Swagger UI and ReDoc), served from the same host.
SWAGGER_UI := frontend/node_modules/swagger-ui-dist
REDOC := frontend/node_modules/redoc/bundles
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help setup assets chromium comorbidipy-venv fhir4ds-venv java postgresql demo serve test test-fast test-security check bench calibration format clean

help:
	@echo "make demo         set up, build the demo ICS ($(DEMO_PEOPLE) people), run population health and finance, serve the dashboard"
	@echo "make serve        serve the dashboard over an existing warehouse ($(WAREHOUSE)) at http://$(HOST):$(PORT)"
	@echo "make test         set up everything the tests need (venv, Java for Spark, PostgreSQL) and run them all"
	@echo "make test-fast    unit and spec tests on DuckDB only, for quick feedback while working"
	@echo "make test-security  the security, fault and disclosure probes kept as tests (tests/security)"
	@echo "make check        ruff lint + format check, mypy, import-linter contracts"
	@echo "make bench        run benchmarks/ and write benchmarks/results.json"
	@echo "make calibration  rebuild the calibration table in docs/synthetic-data.md"
	@echo "make format       apply ruff formatting and safe fixes"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11+ is needed ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[spark,dev]'
	touch $(STAMP)

setup: $(STAMP) $(ASSETS_STAMP)

# npm ci installs exactly what frontend/package-lock.json records; the dashboard needs only
# the built CSS, JavaScript and images, copied into the package so an install carries them.
# No page may ask another host for anything, so two things are left out of the copies: the
# NHS.UK stylesheet's @font-face rules, which fetch Frutiger from assets.nhs.uk (a licensed
# font the package does not ship; text falls back to the stylesheet's own Arial, sans-serif),
# and ReDoc's "API docs by Redocly" logo from its CDN (an empty image in its place).
BLANK_SVG := data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E
$(ASSETS_STAMP): frontend/package.json frontend/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the dashboard's assets (apt install npm)"; exit 1; }
	npm ci --prefix frontend --silent --no-audit --no-fund
	rm -rf src/joinedup/web/static/nhsuk src/joinedup/web/static/swagger-ui src/joinedup/web/static/redoc
	mkdir -p src/joinedup/web/static/nhsuk src/joinedup/web/static/swagger-ui src/joinedup/web/static/redoc
	sed -E 's/@font-face\{[^}]*\}//g' $(NHSUK)/nhsuk-frontend-$(NHSUK_VERSION).min.css \
		> src/joinedup/web/static/nhsuk/nhsuk-frontend-$(NHSUK_VERSION).min.css
	@if grep -q 'url(http' src/joinedup/web/static/nhsuk/nhsuk-frontend-$(NHSUK_VERSION).min.css; then \
		echo "the NHS.UK stylesheet still fetches from another host: see the assets step"; exit 1; fi
	cp $(NHSUK)/nhsuk-frontend-$(NHSUK_VERSION).min.js src/joinedup/web/static/nhsuk/
	cp -r $(NHSUK)/assets src/joinedup/web/static/nhsuk/assets
	cp $(SWAGGER_UI)/swagger-ui-bundle.js $(SWAGGER_UI)/swagger-ui.css $(SWAGGER_UI)/LICENSE \
		$(SWAGGER_UI)/favicon-32x32.png src/joinedup/web/static/swagger-ui/
	cp $(REDOC)/redoc.standalone.js.LICENSE.txt frontend/node_modules/redoc/LICENSE \
		src/joinedup/web/static/redoc/
	sed 's|https://cdn.redoc.ly/redoc/logo-mini.svg|$(BLANK_SVG)|' $(REDOC)/redoc.standalone.js \
		> src/joinedup/web/static/redoc/redoc.standalone.js
	@if grep -q 'cdn.redoc.ly' src/joinedup/web/static/redoc/redoc.standalone.js; then \
		echo "ReDoc still fetches from another host: see the assets step"; exit 1; fi
	touch $(ASSETS_STAMP)

assets: $(ASSETS_STAMP)

# Browser tests drive Debian's Chromium (Playwright's own browser download cannot run here).
chromium:
	@if [ -x /usr/bin/chromium ]; then \
		echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else \
		echo "chromium not found: installing Debian's chromium with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; \
	fi

$(COMORBIDIPY_STAMP):
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "comorbidipy 0.5.0 needs Python 3.11")'
	$(PYTHON) -m venv $(COMORBIDIPY_VENV)
	$(COMORBIDIPY_VENV)/bin/pip install --quiet --upgrade pip
	$(COMORBIDIPY_VENV)/bin/pip install --quiet comorbidipy==0.5.0 pandas==1.5.3 "numpy<2"
	touch $(COMORBIDIPY_STAMP)

comorbidipy-venv: $(COMORBIDIPY_STAMP)

$(FHIR4DS_STAMP):
	$(PYTHON) -m venv $(FHIR4DS_VENV)
	$(FHIR4DS_VENV)/bin/pip install --quiet --upgrade pip
	$(FHIR4DS_VENV)/bin/pip install --quiet fhir4ds==0.5.1 duckdb==2.0.0
	touch $(FHIR4DS_STAMP)

fhir4ds-venv: $(FHIR4DS_STAMP)

# Spark needs a Java runtime (17 or 21). Install one through apt when the machine has none.
java:
	@if command -v java >/dev/null 2>&1; then \
		echo "java: $$(java -version 2>&1 | head -n 1)"; \
	else \
		echo "java not found: installing openjdk-17-jre-headless with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openjdk-17-jre-headless; \
	fi

# The records store's tests start their own PostgreSQL server (initdb and pg_ctl into a
# temporary folder, as the postgres user when run as root): they need only Debian's server.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		echo "postgresql: $$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)"; \
	else \
		echo "PostgreSQL not found: installing Debian's postgresql with apt"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql; \
	fi

demo: $(STAMP) $(ASSETS_STAMP)
	$(BIN)/joinedup demo --people $(DEMO_PEOPLE) --seed $(DEMO_SEED) --warehouse $(WAREHOUSE) \
		--serve --host $(HOST) --port $(PORT)

# The demo's records store sits beside the warehouse; serve it too when it is there.
RECORDS ?= $(dir $(WAREHOUSE))records.sqlite

serve: $(STAMP) $(ASSETS_STAMP)
	$(BIN)/joinedup serve --warehouse $(WAREHOUSE) --host $(HOST) --port $(PORT) \
		$(if $(wildcard $(RECORDS)),--records $(RECORDS))

test: $(STAMP) $(ASSETS_STAMP) $(COMORBIDIPY_STAMP) java chromium postgresql
	JOINEDUP_REFERENCE_DIR=$(REFERENCE_DIR) $(BIN)/pytest -p no:cacheprovider --durations=40 -n 2 --dist loadfile

test-fast: $(STAMP) $(ASSETS_STAMP)
	JOINEDUP_REFERENCE_DIR=$(REFERENCE_DIR) $(BIN)/pytest -p no:cacheprovider -n 2 tests/unit tests/spec \
		-m "not spark and not slow"

test-security: $(STAMP) $(ASSETS_STAMP) chromium
	JOINEDUP_REFERENCE_DIR=$(REFERENCE_DIR) $(BIN)/pytest -p no:cacheprovider tests/security

check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP) $(ASSETS_STAMP) $(COMORBIDIPY_STAMP) $(FHIR4DS_STAMP) java
	$(BIN)/python benchmarks/run.py --out benchmarks/results.json

calibration: $(STAMP)
	$(BIN)/joinedup synth calibrate --people 200000 --seed 42 --write-doc docs/synthetic-data.md \
		--chart docs/img/calibration.svg

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf frontend/node_modules src/joinedup/web/static/nhsuk src/joinedup/web/static/swagger-ui \
		src/joinedup/web/static/redoc
	rm -rf $(VENV) $(COMORBIDIPY_VENV) $(FHIR4DS_VENV) .pytest_cache .mypy_cache .ruff_cache data/ benchmarks/results.json
