# `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
AIRFLOW_VERSION := 3.3.2
STAMP := $(VENV)/.installed
BROWSER := $(VENV)/.chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test lint bench clean

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

demo: $(STAMP)
	@echo "== The seed experiment, its own rule (solar >= 0.05 kW, the seed's constant) against the forecast policy =="
	$(BIN)/airflow-carbon simulate data/inference_jobs.csv data/carbon_intensity.csv \
		--solar data/solar_generation.csv --solar-threshold-kw 0.05 --max-delay 4h --plots out/plots
	@echo
	@echo "== Grid only: no solar, each job at the intensity of the period it ran in =="
	$(BIN)/airflow-carbon simulate data/inference_jobs.csv data/carbon_intensity.csv --max-delay 4h
	@echo
	@echo "== In Airflow: a carbon-aware task defers until the grid turns green, then runs and records =="
	scripts/demo_airflow.sh

test: $(STAMP) $(BROWSER)
	$(BIN)/ruff check airflow_carbon tests bench dags
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) out build *.egg-info
