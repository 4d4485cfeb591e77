"""The day simulator against a real server on a loopback port: its summary is checked against
what the database holds, submission by submission."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI

from api.main import create_app
from sim.day import DayReport, SubmissionRecord, WorkerRecord
from sim.plan import CHEATS, KINDS, cheater_counts, make_plan
from sim.run import main, per_kind
from sim.summary import as_table, problems
from tests.conftest import ROOT, free_port, make_settings, plain_dsn, serving, truncate
from tests.s3server import S3TestServer, s3_server

__all__ = ["s3_server"]


@dataclass
class Server:
    url: str
    app: FastAPI
    database_url: str


@pytest.fixture(scope="module")
def server(test_database_url: str, tmp_path_factory) -> Iterator[Server]:
    """Like ``live_server``, but the local store's upload URLs point at this server itself: the
    simulator sends the bytes over real HTTP."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(
        test_database_url, str(tmp_path_factory.mktemp("objects")), connections=25
    )
    settings = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"public_base_url": url})}
    )
    app = create_app(settings)
    with serving(app, port):
        yield Server(url, app, test_database_url)


async def simulate(server: Server, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``python -m sim`` as a user would; returns its status, JSON and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim.run",
        server.url,
        "--json",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, json.loads(out) if out else {}, err.decode()


async def stored_submissions(database_url: str) -> dict[str, dict[str, Any]]:
    """Every submission in the database, by id: its worker, status, mock flag and the codes of
    its failed and warned checks."""
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT s.id, u.email, s.status, s.device_is_mock, s.report, t.campaign_id FROM "
            'submission s JOIN "user" u ON u.id = s.worker_id JOIN task t ON t.id = s.task_id'
        )
    finally:
        await connection.close()
    stored = {}
    for row in rows:
        report = json.loads(row["report"]) if isinstance(row["report"], str) else row["report"]
        stored[str(row["id"])] = {
            "email": row["email"],
            "status": row["status"],
            "is_mock": row["device_is_mock"],
            "campaign_id": str(row["campaign_id"]),
            "failed": sorted(c["code"] for c in report if c["outcome"] == "fail"),
            "warned": sorted(c["code"] for c in report if c["outcome"] == "warn"),
        }
    return stored


async def campaign_state(database_url: str, campaign_id: str) -> tuple[str, dict[str, int]]:
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        status = await connection.fetchval(
            "SELECT status FROM campaign WHERE id = $1", uuid.UUID(campaign_id)
        )
        tasks = await connection.fetch(
            "SELECT status, count(*) AS n FROM task WHERE campaign_id = $1 GROUP BY status",
            uuid.UUID(campaign_id),
        )
    finally:
        await connection.close()
    return status, {row["status"]: row["n"] for row in tasks}


def assert_table_matches_database(outcome: dict[str, Any], stored: dict[str, dict[str, Any]]):
    """The simulator's per-submission records are what the database holds, and its per-kind
    table is their sum."""
    kind_of = {w["email"]: w["kind"] for w in outcome["workers"]}
    reported = {s["submission_id"]: s for s in outcome["submissions"]}
    assert set(reported) == set(stored)
    for submission_id, row in stored.items():
        mine = reported[submission_id]
        assert mine["kind"] == kind_of[row["email"]]
        assert mine["status"] == row["status"]
        assert sorted(mine["failed"]) == row["failed"]
        assert sorted(mine["warned"]) == row["warned"]
        assert row["is_mock"] is (mine["kind"] == "mock_location")
        assert row["campaign_id"] == outcome["campaign_id"]
    for kind in KINDS:
        rows = [row for row in stored.values() if kind_of[row["email"]] == kind]
        table = outcome["kinds"][kind]
        assert table["submissions"] == len(rows)
        assert table["statuses"] == {
            status: sum(row["status"] == status for row in rows)
            for status in ("pending_acceptance", "needs_review", "rejected")
        }
        assert table["failed"] == dict(Counter(c for row in rows for c in row["failed"]))
        assert table["warned"] == dict(Counter(c for row in rows for c in row["warned"]))


def codes_of(outcome: dict[str, Any], kind: str, outcome_key: str) -> list[set[str]]:
    return [set(s[outcome_key]) for s in outcome["submissions"] if s["kind"] == kind]


