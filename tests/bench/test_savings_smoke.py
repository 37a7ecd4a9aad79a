"""bench/savings.py on a tiny input: its job stream, its table and where it writes it."""

from __future__ import annotations

from bench import savings


def test_the_job_stream_has_110_jobs_on_each_sampled_day_in_2020():
    days = savings.sampled_days(2)
    jobs = savings.job_stream(days)
    assert len(days) == 14 and len(jobs) == 14 * savings.JOBS_PER_DAY
    assert jobs.ready_epoch_s.min() >= savings.YEAR_START.timestamp()
    assert list(jobs.ready_epoch_s) == sorted(jobs.ready_epoch_s)


def test_the_section_replaces_its_own_markers_and_nothing_else(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\n## 4. Triggerer load\n\nkept\n")
    savings.write_section(f"{savings.BEGIN}\nfirst\n{savings.END}\n", results)
    savings.write_section(f"{savings.BEGIN}\nsecond\n{savings.END}\n", results)
    text = results.read_text()
    assert "kept" in text and "second" in text and "first" not in text and text.count(savings.BEGIN) == 1
