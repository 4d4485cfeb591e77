from __future__ import annotations

import json

from api.core.models import Role
from tests.conftest import table_fingerprint

GOOD_CSV = """external_ref,name,address,lat,lon,geofence_radius_m,timezone,opening_hours
P-1,Marché Bastille,2 Rue de la Roquette,48.8532,2.3692,60,Europe/Paris,Mo-Sa 08:30-20:00; Su off
P-2,"Épicerie ""Chez Nous"" Oberkampf",10 Rue Oberkampf,48.8649,2.3781,,Europe/Paris,
P-3,Lyon Part-Dieu,Rue de Bonnel,45.7606,4.8566,80,Europe/Paris,24/7
"""

BAD_CSV = """external_ref,name,address,lat,lon,geofence_radius_m,timezone,opening_hours
B-1,Fine store,1 Rue A,48.85,2.35,50,Europe/Paris,24/7
B-2,Bad latitude,1 Rue B,95.5,2.35,50,Europe/Paris,24/7
B-3,,1 Rue C,48.85,2.35,50,Europe/Paris,24/7
B-4,Unknown zone,1 Rue D,48.85,2.35,50,Europe/Pariss,24/7
B-5,Bad hours,1 Rue E,48.85,2.35,50,Europe/Paris,Mo-Fr 9-17
B-1,Duplicate ref,1 Rue F,48.85,2.35,50,Europe/Paris,24/7
"""


async def test_create_store_returns_geojson_location(http, factory):
    client = await factory.account(Role.client)
    response = await http.post(
        "/v1/stores",
        headers=client.headers,
        json={
            "external_ref": "S-1",
            "name": "Franprix Rivoli",
            "address": "52 Rue de Rivoli, 75004 Paris",
            "lat": 48.8561,
            "lon": 2.3556,
            "geofence_radius_m": 40,
            "timezone": "Europe/Paris",
            "opening_hours": "Mo-Sa 08:00-21:00",
        },
    )
    assert response.status_code == 201
    store = response.json()
    assert store["location"] == {"type": "Point", "coordinates": [2.3556, 48.8561]}
    assert store["geofence_radius_m"] == 40
    assert store["opening_hours"] == "Mo-Sa 08:00-21:00"

    again = await http.post(
        "/v1/stores",
        headers=client.headers,
        json={"external_ref": "S-1", "name": "Other", "lat": 1, "lon": 1, "timezone": "UTC"},
    )
    assert again.status_code == 409
    assert again.json()["code"] == "duplicate_external_ref"


async def test_create_store_validation(http, factory, db):
    client = await factory.account(Role.client)
    base = {"name": "S", "lat": 48.0, "lon": 2.0, "timezone": "Europe/Paris"}
    bad_values = [
        {"lat": 90.5},
        {"lon": -180.01},
        {"lat": "NaN"},
        {"geofence_radius_m": 5},
        {"geofence_radius_m": 5000},
        {"timezone": "Mars/Olympus"},
        {"opening_hours": "always"},
        {"name": ""},
        {"reward_cents": 100},  # unknown field
        {
            "footprint": {
                "type": "Polygon",
                "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
            }
        },
    ]
    for change in bad_values:
        response = await http.post("/v1/stores", headers=client.headers, json=base | change)
        assert response.status_code == 422, change
        assert response.json()["code"] == "invalid_request"
    assert await db.fetchval("SELECT count(*) FROM store") == 0


async def test_footprint_must_contain_the_location(http, factory):
    client = await factory.account(Role.client)
    square = {
        "type": "Polygon",
        "coordinates": [[[2.0, 48.0], [2.001, 48.0], [2.001, 48.001], [2.0, 48.001], [2.0, 48.0]]],
    }
    base = {"name": "S", "timezone": "Europe/Paris", "footprint": square}
    inside = await http.post(
        "/v1/stores", headers=client.headers, json=base | {"lat": 48.0005, "lon": 2.0005}
    )
    assert inside.status_code == 201
    assert inside.json()["footprint"]["type"] == "Polygon"
    outside = await http.post(
        "/v1/stores", headers=client.headers, json=base | {"lat": 48.01, "lon": 2.01}
    )
    assert outside.status_code == 422


async def test_list_pages_bbox_and_geojson(http, factory):
    client = await factory.account(Role.client)
    other = await factory.account(Role.client)
    paris = [(48.85 + i * 0.001, 2.35) for i in range(5)]
    ids = await factory.stores_at(client.organization_id, [*paris, (45.76, 4.85)])
    await factory.stores_at(other.organization_id, [(48.851, 2.351)])

    first = await http.get("/v1/stores", headers=client.headers, params={"limit": 4})
    assert first.status_code == 200
    second = await http.get(
        "/v1/stores",
        headers=client.headers,
        params={"limit": 4, "cursor": first.json()["next_cursor"]},
    )
    listed = [s["id"] for s in first.json()["items"] + second.json()["items"]]
    assert sorted(listed) == sorted(str(i) for i in ids)
    assert second.json()["next_cursor"] is None

    in_paris = await http.get(
        "/v1/stores", headers=client.headers, params={"bbox": "2.3,48.8,2.4,48.9"}
    )
    assert sorted(s["id"] for s in in_paris.json()["items"]) == sorted(str(i) for i in ids[:5])

    geojson = await http.get(
        "/v1/stores",
        headers=client.headers | {"Accept": "application/geo+json"},
        params={"bbox": "4.8,45.7,4.9,45.8"},
    )
    assert geojson.headers["content-type"] == "application/geo+json"
    collection = geojson.json()
    assert collection["type"] == "FeatureCollection"
    assert [f["id"] for f in collection["features"]] == [str(ids[5])]
    assert collection["features"][0]["geometry"] == {"type": "Point", "coordinates": [4.85, 45.76]}
    by_param = await http.get(
        "/v1/stores",
        headers=client.headers,
        params={"format": "geojson", "bbox": "4.8,45.7,4.9,45.8"},
    )
    assert by_param.json() == collection


