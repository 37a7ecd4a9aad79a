"""The monitoring profile, checked without Docker: every carbon metric is mapped by deploy/statsd/mapping.yml, the
Prometheus configuration passes Debian's ``promtool`` where it is installed, and the compose services, Airflow's
``[metrics]`` settings and the README's metrics section agree with each other and with ``airflow_carbon.stats``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from airflow_carbon import stats

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "deploy" / "statsd" / "mapping.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
#: Airflow's default ``[metrics] statsd_prefix``.
PREFIX = "airflow"
PROMETHEUS_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def glob_matches(pattern: str, name: str) -> bool:
    """statsd_exporter's glob match: ``*`` stands for one dot-free run of characters, the rest is literal."""
    regex = "".join("[^.]+" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    return re.fullmatch(regex, name) is not None


@pytest.fixture(scope="module")
def mappings() -> list[dict]:
    config = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    assert set(config) <= {"defaults", "mappings"}, set(config)
    return config["mappings"]


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text(encoding="utf-8"))["services"]


def test_the_glob_match_is_statsd_exporters():
    assert glob_matches("*.carbon.decided", "airflow.carbon.decided")
    assert not glob_matches("*.carbon.decided", "a.b.carbon.decided")
    assert not glob_matches("*.carbon.decided", "airflow.carbon.decided_x")
    assert not glob_matches("*.carbon.budget", "airflow.carbon.budget.spent_g")


@pytest.mark.parametrize("metric", stats.METRICS, ids=lambda m: m.name)
def test_every_metric_is_mapped_by_exactly_one_rule(mappings, metric):
    wire_name = f"{PREFIX}.{metric.name}"
    matched = [rule for rule in mappings if rule.get("match_type", "glob") == "glob"
               and glob_matches(rule["match"], wire_name)]
    assert len(matched) == 1, f"{wire_name}: {[rule['match'] for rule in matched]}"
    [rule] = matched
    name = rule["name"]
    assert PROMETHEUS_NAME.fullmatch(name) and name.startswith("carbon_") and rule.get("help"), rule
    assert "labels" not in rule, "the tags are the labels; a mapping label would override one"
    if metric.kind == stats.COUNTER:
        assert name.endswith("_total"), name
    elif metric.kind == stats.TIMER:
        assert name.endswith("_seconds"), name  # statsd_exporter observes StatsD timers in seconds
    else:
        assert not name.endswith("_total"), name


def test_every_rule_maps_a_metric_and_names_are_distinct(mappings):
    wire_names = [f"{PREFIX}.{metric.name}" for metric in stats.METRICS]
    for rule in mappings:
        assert any(glob_matches(rule["match"], wire) for wire in wire_names), f"no metric for {rule['match']}"
    names = [rule["name"] for rule in mappings]
    assert len(names) == len(set(names))


def test_timers_become_histograms_with_buckets_in_seconds():
    defaults = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))["defaults"]
    assert defaults["observer_type"] == "histogram"
    buckets = defaults["histogram_options"]["buckets"]
    assert buckets == sorted(buckets) and buckets[0] >= 1 and buckets[-1] >= 86400  # waits of a minute to a day


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus package (promtool) not installed")
def test_promtool_accepts_the_prometheus_configuration():
    check = subprocess.run(["promtool", "check", "config", str(PROMETHEUS)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_prometheus_scrapes_the_exporter_the_compose_file_runs(services):
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    targets = [target for job in config["scrape_configs"] for static in job["static_configs"]
               for target in static["targets"]]
    exporter = services["statsd-exporter"]
    web = next(arg for arg in exporter["command"] if arg.startswith("--web.listen-address="))
    assert targets == [f"statsd-exporter:{web.rpartition(':')[2]}"]


def test_the_monitoring_services_are_a_profile_mounting_the_deploy_files(services):
    exporter, prometheus = services["statsd-exporter"], services["prometheus"]
    for name, service in (("statsd-exporter", exporter), ("prometheus", prometheus)):
        assert service["profiles"] == ["monitoring"], name
        assert re.fullmatch(r"prom/[a-z-]+:v\d+\.\d+\.\d+", service["image"]), f"{name}: pin the image"
        assert service["healthcheck"]["test"] and service["restart"] == "always", name
        for mount in service["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file() and mount.endswith(":ro"), mount
    assert "./deploy/statsd/mapping.yml:/etc/statsd/mapping.yml:ro" in exporter["volumes"]
    assert "--statsd.mapping-config=/etc/statsd/mapping.yml" in exporter["command"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert prometheus["depends_on"]["statsd-exporter"]["condition"] == "service_healthy"


def test_airflow_sends_influxdb_tagged_lines_to_the_exporters_udp_port(services):
    environment = services["airflow-scheduler"]["environment"]
    exporter = services["statsd-exporter"]
    udp = next(arg for arg in exporter["command"] if arg.startswith("--statsd.listen-udp="))
    assert environment["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter"
    assert environment["AIRFLOW__METRICS__STATSD_PORT"] == udp.rpartition(":")[2]
    assert environment["AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED"] == "true"
    assert environment["AIRFLOW__METRICS__STATSD_ON"] in ("true", "false")


def test_the_readme_lists_every_metric_with_its_type_and_the_settings():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Metrics in your monitoring")
    section = readme[start:readme.index("\n### ", start + 1)]
    rows = dict(re.findall(r"^\| `(carbon\.[a-z_.]+)` \| ([a-z]+)", section, re.MULTILINE))
    assert rows == {metric.name: metric.kind for metric in stats.METRICS}
    for needle in ("statsd_influxdb_enabled = True", "statsd_on = True", "deploy/statsd/mapping.yml",
                   "deploy/prometheus/prometheus.yml", "--profile monitoring", "dag_id", "task_id", "region"):
        assert needle in section, needle
