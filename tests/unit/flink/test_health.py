"""Judging a Flink job from its REST answers, on Flink's own clock, with no memory between observations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_mesh.flink.health import (
    NO_CHECKPOINTING,
    Health,
    HealthPolicy,
    Observation,
    SourceProgress,
    Verdict,
    assess,
    checkpoint_age,
    checkpoint_interval,
)

NOW = 1_800_000_000_000  # the JobManager's clock, in ms
S = 1000


def job(state: str = "RUNNING", *vertices: str, running_since: int = 600 * S) -> dict:
    """A ``GET /jobs/{id}`` answer; ``running_since`` ms ago the job last became RUNNING."""
    return {"jid": "j1", "name": "orders", "state": state, "now": NOW, "start-time": NOW - 900 * S,
            "timestamps": {"RUNNING": NOW - running_since, "CREATED": NOW - 900 * S, "FAILED": 0},
            "vertices": [{"id": str(i), "status": status} for i, status in enumerate(vertices or ("RUNNING",))]}


def checkpoints(ack_ago: int | None, checkpoint_id: int = 7) -> dict:
    completed = None if ack_ago is None else {"id": checkpoint_id, "latest_ack_timestamp": NOW - ack_ago,
                                              "external_path": f"file:/cp/j1/chk-{checkpoint_id}"}
    return {"counts": {}, "latest": {"completed": completed, "savepoint": None, "failed": None, "restored": None}}


def failures(*ago: int) -> list[dict]:
    return [{"exceptionName": "java.lang.Exception", "timestamp": NOW - a} for a in sorted(ago)]


def observe(answer: dict | None = None, *, restarts: int = 0, exceptions: list[dict] | None = None,
            ack_ago: int | None = 2 * S, interval: float | None = 10.0) -> Observation:
    return Observation(answer or job(), restarts, exceptions or [],
                       checkpoints(ack_ago) if interval is not None else None, interval)


POLICY = HealthPolicy(max_restarts=3, restart_window=600, healthy_for=5)


@pytest.mark.parametrize(
    ("answer", "expected", "reason"),
    [
        (job("RUNNING", "RUNNING", "RUNNING"), Health.HEALTHY, None),
        (job("RUNNING", "RUNNING", "INITIALIZING"), Health.PENDING, "1 of 2 vertices RUNNING"),
        (job("RUNNING", "CREATED"), Health.PENDING, "0 of 1 vertices RUNNING"),  # RUNNING before its tasks
        (job("INITIALIZING", "CREATED"), Health.PENDING, "0 of 1 vertices RUNNING"),
        (job("RESTARTING", "CANCELED"), Health.PENDING, "0 of 1 vertices RUNNING"),
        (job("FAILED", "FAILED"), Health.FAILED, "the job is FAILED, it no longer runs"),
        (job("FINISHED", "FINISHED"), Health.FAILED, "the job is FINISHED, it no longer runs"),
        (job("CANCELLING", "CANCELING"), Health.FAILED, "the job is CANCELLING, it no longer runs"),
    ],
)
def test_states(answer, expected, reason):
    health = assess(observe(answer), POLICY)
    assert health.health is expected
    assert health.reasons == ((reason,) if reason else ())


class TestRestarts:
    def test_a_job_that_recovered_by_itself_is_healthy_whatever_flinks_count(self):
        # A TaskManager loss: five failures while Flink waited for slots, then a checkpoint after the last.
        health = assess(observe(restarts=5, exceptions=failures(60 * S, 55 * S, 50 * S, 45 * S, 40 * S)), POLICY)
        assert health.health is Health.HEALTHY
        assert health.recent_failures == 5
        assert health.notes == ("recovered: 5 failures in the last 600s, checkpoint 7 completed after the latest",)
        assert health.verdict() is Verdict.DONE

    def test_failing_over_and_over_without_a_checkpoint_is_a_failure(self):
        health = assess(observe(restarts=4, exceptions=failures(9 * S, 7 * S, 5 * S, 3 * S), ack_ago=20 * S), POLICY)
        assert health.health is Health.FAILED
        assert health.reasons == ("it failed 4 times in the last 600s, more than the 3 allowed",)
        assert health.verdict() is Verdict.FAIL

    def test_failures_older_than_the_window_do_not_count(self):
        old = failures(4000 * S, 3000 * S, 2000 * S, 1000 * S, 700 * S)
        health = assess(observe(restarts=5, exceptions=old, interval=None), POLICY)
        assert (health.health, health.recent_failures) == (Health.HEALTHY, 0)

    def test_without_checkpointing_recent_failures_over_the_limit_fail(self):
        health = assess(observe(restarts=4, exceptions=failures(90 * S, 80 * S, 70 * S, 60 * S), interval=None),
                        POLICY)
        assert health.health is Health.FAILED


class TestHealthyFor:
    def test_counted_from_the_latest_failure(self):
        health = assess(observe(exceptions=failures(3 * S), ack_ago=1 * S), POLICY)
        assert health.health is Health.HEALTHY
        assert health.healthy_seconds == 3.0
        assert health.verdict() is Verdict.WAIT
        assert health.waiting_for() == ("healthy for 3s of 5s; waiting for a checkpoint to complete after the job "
                                        "became healthy")

    def test_counted_from_the_start_of_the_wait(self):
        health = assess(observe(ack_ago=1 * S), POLICY, since_ms=NOW - 4 * S)
        assert (health.healthy_seconds, health.verdict()) == (4.0, Verdict.WAIT)
        assert assess(observe(ack_ago=1 * S), POLICY, since_ms=NOW - 6 * S).verdict() is Verdict.DONE

    def test_a_checkpoint_must_complete_after_the_healthy_period(self):
        # A TaskManager killed as the wait began: every vertex still RUNNING (Flink has not noticed
        # yet), but no checkpoint completes any more. The wait must not end.
        health = assess(observe(ack_ago=8 * S), POLICY, since_ms=NOW - 7 * S)
        assert health.health is Health.HEALTHY
        assert not health.checkpoint_proves
        assert health.verdict() is Verdict.WAIT
        assert "waiting for a checkpoint to complete" in health.waiting_for()

    def test_without_checkpointing_time_alone_decides(self):
        health = assess(observe(interval=None), POLICY, since_ms=NOW - 6 * S)
        assert (health.checkpoint_age, health.checkpoint_proves, health.verdict()) == (None, True, Verdict.DONE)


class TestCheckpointAge:
    def test_bounded_by_a_multiple_of_the_jobs_interval(self):
        health = assess(observe(ack_ago=31 * S, interval=10.0), POLICY)
        assert health.health is Health.PENDING
        assert health.reasons == (("no checkpoint completed in the last 31s (more than 30s, the job checkpoints "
                                  "every 10s)"),)

    def test_within_the_bound(self):
        assert assess(observe(ack_ago=29 * S, interval=10.0), POLICY).health is Health.HEALTHY

    def test_an_explicit_limit_wins(self):
        policy = HealthPolicy(max_checkpoint_age=100)
        assert assess(observe(ack_ago=90 * S, interval=10.0), policy).health is Health.HEALTHY

    def test_none_since_the_job_became_running_counts_from_then(self):
        health = assess(observe(job(running_since=45 * S), ack_ago=200 * S, interval=10.0), POLICY)
        assert health.checkpoint_age == 45.0
        assert health.health is Health.PENDING

    def test_off_when_the_factor_is_none(self):
        policy = HealthPolicy(checkpoint_age_factor=None)
        assert assess(observe(ack_ago=10**6, interval=10.0), policy).health is Health.HEALTHY

    def test_age_since_the_latest_or_the_start(self):
        answer = job()
        assert checkpoint_age(answer, checkpoints(4_500)) == 4.5
        assert checkpoint_age(answer, checkpoints(None)) == 900.0


class TestProgress:
    def observe_sources(self, *sources: SourceProgress) -> Observation:
        return Observation(job(), 0, [], checkpoints(1 * S), 10.0, sources)

    def test_a_source_with_records_waiting_that_reads_none_is_stalled(self):
        stalled = self.observe_sources(SourceProgress("Source__orders[1]", 1200, 0.0),
                                       SourceProgress("Source__customers[2]", 0, 0.0))
        health = assess(stalled, HealthPolicy(progress_check=True))
        assert health.health is Health.PENDING
        assert health.reasons == (
            "source Source__orders[1] has 1200 records waiting and read none in the last minute",
        )

    def test_reading_or_caught_up_is_progress(self):
        flowing = self.observe_sources(SourceProgress("Source__orders[1]", 30, 20.5),
                                       SourceProgress("Source__customers[2]", 0, 0.0))
        assert assess(flowing, HealthPolicy(progress_check=True)).health is Health.HEALTHY

    def test_off_by_default(self):
        stalled = self.observe_sources(SourceProgress("Source__orders[1]", 1200, 0.0))
        assert assess(stalled, HealthPolicy()).health is Health.HEALTHY


@pytest.mark.parametrize(("config", "expected"), [
    ({"interval": 10_000}, 10.0),
    ({"interval": NO_CHECKPOINTING}, None),
    ({"interval": 0}, None),
    (None, None),
])
def test_checkpoint_interval(config, expected):
    assert checkpoint_interval(config) == expected


def test_summary_names_the_job_its_vertices_and_why():
    health = assess(observe(job("FAILED", "FAILED", "CANCELED"), restarts=2, exceptions=failures(5 * S)), POLICY)
    assert health.summary() == ("Flink job orders (j1) is FAILED, vertices: 1 CANCELED, 1 FAILED; restarts: 2 "
                                "(1 recent); latest checkpoint 2s ago (the job is FAILED, it no longer runs)")
    assert health.failure_message() == health.summary()


vertex_state = st.sampled_from(["RUNNING", "CREATED", "SCHEDULED", "DEPLOYING", "INITIALIZING", "FAILED"])


@given(
    vertices=st.lists(vertex_state, min_size=1, max_size=4),
    state=st.sampled_from(["RUNNING", "RESTARTING", "FAILED", "CANCELED", "CREATED"]),
    failure_ago=st.lists(st.integers(0, 2000), max_size=6),
    ack_ago=st.none() | st.integers(0, 2000),
    since_ago=st.none() | st.integers(0, 2000),
    interval=st.none() | st.sampled_from([1.0, 5.0, 10.0]),
    healthy_for=st.sampled_from([0.0, 5.0, 30.0]),
)
def test_a_wait_never_ends_without_proof(vertices, state, failure_ago, ack_ago, since_ago, interval, healthy_for):
    """DONE only when everything runs, long enough, and (with checkpoints) a checkpoint proves it after."""
    policy = HealthPolicy(healthy_for=healthy_for)
    answer = job(state, *vertices)
    observation = Observation(answer, len(failure_ago), failures(*(a * S for a in failure_ago)),
                              checkpoints(None if ack_ago is None else ack_ago * S), interval)
    since = None if since_ago is None else NOW - since_ago * S
    health = assess(observation, policy, since)
    if health.verdict() is Verdict.DONE:
        assert state == "RUNNING" and set(vertices) == {"RUNNING"}
        latest_failure = max((NOW - a * S for a in failure_ago), default=0)
        start = max(latest_failure, since or 0, answer["timestamps"]["RUNNING"])
        assert NOW - start >= healthy_for * S
        if interval is not None:
            assert ack_ago is not None and NOW - ack_ago * S >= start + healthy_for * S
    if state in {"FAILED", "CANCELED"}:
        assert health.verdict() is Verdict.FAIL
