"""A site's solar ledger in the metrics store, on SQLite and on a real PostgreSQL (Debian's, started by the test).

Tries of one site share its panels: planned (``reserve``) and accounted (``claim``) solar never adds up to more
than the output of a slot, also when two processes reserve and claim the same sunny hour at once.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, select, text

from airflow_carbon.accounting import account
from airflow_carbon.metrics import MetricsStore, TaskTryKey
from airflow_carbon.metrics.schema import SOLAR_RESERVATION, SOLAR_SITE
from airflow_carbon.metrics.solar import SLOT_S, SolarLedger, SolarLedgerError
from airflow_carbon.signals import SOLAR_UNIT, Series
from airflow_carbon.signals.series import Kind
from tests.e2e.distributed import PostgresServer

BACKENDS = ["sqlite", "postgresql"]
NOON = datetime(2024, 6, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
A = TaskTryKey("dag", "infer", "r1")
B = TaskTryKey("dag", "tag", "r1", map_index=2, try_number=3)
C = TaskTryKey("other_dag", "score", "r1")


def solar(values_kw: list[float], *, start: datetime = NOON, period_s: int = 3600, kind: Kind = "forecast",
          source: str = "forecast.solar") -> Series:
    first_s = int(start.timestamp())
    return Series(first_s + period_s * np.arange(len(values_kw)), np.asarray(values_kw, dtype=float), period_s,
                  "roof", unit=SOLAR_UNIT, kind=kind, source=source)


def measured(values_kw: list[float], **kwargs: Any) -> Series:
    return solar(values_kw, kind="measured", source="conn:inverter", **kwargs)


@pytest.fixture(scope="module")
def postgres_url(postgres: PostgresServer) -> str:
    """One database for the module's tests, emptied before each: creating one per test is slow on a busy host."""
    url = postgres.new_database()
    MetricsStore(url).close()
    return url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metrics.db'}"
        MetricsStore(url).close()
        return url
    url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    with engine.begin() as connection:
        for table in ("carbon_solar_reservation", "carbon_solar_output", "carbon_solar_site"):
            connection.execute(text(f"DELETE FROM {table}"))
    engine.dispose()
    return url


@pytest.fixture
def ledger(url: str) -> Iterator[SolarLedger]:
    store = MetricsStore(url)
    yield SolarLedger(store)
    store.close()


def rows(ledger: SolarLedger, key: TaskTryKey) -> list[dict[str, Any]]:
    query = select(SOLAR_RESERVATION).where(*(SOLAR_RESERVATION.c[name] == value
                                              for name, value in vars(key).items()))
    with ledger.engine.connect() as connection:
        return [dict(row) for row in connection.execute(query.order_by(SOLAR_RESERVATION.c.slot_start)).mappings()]


# -- planning -------------------------------------------------------------------------------------

def test_free_kw_is_the_forecast_per_slot_less_what_others_reserved(ledger):
    forecast = solar([3.0], start=NOON, period_s=90)  # [12:00, 12:01:30): the second slot is half known
    free = ledger.free_kw("roof", forecast, NOON, NOON + 3 * MINUTE)
    assert list(free.values) == [3.0, 1.5, 0.0]
    assert (free.period_s, free.first_epoch_s, free.unit, free.region, free.kind, free.source) == (
        SLOT_S, int(NOON.timestamp()), "kW", "roof", "forecast", "forecast.solar")

    ledger.reserve("roof", A, NOON, NOON + 2 * MINUTE, 2.0, forecast)
    assert list(ledger.free_kw("roof", forecast, NOON, NOON + 3 * MINUTE).values) == [1.0, 0.0, 0.0]
    assert list(ledger.free_kw("roof", forecast, NOON, NOON + 3 * MINUTE, excluding=A).values) == [3.0, 1.5, 0.0]
    assert list(ledger.free_kw("other roof", forecast, NOON, NOON + 3 * MINUTE).values) == [3.0, 1.5, 0.0]


