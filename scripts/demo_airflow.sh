#!/usr/bin/env bash
# The Airflow half of `make demo`: a carbon-aware task defers until a synthetic grid turns
# green (about 40 s), resumes and records what it emitted; then its decision, its XCom
# record and its metrics row are printed. Airflow runs from a fresh home under out/.
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
