# `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
AIRFLOW_VERSION := 3.3.2
version_of = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYTHON_VERSION := $(call version_of,$(PYTHON))
# The pins every development and CI install uses (a resolved install, frozen): `make constraints` refreshes them.
CONSTRAINTS := constraints/constraints-$(AIRFLOW_VERSION)-py$(PYTHON_VERSION).txt
# The older Airflow 3 releases `make test-compat` installs the wheel beside, each with its own pins in constraints/:
# the oldest release setup.cfg claims. 3.0, 3.1 and 3.2 fail (README, "Compatibility"; constraints/ keeps the
# pins 3.2.2 was checked with).
COMPAT_AIRFLOW_VERSIONS := 3.3.0
# Other Pythons the newest Airflow is checked on: pyenv's interpreters where the machine has them (Debian's apt
# offers only 3.11).
COMPAT_PYTHONS := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12)) \
	$(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13))
STAMP := $(VENV)/.installed
BROWSER := $(VENV)/.chromium
SERVICES := $(VENV)/.postgres-redis
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test test-distributed test-compat test-pythons dist constraints lint bench clean

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=70.1"
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]"
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
# The longest modules go first (--durations of a CI run), then the rest of tests/e2e, then the unit files, which fill
# the end evenly: a long module taken last would leave the other worker idle. xdist would otherwise hand out the files
# with the most tests first (its loadscope reorder), which puts the long end-to-end modules of one or two tests last.
# The slowest tests are listed at the end.
LONGEST_TESTS := tests/e2e/test_solar_site.py tests/e2e/test_faults.py tests/e2e/test_bad_input.py \
	tests/e2e/test_examples.py tests/e2e/test_distributed.py tests/e2e/test_regions_distributed.py
test: $(STAMP) $(BROWSER) $(SERVICES)
	$(BIN)/ruff check airflow_carbon tests bench dags
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 $(LONGEST_TESTS) tests/e2e tests

# Only the distributed end-to-end tests (triggerer fail-over; a choice between regions, one worker per queue),
# with their timings printed.
test-distributed: $(STAMP) $(SERVICES)
	$(BIN)/python -m pytest -q -s tests/e2e/test_distributed.py tests/e2e/test_regions_distributed.py

# The sdist and the wheel a user installs, in dist/.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	@ls -l dist

# The wheel from `make dist`, installed beside each Airflow release the package claims, each in a fresh venv with its
# pins from constraints/ (tests/test_wheel.py). The result table is in the README, "Compatibility".
test-compat: dist
	CARBON_WHEEL="$$(ls dist/*.whl)" CARBON_WHEEL_AIRFLOW="$(COMPAT_AIRFLOW_VERSIONS) $(AIRFLOW_VERSION)" \
		$(BIN)/python -m pytest -q tests/test_wheel.py
	$(foreach python,$(COMPAT_PYTHONS),CARBON_WHEEL="$$(ls dist/*.whl)" CARBON_WHEEL_PYTHON=$(python) \
		CARBON_WHEEL_AIRFLOW=$(AIRFLOW_VERSION) $(BIN)/python -m pytest -q tests/test_wheel.py &&) true

# The whole suite on each other Python the package claims, each in a venv of its own (.venv-py3.12, ...): `make test`
# with that interpreter and its pins. Not part of `make test`; its result is in the README, "Compatibility".
test-pythons:
	$(foreach python,$(COMPAT_PYTHONS),$(MAKE) test PYTHON=$(python) VENV=.venv-py$(call version_of,$(python)) &&) true

# Resolve and freeze again: the development stack (Airflow, the project and its test extra) on this Python and on each
# other one (`make test-pythons` and `make test-compat` install with those), then each older release `make
# test-compat` checks with the package alone. The project itself is left out; its install_requires stay ranges.
constraints: dist
	$(foreach python,$(PYTHON) $(COMPAT_PYTHONS),PYTHON=$(python) scripts/constraints.sh $(AIRFLOW_VERSION) \
		constraints/constraints-$(AIRFLOW_VERSION)-py$(call version_of,$(python)).txt -e ".[test]" &&) true
	$(foreach version,$(COMPAT_AIRFLOW_VERSIONS),PYTHON=$(PYTHON) scripts/constraints.sh $(version) \
		constraints/constraints-$(version)-py$(PYTHON_VERSION).txt dist/*.whl &&) true

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/savings.py --weeks 2 --write
	$(BIN)/python bench/energy.py --append
	$(BIN)/python bench/regions.py --weeks 2 --write

clean:
	rm -rf $(VENV) out build dist *.egg-info
