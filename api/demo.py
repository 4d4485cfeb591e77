"""Demo data for ``make run``: one client, ~200 stores around Paris, two live campaigns (a
dairy shelf check, and a weekly price check with a checklist whose submissions are in every
state), workers, a reviewer and an admin. Idempotent: a second run changes nothing.

The accounts and stores are written with the functions registration and store creation use;
the campaigns and everything after them are made through the public API, in-process, by the
code that makes them in production.

The price check's photos are made like a phone's (``validation.phone_photo``): taken now, at the
store, with the EXIF GPS position and time the checks read; a visit meant to be caught differs
from an honest one in one thing (a mock location, a photo its GPS placed 260 m away)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts.auth import create_user
from api.clients.stores import StoreIn, store_row_values
from api.core.db import make_engine, make_sessionmaker
from api.core.models import Campaign, Organization, Role, Store, User
from api.core.settings import Settings
from api.main import create_app
from geo.distance import geodesic_m
from validation.phone_photo import phone_photo

DEMO_PASSWORD = "terrain-demo-2026"
DEMO_ORGANIZATION = "Maison Verte"

# (neighbourhood, latitude, longitude, postcode, streets)
NEIGHBOURHOODS = [
    ("Châtelet", 48.8584, 2.3470, "75001", ["Rue de Rivoli", "Rue Saint-Denis", "Rue des Halles"]),
    ("Marais", 48.8553, 2.3608, "75004", ["Rue Saint-Antoine", "Rue Vieille-du-Temple"]),
    ("Bastille", 48.8532, 2.3692, "75011", ["Rue de la Roquette", "Rue de Charonne"]),
    ("République", 48.8674, 2.3636, "75010", ["Boulevard Magenta", "Rue du Faubourg-du-Temple"]),
    ("Oberkampf", 48.8649, 2.3781, "75011", ["Rue Oberkampf", "Boulevard Voltaire"]),
    ("Belleville", 48.8720, 2.3770, "75020", ["Rue de Belleville", "Rue des Pyrénées"]),
    ("Jourdain", 48.8752, 2.3895, "75019", ["Rue de Crimée", "Rue des Pyrénées"]),
    ("Gare du Nord", 48.8809, 2.3553, "75010", ["Rue La Fayette", "Boulevard de Magenta"]),
    ("Montmartre", 48.8843, 2.3386, "75018", ["Rue Lepic", "Rue des Abbesses"]),
    ("Pigalle", 48.8821, 2.3373, "75009", ["Rue des Martyrs", "Rue Frochot"]),
    ("Batignolles", 48.8867, 2.3178, "75017", ["Rue des Batignolles", "Avenue de Clichy"]),
    ("Ternes", 48.8781, 2.2981, "75017", ["Avenue des Ternes", "Rue Poncelet"]),
    ("Opéra", 48.8709, 2.3318, "75009", ["Boulevard Haussmann", "Rue de la Chaussée-d'Antin"]),
    ("Saint-Germain", 48.8540, 2.3339, "75006", ["Rue de Rennes", "Rue du Four"]),
    ("Montparnasse", 48.8421, 2.3219, "75014", ["Rue de la Gaîté", "Avenue du Maine"]),
    ("Alésia", 48.8282, 2.3270, "75014", ["Avenue du Général-Leclerc", "Rue d'Alésia"]),
    ("Place d'Italie", 48.8311, 2.3557, "75013", ["Avenue d'Italie", "Rue de Tolbiac"]),
    ("Gare de Lyon", 48.8443, 2.3743, "75012", ["Rue de Lyon", "Avenue Daumesnil"]),
    ("Bercy", 48.8386, 2.3822, "75012", ["Rue de Charenton", "Cour Saint-Émilion"]),
    ("Nation", 48.8483, 2.3959, "75011", ["Boulevard de Charonne", "Rue d'Avron"]),
    ("Convention", 48.8373, 2.2966, "75015", ["Rue de la Convention", "Rue du Commerce"]),
    ("Passy", 48.8579, 2.2800, "75016", ["Rue de Passy", "Rue de l'Annonciation"]),
    ("Boulogne", 48.8353, 2.2411, "92100", ["Boulevard Jean-Jaurès", "Route de la Reine"]),
    ("Issy", 48.8240, 2.2700, "92130", ["Rue du Général-Leclerc", "Avenue Victor-Cresson"]),
    ("Vincennes", 48.8474, 2.4390, "94300", ["Rue de Fontenay", "Avenue du Château"]),
    ("Montreuil", 48.8638, 2.4485, "93100", ["Rue de Paris", "Boulevard Rouget-de-Lisle"]),
    ("Saint-Denis", 48.9362, 2.3574, "93200", ["Rue de la République", "Rue Gabriel-Péri"]),
    ("Neuilly", 48.8846, 2.2697, "92200", ["Avenue Charles-de-Gaulle", "Rue de Chézy"]),
]
CHAINS = ["Maison Verte Express", "Maison Verte Market", "Maison Verte Bio"]
OPENING_HOURS = ["Mo-Sa 08:30-21:00; Su 09:00-13:00", "Mo-Su 07:00-23:00", "Mo-Sa 09:00-20:00"]
CITY_OF_POSTCODE = {
    "92100": "Boulogne-Billancourt",
    "92130": "Issy-les-Moulineaux",
    "94300": "Vincennes",
    "93100": "Montreuil",
    "93200": "Saint-Denis",
    "92200": "Neuilly-sur-Seine",
}


def demo_stores(count: int, seed: int = 2026) -> list[StoreIn]:
    rng = random.Random(seed)
    stores = []
    for number in range(1, count + 1):
        name, lat, lon, postcode, streets = NEIGHBOURHOODS[(number - 1) % len(NEIGHBOURHOODS)]
        # Shops cluster within ~700 m of the neighbourhood centre.
        distance = abs(rng.gauss(0, 350))
        bearing = rng.uniform(0, 2 * math.pi)
        dlat = distance * math.cos(bearing) / 111_320
        dlon = distance * math.sin(bearing) / (111_320 * math.cos(math.radians(lat)))
        city = CITY_OF_POSTCODE.get(postcode, "Paris")
        stores.append(
            StoreIn(
                external_ref=f"MV-{number:04d}",
                name=f"{rng.choice(CHAINS)} {name}",
                address=f"{rng.randint(1, 180)} {rng.choice(streets)}, {postcode} {city}",
                lat=round(lat + dlat, 6),
                lon=round(lon + dlon, 6),
                geofence_radius_m=rng.choice([40, 50, 60, 80]),
                timezone="Europe/Paris",
                opening_hours=rng.choice(OPENING_HOURS),
            )
        )
    return stores


PRICE_CHECK_NAME = "Orange juice price check"
TIMEZONE = "Europe/Paris"
# Where a worker's phone says it is at a store: a few metres from its pin.
AT_STORE_M = 4.0
# How far a drifting GPS (indoors, in an arcade) puts a photo: out of any demo store's
# geofence (80 m at most), even widened by the photo's accuracy.
GPS_DRIFT_M = 260.0

PRICE_CHECK_ITEMS: list[dict[str, Any]] = [
    {
        "kind": "note",
        "name": "brief",
        "label": "Maison Verte organic orange juice, 1 L carton: check it is on the shelf and "
        "at the agreed price (2.49 EUR).",
    },
    {
        "kind": "photo",
        "name": "storefront",
        "label": "Storefront",
        "hint": "The shop front with its sign, from the pavement.",
        "required": True,
        "min_photos": 1,
        "max_photos": 1,
    },
    {
        "kind": "yes_no",
        "name": "on_shelf",
        "label": "Is the product on the shelf?",
        "required": True,
    },
    {
        "kind": "photo",
        "name": "shelf",
        "label": "Juice shelf",
        "hint": "The whole chilled-juice bay, price labels readable.",
        "required": True,
        "min_photos": 1,
        "max_photos": 2,
    },
    {
        "kind": "number",
        "name": "price",
        "label": "Price on the label",
        "unit": "EUR",
        "decimals": 2,
        "minimum": 0.5,
        "maximum": 20,
        "required": True,
        "relevant": "${on_shelf} = 'yes'",
    },
    {
        "kind": "number",
        "name": "facings",
        "label": "Facings (cartons side by side at the front)",
        "decimals": 0,
        "minimum": 1,
        "maximum": 40,
        "required": True,
        "relevant": "${on_shelf} = 'yes'",
    },
    {
        "kind": "photo",
        "name": "empty_slot",
        "label": "Photo of the empty slot",
        "hint": "Where the juice should be, with its shelf label if there is one.",
        "required": True,
        "min_photos": 1,
        "max_photos": 1,
        "relevant": "${on_shelf} = 'no'",
    },
    {
        "kind": "text",
        "name": "comment",
        "label": "Anything the store manager said",
        "max_length": 300,
    },
]


def price_check_campaign(now: datetime) -> dict[str, Any]:
    """The campaign's JSON: recurring every Monday from 08:00 Paris time until the next, for
    eight weeks; a couldn't-complete outcome pays half the reward. On-site minutes are left
    out: the checklist's estimate is used."""
    local = now.astimezone(ZoneInfo(TIMEZONE))
    # The Monday a week or more back: the period running now has started whatever the hour.
    first_monday = local.date() - timedelta(days=local.weekday() + 7)
    return {
        "name": PRICE_CHECK_NAME,
        "purpose": "Check the new organic orange juice is on the shelf of every store at the "
        "agreed price, week after week, before the spring promotion.",
        "instructions": "Storefront first, then the chilled-juice bay. If the juice is missing, "
        "photograph the empty slot. Do not photograph customers or staff.",
        "checklist": {"items": PRICE_CHECK_ITEMS},
        "reward_cents": 550,
        "incomplete_reward_cents": 275,
        "currency": "EUR",
        "reservation_minutes": 120,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(weeks=8)).isoformat(),
        "schedule": {
            "rrule": "FREQ=WEEKLY;BYDAY=MO",
            "start": first_monday.isoformat(),
            "time": "08:00",
            "until_next": True,
        },
        "target": {"bbox": "2.0,48.6,2.7,49.1"},
    }


