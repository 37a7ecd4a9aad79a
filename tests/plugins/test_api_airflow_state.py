"""The Carbon view against Airflow's own task state (see ``test_api.py`` for the API server and its metadata database).

A try the store still has ``deferred`` is listed as waiting only while Airflow has its task instance deferred at the
same try: not once a person marked it success, a ``dags test`` was interrupted with it queued, it was retried, or its
run deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airflow_carbon.metrics import TaskTryKey
from airflow_carbon.plugins import airflow_state
from airflow_carbon.plugins.airflow_state import AirflowTaskState
from tests.metrics.seeds import decide
from tests.plugins.test_api import airflow_api, as_user, client, register_task_instance

__all__ = ["airflow_api", "client"]  # the fixtures, shared with test_api.py

H = timedelta(hours=1)
RUN = "manual__2026-12-01T10:00:00.123456+00:00"


@pytest.fixture(scope="module")
def mapped(airflow_api):
    """Three mapped instances of ``dag_a.score`` and three other tasks, all deferred in the store."""
    store, now = airflow_api["store"], datetime.now(UTC)
    for task_id, map_index in [("score", 0), ("score", 1), ("score", 2), ("gone", -1), ("retried", -1)]:
        decide(store, TaskTryKey("dag_a", task_id, RUN, map_index=map_index), ready_at=now - H, start=now + H,
               deadline=now + 3 * H)
    register_task_instance("dag_a", RUN, "score", 0)  # still deferred
    register_task_instance("dag_a", RUN, "score", 1, state="success")  # marked success in Airflow
    register_task_instance("dag_a", RUN, "score", 2, state="queued")  # `dags test` interrupted
    register_task_instance("dag_a", RUN, "retried", state="deferred", try_number=2)  # its try 1 is over
    return airflow_api


def waiting_in(client, headers) -> set[tuple[str, str, int]]:
    rows = client.get("/carbon/api/deferred", headers=headers).json()
    return {(row["dag_id"], row["task_id"], row["map_index"]) for row in rows}


def test_only_tries_airflow_has_deferred_at_the_same_try_are_waiting(mapped, client):
    headers = as_user(mapped, "admin")
    assert waiting_in(client, headers) == {("dag_a", "translate", -1), ("dag_b", "evaluate", 3), ("dag_a", "score", 0)}
    rows = client.get("/carbon/api/deferred", params={"task_id": "score"}, headers=headers).json()
    [row] = rows
    assert row["airflow_state"] == "deferred" and row["airflow_try_number"] == 1 and row["state"] == "deferred"
    assert row["run_id"] == RUN and row["decided_at"] is not None


def test_a_try_stops_waiting_when_airflow_moves_its_task_instance_on(mapped, client):
    headers = as_user(mapped, "admin")
    register_task_instance("dag_a", RUN, "score", 0, state="scheduled")  # released: the trigger fired
    try:
        assert ("dag_a", "score", 0) not in waiting_in(client, headers)
    finally:
        register_task_instance("dag_a", RUN, "score", 0, state="deferred")
    assert ("dag_a", "score", 0) in waiting_in(client, headers)


@pytest.mark.parametrize(("task_id", "map_index", "state", "try_number"), [
    ("score", 1, "success", 1), ("score", 2, "queued", 1), ("retried", -1, "deferred", 2), ("gone", -1, None, None)])
def test_the_decision_says_what_airflow_says_of_the_task_instance(mapped, client, task_id, map_index, state,
                                                                   try_number):
    response = client.get(f"/carbon/api/decision/dag_a/{RUN}/{task_id}", params={"map_index": map_index},
                          headers=as_user(mapped, "admin"))
    [row] = response.json()
    assert row["state"] == "deferred"  # what the store says
    assert (row["airflow_state"], row["airflow_try_number"]) == (state, try_number)
    assert not airflow_state.waiting(row)


def test_task_states_reads_every_instance_in_one_query_per_page_of_tasks(mapped, monkeypatch):
    wanted = [("dag_a", RUN, "score", i) for i in range(4)] + [("dag_a", RUN, "retried", -1), ("dag_x", "r", "t", -1)]
    states = airflow_state.task_states(wanted)
    assert states == {("dag_a", RUN, "score", 0): AirflowTaskState("deferred", 1),
                      ("dag_a", RUN, "score", 1): AirflowTaskState("success", 1),
                      ("dag_a", RUN, "score", 2): AirflowTaskState("queued", 1),
                      ("dag_a", RUN, "retried", -1): AirflowTaskState("deferred", 2)}
    monkeypatch.setattr(airflow_state, "TASKS_PER_QUERY", 1)  # more tasks than one query names
    assert airflow_state.task_states(wanted) == states
    assert airflow_state.task_states([]) == {}


def test_a_metadata_database_that_does_not_answer_is_a_503(mapped, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def down(instances):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(airflow_state, "task_states", down)
    response = client.get("/carbon/api/deferred", headers=as_user(mapped, "admin"))
    assert response.status_code == 503 and "metadata database" in response.json()["detail"]


# -- the rule, with the metadata read faked ---------------------------------------------------------

ROW = {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "try_number": 2, "state": "deferred"}


@pytest.mark.parametrize(("found", "waits"), [
    (AirflowTaskState("deferred", 2), True),
    (AirflowTaskState("deferred", 3), False),  # Airflow is at a later try
    (AirflowTaskState("success", 2), False),
    (AirflowTaskState("queued", 2), False),
    (AirflowTaskState(None, 2), False),
    (None, False),  # no such task instance any more
])
def test_a_row_waits_only_when_airflow_has_it_deferred_at_its_try(found, waits):
    states = {("d", "r", "t", -1): found} if found else {}
    [row] = airflow_state.with_airflow_state([ROW], states)
    assert airflow_state.waiting(row) is waits
    assert row["airflow_state"] == (found.state if found else None)
    assert not airflow_state.waiting(ROW | {"state": "completed", "airflow_state": "deferred",
                                            "airflow_try_number": 2})