async def test_a_day_catches_every_planted_cheat_and_accepts_honest_work(server: Server):
    await truncate(server.database_url)
    status, outcome, stderr = await simulate(
        server, "--workers", "6", "--cheaters-per-kind", "1", "--seed", "11"
    )
    assert status == 0, stderr or outcome["problems"]
    assert outcome["ok"] is True and outcome["problems"] == []
    # 6 workers with 3 stops each over 18 shops: 2 honest workers, 1 cheater of each kind.
    assert outcome["shops"] == 18
    assert {k: (row["workers"], row["submissions"]) for k, row in outcome["kinds"].items()} == {
        "honest": (2, 6),
        "wrong_place": (1, 3),
        "stale": (1, 3),
        "duplicate": (1, 3),
        "mock_location": (1, 3),
    }
    statuses = {kind: row["statuses"] for kind, row in outcome["kinds"].items()}
    assert statuses == {
        "honest": {"pending_acceptance": 6, "needs_review": 0, "rejected": 0},
        "wrong_place": {"pending_acceptance": 0, "needs_review": 0, "rejected": 3},
        "stale": {"pending_acceptance": 0, "needs_review": 0, "rejected": 3},
        "duplicate": {"pending_acceptance": 0, "needs_review": 0, "rejected": 3},
        "mock_location": {"pending_acceptance": 0, "needs_review": 3, "rejected": 0},
    }
    # Each cheat is caught by the check made for it (others may join: a copied photo was also
    # taken at another shop; a mock location may jump between shops too fast).
    assert codes_of(outcome, "honest", "failed") == [set()] * 6
    assert codes_of(outcome, "honest", "warned") == [set()] * 6
    assert all(
        {"gps.geofence", "device.geofence"} <= c for c in codes_of(outcome, "wrong_place", "failed")
    )
    assert all({"time.fresh", "time.window"} <= c for c in codes_of(outcome, "stale", "failed"))
    assert all("duplicate.exact" in c for c in codes_of(outcome, "duplicate", "failed"))
    assert codes_of(outcome, "mock_location", "failed") == [set()] * 3
    assert all("device.mock" in c for c in codes_of(outcome, "mock_location", "warned"))

    assert_table_matches_database(outcome, await stored_submissions(server.database_url))
    # The client closed the campaign at the end of the day: the tasks whose work stands stay
    # submitted; those rejected stay held for the appeal window, never to reopen.
    standing = {s["task_id"] for s in outcome["submissions"] if s["status"] != "rejected"}
    assert len(standing) == 9
    assert await campaign_state(server.database_url, outcome["campaign_id"]) == (
        "cancelled",
        {"submitted": 9, "rejected": 18 - 9},
    )


async def test_photos_go_straight_to_s3_with_the_granted_headers(
    server: Server, s3_server: S3TestServer
):
    await truncate(server.database_url)
    bucket = f"terrain-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    local = server.app.state.object_store
    server.app.state.object_store = s3_server.store(bucket)
    try:
        status, outcome, stderr = await simulate(
            server, "--workers", "5", "--tasks-per-worker", "1", "--seed", "3"
        )
    finally:
        server.app.state.object_store = local
    assert status == 0, stderr or outcome["problems"]
    assert {k: row["statuses"] for k, row in outcome["kinds"].items()} == {
        "honest": {"pending_acceptance": 1, "needs_review": 0, "rejected": 0},
        "wrong_place": {"pending_acceptance": 0, "needs_review": 0, "rejected": 1},
        "stale": {"pending_acceptance": 0, "needs_review": 0, "rejected": 1},
        "duplicate": {"pending_acceptance": 0, "needs_review": 0, "rejected": 1},
        "mock_location": {"pending_acceptance": 0, "needs_review": 1, "rejected": 0},
    }
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert len(keys) == 5  # one photo per submission, every one in the bucket
    assert_table_matches_database(outcome, await stored_submissions(server.database_url))


def test_too_many_cheaters_for_the_workers_is_refused_before_any_request(capsys):
    # Nothing listens on port 9: a request would fail differently (status 1, not 2).
    assert main(["http://127.0.0.1:9", "--workers", "7", "--cheaters-per-kind", "2"]) == 2
    assert "need at least 8 workers; 7 given" in capsys.readouterr().err
    assert main(["http://127.0.0.1:9", "--workers", "4", "--cheaters-per-kind", "0.5"]) == 2
    assert "need at least 8 workers; 4 given" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["--cheaters-per-kind", "1.5"])
    assert refused.value.code == 2


def test_cheaters_per_kind_as_a_count_or_a_fraction_of_the_workers():
    assert (per_kind(2, 20), per_kind(0.1, 20), per_kind(0.25, 10), per_kind(0, 20)) == (2, 2, 2, 0)
    plan = make_plan(seed=5, workers=20, cheaters_per_kind=2, tasks_per_worker=3)
    assert Counter(p.kind for p in plan.personas) == {"honest": 12, **dict.fromkeys(CHEATS, 2)}
    assert len(plan.shops) == 60
    assert make_plan(seed=5, workers=20, cheaters_per_kind=2, tasks_per_worker=3) == plan
    assert cheater_counts(4, 1) == {"honest": 0, **dict.fromkeys(CHEATS, 1)}
    assert cheater_counts(5, 0) == {"honest": 5, **dict.fromkeys(CHEATS, 0)}


def record(kind: str, status: str, n: int) -> SubmissionRecord:
    return SubmissionRecord(kind, 0, f"t{n}", f"r{n}", f"s{n}", "accepted", status, [], [])  # type: ignore[arg-type]


def test_an_accepted_cheat_or_a_flagged_honest_submission_fails_the_day():
    report = DayReport(seed=1, run_id="r", district="d", organization="o", campaign_id="c", shops=2)
    report.workers = [WorkerRecord(0, "A", "a@x", "honest"), WorkerRecord(1, "B", "b@x", "stale")]
    report.submissions = [record("honest", "pending_acceptance", 1), record("stale", "rejected", 2)]
    assert problems(report) == []
    assert as_table(report).endswith("every honest submission accepted (pending_acceptance).")
    report.submissions = [
        record("honest", "needs_review", 1),
        record("stale", "pending_acceptance", 2),
    ]
    assert problems(report) == [
        "honest submission s1 is needs_review (no failing check)",
        "stale cheat s2 was accepted",
    ]
    assert as_table(report).splitlines()[-3:] == [
        "NOT OK:",
        "  - honest submission s1 is needs_review (no failing check)",
        "  - stale cheat s2 was accepted",
    ]
    report.submissions = [record("honest", "pending_acceptance", 1)]
    assert problems(report) == ["no stale cheat was submitted: nothing to catch"]
