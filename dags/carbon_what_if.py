"""A nightly what-if report: how much would each policy have saved on the bundled job stream?

It runs the same simulator as ``airflow-carbon simulate`` inside Airflow, so a team can
watch the figures for their own job stream before making any task carbon-aware.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["carbon", "simulation"],
    params={"max_delay_h": 4},
)
def carbon_what_if():
    @task
    def simulate_policies(params: dict | None = None) -> list[dict]:
        from airflow_carbon.planning import PolicySettings
        from airflow_carbon.signals.bundled import bundled_path
        from airflow_carbon.signals.csv import read_intensity_csv, read_solar_csv
        from airflow_carbon.simulate import read_jobs_csv, simulate, summarize

        results = simulate(
            read_jobs_csv(bundled_path("inference_jobs.csv")),
            read_intensity_csv(bundled_path("carbon_intensity.csv")),
            ["immediate", "threshold", "forecast", "oracle"],
            max_delay=timedelta(hours=float((params or {}).get("max_delay_h", 4))),
            settings=PolicySettings(solar_threshold_kw=0.05),
            solar=read_solar_csv(bundled_path("solar_generation.csv")),
        )
        return [summarize(policy, records).to_dict() for policy, records in results.items()]

    @task
    def report(rows: list[dict]) -> str:
        lines = [f"{r['policy']:>9}: {r['scheduled_kg']:.3f} kg grid-only ({-r['saving_pct']:+.1f}%), "
                 f"{r['net_kg']:.3f} kg net of solar ({-r['net_saving_pct']:+.1f}%), {r['delayed']} delayed"
                 for r in rows]
        text = "\n".join(lines)
        print(text)
        return text

    report(simulate_policies())


carbon_what_if()