class DemoError(Exception):
    """The API answered the demo with something it did not expect."""


@dataclass
class Api:
    """The API in-process: requests go through the app, as over HTTP. Uploads to an S3 store
    go over the network, where its presigned URLs point."""

    client: httpx.AsyncClient
    outside: httpx.AsyncClient
    local_uploads: bool

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        expect: tuple[int, ...] = (200, 201),
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, headers=headers, **kwargs)
        if response.status_code not in expect:
            raise DemoError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    async def sign_in(self, email: str, password: str) -> str:
        answer = await self.call(
            "POST", "/v1/auth/token", data={"username": email, "password": password}
        )
        return str(answer["access_token"])

    async def upload(self, grant: dict[str, Any], data: bytes) -> None:
        client = self.client if self.local_uploads else self.outside
        if grant["method"] == "PUT":
            response = await client.put(grant["url"], headers=grant["headers"], content=data)
        else:
            response = await client.post(
                grant["url"],
                headers=grant["headers"],
                data=grant["fields"],
                files={"file": ("photo.jpg", data, "image/jpeg")},
            )
        if response.status_code not in (200, 201, 204):
            raise DemoError(f"upload answered {response.status_code}: {response.text[:300]}")


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[Api]:
    """The app built from ``settings`` (its sweeper off: the job worker runs that), started
    and stopped around the block."""
    quiet = settings.model_copy(
        update={"app": settings.app.model_copy(update={"run_sweeper": False})}
    )
    app = create_app(quiet)
    # A line per request, and the connection pool's notices, would bury what the demo says.
    loggers = [logging.getLogger(name) for name in ("terrain.access", "httpx", "api.core.db")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        async with _started(app, settings) as api:
            yield api
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@asynccontextmanager
async def _started(app: FastAPI, settings: Settings) -> AsyncIterator[Api]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(
                transport=transport, base_url=settings.storage.public_base_url, timeout=60
            ) as client,
            httpx.AsyncClient(timeout=60) as outside,
        ):
            yield Api(client, outside, local_uploads=settings.storage.backend == "local")


