"""The day simulator against a real server on a loopback port: its summary is checked against
what the database holds, submission by submission, answers included."""

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
from sim.day import DayReport, RefusalRecord, SubmissionRecord, WorkerRecord
from sim.plan import CHEATS, KINDS, Plan, cheater_counts, make_plan
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
    """Every submission in the database, by id: its worker, status, mock flag, the codes of
    its failed and warned checks, its answers and outcome, and its store's reference."""
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT s.id, u.email, s.status, s.device_is_mock, s.report, t.campaign_id, "
            "s.answers::text AS answers, s.outcome, st.external_ref FROM submission s "
            'JOIN "user" u ON u.id = s.worker_id JOIN task t ON t.id = s.task_id '
            "JOIN store st ON st.id = t.store_id"
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
            "answers": json.loads(row["answers"]),
            "outcome": row["outcome"],
            "store": row["external_ref"],
            "photos": len({c["photo_id"] for c in report if c.get("photo_id")}),
        }
    return stored


async def reservation_states(database_url: str, ids: list[str]) -> list[str]:
    connection = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT state FROM reservation WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
        )
    finally:
        await connection.close()
    return sorted(row["state"] for row in rows)


def truthful(plan: Plan, store: str) -> tuple[dict[str, Any], str | None]:
    """What a worker standing in the shop reports: the plan's truth."""
    shop = next(s for s in plan.shops if s.external_ref == store)
    if shop.closed:
        return {}, "store_closed"
    if not shop.stocked:
        return {"on_shelf": False}, None
    return {"on_shelf": True, "price": shop.price_cents / 100, "facings": shop.facings}, None


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
        assert mine["outcome"] == row["outcome"]
        assert mine["photos"] == row["photos"]
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
        assert table["outcomes"] == dict(Counter(row["outcome"] for row in rows if row["outcome"]))
        assert table["answers_refused"] == sum(r["kind"] == kind for r in outcome["refusals"])


def codes_of(outcome: dict[str, Any], kind: str, outcome_key: str) -> list[set[str]]:
    return [set(s[outcome_key]) for s in outcome["submissions"] if s["kind"] == kind]


async def test_a_day_catches_every_planted_cheat_and_accepts_honest_work(server: Server):
    await truncate(server.database_url)
    status, outcome, stderr = await simulate(
        server, "--workers", "8", "--cheaters-per-kind", "1", "--seed", "11"
    )
    assert status == 0, stderr or outcome["problems"]
    assert outcome["ok"] is True and outcome["problems"] == []
    # 8 workers with 3 stops each over 24 shops: 2 honest workers, 1 cheater of each kind.
    assert outcome["shops"] == 24
    assert {k: (row["workers"], row["submissions"]) for k, row in outcome["kinds"].items()} == {
        "honest": (2, 6),
        "wrong_place": (1, 3),
        "stale": (1, 3),
        "duplicate": (1, 3),
        "mock_location": (1, 3),
        "bad_answers": (1, 0),
        "fake_outcome": (1, 3),
    }
    statuses = {kind: row["statuses"] for kind, row in outcome["kinds"].items()}
    assert statuses == {
        "honest": {"pending_acceptance": 6, "needs_review": 0, "rejected": 0},
        "wrong_place": {"pending_acceptance": 0, "needs_review": 0, "rejected": 3},
        "stale": {"pending_acceptance": 0, "needs_review": 0, "rejected": 3},
        "duplicate": {"pending_acceptance": 0, "needs_review": 0, "rejected": 3},
        "mock_location": {"pending_acceptance": 0, "needs_review": 3, "rejected": 0},
        "bad_answers": {"pending_acceptance": 0, "needs_review": 0, "rejected": 0},
        "fake_outcome": {"pending_acceptance": 0, "needs_review": 0, "rejected": 3},
    }
    # Each cheat is caught by the check made for it (others may join: a copied photo was also
    # taken at another shop; a mock location may jump between shops too fast).
    assert codes_of(outcome, "honest", "failed") == [set()] * 6
    assert codes_of(outcome, "honest", "warned") == [set()] * 6
    for kind in ("wrong_place", "fake_outcome"):
        assert all(
            {"gps.geofence", "device.geofence"} <= c for c in codes_of(outcome, kind, "failed")
        )
    assert all({"time.fresh", "time.window"} <= c for c in codes_of(outcome, "stale", "failed"))
    assert all("duplicate.exact" in c for c in codes_of(outcome, "duplicate", "failed"))
    assert codes_of(outcome, "mock_location", "failed") == [set()] * 3
    assert all("device.mock" in c for c in codes_of(outcome, "mock_location", "warned"))
    # Careless answers are refused, naming the item at fault, and nothing is stored: the
    # worker gave each task back.
    refusals = outcome["refusals"]
    assert [r["kind"] for r in refusals] == ["bad_answers"] * 3
    assert all(r["items"] and set(r["items"]) <= {"price", "facings"} for r in refusals)
    assert outcome["kinds"]["bad_answers"]["answers_refused"] == 3
    assert (
        await reservation_states(server.database_url, [r["reservation_id"] for r in refusals])
        == ["released"] * 3
    )

    stored = await stored_submissions(server.database_url)
    assert_table_matches_database(outcome, stored)
    # What the workers who were in the shop reported is what the shop showed; the closed-shop
    # claims made from home are all "store_closed".
    plan = make_plan(seed=11, workers=8, cheaters_per_kind=1, tasks_per_worker=3)
    kind_of = {w["email"]: w["kind"] for w in outcome["workers"]}
    reported = {kind: [] for kind in KINDS}  # type: dict[str, list[tuple[Any, Any]]]
    for row in stored.values():
        reported[kind_of[row["email"]]].append((row["answers"], row["outcome"]))
        if kind_of[row["email"]] != "fake_outcome":
            assert (row["answers"], row["outcome"]) == truthful(plan, row["store"])
    assert reported["fake_outcome"] == [({}, "store_closed")] * 3
    assert outcome["kinds"]["fake_outcome"]["outcomes"] == {"store_closed": 3}
    # The client closed the campaign at the end of the day: the tasks whose work stands stay
    # submitted; those rejected stay held for the appeal window, never to reopen.
    standing = {s["task_id"] for s in outcome["submissions"] if s["status"] != "rejected"}
    assert len(standing) == 9
    assert await campaign_state(server.database_url, outcome["campaign_id"]) == (
        "cancelled",
        {"submitted": 9, "rejected": 12, "cancelled": 3},
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
            server, "--workers", "7", "--tasks-per-worker", "1", "--seed", "3"
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
        "bad_answers": {"pending_acceptance": 0, "needs_review": 0, "rejected": 0},
        "fake_outcome": {"pending_acceptance": 0, "needs_review": 0, "rejected": 1},
    }
    assert outcome["kinds"]["bad_answers"]["answers_refused"] == 1
    # Every photo uploaded is in the bucket, those of the refused answers too (the
    # housekeeping removes them with their released reservation's grace period).
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    connection = await asyncpg.connect(plain_dsn(server.database_url))
    try:
        uploaded = await connection.fetch("SELECT object_key, reservation_id FROM photo")
    finally:
        await connection.close()
    assert keys == {row["object_key"] for row in uploaded}
    submitted = {s["reservation_id"] for s in outcome["submissions"]}
    assert sum(str(row["reservation_id"]) in submitted for row in uploaded) == sum(
        s["photos"] for s in outcome["submissions"]
    )
    assert_table_matches_database(outcome, await stored_submissions(server.database_url))


