"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

Every Airflow process runs this at provider discovery, so it is a literal and imports nothing, as
Airflow's own providers' are. ``tests/test_packaging.py`` checks it against the code it describes
(the ``[carbon]`` options in ``settings.CONFIG_OPTIONS``, the hooks' connection types).
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-carbon",
        "name": "Carbon",
        "description": "Carbon-aware scheduling: defer tasks that can wait until the grid is cleaner.",
        "integrations": [{"integration-name": "Carbon", "tags": ["software"]}],
        "sensors": [{"integration-name": "Carbon", "python-modules": ["airflow_carbon.sensors.carbon"]}],
        "operators": [{"integration-name": "Carbon", "python-modules": ["airflow_carbon.operators.carbon_aware",
                                                                       "airflow_carbon.operators.regions"]}],
        "triggers": [{"integration-name": "Carbon", "python-modules": ["airflow_carbon.triggers.carbon",
                                                                     "airflow_carbon.triggers.regions"]}],
        "hooks": [{"integration-name": "Carbon",
                   "python-modules": ["airflow_carbon.hooks.metrics", "airflow_carbon.hooks.signal_csv",
                                      "airflow_carbon.hooks.watttime", "airflow_carbon.hooks.electricitymaps",
                                      "airflow_carbon.hooks.ukgrid", "airflow_carbon.hooks.solar"]}],
        # No "plugins" entry: the plugin loads through the ``airflow.plugins`` entry point in every mode, and
        # with lazy_discover_providers=False Airflow 3.3 would load it twice and report the second as an
        # import error ("Plugin 'carbon' already registered, skipping") in the UI.
        "extra-links": ["airflow_carbon.links.CarbonDecisionLink"],
        "task-decorators": [
            {"class-name": "airflow_carbon.decorators.carbon_aware.carbon_aware_task", "name": "carbon_aware"},
            {"class-name": "airflow_carbon.decorators.carbon_aware.carbon_aware_branch_task",
             "name": "carbon_aware_branch"},
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_carbon.hooks.watttime.WattTimeHook",
                "hook-name": "WattTime",
                "connection-type": "watttime",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "Username", "host": "Base URL (optional)"},
                    "placeholders": {"host": "https://api.watttime.org"},
                },
                "conn-fields": {
                    "region": {"label": "Region", "schema": {"type": ["string", "null"]}},
                    "signal_type": {"label": "Signal type", "schema": {"type": ["string", "null"]}},
                    "latitude": {"label": "Latitude (instead of region)", "schema": {"type": ["number", "null"]}},
                    "longitude": {"label": "Longitude", "schema": {"type": ["number", "null"]}},
                    "horizon_hours": {"label": "Forecast horizon (h, up to 72)",
                                      "schema": {"type": ["integer", "null"]}},
                },
            },
            {
                "hook-class-name": "airflow_carbon.hooks.electricitymaps.ElectricityMapsHook",
                "hook-name": "Electricity Maps",
                "connection-type": "electricitymaps",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port", "extra"],
                    "relabeling": {"password": "API token", "host": "Base URL (optional)"},
                    "placeholders": {"host": "https://api.electricitymaps.com"},
                },
                "conn-fields": {
                    "zone": {"label": "Zone", "schema": {"type": ["string", "null"]}},
                    "latitude": {"label": "Latitude (instead of zone)", "schema": {"type": ["number", "null"]}},
                    "longitude": {"label": "Longitude", "schema": {"type": ["number", "null"]}},
                    "emission_factor": {"label": "Emission factor (lifecycle or direct)",
                                        "schema": {"type": ["string", "null"]}},
                    "api_version": {"label": "API version (v3)", "schema": {"type": ["string", "null"]}},
                    "horizon_hours": {"label": "Forecast horizon (h)", "schema": {"type": ["integer", "null"]}},
                },
            },
            {
                "hook-class-name": "airflow_carbon.hooks.ukgrid.UKCarbonIntensityHook",
                "hook-name": "UK Carbon Intensity",
                "connection-type": "ukgrid",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "password", "schema", "port", "extra"],
                    "relabeling": {"host": "Base URL (optional)"},
                    "placeholders": {"host": "https://api.carbonintensity.org.uk"},
                },
                "conn-fields": {
                    "postcode": {"label": "Outward postcode (regional)", "schema": {"type": ["string", "null"]}},
                    "region_id": {"label": "Region id (regional)", "schema": {"type": ["integer", "null"]}},
                },
            },
            {
                "hook-class-name": "airflow_carbon.hooks.signal_csv.CarbonCsvHook",
                "hook-name": "Carbon intensity CSV file",
                "connection-type": "carbon_csv",
                "ui-field-behaviour": {"hidden-fields": ["host", "schema", "port", "login", "password", "extra"]},
                "conn-fields": {
                    "path": {"label": "CSV path", "schema": {"type": ["string", "null"]}},
                    "region": {"label": "Region", "schema": {"type": ["string", "null"]}},
                    "replay": {"label": "Replay onto the present", "schema": {"type": ["boolean", "null"]}},
                },
            },
            {
                "hook-class-name": "airflow_carbon.hooks.solar.ForecastSolarHook",
                "hook-name": "Forecast.Solar",
                "connection-type": "forecast_solar",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port", "extra"],
                    "relabeling": {"password": "API key (optional)", "host": "Base URL (optional)"},
                    "placeholders": {"host": "https://api.forecast.solar"},
                },
                "conn-fields": {
                    "latitude": {"label": "Latitude", "schema": {"type": ["number", "null"]}},
                    "longitude": {"label": "Longitude", "schema": {"type": ["number", "null"]}},
                    "declination": {"label": "Declination (0 horizontal .. 90 vertical)",
                                    "schema": {"type": ["number", "null"]}},
                    "azimuth": {"label": "Azimuth (-90 east, 0 south, 90 west)",
                                "schema": {"type": ["number", "null"]}},
                    "kwp": {"label": "Peak power (kWp)", "schema": {"type": ["number", "null"]}},
                    "site": {"label": "Site (optional; default: the connection id)",
                             "schema": {"type": ["string", "null"]}},
                    "measured_path": {"label": "Measured output CSV (optional)",
                                      "schema": {"type": ["string", "null"]}},
                },
            },
            {
                "hook-class-name": "airflow_carbon.hooks.solar.SolarCsvHook",
                "hook-name": "Solar CSV files",
                "connection-type": "carbon_solar_csv",
                "ui-field-behaviour": {"hidden-fields": ["host", "schema", "port", "login", "password", "extra"]},
                "conn-fields": {
                    "path": {"label": "Forecast or profile CSV path", "schema": {"type": ["string", "null"]}},
                    "column": {"label": "Profile column (e.g. Berlin)", "schema": {"type": ["string", "null"]}},
                    "peak_kw": {"label": "Peak power (kW)", "schema": {"type": ["number", "null"]}},
                    "start": {"label": "Profile start (ISO 8601, UTC)", "schema": {"type": ["string", "null"]}},
                    "replay": {"label": "Replay onto the present", "schema": {"type": ["boolean", "null"]}},
                    "measured_path": {"label": "Measured output CSV (optional)",
                                      "schema": {"type": ["string", "null"]}},
                    "site": {"label": "Site (optional; default: the connection id)",
                             "schema": {"type": ["string", "null"]}},
                },
            },
            {
                "hook-class-name": "airflow_carbon.hooks.metrics.CarbonMetricsHook",
                "hook-name": "Carbon metrics store",
                "connection-type": "carbon_metrics",
                "ui-field-behaviour": {"placeholders": {"host": "database host, or the SQLite file path"}},
                "conn-fields": {
                    "sqlalchemy_url": {"label": "SQLAlchemy URL without password (optional)",
                                       "schema": {"type": ["string", "null"]}},
                },
            },
        ],
        "config": {
            "carbon": {
                "description": "Defaults for carbon-aware tasks; a task's own arguments and default_args win.",
                "options": {
                    "max_delay": {
                        "description": "How long a task may wait for a cleaner grid after it became ready.",
                        "default": "4h", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "region": {
                        "description": "Grid region or zone of the signal (a bundled region: DE, FR, US-TX).",
                        "default": "DE", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "source": {
                        "description": ("Connection id of the signal source; empty means the bundled data, replayed "
                                        "onto today."),
                        "default": "", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "fallback": {
                        "description": "Connection ids to try in order when the source fails (comma-separated).",
                        "default": "", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "policy": {
                        "description": "immediate, threshold or forecast.",
                        "default": "forecast", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "power_kw": {
                        "description": ("Power drawn by a task that declares neither energy_kwh nor power_kw and "
                                        "whose energy no meter read (assumed)."),
                        "default": "0.3", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "expected_duration": {
                        "description": ("How long a task that declares no expected_duration and has no history is "
                                        "expected to run, for planning its window."),
                        "default": "30min", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "energy_meter": {
                        "description": ("What reads a task's energy: auto (NVML for GPUs, RAPL or codecarbon's "
                                        "estimate for CPU and memory, where installed), codecarbon, nvml or declared "
                                        "(energy_kwh, else power_kw times the run time)."),
                        "default": "auto", "type": "string", "example": None, "version_added": "0.3.0",
                    },
                    "pue": {
                        "description": ("Power usage effectiveness of the facility: a task's energy is its IT energy "
                                        "times this."),
                        "default": "1.0", "type": "string", "example": None, "version_added": "0.3.0",
                    },
                    "history_tries": {
                        "description": ("How many of a task's last completed tries plan it when it declares no "
                                        "energy or duration; 0 plans on the defaults."),
                        "default": "10", "type": "string", "example": None, "version_added": "0.3.0",
                    },
                    "min_saving_pct": {
                        "description": "forecast policy: wait only when it saves at least this share of running now.",
                        "default": "0", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "replan_margin_pct": {
                        "description": ("forecast policy: a waiting task keeps its planned start unless a new "
                                        "forecast's best start beats it by at least this share."),
                        "default": "10", "type": "string", "example": None, "version_added": "0.2.0",
                    },
                    "risk_aversion": {
                        "description": ("forecast policy: 0..1, how far toward its 90th percentile a forecaster's "
                                        "forecast is taken when windows are compared, so an uncertain later window "
                                        "must beat a near one clearly."),
                        "default": "0.25", "type": "string", "example": None, "version_added": "0.2.0",
                    },
                    "threshold_g_per_kwh": {
                        "description": "threshold policy: an intensity at or below this is green.",
                        "default": "250", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "on_unavailable": {
                        "description": "With no signal: wait (re-try until the deadline) or run at once.",
                        "default": "wait", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "solar": {
                        "description": ("Connection id of the on-site solar source (forecast_solar or "
                                        "carbon_solar_csv); empty means none."),
                        "default": "", "type": "string", "example": None, "version_added": "0.2.0",
                    },
                    "site": {
                        "description": ("The site whose panels the task shares; empty means the solar connection's "
                                        "site."),
                        "default": "", "type": "string", "example": None, "version_added": "0.2.0",
                    },
                    "solar_threshold_kw": {
                        "description": ("threshold policy: on-site solar at or above this kW is enough; empty means "
                                        "the task's own power."),
                        "default": "", "type": "string", "example": None, "version_added": "0.2.0",
                    },
                    "forecaster": {
                        "description": ("What carries a source's series past its end (a CSV of measured history, a "
                                        "live source beyond its horizon): persistence, seasonal, model or none. A "
                                        "task's own setting wins, then its source connection's extra 'forecaster', "
                                        "then this."),
                        "default": "seasonal", "type": "string", "example": None, "version_added": "0.2.0",
                    },
                    "refresh_interval": {
                        "description": "How often a waiting task re-reads the signal and re-plans.",
                        "default": "5min", "type": "string", "example": None, "version_added": "0.1.0",
                    },
                    "metrics_conn_id": {
                        "description": "Connection of the metrics store database.",
                        "default": "carbon_metrics_default", "type": "string", "example": None,
                        "version_added": "0.1.0",
                    },
                },
            }
        },
    }