def test_reserve_gives_each_try_what_the_others_left_and_replaces_its_own_earlier_plan(ledger):
    forecast = solar([3.0])
    first = ledger.reserve("roof", A, NOON, NOON + HOUR, 2.0, forecast, peak_kw=5.0)
    second = ledger.reserve("roof", B, NOON + 30 * MINUTE, NOON + 90 * MINUTE, 2.0, forecast)
    assert len(first) == 60 and np.all(first.values == 2.0)
    # B's first half overlaps A (1 kW left), its second half is past the forecast (nothing known: none).
    assert len(second) == 60 and list(second.values) == [1.0] * 30 + [0.0] * 30
    assert second.first_epoch_s == int((NOON + 30 * MINUTE).timestamp())

    # A plans again, later and shorter: its old rows go, and B's plan is untouched.
    again = ledger.reserve("roof", A, NOON + 50 * MINUTE, NOON + HOUR, 2.5, forecast)
    assert list(again.values) == [2.0] * 10
    assert [row["slot_start"] for row in rows(ledger, A)] == [NOON + i * MINUTE for i in range(50, 60)]
    assert all(row["draw_kw"] == 2.0 and row["used_kw"] is None for row in rows(ledger, B))
    with ledger.engine.connect() as connection:
        assert connection.execute(select(SOLAR_SITE.c.site, SOLAR_SITE.c.peak_kw)).all() == [("roof", 5.0)]
    # A later call without the peak keeps it.
    ledger.reserve("roof", C, NOON, NOON + MINUTE, 1.0, forecast)
    with ledger.engine.connect() as connection:
        assert connection.execute(select(SOLAR_SITE.c.peak_kw)).scalar_one() == 5.0


def test_a_partial_slot_plans_and_draws_for_the_whole_slot(ledger):
    reserved = ledger.reserve("roof", A, NOON + 30 * timedelta(seconds=1), NOON + 90 * timedelta(seconds=1), 1.0,
                              solar([1.5]))
    assert list(reserved.values) == [1.0, 1.0]
    assert list(ledger.free_kw("roof", solar([1.5]), NOON, NOON + 2 * MINUTE).values) == [0.5, 0.5]


# -- release --------------------------------------------------------------------------------------

def test_a_try_ending_early_gives_back_the_rest_of_its_plan(ledger):
    forecast = solar([3.0])
    ledger.reserve("roof", A, NOON, NOON + HOUR, 3.0, forecast)
    assert np.all(ledger.reserve("roof", B, NOON, NOON + HOUR, 3.0, forecast).values == 0.0)

    ended = NOON + 20 * MINUTE + timedelta(seconds=30)
    used, basis = ledger.claim("roof", A, NOON, ended, 3.0, measured=measured([3.0]), forecast=forecast)
    assert basis == "measured" and len(used) == 21
    # A drew in the slot holding its end: kept; the 39 slots after it are given back.
    assert ledger.release(A, ended) == 39
    assert ledger.release(A, ended) == 0
    assert rows(ledger, A)[-1]["slot_start"] == NOON + 20 * MINUTE
    assert list(ledger.free_kw("roof", forecast, NOON, NOON + HOUR, excluding=B).values) == [0.0] * 21 + [3.0] * 39
    assert list(ledger.reserve("roof", B, NOON, NOON + HOUR, 3.0, forecast).values) == [0.0] * 21 + [3.0] * 39


def test_release_on_a_slot_edge_gives_back_that_slot_and_keeps_what_was_claimed(ledger):
    ledger.reserve("roof", A, NOON, NOON + 10 * MINUTE, 1.0, solar([3.0]))
    ledger.claim("roof", A, NOON, NOON + 2 * MINUTE, 1.0, measured=None, forecast=solar([3.0]))
    # Failed at 12:01 exactly: 12:01 onwards goes back, except 12:01's slot, whose solar is in its record.
    assert ledger.release(A, NOON + MINUTE) == 8
    assert [row["slot_start"] for row in rows(ledger, A)] == [NOON, NOON + MINUTE]


# -- claim ----------------------------------------------------------------------------------------

