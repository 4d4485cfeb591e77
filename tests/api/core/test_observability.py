"""Metrics at /metrics, the request id and the JSON logs.

/readyz answering 503 with Retry-After while the object store is down is asserted in
tests/api/test_faults.py (the object-store outage test), not repeated here.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import sys
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from anyio import to_thread
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError
from sqlalchemy import text

from api.background.housekeeping import sweep_once
from api.core.deps import Public
from api.core.models import Role
from api.core.observability import (
    BatchingStreamHandler,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    job_queue_families,
    on_commit,
)
from api.core.settings import ObservabilitySettings
from api.main import create_app
from tests.api.submissions.test_photos import STORE, device_fix, shelf_photo
from tests.api.test_authorization import _all_routes
from tests.validation.photos import point_at

Series = dict[tuple[str, ...], float]


def series(text_format: str, name: str, *labels: str) -> Series:
    """The samples called ``name``, keyed by the values of ``labels`` in that order."""
    found: Series = {}
    for family in text_string_to_metric_families(text_format):
        for sample in family.samples:
            if sample.name == name:
                assert set(sample.labels) == set(labels), sample
                found[tuple(sample.labels[label] for label in labels)] = sample.value
    return found


async def scrape(http: httpx.AsyncClient) -> str:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


class Calls:
    """Requests made through the test client, with the route template each should be counted
    under and the status it must get."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.expected: Counter[tuple[str, str, str]] = Counter()

    async def __call__(
        self, method: str, url: str, template: str, status: int, **kwargs: Any
    ) -> httpx.Response:
        response = await self.http.request(method, url, **kwargs)
        assert response.status_code == status, response.text
        self.expected[(method, template, str(status))] += 1
        return response


