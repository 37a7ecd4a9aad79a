# `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
AIRFLOW_VERSION := 3.3.2
STAMP := $(VENV)/.installed
BROWSER := $(VENV)/.chromium
SERVICES := $(VENV)/.postgres-redis
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test test-distributed lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=70.1"
	$(BIN)/pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]"
	touch $(STAMP)

# The UI test drives Debian's chromium with Playwright; nothing downloads a browser of its own.
$(BROWSER):
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium)
	mkdir -p $(VENV) && touch $(BROWSER)

# The distributed and fault tests run Debian's PostgreSQL and Redis as their own processes (initdb/pg_ctl,
# redis-server on free ports of 127.0.0.1), so only the packages are needed; no Docker, no system service is used.
# The fault tests move a triggerer's clock with Debian's libfaketime (package faketime); the monitoring test checks
# deploy/prometheus with Debian's promtool (package prometheus; its service is not used).
$(SERVICES):
	(ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null && \
		command -v faketime >/dev/null && command -v promtool >/dev/null) || \
		($(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql redis-server faketime prometheus)
	mkdir -p $(VENV) && touch $(SERVICES)

demo: $(STAMP)
	@echo "== The seed experiment, its own rule (solar >= 0.05 kW, the seed's constant) against the forecast policy =="
	$(BIN)/airflow-carbon simulate data/inference_jobs.csv data/carbon_intensity.csv \
		--solar data/solar_generation.csv --solar-threshold-kw 0.05 --max-delay 4h --plots out/plots
	@echo
	@echo "== Grid only: no solar, each job at the intensity of the period it ran in =="
	$(BIN)/airflow-carbon simulate data/inference_jobs.csv data/carbon_intensity.csv --max-delay 4h
	@echo
	@echo "== In Airflow: a carbon-aware task defers until the grid turns green, then runs and records; then three =="
	@echo "== jobs of one site wait for on-site solar and share it =="
	scripts/demo_airflow.sh

# The suite includes tests/e2e/test_distributed.py (Postgres, Redis, Celery, two triggerers). Two pytest workers,
# whole files each (a module's Airflow cluster stays in one worker): the end-to-end tests mostly wait on Airflow.
test: $(STAMP) $(BROWSER) $(SERVICES)
	$(BIN)/ruff check airflow_carbon tests bench dags
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Only the distributed end-to-end test, with its timings printed.
test-distributed: $(STAMP) $(SERVICES)
	$(BIN)/python -m pytest -q -s tests/e2e/test_distributed.py

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/savings.py --weeks 2 --write
	$(BIN)/python bench/energy.py --append
	$(BIN)/python bench/regions.py --weeks 2 --write

clean:
	rm -rf $(VENV) out build *.egg-info