def test_claim_shares_each_slot_by_draw_and_never_gives_more_than_the_output(ledger):
    forecast = solar([4.0])
    ledger.reserve("roof", A, NOON, NOON + HOUR, 3.0, forecast)
    ledger.reserve("roof", B, NOON, NOON + HOUR, 1.0, forecast)
    sun = measured([2.0])
    used_a, _ = ledger.claim("roof", A, NOON, NOON + HOUR, 3.0, measured=sun, forecast=forecast)
    used_b, _ = ledger.claim("roof", B, NOON, NOON + HOUR, 1.0, measured=sun, forecast=forecast)
    assert np.allclose(used_a.values, 1.5) and np.allclose(used_b.values, 0.5)
    # C never planned: it gets rows now, and nothing is left for it.
    used_c, basis = ledger.claim("roof", C, NOON, NOON + HOUR, 1.0, measured=sun, forecast=None)
    assert basis == "measured" and np.allclose(used_c.values, 0.0) and len(rows(ledger, C)) == 60
    assert {row["reserved_kw"] for row in rows(ledger, C)} == {0.0}
    assert {row["reserved_kw"] for row in rows(ledger, A)} == {3.0}  # the plan stays beside what it used
    for slot in ledger.site_slots("roof", NOON, NOON + HOUR):
        assert slot["used_kw"] == pytest.approx(2.0) and slot["tries"] == 3 and slot["output_kw"] == 2.0


def test_claim_is_idempotent(ledger):
    first, _ = ledger.claim("roof", A, NOON, NOON + 5 * MINUTE, 2.0, measured=measured([1.0]), forecast=None)
    again, _ = ledger.claim("roof", A, NOON, NOON + 5 * MINUTE, 2.0, measured=measured([1.0]), forecast=None)
    assert list(first.values) == list(again.values) == [1.0] * 5


def test_claim_takes_measured_output_where_it_covers_then_the_forecast(ledger):
    # Measured 5-minute periods up to 12:10; the forecast knows the hour.
    sun = measured([2.0, 1.0], period_s=300)
    forecast = solar([3.0])
    used, basis = ledger.claim("roof", A, NOON, NOON + 12 * MINUTE + timedelta(seconds=30), 5.0, measured=sun,
                               forecast=forecast)
    assert basis == "measured+forecast"
    assert list(used.values) == [2.0] * 5 + [1.0] * 5 + [3.0] * 3
    assert used.kind == "forecast" and used.source == "conn:inverter"
    slots = ledger.site_slots("roof", NOON, NOON + HOUR)
    assert [slot["basis"] for slot in slots] == ["measured"] * 10 + ["forecast"] * 3

    # Another try of the same minutes with a forecast only: the measured output the store holds wins.
    used, basis = ledger.claim("roof", B, NOON, NOON + 5 * MINUTE, 1.0, measured=None, forecast=solar([9.0]))
    assert basis == "measured" and used.kind == "measured"
    assert ledger.site_slots("roof", NOON, NOON + MINUTE)[0]["output_kw"] == 2.0
    # ... and a measurement overwrites a forecast the store held: C shares the measured 4 kW by draw (A drew 5).
    used, _ = ledger.claim("roof", C, NOON + 10 * MINUTE, NOON + 11 * MINUTE, 1.0, measured=measured([4.0]),
                           forecast=None)
    assert list(used.values) == [pytest.approx(4.0 / 6)]
    assert ledger.site_slots("roof", NOON + 10 * MINUTE, NOON + 11 * MINUTE)[0] == {
        "slot_start": NOON + 10 * MINUTE, "output_kw": 4.0, "basis": "measured", "reserved_kw": 0.0,
        "used_kw": pytest.approx(3.0 + 4.0 / 6), "tries": 2}


def test_claim_with_nothing_known_gives_no_solar_and_no_basis(ledger):
    used, basis = ledger.claim("roof", A, NOON, NOON + 2 * MINUTE, 1.0, measured=None,
                               forecast=solar([3.0], start=NOON + HOUR))
    assert basis is None and list(used.values) == [0.0, 0.0]
    assert all(slot["output_kw"] is None for slot in ledger.site_slots("roof", NOON, NOON + HOUR))