async def test_requests_and_domain_outcomes_are_counted_by_route_template(http, factory, db):
    sent = 0

    async def count_sent(response: httpx.Response) -> None:
        nonlocal sent
        sent += 1

    http.event_hooks["response"] = [count_sent]
    call = Calls(http)
    client = await factory.account(Role.client)
    first, second, third = [await factory.account(Role.worker) for _ in range(3)]
    store_ids = [await factory.store(client.organization_id, lat=STORE[0], lon=STORE[1])]
    nearby_points = [point_at(*STORE, 60 * i, bearing=90) for i in (1, 2, 3)]
    store_ids += await factory.stores_at(client.organization_id, nearby_points)
    _, (shelf_task, task, route_task, spare_task) = await factory.campaign(client, store_ids)

    lat, lon = STORE
    await call(
        "GET", f"/v1/tasks/nearby?lat={lat}&lon={lon}", "/v1/tasks/nearby", 200,
        headers=first.headers,
    )  # fmt: skip
    reserve = "/v1/tasks/{task_id}/reservations"
    task_url = f"/v1/tasks/{task}/reservations"
    held = await call("POST", task_url, reserve, 201, headers=first.headers)
    lost = await call("POST", task_url, reserve, 409, headers=second.headers)
    assert lost.json()["code"] == "task_taken"
    await call("POST", "/v1/tasks/not-a-task/reservations", reserve, 422, headers=first.headers)
    release = "/v1/reservations/{reservation_id}"
    url = f"/v1/reservations/{held.json()['id']}"
    await call("DELETE", url, release, 204, headers=first.headers)
    await call("DELETE", url, release, 204, headers=first.headers)  # a retry releases nothing
    route = {"task_ids": [str(route_task)], "start": {"lat": lat, "lon": lon}}
    await call("POST", "/v1/routes/reserve", "/v1/routes/reserve", 201, headers=second.headers,
               json=route)  # fmt: skip
    clash = await call("POST", "/v1/routes/reserve", "/v1/routes/reserve", 409,
                       headers=third.headers, json=route)  # fmt: skip
    assert clash.json()["code"] == "tasks_taken"
    await call("GET", "/v1/no-such-thing", "unmatched", 404)

    # A submission, photo granted, uploaded, checked, then submitted.
    reservation = await call(
        "POST", f"/v1/tasks/{shelf_task}/reservations", reserve, 201, headers=first.headers
    )
    reservation_id = reservation.json()["id"]
    photo = shelf_photo()
    grant = await call(
        "POST",
        f"/v1/reservations/{reservation_id}/photos",
        "/v1/reservations/{reservation_id}/photos",
        201,
        headers=first.headers,
        json={
            "content_type": "image/jpeg",
            "size_bytes": len(photo),
            "sha256": hashlib.sha256(photo).hexdigest(),
        },
    )
    upload = grant.json()["upload"]
    assert upload["url"].startswith("http://terrain.test/v1/uploads/")
    await call("PUT", upload["url"], "/v1/uploads/{token}", 201, headers=upload["headers"],
               content=photo)  # fmt: skip
    photo_id = grant.json()["photo"]["id"]
    await call(
        "POST",
        f"/v1/reservations/{reservation_id}/photos/{photo_id}/complete",
        "/v1/reservations/{reservation_id}/photos/{photo_id}/complete",
        200,
        headers=first.headers,
    )
    submitted = await call(
        "POST",
        f"/v1/reservations/{reservation_id}/submit",
        "/v1/reservations/{reservation_id}/submit",
        201,
        headers=first.headers | {"Idempotency-Key": f"key-{uuid.uuid4()}"},
        json=device_fix(),
    )
    submission = submitted.json()
    assert submission["verdict"] == "accepted"
    assigned = await call("POST", "/v1/assignments", "/v1/assignments", 201,
                          headers=third.headers, json={"lat": lat, "lon": lon})  # fmt: skip
    assert assigned.json()["reservation"]["task_id"] in (str(task), str(spare_task))

    exposition = await scrape(http)
    assert sent == sum(call.expected.values()) + 1
    requests = series(exposition, "terrain_http_requests_total", "method", "route", "status")
    assert requests == {key: float(n) for key, n in call.expected.items()}
    durations = series(exposition, "terrain_http_request_duration_seconds_count", "method", "route")
    by_route: Counter[tuple[str, str]] = Counter()
    for (method, template, _), n in call.expected.items():
        by_route[(method, template)] += n
    assert durations == {key: float(n) for key, n in by_route.items()}
    assert sum(durations.values()) == sent - 1  # every request but this scrape, once
    # Created: the first hold, the route, the shelf task, the assignment; taken: the lost
    # reservation and the clashing route; released once, however often it was asked.
    assert series(exposition, "terrain_reservations_total", "outcome") == {
        ("created",): 4.0,
        ("taken",): 2.0,
        ("released",): 1.0,
    }
    assert series(exposition, "terrain_validations_total", "verdict") == {("accepted",): 1.0}
    checks = Counter((check["code"], check["outcome"]) for check in submission["report"])
    assert len(checks) >= 10  # per-photo and submission-level checks
    assert series(exposition, "terrain_validation_checks_total", "check", "outcome") == {
        key: float(n) for key, n in checks.items()
    }

    # The scrape itself is counted, in the next one.
    again = await scrape(http)
    assert (
        series(again, "terrain_http_requests_total", "method", "route", "status")[
            ("GET", "/metrics", "200")
        ]
        == 1.0
    )
    assert series(again, "process_cpu_seconds_total")[()] > 0


async def test_an_assignment_is_counted_once_with_its_route(settings, factory):
    app = create_app(settings)
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    await factory.campaign(client, await factory.stores_at(client.organization_id, [STORE]))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://terrain.test"
        ) as http,
    ):
        assigned = await http.post(
            "/v1/assignments", headers=worker.headers, json={"lat": STORE[0], "lon": STORE[1]}
        )
        assert assigned.status_code == 201, assigned.text
        exposition = await scrape(http)
    assert series(exposition, "terrain_http_requests_total", "method", "route", "status") == {
        ("POST", "/v1/assignments", "201"): 1.0
    }
    assert series(exposition, "terrain_reservations_total", "outcome") == {("created",): 1.0}


async def test_the_sweep_counts_the_reservations_it_expires(http, app, factory, db):
    client = await factory.account(Role.client)
    worker = await factory.account(Role.worker)
    stores = await factory.stores_at(client.organization_id, [(48.85, 2.35), (48.851, 2.351)])
    _, tasks = await factory.campaign(client, stores)
    for task_id in tasks:
        response = await http.post(f"/v1/tasks/{task_id}/reservations", headers=worker.headers)
        assert response.status_code == 201
    await db.execute("UPDATE reservation SET expires_at = now() - interval '1 second'")
    await db.execute("UPDATE task SET reserved_until = now() - interval '1 second'")
    for _ in range(2):  # the second sweep finds nothing left
        await sweep_once(app.state.sessionmaker, app.state.settings, app.state.metrics)
    assert await db.fetchval("SELECT count(*) FROM reservation WHERE state = 'expired'") == 2
    assert series(await scrape(http), "terrain_reservations_total", "outcome") == {
        ("created",): 2.0,
        ("expired",): 2.0,
    }


