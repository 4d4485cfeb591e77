"""A day played over the public API: a client opens a campaign over the shops it imports, then
every worker plans a route, reserves it, photographs each shop and submits, concurrently.

What a cheater does is what such people do, not what barely trips a threshold:

- ``wrong_place``: stays at home, 3 to 8 km away, and shoots and submits from there;
- ``stale``: stands in the shop but uploads a photo of the shelf taken days earlier;
- ``duplicate``: stands in the shop but uploads the bytes of a photo submitted for another task;
- ``mock_location``: stays at home with a mock-location app feeding the shop's position to the
  phone (so the camera's GPS says the shop too), which the phone reports as a mock fix, and
  "moves" from shop to shop as fast as it submits;
- ``bad_answers``: goes to the shop and photographs it, but fills the checklist in carelessly:
  a price out of range or with a cent too fine, no facings, a price for a product it says is
  missing. The API must refuse each with 422 ``invalid_answers`` naming the item; refused, it
  gives the task back;
- ``fake_outcome``: stays at home and reports the shop closed (a "couldn't complete" outcome),
  with a "storefront" photo shot from there.

Every worker answers the checklist of the task it reserved from what it finds in the shop (the
plan's truth: closed, the lemonade on the shelf or not, its price and facings): a closed shop
is reported with the ``store_closed`` outcome and a storefront photo; otherwise the answers
say what the photos show. Only ``bad_answers`` and ``fake_outcome`` lie in their answers.

Honest workers (and the stale, duplicate and bad-answers cheaters) go from shop to shop. The day
is played in minutes rather than hours, so they travel at ``travel_kmh``, far above walking pace,
but under the server's impossible-travel limit (``max_travel_speed_kmh``, 200 km/h by default):
everything their phones report (positions, times, accuracies) is then true of the simulated day.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from geo.distance import geodesic_m
from sim.campaign import PASSWORD_BYTES, open_campaign, simulated_email
from sim.http import Api, ApiError
from sim.photos import phone_photo
from sim.plan import DISTRICT, TIMEZONE, Kind, Persona, Plan, Shop, point_at

ROUTE_BUDGET_MINUTES = 120
ROUTE_ATTEMPTS = 25
COPY_WAIT_S = 120.0
MOVERS: frozenset[Kind] = frozenset({"honest", "stale", "duplicate", "bad_answers"})
AT_HOME: frozenset[Kind] = frozenset({"wrong_place", "fake_outcome"})
# A careless checklist, each a way the answers cannot be right: (answers, slots photographed).
BAD_ANSWERS: tuple[tuple[dict[str, Any], tuple[str, ...]], ...] = (
    ({"on_shelf": True, "price": 0.0, "facings": 3}, ("storefront", "shelf")),
    ({"on_shelf": True, "price": 2.499, "facings": 3}, ("storefront", "shelf")),
    ({"on_shelf": True, "price": 2.49}, ("storefront", "shelf")),
    ({"on_shelf": False, "price": 2.49}, ("storefront", "shelf", "empty_slot")),
    ({"on_shelf": True, "price": 2.49, "facings": 0}, ("storefront", "shelf")),
)


@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    kind: Kind
    worker: int
    task_id: str
    reservation_id: str
    submission_id: str
    verdict: str
    status: str
    failed: list[str]
    warned: list[str]
    outcome: str | None = None
    photos: int = 0


@dataclass(frozen=True, slots=True)
class RefusalRecord:
    """Answers the API refused (422 invalid_answers): nothing was stored, and the worker gave
    the task back."""

    kind: Kind
    worker: int
    task_id: str
    reservation_id: str
    items: list[str]  # the items the refusal named


@dataclass(slots=True)
class WorkerRecord:
    index: int
    name: str
    email: str
    kind: Kind
    tasks: int = 0
    error: str | None = None


@dataclass(slots=True)
class DayReport:
    seed: int
    run_id: str
    district: str
    organization: str
    campaign_id: str
    shops: int
    workers: list[WorkerRecord] = field(default_factory=list)
    submissions: list[SubmissionRecord] = field(default_factory=list)
    refusals: list[RefusalRecord] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class Photos:
    """Photos already submitted, for duplicate cheaters to copy: another worker's genuine shelf
    photo when there is one (it is what passes for real), else whatever was submitted."""

    taken: list[tuple[int, bool, bytes]] = field(default_factory=list)  # (worker, honest, bytes)
    available: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, worker: int, honest: bool, data: bytes) -> None:
        self.taken.append((worker, honest, data))
        self.available.set()

    async def copy_for(self, worker: int, rng: random.Random) -> bytes:
        await asyncio.wait_for(self.available.wait(), COPY_WAIT_S)
        genuine = [data for who, honest, data in self.taken if honest and who != worker]
        others = [data for who, _, data in self.taken if who != worker]
        return rng.choice(genuine or others or [data for _, _, data in self.taken])


@dataclass(frozen=True, slots=True)
class Day:
    api: Api
    plan: Plan
    run_id: str
    organization: str
    tasks_per_worker: int
    travel_kmh: float
    photo_seed: int  # different every run: photos of two runs on one server never look alike
    photos: Photos


async def play_day(api: Api, plan: Plan, *, tasks_per_worker: int, travel_kmh: float) -> DayReport:
    run_id = secrets.token_hex(4)
    organization = f"Limonaderie du Canal {run_id}"
    report = DayReport(
        seed=plan.seed,
        run_id=run_id,
        district=DISTRICT,
        organization=organization,
        campaign_id="",
        shops=len(plan.shops),
    )
    client_token, campaign_id = await open_campaign(api, plan, run_id, organization)
    report.campaign_id = campaign_id
    day = Day(
        api=api,
        plan=plan,
        run_id=run_id,
        organization=organization,
        tasks_per_worker=tasks_per_worker,
        travel_kmh=travel_kmh,
        photo_seed=secrets.randbits(40),
        photos=Photos(),
    )
    try:
        report.workers = list(
            await asyncio.gather(*(work(day, persona, report) for persona in plan.personas))
        )
    finally:
        # The day is over: the shops nobody reached are taken off the map.
        await api.call("POST", f"/v1/campaigns/{campaign_id}/cancel", token=client_token)
    report.submissions.sort(key=lambda s: s.worker)  # stable: each worker's in visiting order
    report.refusals.sort(key=lambda r: r.worker)
    return report


async def work(day: Day, persona: Persona, report: DayReport) -> WorkerRecord:
    """One worker's day. An unexpected answer ends it, recorded rather than raised, so the
    other workers finish theirs."""
    record = WorkerRecord(
        index=persona.index,
        name=persona.name,
        email=simulated_email(day.run_id, "worker", persona.index),
        kind=persona.kind,
    )
    rng = random.Random(day.plan.seed * 1_000_003 + persona.index)
    try:
        token = await register_worker(day.api, record)
        stops = await reserve_route(day, persona, token, rng)
        reserved_at = datetime.now(UTC)
        position = persona.start
        for number, (stop, reservation_id) in enumerate(stops):
            shop = (stop["location"]["coordinates"][1], stop["location"]["coordinates"][0])
            if persona.kind in MOVERS:
                await travel(position, shop, day.travel_kmh)
                position = shop
            found = nearest_shop(day.plan, shop)
            submission = await visit(
                day,
                persona,
                token,
                rng,
                shop=shop,
                found=found,
                reservation_id=reservation_id,
                reserved_at=reserved_at,
                number=number,
            )
            if "errors" in submission:  # the answers were refused
                report.refusals.append(
                    RefusalRecord(
                        kind=persona.kind,
                        worker=persona.index,
                        task_id=str(stop["task_id"]),
                        reservation_id=reservation_id,
                        items=[str(e["item"]) for e in submission["errors"]],
                    )
                )
                record.tasks += 1
                continue
            report.submissions.append(
                SubmissionRecord(
                    kind=persona.kind,
                    worker=persona.index,
                    task_id=str(stop["task_id"]),
                    reservation_id=reservation_id,
                    submission_id=str(submission["id"]),
                    verdict=submission["verdict"],
                    status=submission["status"],
                    failed=[c["code"] for c in submission["report"] if c["outcome"] == "fail"],
                    warned=[c["code"] for c in submission["report"] if c["outcome"] == "warn"],
                    outcome=submission["outcome"],
                    photos=len({c["photo_id"] for c in submission["report"] if c["photo_id"]}),
                )
            )
            record.tasks += 1
    except (ApiError, httpx.HTTPError, TimeoutError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    return record


async def register_worker(api: Api, record: WorkerRecord) -> str:
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    await api.call(
        "POST",
        "/v1/auth/register",
        json={"email": record.email, "password": password, "display_name": record.name},
        expect=(201,),
    )
    return await api.sign_in(record.email, password)


async def reserve_route(
    day: Day, persona: Persona, token: str, rng: random.Random
) -> list[tuple[dict[str, Any], str]]:
    """Ask for a route from the start and reserve its first stops of this campaign, all at once
    (on a shared server the route may pass other clients' tasks: the worker leaves them); when
    another worker was quicker (409 tasks_taken), plan again. Returns (stop, reservation id)
    in visiting order; empty when there is nothing left to do."""
    start = {"lat": persona.start[0], "lon": persona.start[1]}
    for _ in range(ROUTE_ATTEMPTS):
        route = await day.api.json(
            "POST",
            "/v1/routes/suggest",
            token=token,
            json={
                "start": start,
                "time_budget_minutes": ROUTE_BUDGET_MINUTES,
                "mode": "walk",
            },
        )
        ours = [s for s in route["stops"] if s["client_name"] == day.organization]
        stops = ours[: day.tasks_per_worker]
        if not stops:
            return []
        try:
            reserved = await day.api.json(
                "POST",
                "/v1/routes/reserve",
                token=token,
                json={"task_ids": [s["task_id"] for s in stops], "start": start, "mode": "walk"},
                expect=(201,),
            )
        except ApiError as exc:
            if exc.code != "tasks_taken":
                raise
            await asyncio.sleep(rng.uniform(0.1, 0.6))
            continue
        ids = [str(r["id"]) for r in reserved["reservations"]]
        return list(zip(stops, ids, strict=True))
    raise TimeoutError(f"no route could be reserved in {ROUTE_ATTEMPTS} attempts")


async def travel(origin: tuple[float, float], destination: tuple[float, float], kmh: float) -> None:
    await asyncio.sleep(geodesic_m(*origin, *destination) / (kmh / 3.6))


def near(rng: random.Random, point: tuple[float, float], within_m: float) -> tuple[float, float]:
    return point_at(*point, rng.uniform(0, within_m), rng.uniform(0, 360))


def nearest_shop(plan: Plan, point: tuple[float, float]) -> Shop:
    """The plan's shop at a stop's position (the store the client imported for it)."""
    return min(plan.shops, key=lambda shop: geodesic_m(shop.lat, shop.lon, *point))


def what_to_report(
    kind: Kind, found: Shop, rng: random.Random
) -> tuple[dict[str, Any], str | None, tuple[str, ...]]:
    """The answers (or the outcome) a worker of this kind reports, and the photo slots it
    fills. Everyone reports what the shop shows, but the two kinds that lie about it."""
    if kind == "bad_answers":
        answers, slots = rng.choice(BAD_ANSWERS)
        return dict(answers), None, slots
    if kind == "fake_outcome" or found.closed:
        return {}, "store_closed", ("storefront",)
    if not found.stocked:
        return {"on_shelf": False}, None, ("storefront", "shelf", "empty_slot")
    answers = {"on_shelf": True, "price": found.price_cents / 100, "facings": found.facings}
    return answers, None, ("storefront", "shelf")


async def visit(
    day: Day,
    persona: Persona,
    token: str,
    rng: random.Random,
    *,
    shop: tuple[float, float],
    found: Shop,
    reservation_id: str,
    reserved_at: datetime,
    number: int,
) -> dict[str, Any]:
    """Take the photos the checklist asks for, upload and check each, then submit the answers
    (or the outcome) with the phone's fix. Returns the submission, or the refusal's body when
    the answers were refused (the reservation is then released)."""
    kind = persona.kind
    accuracy = round(rng.uniform(4.0, 16.0), 1)
    # Where the phone says it is, and where the camera says the photo was taken.
    if kind in AT_HOME:
        device = camera = near(rng, persona.home, 10)
    elif kind == "mock_location":
        device = camera = near(rng, shop, 3)  # the mock app's position
        accuracy = 3.0  # what such apps report, fix after fix
    else:
        device, camera = near(rng, shop, 12), near(rng, shop, 12)
    answers, outcome, slots = what_to_report(kind, found, rng)
    taken: list[bytes] = []
    for photo_number, slot in enumerate(slots):
        # A few seconds before the upload, and never before the reservation.
        taken_at = max(datetime.now(UTC) - timedelta(seconds=rng.uniform(1, 8)), reserved_at)
        if kind == "stale":
            taken_at -= timedelta(days=persona.stale_age_days, minutes=rng.uniform(0, 90))
        if kind == "duplicate":
            data = await day.photos.copy_for(persona.index, rng)
        else:
            seed = day.photo_seed + persona.index * 10_000 + number * 100 + photo_number
            data = await asyncio.to_thread(
                phone_photo,
                seed=seed,
                scene="storefront" if slot == "storefront" else "shelf",
                lat=camera[0],
                lon=camera[1],
                accuracy_m=accuracy,
                taken_at=taken_at,
                timezone=TIMEZONE,
            )
        await upload_photo(day.api, token, reservation_id, data, slot)
        taken.append(data)
    body: dict[str, Any] = {
        "device_fix": {
            "lat": device[0],
            "lon": device[1],
            "accuracy_m": accuracy,
            "fixed_at": datetime.now(UTC).isoformat(),
            "is_mock": kind == "mock_location",
        }
    }
    if outcome is not None:
        body["outcome"] = outcome
    else:
        body["answers"] = answers
    response = await day.api.call(
        "POST",
        f"/v1/reservations/{reservation_id}/submit",
        token=token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
        json=body,
        expect=(201, 422),
    )
    answer: dict[str, Any] = response.json()
    if response.status_code == 422:
        if answer.get("code") != "invalid_answers":
            raise ApiError("POST", f"/v1/reservations/{reservation_id}/submit", response)
        # The app shows what is wrong; this worker gives the task back rather than fix it.
        await day.api.call(
            "DELETE", f"/v1/reservations/{reservation_id}", token=token, expect=(204,)
        )
        return answer
    if kind != "duplicate":
        for data in taken:
            day.photos.add(persona.index, kind == "honest", data)
    return answer


async def upload_photo(
    api: Api, token: str, reservation_id: str, data: bytes, slot: str
) -> dict[str, Any]:
    """Ask to upload a photo for a checklist slot (size and SHA-256), send the bytes where
    the grant says, then have the server check what arrived. Returns the photo with its
    checks."""
    grant = await api.json(
        "POST",
        f"/v1/reservations/{reservation_id}/photos",
        token=token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
        json={
            "slot": slot,
            "content_type": "image/jpeg",
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        expect=(201,),
    )
    await api.upload(grant["upload"], data, "image/jpeg")
    photo: dict[str, Any] = await api.json(
        "POST",
        f"/v1/reservations/{reservation_id}/photos/{grant['photo']['id']}/complete",
        token=token,
    )
    return photo