def test_too_many_cheaters_for_the_workers_is_refused_before_any_request(capsys):
    # Nothing listens on port 9: a request would fail differently (status 1, not 2).
    assert main(["http://127.0.0.1:9", "--workers", "11", "--cheaters-per-kind", "2"]) == 2
    assert "need at least 12 workers; 11 given" in capsys.readouterr().err
    assert main(["http://127.0.0.1:9", "--workers", "4", "--cheaters-per-kind", "0.5"]) == 2
    assert "need at least 12 workers; 4 given" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["--cheaters-per-kind", "1.5"])
    assert refused.value.code == 2


def test_cheaters_per_kind_as_a_count_or_a_fraction_of_the_workers():
    assert (per_kind(2, 20), per_kind(0.1, 20), per_kind(0.25, 10), per_kind(0, 20)) == (2, 2, 2, 0)
    plan = make_plan(seed=5, workers=20, cheaters_per_kind=2, tasks_per_worker=3)
    assert Counter(p.kind for p in plan.personas) == {"honest": 8, **dict.fromkeys(CHEATS, 2)}
    assert len(plan.shops) == 60
    assert make_plan(seed=5, workers=20, cheaters_per_kind=2, tasks_per_worker=3) == plan
    assert cheater_counts(6, 1) == {"honest": 0, **dict.fromkeys(CHEATS, 1)}
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


def test_wrong_answers_must_be_refused_and_only_wrong_answers():
    report = DayReport(seed=1, run_id="r", district="d", organization="o", campaign_id="c", shops=3)
    report.workers = [
        WorkerRecord(0, "A", "a@x", "honest"),
        WorkerRecord(1, "B", "b@x", "bad_answers"),
    ]
    report.submissions = [record("honest", "pending_acceptance", 1)]
    # Refused answers are the catch: nothing else was submitted, and that is a success.
    report.refusals = [RefusalRecord("bad_answers", 1, "t2", "r2", ["price"])]
    assert problems(report) == []
    rows = {line.split()[0]: line.split()[1:] for line in as_table(report).splitlines()[2:10]}
    assert rows["kind"][:7] == [
        "workers",
        "submitted",
        "pending_acceptance",
        "needs_review",
        "rejected",
        "answers_refused",
        "outcomes",
    ]
    assert rows["honest"] == ["1", "1", "1", "0", "0", "0", "-", "-"]
    assert rows["bad_answers"] == ["1", "0", "0", "0", "0", "1", "-", "-"]
    # Wrong answers taken (even if the checks then flagged the visit), or an honest worker's
    # answers refused, fail the day.
    report.submissions.append(record("bad_answers", "needs_review", 3))
    report.refusals.append(RefusalRecord("honest", 0, "t4", "r4", ["facings"]))
    assert problems(report) == [
        "honest answers for task t4 were refused (facings)",
        "wrong answers were taken: submission s3",
    ]
    report.submissions, report.refusals = [record("honest", "pending_acceptance", 1)], []
    assert problems(report) == ["no bad_answers cheat was submitted: nothing to catch"]