@dataclass(frozen=True)
class Visit:
    """One demo worker's visit: where they look for a task, what they answer (or the outcome
    that ended the visit), the one way (if any) it differs from an honest visit, and what the
    client or the worker does next."""

    worker: str  # the demo account's e-mail
    near: tuple[float, float]
    answers: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None
    mock_location: bool = False
    storefront_gps_drifted: bool = False
    then: str | None = None  # "accept", "dispute" (the client), "appeal" (the worker)
    message: str = ""


# Each scenario, as the demo prints it, with its visit.
VISITS: list[tuple[str, Visit]] = [
    (
        "accepted, then approved by the client",
        Visit(
            "worker@demo.terrain.example",
            (48.8584, 2.3470),  # Châtelet
            answers={"on_shelf": True, "price": 2.49, "facings": 4},
            then="accept",
        ),
    ),
    (
        "accepted, awaiting the client",
        Visit(
            "ines@demo.terrain.example",
            (48.8553, 2.3608),  # Marais
            answers={"on_shelf": True, "price": 2.79, "facings": 2, "comment": "Promo ends Sunday"},
        ),
    ),
    (
        "accepted, product missing (empty slot photographed)",
        Visit(
            "yanis@demo.terrain.example",
            (48.8674, 2.3636),  # République
            answers={"on_shelf": False, "comment": "Delivery expected on Thursday"},
        ),
    ),
    (
        "flagged for review (mock location)",
        Visit(
            "lea@demo.terrain.example",
            (48.8843, 2.3386),  # Montmartre
            answers={"on_shelf": True, "price": 2.49, "facings": 3},
            mock_location=True,
        ),
    ),
    (
        "disputed by the client",
        Visit(
            "moussa@demo.terrain.example",
            (48.8421, 2.3219),  # Montparnasse
            answers={"on_shelf": True, "price": 1.99, "facings": 6},
            then="dispute",
            message="The shelf photo shows the yoghurt bay; the juice price cannot be read.",
        ),
    ),
    (
        "rejected by the checks, appealed by the worker",
        Visit(
            "chloe@demo.terrain.example",
            (48.8311, 2.3557),  # Place d'Italie
            answers={"on_shelf": True, "price": 2.49, "facings": 5},
            storefront_gps_drifted=True,
            then="appeal",
            message="The shop is inside the arcade; my phone placed the storefront photo on "
            "the other side of the avenue. The sign in the photo is this store's.",
        ),
    ),
    (
        "couldn't complete (store closed), approved by the client",
        Visit(
            "karim@demo.terrain.example",
            (48.8443, 2.3743),  # Gare de Lyon
            outcome="store_closed",
            then="accept",
        ),
    ),
]