async def test_after_commit_actions_run_on_commit_only(app):
    ran: list[str] = []
    async with app.state.sessionmaker() as session:
        await session.execute(text("SELECT 1"))
        on_commit(session, lambda: ran.append("rolled back"))
        await session.rollback()
        await session.execute(text("SELECT 1"))
        on_commit(session, lambda: ran.append("committed"))
        savepoint = await session.begin_nested()
        await session.execute(text("SELECT 1"))
        await savepoint.rollback()  # a savepoint rolled back does not undo the transaction
        on_commit(session, lambda: ran.append("committed too"))
        await session.commit()
        await session.execute(text("SELECT 1"))
        await session.commit()  # nothing is pending any more
    assert ran == ["committed", "committed too"]


# -- job queue --------------------------------------------------------------------------------


async def test_job_queue_depth_and_oldest_wait_are_read_at_scrape_time(http, db):
    if await db.fetchval("SELECT to_regclass('procrastinate_jobs') IS NULL"):
        # A database migrated before the job runner: no such series, and the scrape works.
        exposition = await scrape(http)
        assert "terrain_job_" not in exposition
        return
    queue = f"metrics-{uuid.uuid4().hex[:8]}"

    async def job(status: str, deferred_s_ago: int, scheduled_in_s: int | None = None) -> None:
        # procrastinate's tables have no model (they are the schema the package ships), and
        # its API defers a job now, not in a chosen state and past: written in SQL.
        job_id = await db.fetchval(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, status, scheduled_at) "
            "VALUES ($1, 'probe', $2::procrastinate_job_status, "
            "now() + make_interval(secs => $3::float8)) RETURNING id",
            queue,
            status,
            scheduled_in_s,
        )
        await db.execute(
            "INSERT INTO procrastinate_events (job_id, type, at) "
            "VALUES ($1, 'deferred', now() - make_interval(secs => $2::float8))",
            job_id,
            deferred_s_ago,
        )

    # Lowest id first: a job deferred long ago but scheduled for later is not waiting yet.
    await job("todo", 900, scheduled_in_s=3600)
    await job("todo", 90)
    await job("todo", 30)
    await job("doing", 600)
    await job("succeeded", 5000)
    exposition = await scrape(http)
    assert series(exposition, "terrain_job_queue_depth", "queue", "status") == {
        (queue, "todo"): 3.0,
        (queue, "doing"): 1.0,
    }
    (age,) = series(exposition, "terrain_job_oldest_age_seconds", "queue").values()
    assert 90 <= age < 120

    await db.execute(
        "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE queue_name = $1", queue
    )
    exposition = await scrape(http)
    assert "terrain_job_queue_depth{" not in exposition
    assert "terrain_job_oldest_age_seconds{" not in exposition


class _RollBack(Exception):
    pass


async def test_without_procrastinate_tables_the_job_series_are_absent(db):
    # An empty schema alone on the search path: procrastinate_jobs is not found there.
    schema = f"empty_{uuid.uuid4().hex[:8]}"
    with pytest.raises(_RollBack):
        async with db.transaction():
            await db.execute(f'CREATE SCHEMA "{schema}"')
            await db.execute(f'SET LOCAL search_path = "{schema}"')
            assert await job_queue_families(db) == []
            raise _RollBack
    assert await db.fetchval("SELECT to_regnamespace($1)", schema) is None


# -- access -----------------------------------------------------------------------------------


async def test_a_metrics_token_guards_the_route(settings, factory):
    guarded = settings.model_copy(
        update={"observability": ObservabilitySettings(metrics_token=SecretStr("scrape-me-42"))}
    )
    app = create_app(guarded)
    worker = await factory.account(Role.worker)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://terrain.test"
        ) as http,
    ):
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": "Basic scrape-me-42"},
            worker.headers,
        ):
            refused = await http.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["code"] == "metrics_token_required"
            assert refused.headers["www-authenticate"] == "Bearer"
        allowed = await http.get("/metrics", headers={"Authorization": "Bearer scrape-me-42"})
        assert allowed.status_code == 200
        counted = series(allowed.text, "terrain_http_requests_total", "method", "route", "status")
        assert counted == {("GET", "/metrics", "401"): 4.0}


