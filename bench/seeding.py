"""Rows a benchmark writes besides its own: the checklist every campaign's tasks follow."""

from __future__ import annotations

import json

import asyncpg

from checklists import estimated_minutes, photo_checklist


async def insert_photo_checklists(
    conn: asyncpg.Connection, *, min_photos: int, max_photos: int
) -> None:
    """Version 1 of a photos-only checklist for every campaign that has none yet."""
    checklist = photo_checklist(min_photos, max_photos)
    await conn.execute(
        "INSERT INTO checklist_version "
        "(campaign_id, version, definition, estimated_minutes, created_by) "
        "SELECT c.id, 1, $1::jsonb, $2, c.created_by FROM campaign c "
        "WHERE NOT EXISTS (SELECT 1 FROM checklist_version v WHERE v.campaign_id = c.id)",
        json.dumps(checklist.to_dict()),
        estimated_minutes(checklist),
    )