async def test_bbox_across_the_antimeridian(http, factory):
    client = await factory.account(Role.client)
    fiji, samoa, _paris = await factory.stores_at(
        client.organization_id, [(-18.1, 178.4), (-13.8, -171.8), (48.85, 2.35)]
    )
    response = await http.get(
        "/v1/stores", headers=client.headers, params={"bbox": "170,-25,-165,-5"}
    )
    assert sorted(s["id"] for s in response.json()["items"]) == sorted([str(fiji), str(samoa)])
    for bad in ("1,2,3", "a,b,c,d", "0,10,1,5", "0,-95,1,5"):
        refused = await http.get("/v1/stores", headers=client.headers, params={"bbox": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["code"] == "invalid_bbox"


async def test_csv_import_lands_whole(http, factory, db):
    client = await factory.account(Role.client)
    response = await http.post(
        "/v1/stores/import",
        headers=client.headers | {"Content-Type": "text/csv"},
        content=GOOD_CSV.encode(),
    )
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 3
    rows = await db.fetch(
        "SELECT external_ref, name, geofence_radius_m, opening_hours, ST_Y(location::geometry) "
        "AS lat FROM store ORDER BY external_ref"
    )
    assert [tuple(r) for r in rows] == [
        ("P-1", "Marché Bastille", 60, "Mo-Sa 08:30-20:00; Su off", 48.8532),
        ("P-2", 'Épicerie "Chez Nous" Oberkampf', 50, "24/7", 48.8649),
        ("P-3", "Lyon Part-Dieu", 80, "24/7", 45.7606),
    ]
    again = await http.post(
        "/v1/stores/import",
        headers=client.headers | {"Content-Type": "text/csv"},
        content=GOOD_CSV.encode(),
    )
    assert again.status_code == 422
    assert [(e["line"], e["field"]) for e in again.json()["errors"]] == [
        (2, "external_ref"),
        (3, "external_ref"),
        (4, "external_ref"),
    ]


async def test_csv_with_bad_lines_is_refused_with_per_line_errors(http, factory, db):
    client = await factory.account(Role.client)
    before = await table_fingerprint(db)
    response = await http.post(
        "/v1/stores/import",
        headers=client.headers | {"Content-Type": "text/csv; charset=utf-8"},
        content=BAD_CSV.encode(),
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "import_rejected"
    assert body["imported"] == 0
    assert body["detail"] == "Nothing was imported: 5 line(s) have errors."
    assert [(e["line"], e["field"]) for e in body["errors"]] == [
        (3, "lat"),
        (4, "name"),
        (5, "timezone"),
        (6, "opening_hours"),
        (7, "external_ref"),
    ]
    reasons = {e["line"]: e["reason"] for e in body["errors"]}
    assert reasons[3] == "Input should be less than or equal to 90"
    assert reasons[5] == "unknown IANA time zone 'Europe/Pariss'"
    assert reasons[7] == "duplicate of line 2"
    assert await table_fingerprint(db) == before


async def test_csv_header_problems(http, factory):
    client = await factory.account(Role.client)
    response = await http.post(
        "/v1/stores/import",
        headers=client.headers | {"Content-Type": "text/csv"},
        content=b"name,latitude,lon,timezone\nA,1,2,UTC\n",
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_header"
    assert response.json()["missing_columns"] == ["lat"]
    assert response.json()["unknown_columns"] == ["latitude"]
    for payload, code in [
        (b"\xff\xfe\x00bad", "invalid_encoding"),
        (b"name,lat,lon,timezone\n", "empty_import"),
    ]:
        refused = await http.post(
            "/v1/stores/import",
            headers=client.headers | {"Content-Type": "text/csv"},
            content=payload,
        )
        assert refused.status_code == 422
        assert refused.json()["code"] == code
    extra_cells = await http.post(
        "/v1/stores/import",
        headers=client.headers | {"Content-Type": "text/csv"},
        content=b"name,lat,lon,timezone\nA,1,2,UTC,surplus\n",
    )
    assert extra_cells.json()["errors"] == [
        {"line": 2, "field": "record", "reason": "more cells than columns"}
    ]
    unsupported = await http.post(
        "/v1/stores/import", headers=client.headers | {"Content-Type": "text/plain"}, content=b"x"
    )
    assert unsupported.status_code == 415


async def test_geojson_import(http, factory, db):
    client = await factory.account(Role.client)
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [2.35, 48.85]},
                "properties": {"name": "A", "timezone": "Europe/Paris", "external_ref": "G-1"},
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-73.98, 40.75]},
                "properties": {"name": "B", "timezone": "America/New_York"},
            },
        ],
    }
    response = await http.post(
        "/v1/stores/import",
        headers=client.headers | {"Content-Type": "application/geo+json"},
        content=json.dumps(collection).encode(),
    )
    assert response.status_code == 201
    assert response.json()["imported"] == 2

    collection["features"][0]["geometry"] = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    collection["features"][1]["properties"]["timezone"] = "Nowhere"
    refused = await http.post(
        "/v1/stores/import",
        headers=client.headers | {"Content-Type": "application/geo+json"},
        content=json.dumps(collection).encode(),
    )
    assert refused.status_code == 422
    assert [(e["feature"], e["field"]) for e in refused.json()["errors"]] == [
        (1, "geometry"),
        (2, "timezone"),
    ]
    assert await db.fetchval("SELECT count(*) FROM store") == 2