async def test_a_scraper_asking_for_openmetrics_gets_it(http):
    response = await http.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert "# TYPE terrain_http_requests counter" in response.text


def test_observability_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TERRAIN_METRICS_TOKEN", "from-env")
    monkeypatch.setenv("TERRAIN_LOG_FORMAT", "text")
    monkeypatch.setenv("TERRAIN_LOG_LEVEL", "debug")
    loaded = ObservabilitySettings()
    assert loaded.metrics_token is not None
    assert (loaded.metrics_token.get_secret_value(), loaded.log_format, loaded.log_level) == (
        "from-env",
        "text",
        "DEBUG",
    )
    monkeypatch.setenv("TERRAIN_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        ObservabilitySettings()


def test_the_metrics_route_has_an_access_rule_and_stays_out_of_the_schema():
    app = create_app()
    (route,) = [r for r in _all_routes(app.routes) if r.path == "/metrics"]
    assert [d.call.__name__ for d in route.dependant.dependencies] == ["metrics_access"]
    assert "/metrics" not in app.openapi()["paths"]


# -- request id and logs ----------------------------------------------------------------------

HEX_ID = r"[0-9a-f]{32}"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123.XYZ_9", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("bad id", False),
        ("semi;colon", False),
        ("", False),
        (None, False),
    ],
)
async def test_the_request_id_is_echoed_only_when_sane(http, sent, kept):
    headers = {} if sent is None else {"X-Request-ID": sent}
    response = await http.get("/healthz", headers=headers)
    assert response.status_code == 200
    returned = response.headers["x-request-id"]
    if kept:
        assert returned == sent
    else:
        assert returned != sent
        assert len(returned) == 32 and int(returned, 16) >= 0


