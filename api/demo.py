"""Demo data for ``make run``: one client, ~200 stores around Paris, a live campaign, and a
worker, a reviewer and an admin. Idempotent: a second run changes nothing."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.accounts.auth import create_user
from api.clients.campaigns import CampaignIn, Target, create_campaign
from api.clients.stores import StoreIn, store_row_values
from api.core.models import Organization, Role, Store, User
from api.core.settings import WorkSettings

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


async def seed_demo(session: AsyncSession, *, stores: int = 200) -> None:
    people = [
        ("client@demo.terrain.example", "Camille (Maison Verte)", Role.client),
        ("worker@demo.terrain.example", "Sami", Role.worker),
        ("reviewer@demo.terrain.example", "Rose", Role.reviewer),
        ("admin@demo.terrain.example", "Ada", Role.admin),
    ]
    organization = await session.scalar(
        select(Organization).where(Organization.name == DEMO_ORGANIZATION)
    )
    if organization is None:
        organization = Organization(
            name=DEMO_ORGANIZATION,
            description="Organic grocery chain in Île-de-France; audits its shelves weekly.",
            join_code="maison-verte-demo",
        )
        session.add(organization)
        await session.flush()
        for email, display_name, role in people:
            await create_user(
                session,
                email=email,
                password=DEMO_PASSWORD,
                display_name=display_name,
                role=role,
                organization_id=organization.id if role == Role.client else None,
            )
        rows = [store_row_values(organization.id, s) for s in demo_stores(stores)]
        await session.execute(insert(Store), rows)
        client = await session.scalar(select(User).where(User.email == people[0][0]))
        assert client is not None
        now = datetime.now(UTC)
        await create_campaign(
            session,
            client=client,
            body=CampaignIn(
                name="Organic dairy shelf check",
                purpose="Photograph the organic dairy shelf so the chain can fix stock-outs "
                "and wrong price labels before the weekend.",
                instructions="One photo of the whole dairy bay, one close-up of the price labels.",
                min_photos=2,
                max_photos=4,
                reward_cents=650,
                currency="EUR",
                onsite_minutes=12,
                reservation_minutes=90,
                starts_at=now - timedelta(minutes=1),
                ends_at=now + timedelta(days=30),
                target=Target(bbox="2.0,48.6,2.7,49.1"),
            ),
            work=WorkSettings(),
        )
        print(f"demo: created {DEMO_ORGANIZATION}, {stores} stores and a live campaign")
    else:
        print("demo: already present")
    print(f"demo accounts (password {DEMO_PASSWORD}):")
    for email, _, role in people:
        print(f"  {role.value:<9} {email}")
    print("simulate a day of work with planted cheaters, once the API is up (another terminal):")
    print("  .venv/bin/python -m sim --workers 20")
