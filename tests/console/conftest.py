"""Browser tests of the console: the app on a real uvicorn server, driven by headless Chromium
(Debian's package, installed by ``make test``; never a browser downloaded by Playwright)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import async_playwright

from api.core.settings import Settings
from api.main import create_app
from tests.conftest import Factory, free_port, make_settings, plain_dsn, serving, truncate

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
DESKTOP = {"width": 1440, "height": 900}
TABLET = {"width": 820, "height": 1180}


@dataclass
class Server:
    url: str
    settings: Settings


@pytest.fixture(scope="session")
def console_server(test_database_url: str, tmp_path_factory) -> Iterator[Server]:
    """The API on a loopback port, its photo links pointing at itself (as with ``make run``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = make_settings(test_database_url, str(tmp_path_factory.mktemp("objects")))
    settings.storage.public_base_url = url
    with serving(create_app(settings), port):
        yield Server(url, settings)


@pytest.fixture
async def db(console_server: Server) -> AsyncIterator[asyncpg.Connection]:
    await truncate(console_server.settings.db.url)
    connection = await asyncpg.connect(plain_dsn(console_server.settings.db.url))
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def factory(db: asyncpg.Connection, console_server: Server) -> Factory:
    return Factory(db, console_server.settings)


@pytest.fixture
async def http(console_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console_server.url, timeout=30) as client:
        yield client


def chromium() -> str:
    assert os.path.exists(CHROMIUM), "make test installs Debian's chromium package"
    return CHROMIUM


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser, console_server: Server):
    context = await browser.new_context(
        viewport=DESKTOP, base_url=console_server.url, accept_downloads=True
    )
    errors: list[str] = []
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    await context.close()


async def sign_in(page, email: str, password: str) -> None:
    await page.goto("/console/")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def screenshot(page, name: str) -> Path:
    """The page at desktop and tablet widths, under tests/console/artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("tablet", TABLET)):
        await page.set_viewport_size(size)
        await page.wait_for_timeout(150)
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)
    return ARTIFACTS