async def test_generated_request_ids_differ(http):
    ids = {(await http.get("/healthz")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.fixture
def probed(app):
    """A route that logs, from the handler and from a worker thread, then fails on demand."""
    probe_log = logging.getLogger("terrain.probe")

    async def probe(fail: bool = False) -> dict[str, str]:
        probe_log.warning("from the handler", extra={"shelf": "organic"})
        await to_thread.run_sync(lambda: probe_log.warning("from a thread"))
        if fail:
            raise RuntimeError("probe failure")
        return {"status": "ok"}

    app.add_api_route("/probe", probe, dependencies=[Public])
    return app


async def test_log_lines_during_a_request_carry_its_id(probed, http, caplog):
    caplog.set_level(logging.INFO)
    response = await http.get("/probe", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42"
    lines = [
        (r.name, r.getMessage(), r.request_id)
        for r in caplog.records
        if r.name.startswith("terrain.")
    ]
    assert lines == [
        ("terrain.probe", "from the handler", "req-42"),
        ("terrain.probe", "from a thread", "req-42"),
        ("terrain.access", "GET /probe 200", "req-42"),
    ]
    (access,) = [r for r in caplog.records if r.name == "terrain.access"]
    assert (access.method, access.route, access.status) == ("GET", "/probe", 200)
    assert 0 < access.duration_ms < 10_000
    caplog.clear()
    logging.getLogger("terrain.probe").warning("outside any request")
    assert [(r.getMessage(), r.request_id) for r in caplog.records] == [
        ("outside any request", None)
    ]


async def test_an_unhandled_error_is_counted_and_logged_as_500(probed, caplog):
    caplog.set_level(logging.INFO)
    transport = httpx.ASGITransport(app=probed, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://terrain.test") as http:
        failed = await http.get("/probe?fail=true", headers={"X-Request-ID": "req-500"})
        assert failed.status_code == 500
        counted = series(
            await scrape(http), "terrain_http_requests_total", "method", "route", "status"
        )
    assert counted == {("GET", "/probe", "500"): 1.0}
    (access,) = [r for r in caplog.records if getattr(r, "route", None) == "/probe"]
    assert (access.levelname, access.status, access.request_id) == ("ERROR", 500, "req-500")


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.getLogger("terrain.test").makeRecord(
        "terrain.test", logging.WARNING, __file__, 1, "photo %s refused", ("p-1",), None
    )
    record.request_id = "req-7"
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_the_json_formatter_writes_one_object_with_the_fields():
    line = JsonFormatter().format(
        _record(task_id=uuid.UUID(int=1), sizes={"w": 1280}, reason=object)
    )
    assert "\n" not in line
    payload = json.loads(line)
    timestamp = payload.pop("timestamp")
    assert timestamp.endswith("+00:00") and "T" in timestamp
    assert payload == {
        "level": "WARNING",
        "logger": "terrain.test",
        "message": "photo p-1 refused",
        "request_id": "req-7",
        "task_id": "00000000-0000-0000-0000-000000000001",
        "sizes": {"w": 1280},
        "reason": str(object),
    }


def test_the_json_formatter_keeps_the_traceback_on_one_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.getLogger("terrain.test").makeRecord(
            "terrain.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["message"] == "failed"
    assert payload["exception"].startswith("Traceback")
    assert payload["exception"].endswith("ValueError: bad\nvalue")


def test_the_text_formatter_names_the_request():
    assert (
        TextFormatter()
        .format(_record())
        .endswith("WARNING terrain.test: photo p-1 refused [request_id=req-7]")
    )


def test_logging_is_configured_once_whatever_the_number_of_apps():
    root = logging.getLogger()
    try:
        configure_logging(ObservabilitySettings(log_format="text", log_level="DEBUG"))
        configure_logging(ObservabilitySettings(log_format="json", log_level="WARNING"))
        ours = [h for h in root.handlers if getattr(h, "terrain", False)]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
        assert logging.getLogger("uvicorn").handlers == []
        assert logging.getLogger("uvicorn").propagate
        assert logging.getLogger("uvicorn.access").disabled
    finally:
        configure_logging(ObservabilitySettings())


async def test_the_serving_app_is_out_of_the_collectors_sight(settings):
    """A full collection walks only what requests leave behind: what start-up built is frozen
    while the app serves, and given back to the collector at shutdown."""
    gc.unfreeze()
    application = create_app(settings)

    def tracked() -> bool:  # gc.get_objects() leaves out the frozen objects
        return any(obj is application.router for obj in gc.get_objects())

    assert tracked()
    async with application.router.lifespan_context(application):
        assert gc.get_freeze_count() > 0
        assert not tracked()
    assert gc.get_freeze_count() == 0
    assert tracked()


class _Writes:
    """A stream that records each write call."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return "".join(self.writes).splitlines()


def _batching(flush_s: float) -> tuple[logging.Logger, BatchingStreamHandler, _Writes]:
    stream = _Writes()
    handler = BatchingStreamHandler(stream, flush_s)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"terrain.test.batching.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, handler, stream


async def test_access_lines_go_out_together_and_errors_at_once():
    logger, _, stream = _batching(0.05)
    for i in range(3):
        logger.info("line %d", i)
    assert stream.writes == []  # waiting for the timer
    await asyncio.sleep(0.1)
    assert len(stream.writes) == 1  # one write for the three
    assert stream.lines() == ["INFO line 0", "INFO line 1", "INFO line 2"]
    logger.info("line 3")
    logger.error("refused")  # out at once, after the line before it
    assert stream.lines()[3:] == ["INFO line 3", "ERROR refused"]
    logger.info("line 4")
    await asyncio.sleep(0.1)
    assert stream.lines()[5:] == ["INFO line 4"]
    assert len(stream.writes) == 3


async def test_a_batch_waits_no_longer_than_its_limit_and_shutdown_writes_it():
    logger, handler, stream = _batching(30.0)
    logger.info("x" * (BatchingStreamHandler.MAX_BATCH_CHARS // 2))
    assert stream.writes == []
    logger.info("y" * (BatchingStreamHandler.MAX_BATCH_CHARS // 2))  # the batch is full
    assert [len(w) for w in stream.writes] == [BatchingStreamHandler.MAX_BATCH_CHARS + 12]
    logger.info("last")
    handler.close()
    assert stream.lines()[-1] == "INFO last"


async def test_off_a_loop_and_with_no_delay_each_line_goes_out_at_once():
    logger, _, stream = _batching(0.05)
    await to_thread.run_sync(logger.info, "from a thread")
    assert stream.lines() == ["INFO from a thread"]
    logger, _, stream = _batching(0.0)
    logger.info("now")
    assert stream.lines() == ["INFO now"]


def test_logging_outside_a_loop_is_not_held():
    logger, _, stream = _batching(10.0)
    logger.info("at start-up")
    assert stream.lines() == ["INFO at start-up"]