WORKERS = {
    "ines@demo.terrain.example": "Inès",
    "yanis@demo.terrain.example": "Yanis",
    "lea@demo.terrain.example": "Léa",
    "moussa@demo.terrain.example": "Moussa",
    "chloe@demo.terrain.example": "Chloé",
    "karim@demo.terrain.example": "Karim",
}


async def seed_price_check(
    api: Api, *, client: str, password: str, say: Callable[[str], None]
) -> dict[str, str]:
    """Launch the price check and play its visits. Returns each scenario's submission
    status."""
    client_token = await api.sign_in(client, password)
    campaign = await api.call(
        "POST",
        "/v1/campaigns",
        token=client_token,
        json=price_check_campaign(datetime.now(UTC)),
        headers={"Idempotency-Key": str(uuid.uuid4())},
        expect=(201,),
    )
    say(
        f"demo: launched '{PRICE_CHECK_NAME}' ({campaign['task_total']} stores, weekly, "
        f"{campaign['onsite_minutes']} min on site by its checklist)"
    )
    statuses: dict[str, str] = {}
    for scenario, visit in VISITS:
        token = await api.sign_in(visit.worker, password)
        submission = await play_visit(api, token, campaign["id"], visit)
        submission = await follow_up(api, client_token, token, submission, visit)
        statuses[scenario] = submission["status"]
        say(f"  {scenario}: {submission['status']}")
    return statuses