def test_the_used_series_is_what_accounting_counts_as_solar(ledger):
    start, end = NOON + timedelta(seconds=20), NOON + 10 * MINUTE + timedelta(seconds=40)  # partial first/last slots
    ledger.claim("roof", B, NOON, NOON + HOUR, 1.0, measured=measured([3.0]), forecast=None)
    used, _ = ledger.claim("roof", A, start, end, 2.0, measured=measured([3.0]), forecast=None)
    assert np.allclose(used.values, 2.0)
    intensity = Series(np.array([int(NOON.timestamp())]), np.array([100.0]), 3600, "DE")
    energy_kwh = 2.0 * (end - start).total_seconds() / 3600
    record = account(job_id="dag.infer", policy="forecast", reason="solar", ready_at=start, deadline=end,
                     started_at=start, ended_at=end, energy_kwh=energy_kwh, intensity=intensity, solar=used)
    assert record.solar_kwh == pytest.approx(energy_kwh) and record.emissions_g == pytest.approx(0.0)


def test_free_output_kw_is_the_output_less_what_others_used(ledger):
    sun = measured([3.0])
    ledger.claim("roof", A, NOON, NOON + 2 * MINUTE, 2.0, measured=sun, forecast=None)
    free = ledger.free_output_kw("roof", sun, NOON, NOON + 3 * MINUTE)
    assert list(free.values) == [1.0, 1.0, 3.0] and free.kind == "measured" and free.source == "conn:inverter"
    assert list(ledger.free_output_kw("roof", sun, NOON, NOON + 3 * MINUTE, excluding=A).values) == [3.0] * 3


# -- reading --------------------------------------------------------------------------------------

def test_site_days_and_site_slots_sum_what_the_ledger_holds(ledger):
    before_midnight = NOON + 11 * HOUR + 58 * MINUTE
    ledger.claim("roof", A, before_midnight, before_midnight + 4 * MINUTE, 1.0,
                 measured=measured([2.0, 2.0], start=NOON + 11 * HOUR, period_s=3600), forecast=None)
    ledger.claim("roof", B, NOON, NOON + 30 * MINUTE, 2.0, measured=None, forecast=solar([1.0]))
    ledger.reserve("shed", C, NOON, NOON + 10 * MINUTE, 1.0, solar([1.0]))
    days = ledger.site_days(NOON - HOUR)
    assert days == [
        {"site": "roof", "day": "2024-06-01", "output_kwh": pytest.approx(30 / 60 + 2 * 2 / 60),
         "measured_kwh": pytest.approx(2 * 2 / 60), "used_kwh": pytest.approx(30 / 60 + 2 * 1 / 60)},
        {"site": "roof", "day": "2024-06-02", "output_kwh": pytest.approx(2 * 2 / 60),
         "measured_kwh": pytest.approx(2 * 2 / 60), "used_kwh": pytest.approx(2 * 1 / 60)},
    ]
    assert ledger.site_days(NOON + 12 * HOUR)[0]["day"] == "2024-06-02"

    shed = ledger.site_slots("shed", NOON, NOON + HOUR)
    assert len(shed) == 10 and shed[0] == {"slot_start": NOON, "output_kw": None, "basis": None, "reserved_kw": 1.0,
                                           "used_kw": 0.0, "tries": 1}
    assert ledger.site_slots("roof", NOON, NOON) == []


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "message"), [
    (lambda ledger: ledger.reserve("roof", A, NOON, NOON - MINUTE, 1.0, solar([1.0])), "end .* is before start"),
    (lambda ledger: ledger.reserve("roof", A, NOON.replace(tzinfo=None), NOON, 1.0, solar([1.0])),
     "start: naive datetime"),
    (lambda ledger: ledger.reserve("roof", A, NOON, NOON + HOUR, -1.0, solar([1.0])), "draw_kw: .*-1.0"),
    (lambda ledger: ledger.reserve("roof", A, NOON, NOON + HOUR, 1.0, solar([1.0]), peak_kw=float("nan")),
     "peak_kw: .*nan"),
    (lambda ledger: ledger.claim("", A, NOON, NOON + HOUR, 1.0, measured=None, forecast=None), "site: .*''"),
    (lambda ledger: ledger.release(A, "2024-06-01"), "after: expected an aware datetime"),
])
def test_bad_arguments_are_refused_with_their_name(ledger, call, message):
    with pytest.raises(SolarLedgerError, match=message):
        call(ledger)


# -- two processes at once ------------------------------------------------------------------------

ROUNDS = 3
FORECAST_KW, OUTPUT_KW, DRAW_KW = 3.0, 2.5, 2.0


