"""Judging a Flink job from its REST answers, and what a waiter does with each judgement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_mesh.processors.health import Health, HealthPolicy, HealthWatch, Verdict, assess, checkpoint_age

NOW = 1_800_000_000_000  # the JobManager's clock, in ms


def job(state: str = "RUNNING", *vertices: str, started_ms_ago: int = 60_000) -> dict:
    return {"jid": "j1", "name": "orders", "state": state, "now": NOW, "start-time": NOW - started_ms_ago,
            "vertices": [{"id": str(i), "status": status} for i, status in enumerate(vertices or ("RUNNING",))]}


def checkpoints(completed_ms_ago: int | None) -> dict:
    completed = None if completed_ms_ago is None else {"id": 7, "latest_ack_timestamp": NOW - completed_ms_ago}
    return {"counts": {}, "latest": {"completed": completed, "savepoint": None, "failed": None, "restored": None}}


@pytest.mark.parametrize(
    ("answer", "restarts", "expected", "reason"),
    [
        (job("RUNNING", "RUNNING", "RUNNING"), 0, Health.HEALTHY, None),
        (job("RUNNING", "RUNNING", "INITIALIZING"), 0, Health.PENDING, "1 of 2 vertices RUNNING"),
        (job("RUNNING", "CREATED"), 0, Health.PENDING, "0 of 1 vertices RUNNING"),  # RUNNING before its tasks
        (job("INITIALIZING", "CREATED"), 0, Health.PENDING, "0 of 1 vertices RUNNING"),
        (job("RESTARTING", "CANCELED"), 1, Health.PENDING, "0 of 1 vertices RUNNING"),
        (job("RUNNING", "RUNNING"), 2, Health.FAILED, "it restarted 2 times, more than the 1 allowed"),
        (job("FAILED", "FAILED"), 0, Health.FAILED, "the job is FAILED, it no longer runs"),
        (job("FINISHED", "FINISHED"), 0, Health.FAILED, "the job is FINISHED, it no longer runs"),
        (job("CANCELLING", "CANCELING"), 0, Health.FAILED, "the job is CANCELLING, it no longer runs"),
    ],
)
def test_assess(answer, restarts, expected, reason):
    health = assess(answer, restarts, HealthPolicy(max_restarts=1))
    assert health.health is expected
    assert health.reasons == ((reason,) if reason else ())


def test_summary_and_failure_message():
    health = assess(job("FAILED", "FAILED", "CANCELED"), 0, HealthPolicy())
    assert health.summary() == ("Flink job orders (j1) is FAILED, vertices: 1 CANCELED, 1 FAILED; restarts: 0 "
                                "(the job is FAILED, it no longer runs)")
    assert health.failure_message() == health.summary()


class TestCheckpointAge:
    def test_since_the_latest_completed_checkpoint(self):
        assert checkpoint_age(job(), checkpoints(4_500)) == 4.5

    def test_since_the_start_when_none_completed(self):
        assert checkpoint_age(job(started_ms_ago=2_000), checkpoints(None)) == 2.0

    def test_a_stale_checkpoint_keeps_the_job_pending(self):
        health = assess(job(), 0, HealthPolicy(max_checkpoint_age=30), checkpoints(45_000))
        assert (health.health, health.reasons) == (Health.PENDING, ("no checkpoint completed in the last 30s",))
        assert "latest checkpoint 45s ago" in health.summary()

    def test_a_fresh_job_without_a_checkpoint_yet_is_healthy(self):
        health = assess(job(started_ms_ago=3_000), 0, HealthPolicy(max_checkpoint_age=30), checkpoints(None))
        assert health.health is Health.HEALTHY

    def test_not_checked_without_a_threshold(self):
        health = assess(job(), 0, HealthPolicy(), checkpoints(10**9))
        assert (health.health, health.checkpoint_age) == (Health.HEALTHY, None)


def health_of(state: str, job_id: str = "j1"):
    answer = {**job(state, "RUNNING" if state == "RUNNING" else "CREATED"), "jid": job_id}
    return assess(answer, 0, HealthPolicy())


class TestHealthWatch:
    def test_healthy_must_hold_for_the_whole_window(self):
        watch = HealthWatch(healthy_for=5)
        assert watch.observe(health_of("RUNNING"), 0) is Verdict.WAIT
        assert watch.observe(health_of("RUNNING"), 4.9) is Verdict.WAIT
        assert watch.observe(health_of("RUNNING"), 5.0) is Verdict.DONE

    def test_a_pending_observation_restarts_the_window(self):
        watch = HealthWatch(healthy_for=5)
        watch.observe(health_of("RUNNING"), 0)
        assert watch.observe(health_of("INITIALIZING"), 3) is Verdict.WAIT
        assert watch.observe(health_of("RUNNING"), 4) is Verdict.WAIT
        assert watch.observe(health_of("RUNNING"), 9) is Verdict.DONE

    def test_another_job_under_the_same_name_restarts_the_window(self):
        watch = HealthWatch(healthy_for=5)
        watch.observe(health_of("RUNNING", "old"), 0)
        assert watch.observe(health_of("RUNNING", "new"), 6) is Verdict.WAIT
        assert watch.observe(health_of("RUNNING", "new"), 11) is Verdict.DONE

    def test_a_failure_ends_the_wait_at_once(self):
        watch = HealthWatch(healthy_for=5)
        watch.observe(health_of("RUNNING"), 0)
        assert watch.observe(health_of("FAILED"), 1) is Verdict.FAIL

    @given(st.lists(st.sampled_from(["RUNNING", "INITIALIZING", "RESTARTING"]), min_size=1),
           st.floats(min_value=0, max_value=10))
    def test_done_only_after_healthy_for_consecutive_seconds(self, states, healthy_for):
        watch, streak_start = HealthWatch(healthy_for=healthy_for), None
        for second, state in enumerate(states):
            verdict = watch.observe(health_of(state), float(second))
            streak_start = (second if streak_start is None else streak_start) if state == "RUNNING" else None
            done = streak_start is not None and second - streak_start >= healthy_for
            assert verdict is (Verdict.DONE if done else Verdict.WAIT)