async def play_visit(api: Api, token: str, campaign_id: str, visit: Visit) -> dict[str, Any]:
    """Find the nearest task of the campaign, reserve it, photograph each slot the answers
    call for, and submit."""
    lat, lon = visit.near
    nearby = await api.call(
        "GET", "/v1/tasks/nearby", token=token, params={"lat": lat, "lon": lon, "limit": 100}
    )
    for item in nearby["items"]:
        if item["campaign_id"] != campaign_id:
            continue
        reservation = await api.call(
            "POST",
            f"/v1/tasks/{item['task_id']}/reservations",
            token=token,
            headers={"Idempotency-Key": str(uuid.uuid4())},
            expect=(201, 409),
        )
        if "id" in reservation:
            break
    else:
        raise DemoError(f"no task of the price check near {visit.near} for {visit.worker}")
    store = reservation["task"]["store"]
    store_lon, store_lat = store["location"]["coordinates"]
    slots = ["storefront"]
    if visit.outcome is None:
        slots += ["shelf"] if visit.answers["on_shelf"] else ["shelf", "empty_slot"]
    for slot in slots:
        where = (store_lat, store_lon)
        if visit.storefront_gps_drifted and slot == "storefront":
            where = _east_of(where, GPS_DRIFT_M)
        data = await asyncio.to_thread(
            phone_photo,
            # A fresh scene each time: never a copy of a photo in another demo database, or
            # left in a shared object store.
            seed=uuid.uuid4().int % 2**40,
            scene="storefront" if slot == "storefront" else "shelf",
            lat=where[0],
            lon=where[1],
            accuracy_m=6.0,
            taken_at=datetime.now(UTC),
            timezone=store["timezone"],
        )
        await upload(api, token, reservation["id"], slot, data)
    device = _east_of((store_lat, store_lon), AT_STORE_M)
    body: dict[str, Any] = {
        "device_fix": {
            "lat": device[0],
            "lon": device[1],
            "accuracy_m": 3.0 if visit.mock_location else 7.5,
            "fixed_at": datetime.now(UTC).isoformat(),
            "is_mock": visit.mock_location,
        }
    }
    if visit.outcome is not None:
        body["outcome"] = visit.outcome
    else:
        body["answers"] = visit.answers
    submission: dict[str, Any] = await api.call(
        "POST",
        f"/v1/reservations/{reservation['id']}/submit",
        token=token,
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4())},
        expect=(201,),
    )
    return submission


async def upload(api: Api, token: str, reservation_id: str, slot: str, data: bytes) -> None:
    grant = await api.call(
        "POST",
        f"/v1/reservations/{reservation_id}/photos",
        token=token,
        json={
            "slot": slot,
            "content_type": "image/jpeg",
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
        expect=(201,),
    )
    await api.upload(grant["upload"], data)
    await api.call(
        "POST",
        f"/v1/reservations/{reservation_id}/photos/{grant['photo']['id']}/complete",
        token=token,
    )


async def follow_up(
    api: Api, client_token: str, worker_token: str, submission: dict[str, Any], visit: Visit
) -> dict[str, Any]:
    """What the client or the worker does next, as each would from the console or the app."""
    path = f"/v1/submissions/{submission['id']}"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    if visit.then == "accept":
        return dict(await api.call("POST", f"{path}/accept", token=client_token))
    if visit.then == "dispute":
        body = {"reason_code": "wrong_subject", "message": visit.message}
        return dict(
            await api.call("POST", f"{path}/dispute", token=client_token, json=body, headers=key)
        )
    if visit.then == "appeal":
        body = {"message": visit.message}
        return dict(
            await api.call("POST", f"{path}/appeal", token=worker_token, json=body, headers=key)
        )
    return submission


def _east_of(point: tuple[float, float], metres: float) -> tuple[float, float]:
    lat, lon = point
    return lat, lon + metres / geodesic_m(lat, lon, lat, lon + 1.0)


PEOPLE = [
    ("client@demo.terrain.example", "Camille (Maison Verte)", Role.client),
    ("worker@demo.terrain.example", "Sami", Role.worker),
    ("reviewer@demo.terrain.example", "Rose", Role.reviewer),
    ("admin@demo.terrain.example", "Ada", Role.admin),
    *((email, name, Role.worker) for email, name in WORKERS.items()),
]
DAIRY_CHECK_NAME = "Organic dairy shelf check"


def dairy_check_campaign(now: datetime) -> dict[str, Any]:
    return {
        "name": DAIRY_CHECK_NAME,
        "purpose": "Photograph the organic dairy shelf so the chain can fix stock-outs "
        "and wrong price labels before the weekend.",
        "instructions": "One photo of the whole dairy bay, one close-up of the price labels.",
        "min_photos": 2,
        "max_photos": 4,
        "reward_cents": 650,
        "currency": "EUR",
        "onsite_minutes": 12,
        "reservation_minutes": 90,
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(days=30)).isoformat(),
        "target": {"bbox": "2.0,48.6,2.7,49.1"},
    }