def _share_the_sun(url: str, name: str, barrier: Any, results: Any) -> None:
    """One process: per round, reserve then claim an hour of one site, and claim another hour unplanned, each step
    started at the same moment as the other process's (the barrier)."""
    try:
        store = MetricsStore(url, upgrade=False)
        ledger = SolarLedger(store)
        forecast, sun = solar([FORECAST_KW, FORECAST_KW]), measured([OUTPUT_KW, OUTPUT_KW])
        out = []
        for round_ in range(ROUNDS):
            site, key = f"roof-{round_}", TaskTryKey("dag", name, f"round-{round_}")
            barrier.wait()
            reserved = ledger.reserve(site, key, NOON, NOON + HOUR, DRAW_KW, forecast)
            barrier.wait()
            used, basis = ledger.claim(site, key, NOON, NOON + HOUR, DRAW_KW, measured=sun, forecast=forecast)
            barrier.wait()
            unplanned, _ = ledger.claim(site, key, NOON + HOUR, NOON + 2 * HOUR, DRAW_KW, measured=sun,
                                        forecast=None)
            out.append((list(reserved.values), list(used.values), basis, list(unplanned.values)))
        store.close()
        results[name] = out
    except BaseException:
        results[name] = traceback.format_exc()
        raise


def test_two_processes_sharing_a_sunny_hour_at_once_never_get_more_than_the_output(url):
    context = multiprocessing.get_context("spawn")
    names = ("infer", "tag")
    with context.Manager() as manager:
        barrier, results = manager.Barrier(len(names), timeout=120), manager.dict()
        processes = [context.Process(target=_share_the_sun, args=(url, name, barrier, results)) for name in names]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=300)
        outcome = dict(results)
    assert [process.exitcode for process in processes] == [0, 0], outcome
    first, second = (outcome[name] for name in names)

    store = MetricsStore(url)
    ledger = SolarLedger(store)
    intensity = Series(np.array([int(NOON.timestamp())]), np.array([100.0]), 7200, "DE")
    for round_ in range(ROUNDS):
        (reserved_1, used_1, basis_1, unplanned_1), (reserved_2, used_2, basis_2, unplanned_2) = (
            first[round_], second[round_])
        # Planned: one got its draw, the other the rest of the forecast; never both their draw.
        assert sorted([reserved_1[0], reserved_2[0]]) == [FORECAST_KW - DRAW_KW, DRAW_KW]
        assert np.allclose(np.add(reserved_1, reserved_2), FORECAST_KW)
        # Both planned, so both draws count: the output is split evenly, whoever claimed first.
        assert basis_1 == basis_2 == "measured"
        assert np.allclose(used_1, OUTPUT_KW / 2) and np.allclose(used_2, OUTPUT_KW / 2)
        # Unplanned: the first to claim saw only its own draw; the second got what was left.
        assert np.allclose(np.add(unplanned_1, unplanned_2), OUTPUT_KW)
        assert sorted([unplanned_1[0], unplanned_2[0]]) == [OUTPUT_KW - DRAW_KW, DRAW_KW]

        site = f"roof-{round_}"
        for slot in ledger.site_slots(site, NOON, NOON + 2 * HOUR):
            assert slot["used_kw"] <= slot["output_kw"] + 1e-9 and slot["tries"] == 2
            assert slot["reserved_kw"] <= FORECAST_KW + 1e-9
        # What the records count as solar is at most what the panels gave over their intervals.
        solar_kwh = 0.0
        for start, used in ((NOON, used_1), (NOON, used_2), (NOON + HOUR, unplanned_1), (NOON + HOUR, unplanned_2)):
            series = solar(used, start=start, period_s=SLOT_S)
            solar_kwh += account(job_id="dag.x", policy="forecast", reason="solar", ready_at=start,
                                 deadline=start + HOUR, started_at=start, ended_at=start + HOUR,
                                 energy_kwh=DRAW_KW, intensity=intensity, solar=series).solar_kwh
        assert solar_kwh <= 2 * OUTPUT_KW + 1e-9
        assert solar_kwh == pytest.approx(2 * OUTPUT_KW)
        assert ledger.site_days(NOON)[round_]["used_kwh"] == pytest.approx(2 * OUTPUT_KW)
    store.close()
