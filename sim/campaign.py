"""The client's side of the day: a brand registers with a new organization, imports the
district's shops as CSV and launches a campaign on them."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, datetime, timedelta

from sim.http import Api
from sim.plan import TIMEZONE, Plan

PASSWORD_BYTES = 18
CHECKLIST = {
    "items": [
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
            "label": "Is our lemonade on the shelf?",
            "required": True,
        },
        {
            "kind": "photo",
            "name": "shelf",
            "label": "Soft-drinks shelf",
            "hint": "The whole bay, price labels readable.",
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
            "maximum": 10,
            "required": True,
            "relevant": "${on_shelf} = 'yes'",
        },
        {
            "kind": "number",
            "name": "facings",
            "label": "Facings",
            "decimals": 0,
            "minimum": 1,
            "maximum": 30,
            "required": True,
            "relevant": "${on_shelf} = 'yes'",
        },
        {
            "kind": "photo",
            "name": "empty_slot",
            "label": "Photo of the empty slot",
            "required": True,
            "min_photos": 1,
            "max_photos": 1,
            "relevant": "${on_shelf} = 'no'",
        },
        {"kind": "note", "name": "thanks", "label": "Thank the staff on your way out."},
    ]
}
CAMPAIGN = {
    "name": "Lemonade shelf placement",
    "purpose": "Photograph the soft-drinks shelf so we can check our lemonade is stocked, "
    "at eye level and priced as agreed with the shop.",
    "instructions": "Storefront first, then the whole soft-drinks bay, price labels readable.",
    "checklist": CHECKLIST,
    "reward_cents": 600,
    "incomplete_reward_cents": 300,
    "currency": "EUR",
    "reservation_minutes": 120,
}


def simulated_email(run_id: str, role: str, index: int | None = None) -> str:
    suffix = f"-{index:03d}" if index is not None else ""
    return f"{role}{suffix}-{run_id}@simulation.terrain.example"


async def open_campaign(api: Api, plan: Plan, run_id: str, organization: str) -> tuple[str, str]:
    """Register the client (a brand with a new organization), import the shops as CSV and
    launch the campaign on them. Returns the client's token and the campaign id."""
    email = simulated_email(run_id, "client")
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    await api.call(
        "POST",
        "/v1/auth/register",
        json={
            "email": email,
            "password": password,
            "display_name": "Limonaderie du Canal, field sales",
            "role": "client",
            "organization": {
                "name": organization,
                "description": "Craft lemonade from the 10th arrondissement; checks its "
                "bottles are on the shelves of the district's shops.",
            },
        },
        expect=(201,),
    )
    token = await api.sign_in(email, password)
    imported = await api.json(
        "POST",
        "/v1/stores/import",
        token=token,
        content=shops_csv(plan),
        headers={"Content-Type": "text/csv"},
        expect=(201,),
    )
    now = datetime.now(UTC)
    campaign = await api.json(
        "POST",
        "/v1/campaigns",
        token=token,
        json={
            **CAMPAIGN,
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
            "target": {"store_ids": imported["store_ids"]},
        },
        expect=(201,),
    )
    return token, str(campaign["id"])


def shops_csv(plan: Plan) -> bytes:
    out = io.StringIO()
    columns = ["external_ref", "name", "address", "lat", "lon", "geofence_radius_m"]
    writer = csv.writer(out)
    writer.writerow([*columns, "timezone", "opening_hours"])
    for shop in plan.shops:
        writer.writerow([*(getattr(shop, c) for c in columns), TIMEZONE, "24/7"])
    return out.getvalue().encode()