async def seed_accounts(session: AsyncSession, *, stores: int) -> tuple[bool, bool]:
    """The organization, its stores and the demo accounts, each account created when absent.
    Returns whether the organization was created now, and whether the price check exists."""
    organization = await session.scalar(
        select(Organization).where(Organization.name == DEMO_ORGANIZATION)
    )
    created = organization is None
    if organization is None:
        organization = Organization(
            name=DEMO_ORGANIZATION,
            description="Organic grocery chain in Île-de-France; audits its shelves weekly.",
            join_code="maison-verte-demo",
        )
        session.add(organization)
        await session.flush()
        rows = [store_row_values(organization.id, s) for s in demo_stores(stores)]
        await session.execute(insert(Store), rows)
    existing = set(
        await session.scalars(select(User.email).where(User.email.in_([p[0] for p in PEOPLE])))
    )
    for email, display_name, role in PEOPLE:
        if email not in existing:
            await create_user(
                session,
                email=email,
                password=DEMO_PASSWORD,
                display_name=display_name,
                role=role,
                organization_id=organization.id if role == Role.client else None,
            )
    price_check = await session.scalar(
        select(Campaign.id).where(
            Campaign.organization_id == organization.id, Campaign.name == PRICE_CHECK_NAME
        )
    )
    return created, price_check is not None


async def seed_demo(
    settings: Settings, *, stores: int = 200, say: Callable[[str], None] = print
) -> dict[str, str] | None:
    """Load the demo into the database ``settings`` name, through the API for all but the
    accounts and stores. Returns the price check's scenarios and the status each submission
    ended in, or None when the demo was there already."""
    engine = make_engine(settings.db)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            created, launched = await seed_accounts(session, stores=stores)
    finally:
        await engine.dispose()
    statuses = None
    if launched:  # the rest is there: not even a sign-in, which records a session
        say("demo: already present")
    else:
        client = PEOPLE[0][0]
        async with in_process(settings) as api:
            if created:
                await launch_dairy_check(api, client)
                say(f"demo: created {DEMO_ORGANIZATION}, {stores} stores and a live campaign")
            statuses = await seed_price_check(api, client=client, password=DEMO_PASSWORD, say=say)
    say(f"demo accounts (password {DEMO_PASSWORD}):")
    for email, _, role in PEOPLE:
        say(f"  {role.value:<9} {email}")
    say("simulate a day of work with planted cheaters, once the API is up (another terminal):")
    say("  .venv/bin/python -m sim --workers 20")
    return statuses


async def launch_dairy_check(api: Api, client: str) -> None:
    token = await api.sign_in(client, DEMO_PASSWORD)
    await api.call(
        "POST",
        "/v1/campaigns",
        token=token,
        json=dairy_check_campaign(datetime.now(UTC)),
        expect=(201,),
    )
