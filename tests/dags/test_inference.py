"""The real inference of the examples (``dags/digits_model.py``): deterministic and accurate on a small count;
and the two example DAGs that run it, their task callables called directly (no Airflow running)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dags_on_path() -> Iterator[ModuleType]:
    """``dags/`` on ``sys.path``, as Airflow puts its DAG folder; ``digits_model`` imported from it."""
    sys.path.insert(0, str(DAGS))
    try:
        yield importlib.import_module("digits_model")
    finally:
        sys.path.remove(str(DAGS))


def load_dag(name: str):
    module = importlib.import_module(f"dags.{name}")
    return getattr(module, name)()


def test_evaluation_is_deterministic_and_accurate_on_a_small_count(dags_on_path):
    model = dags_on_path
    first = model.evaluate(3_000)
    assert first == model.evaluate(3_000)
    assert first["images"] == 3_000 and first["accuracy"] > 0.9
    assert model.evaluate(3_000, seed=1) != first  # the seed does choose the images and the noise


def test_tagging_a_chunk_is_deterministic_and_counts_every_image(dags_on_path):
    model = dags_on_path
    chunk = model.tag(1_000, 2_500)
    assert chunk == model.tag(1_000, 2_500)
    assert chunk["first"] == 1_000 and chunk["images"] == 2_500
    assert sum(chunk["per_digit"].values()) == 2_500 and set(chunk["per_digit"]) == {str(d) for d in range(10)}
    assert chunk["accuracy"] > 0.9
    assert model.tag(0, 2_500)["per_digit"] != chunk["per_digit"]  # another chunk, other images


def test_the_noisy_images_come_in_batches_of_held_out_digits(dags_on_path):
    model = dags_on_path
    batches = list(model.noisy_digits(0, 12_001, batch_size=5_000))
    assert [len(images) for images, _ in batches] == [5_000, 5_000, 2_001]
    assert all(images.shape[1] == 64 and images.min() >= 0 and images.max() <= 1 for images, _ in batches)
    _, held_out, held_labels = model.trained()
    assert len(held_out) == 450 and set(held_labels) == set(range(10))  # a quarter of the 1,797, never trained on
    with pytest.raises(ValueError, match="count"):
        list(model.noisy_digits(0, -1))


def test_model_evaluation_evaluates_as_many_images_as_its_param_says(dags_on_path):
    dag = load_dag("model_evaluation")
    assert dag.params["images"] == 300_000
    result = dag.get_task("evaluate").python_callable(params={"images": 2_000})
    assert result["images"] == 2_000 and result["accuracy"] > 0.9
    assert dag.get_task("evaluate").upstream_task_ids == {"wait_green"}


def test_image_tagging_declares_nothing_so_it_plans_from_history(dags_on_path):
    dag = load_dag("image_tagging")
    tag = dag.get_task("tag")
    assert {"power_kw", "energy_kwh", "expected_duration"}.isdisjoint(tag.partial_kwargs["carbon_options"])
    chunks = dag.get_task("chunks").python_callable()
    assert len(chunks) == 3 and sum(chunk["count"] for chunk in chunks) == 150_000
    assert [chunk["first"] for chunk in chunks] == [0, 50_000, 100_000]
    assert tag.python_callable(chunks[1] | {"count": 500})["images"] == 500
