#!/usr/bin/env bash
# Usage: scripts/constraints.sh AIRFLOW_VERSION OUT REQUIREMENT...
# Resolves a fresh install of apache-airflow==AIRFLOW_VERSION with REQUIREMENT... (the project: '-e .[test]' for the
# development stack, the wheel of `make dist` for what a user gets) in a throwaway venv, and writes its pins, less the
# project itself, to OUT: the constraints file `make` and the wheel test install with. Run by `make constraints`.
set -euo pipefail
airflow=$1 out=$2
shift 2
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip "setuptools>=70.1"
"$work/venv/bin/pip" install --quiet "apache-airflow==$airflow" "$@"
{
  echo "# Pins of a resolved install: apache-airflow==$airflow ${*##*/}"
  echo "# on $("$work/venv/bin/python" -c 'import platform; print("CPython", platform.python_version())'), $(date -u +%F). Refresh with \`make constraints\`."
  "$work/venv/bin/pip" freeze --exclude-editable | grep -v -i -E '^airflow[-_]carbon( |=|@)'
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out: $(grep -c '==' "$out") pins"
