#!/usr/bin/env bash
# The Airflow half of `make demo`: a carbon-aware task defers until a synthetic grid turns
# green (about 40 s), resumes and records what it emitted; then its decision, its XCom
# record and its metrics row are printed. Then three jobs of one site (dags/solar_site.py) wait for on-site
# solar and share it, and their records say how much came from the panels. Airflow runs from a fresh home under out/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export AIRFLOW_HOME="$PWD/out/airflow_home"
export AIRFLOW__CORE__DAGS_FOLDER="$PWD/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False
# carbon_demo takes its source from [carbon] (bundled data when nothing is configured): here, the synthetic signal.
export AIRFLOW__CARBON__SOURCE=carbon_demo_signal AIRFLOW__CARBON__REGION=DEMO
export AIRFLOW_CONN_CARBON_DEMO_SIGNAL="{\"conn_type\": \"carbon_csv\", \"extra\": {\"path\": \"$AIRFLOW_HOME/signal.csv\", \"region\": \"DEMO\"}}"
rm -rf "$AIRFLOW_HOME" && mkdir -p "$AIRFLOW_HOME"
"$BIN/airflow" db migrate > "$AIRFLOW_HOME/migrate.log" 2>&1
"$BIN/airflow-carbon" example-signal "$AIRFLOW_HOME/signal.csv" --green-in 40s
echo "running: airflow dags test carbon_demo (log: $AIRFLOW_HOME/dags_test.log)"
"$BIN/airflow" dags test carbon_demo > "$AIRFLOW_HOME/dags_test.log" 2>&1
echo
echo "-- what the task and its trigger said --"
grep -oE "Pausing task as DEFERRED|waiting until [^[]*|carbon window: [^[]*|DagRun Finished: .*state=[a-z]+" \
  "$AIRFLOW_HOME/dags_test.log" | sed -E 's/DagRun Finished: dag_id=([a-z_]+).*(state=[a-z]+)/dag run \1 finished: \2/'
echo
echo "-- the 'carbon' XCom record of summarize_logs --"
grep -E "^carbon record: " "$AIRFLOW_HOME/dags_test.log" | sed 's/^carbon record: //'
echo
echo "-- its row in the metrics store ($AIRFLOW_HOME/carbon_metrics.db) --"
"$BIN/airflow-carbon" metrics --dag-id carbon_demo

echo
echo "== On-site solar: three 1 kW jobs of the site 'roof' wait for the sun and share it =="
# The site's solar connection (carbon_solar_csv): a forecast that turns sunny in 30 s (1.8 kW) and, standing in
# for the inverter's logger, a measured file (1.5 kW once sunny). The grid stays above solar_site's 100 g/kWh.
export AIRFLOW_CONN_SITE_SOLAR="{\"conn_type\": \"carbon_solar_csv\", \"extra\": {\"path\": \"$AIRFLOW_HOME/solar.csv\", \"measured_path\": \"$AIRFLOW_HOME/solar_logger.csv\", \"site\": \"roof\", \"peak_kw\": 1.8}}"
"$BIN/airflow-carbon" example-solar "$AIRFLOW_HOME/solar.csv" --sun-in 30s --kw 1.8 \
  --measured "$AIRFLOW_HOME/solar_logger.csv" --measured-kw 1.5
echo "running: airflow dags test solar_site (log: $AIRFLOW_HOME/dags_test_solar.log)"
"$BIN/airflow" dags test solar_site > "$AIRFLOW_HOME/dags_test_solar.log" 2>&1
grep -oE "carbon window: [^[]*|DagRun Finished: .*state=[a-z]+" "$AIRFLOW_HOME/dags_test_solar.log" \
  | sed -E 's/DagRun Finished: dag_id=([a-z_]+).*(state=[a-z]+)/dag run \1 finished: \2/'
echo "-- their records: solar energy from the site's measured output, shared; the rest from the grid --"
"$BIN/airflow-carbon" metrics --dag-id solar_site | "$BIN/python" -c '
import json, sys
line = ("{task_id:<20} {reason:<6} solar {solar_kwh:.4f} kWh ({solar_basis}), grid {grid_kwh:.4f} kWh, "
        "{emissions_g:.3f} g CO2eq (run when ready: {baseline_emissions_g:.3f} g)")
for row in (json.loads(text) for text in sys.stdin if text.startswith("{")):
    print(line.format(**row))'
