"""Every screen works from the keyboard, labels every input, and has readable text (WCAG AA)."""

# ruff: noqa: E501  (the page scripts below read best unwrapped)

from __future__ import annotations

import pytest

from api.core.models import Role
from tests.conftest import PASSWORD
from tests.console.conftest import sign_in
from tests.console.test_reviewer import flagged_submission

pytestmark = pytest.mark.browser

# Every control a keyboard must reach, probed in the page and numbered.
PROBE = """() => {
  const selector = 'a[href], button:not([disabled]), input:not([disabled]),'
    + ' select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';
  const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const controls = [...document.querySelectorAll(selector)].filter(shown);
  controls.forEach((el, i) => { el.dataset.probe = String(i); });
  return controls.length;
}"""

FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return [el.dataset.probe ?? null, style.outlineStyle !== 'none' && style.outlineWidth !== '0px'];
}"""

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter((el) => !(el.labels?.length || el.getAttribute('aria-label')
                    || el.getAttribute('aria-labelledby')))
  .map((el) => el.outerHTML)"""

# WCAG 2 contrast of every piece of text against the background it is drawn on.
CONTRAST = """() => {
  const parse = (value) => {
    const m = value.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return { r, g, b, a };
  };
  const luminance = ({ r, g, b }) => {
    const [R, G, B] = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const background = (el) => {
    const layers = [];
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour && colour.a > 0) layers.push(colour);
      if (colour && colour.a === 1) break;
    }
    return layers.reverse().reduce((below, layer) => over(layer, below), { r: 255, g: 255, b: 255, a: 1 });
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const failures = [];
  let checked = 0;
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg') || !el.getClientRects().length) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const fg = parse(getComputedStyle(el).color);
    const value = ratio(over(fg, background(el)), background(el));
    checked += 1;
    if (value < 4.5) failures.push(`${el.tagName}.${el.className}: ${value.toFixed(2)} "${el.textContent.trim().slice(0, 40)}"`);
  }
  for (const marker of document.querySelectorAll('g.marker')) {
    const text = parse(getComputedStyle(marker.querySelector('text')).fill);
    const disc = parse(getComputedStyle(marker.querySelector('circle')).fill);
    checked += 1;
    if (ratio(text, disc) < 4.5) failures.push(`marker ${marker.getAttribute('class')}: ${ratio(text, disc).toFixed(2)}`);
  }
  return { checked, failures };
}"""


async def assert_accessible(page, screen: str) -> None:
    controls = await page.evaluate(PROBE)
    assert controls > 0, screen
    reached, unmarked = set(), []
    for _ in range(2 * controls + 4):
        await page.keyboard.press("Tab")
        probe, outlined = await page.evaluate(FOCUSED)
        if probe is not None:
            reached.add(int(probe))
            if not outlined:
                unmarked.append(probe)
    assert reached == set(range(controls)), (screen, sorted(set(range(controls)) - reached))
    assert unmarked == [], (screen, "focus must be visible")
    assert await page.evaluate(UNLABELLED) == [], screen
    contrast = await page.evaluate(CONTRAST)
    assert contrast["checked"] > 5, screen
    assert contrast["failures"] == [], (screen, contrast["failures"])


async def test_every_screen_is_usable_by_keyboard_labelled_and_readable(page, http, factory, db):
    worker, submission = await flagged_submission(http, factory)
    client_id = await db.fetchval(
        'SELECT u.id FROM "user" u JOIN campaign c ON c.created_by = u.id LIMIT 1'
    )
    client_email = await db.fetchval('SELECT email FROM "user" WHERE id = $1', client_id)
    admin = await factory.account(Role.admin)
    other_admin = await factory.account(Role.admin)
    suspended = await http.post(
        f"/v1/users/{worker.id}/suspension",
        headers=other_admin.headers,
        json={"reason_code": "location_spoofing", "message": "Positions were simulated."},
    )
    assert suspended.status_code == 201, suspended.text
    appealed = await http.post(
        "/v1/me/suspension/appeal", headers=worker.headers, json={"message": "I was there."}
    )
    assert appealed.status_code == 200, appealed.text

    await page.goto("/console/")
    await page.get_by_role("heading", name="Sign in").wait_for()
    await assert_accessible(page, "sign-in")

    await sign_in(page, admin.email, PASSWORD)
    await page.get_by_role("heading", name="Review queue").wait_for()
    await assert_accessible(page, "queue")
    await page.goto(f"/console/#/review/{submission['id']}")
    await page.get_by_text("Held by you until").wait_for()
    await page.wait_for_function("() => document.querySelector('button.photo img').complete")
    await assert_accessible(page, "review item")
    await page.goto("/console/#/admin")
    await page.get_by_role("heading", name="Suspensions in force").wait_for()
    assert await page.get_by_label("Comment (required)").count() == 1
    await assert_accessible(page, "administration")

    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, client_email, PASSWORD)
    await page.get_by_role("heading", name="Campaigns").wait_for()
    await assert_accessible(page, "campaigns")
    await page.get_by_role("link", name="Shelf check").click()
    await page.get_by_role("heading", name="Stores by task status").wait_for()
    await assert_accessible(page, "campaign")
    assert page.errors == []
