"""The web console: reviewers, clients and admins use the API from a browser, at ``/console/``.

Static HTML, CSS and JavaScript modules (no build step) that call the same JSON API with the
bearer token from ``POST /v1/auth/token``; same origin, same access rules. Console pages carry
a strict Content-Security-Policy: scripts, styles and requests from this origin only; images
also from the photo storage and, when configured, the map tile server.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.console import exports
from api.core.deps import Public, SettingsDep
from api.core.errors import NotFound
from api.core.settings import Settings

STATIC = Path(__file__).parent / "static"
# Asset names are plain file names in the static folder: nothing else can be reached.
_ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
_MEDIA_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}


class ConsoleSettings(BaseSettings):
    """The console's own options: a raster tile server for maps (none: plain background)."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_CONSOLE_")

    # e.g. https://tiles.example.org/{z}/{x}/{y}.png ({s}. before the host: any subdomain).
    tile_url: str | None = Field(None, max_length=500)
    tile_attribution: str = Field("", max_length=300)

    @field_validator("tile_url")
    @classmethod
    def _tile_template(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("the tile URL must be an http(s) URL")
        if any(name not in value for name in ("{z}", "{x}", "{y}")):
            raise ValueError("the tile URL must contain {z}, {x} and {y}")
        return value


def tile_source(tile_url: str | None) -> str | None:
    """The CSP source that allows the tile server, ``{s}.`` subdomains as a wildcard."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url)
    host = re.sub(r"^\{s\}\.", "*.", parts.netloc)
    return f"{parts.scheme}://{host}"


def storage_sources(settings: Settings) -> list[str]:
    """Where photo links point: the local store's base URL, or the S3 endpoint browsers reach."""
    storage = settings.storage
    if storage.backend == "local":
        parts = urlsplit(storage.public_base_url)
        return [f"{parts.scheme}://{parts.netloc}"]
    if endpoint := storage.s3_public_url or storage.s3_endpoint_url:
        parts = urlsplit(endpoint)
        sources = [f"{parts.scheme}://{parts.netloc}"]
        if storage.s3_addressing_style != "path":
            sources.append(f"{parts.scheme}://{storage.s3_bucket}.{parts.netloc}")
        return sources
    region = storage.s3_region
    return [
        f"https://{storage.s3_bucket}.s3.{region}.amazonaws.com",
        f"https://s3.{region}.amazonaws.com",
    ]


def content_security_policy(settings: Settings, console: ConsoleSettings) -> str:
    images = ["'self'", "data:", "blob:", *storage_sources(settings)]
    if source := tile_source(console.tile_url):
        images.append(source)
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(dict.fromkeys(images))}",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _headers(request: Request) -> dict[str, str]:
    return {
        "Content-Security-Policy": request.app.state.console_csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


class ConsoleConfig(BaseModel):
    tile_url: str | None = Field(description="Raster tile URL template, or none")
    tile_attribution: str
    acceptance_window_hours: int = Field(description="Clients may dispute work this long")


router = APIRouter(tags=["console"], include_in_schema=False)


@router.get("/console/", dependencies=[Public])
async def console_page(request: Request) -> FileResponse:
    """The console's single page; the scripts draw each screen."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=_headers(request))


@router.get("/console/config.json", dependencies=[Public])
async def console_config(request: Request, settings: SettingsDep) -> JSONResponse:
    console: ConsoleSettings = request.app.state.console_settings
    config = ConsoleConfig(
        tile_url=console.tile_url,
        tile_attribution=console.tile_attribution,
        acceptance_window_hours=settings.review.acceptance_window_hours,
    )
    return JSONResponse(config.model_dump(), headers=_headers(request))


@router.get("/console/assets/{asset}", dependencies=[Public])
async def console_asset(asset: str, request: Request) -> FileResponse:
    path = STATIC / asset
    if not _ASSET.match(asset) or not path.is_file():
        raise NotFound("No such console file.", code="not_found")
    media_type = _MEDIA_TYPES[asset.rsplit(".", 1)[1]]
    return FileResponse(path, media_type=media_type, headers=_headers(request))


def install(app: FastAPI, console: ConsoleSettings | None = None) -> None:
    """Serve the console and its data routes; called by the app factory."""
    console = console or ConsoleSettings()
    app.state.console_settings = console
    app.state.console_csp = content_security_policy(app.state.settings, console)
    app.include_router(exports.router)
    app.include_router(router)
