"""The subscribe, confirm and unsubscribe pages, and the digest email, in a real headless Chromium (Debian's
``chromium`` and ``chromium-driver``, driven by selenium; no browser is downloaded at run time)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from newsletter.digest import job
from tests.maildata import W48_DUE, page_story
from tests.mailsite import Site, confirm_url, live_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sqlite_only,  # what a browser sees does not depend on the database: test_web_subscribe runs on both
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: install Debian's chromium and chromium-driver (make test does) to run these",
    ),
]

if CHROMIUM.exists():
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support.wait import WebDriverWait


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    assert CHROMEDRIVER.exists(), (
        "/usr/bin/chromium is installed but /usr/bin/chromedriver is not: install chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1024,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Site]:
    with live_site(tmp_path, db_url) as s:
        yield s


def _h1(browser: WebDriver) -> str:
    return str(browser.find_element(By.TAG_NAME, "h1").text)


def _submit(browser: WebDriver, button: str) -> None:
    """Click a form's submit button and wait for the answer page: click() returns before the browser has left the
    page, and a look right after it may still find the old one."""
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, button).click()
    WebDriverWait(browser, 10).until(lambda _: _gone(page))


def _gone(element: WebElement) -> bool:
    """Whether the page holding element has been left. Chromium reports a node of a document being torn down either
    as stale or, in a narrow window, as "Node with given id does not belong to the document" (a plain
    WebDriverException that selenium's staleness_of lets through): both mean the old page is gone."""
    try:
        element.is_enabled()
    except WebDriverException:
        return True
    return False


def test_subscribe_then_confirm(browser: WebDriver, site: Site) -> None:
    browser.get(f"{site.url}/subscribe")
    assert _h1(browser) == "Subscribe to the weekly digest"
    field = browser.find_element(By.NAME, "email")
    assert field.get_attribute("type") == "email"
    field.send_keys("Browser.Reader@example.org")
    _submit(browser, "form.subscribe button[type=submit]")
    assert _h1(browser) == "Check your inbox"  # the submit navigates; selenium waits for the new page to load
    assert site.status("browser.reader@example.org") == "pending"

    (msg,) = site.outbox()
    path = confirm_url(msg).split("/", 3)[3]
    browser.get(f"{site.url}/{path}")
    assert _h1(browser) == "Confirm your subscription"
    assert site.status("browser.reader@example.org") == "pending"  # opening the link changed nothing
    _submit(browser, "main form button[type=submit]")
    assert _h1(browser) == "You are subscribed"
    assert browser.current_url == f"{site.url}/{path}"  # answered in place, no redirect
    assert site.status("browser.reader@example.org") == "confirmed"
    assert browser.get_cookies() == []


def test_the_preferences_page_from_the_digest_footer(browser: WebDriver, site: Site, tmp_path: Path) -> None:
    """Issue 18: the digest's "Manage preferences" link opens a page where a reader ticks topics, saves, sees the
    choice kept, and can unsubscribe from there."""
    shown = job.preview(
        site.store, site.settings, W48_DUE + timedelta(hours=1), tmp_path, as_email="reader@example.org"
    )
    browser.get(shown.html.as_uri())
    link = browser.find_element(By.LINK_TEXT, "Manage preferences").get_attribute("href")
    assert link is not None and "/preferences/" in link
    path = link.split("/", 3)[3]
    browser.get(f"{site.url}/{path}")
    assert _h1(browser) == "Your digest preferences"
    for topic in ("lung", "immunotherapy"):
        browser.find_element(By.CSS_SELECTOR, f"input[name=topic][value={topic}]").click()
    _submit(browser, "#save")
    assert browser.find_element(By.ID, "saved").text == "Saved: immunotherapy, lung."
    ticked = [e.get_attribute("value") for e in browser.find_elements(By.CSS_SELECTOR, "input[name=topic]:checked")]
    assert sorted(ticked) == ["immunotherapy", "lung"]
    found = site.store.subscriber_by_email("reader@example.org")
    assert found is not None and found.topics == ("immunotherapy", "lung")
    _submit(browser, "#unsubscribe")
    assert _h1(browser) == "You are unsubscribed"
    assert site.status("reader@example.org") == "unsubscribed"
    assert browser.get_cookies() == []


def test_the_form_shows_why_an_address_is_refused(browser: WebDriver, site: Site) -> None:
    browser.get(f"{site.url}/subscribe")
    field = browser.find_element(By.NAME, "email")
    field.send_keys("someone@localhost")  # the browser's own check lets it through; ours does not
    _submit(browser, "form.subscribe button[type=submit]")
    error = browser.find_element(By.ID, "email-error")
    assert "'someone@localhost': not a valid email address" in error.text
    assert browser.find_element(By.NAME, "email").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.NAME, "email").get_attribute("value") == "someone@localhost"
    assert site.outbox() == []


def test_unsubscribe_needs_the_button(browser: WebDriver, site: Site) -> None:
    token = site.unsubscribe_token("reader@example.org")
    browser.get(f"{site.url}/unsubscribe/{token}")
    assert _h1(browser) == "Unsubscribe from the weekly digest?"
    assert site.status("reader@example.org") == "confirmed"  # opening the link changed nothing
    _submit(browser, "main form button[type=submit]")
    assert _h1(browser) == "You are unsubscribed"
    assert browser.current_url == f"{site.url}/unsubscribe/{token}"  # answered in place, no redirect
    assert site.status("reader@example.org") == "unsubscribed"
    assert site.status("other@example.org") == "confirmed"


def test_a_forged_unsubscribe_link(browser: WebDriver, site: Site) -> None:
    browser.get(f"{site.url}/unsubscribe/1.forgedforgedforgedforgedforged")
    assert _h1(browser) == "This link is not valid"
    assert browser.find_elements(By.CSS_SELECTOR, "main form") == []


@pytest.mark.parametrize(
    ("scheme", "card", "text"),
    [
        ("light", "rgba(255, 255, 255, 1)", "rgba(31, 41, 51, 1)"),
        ("dark", "rgba(27, 32, 39, 1)", "rgba(228, 231, 235, 1)"),
    ],
)
def test_the_digest_email_in_light_and_dark(
    browser: WebDriver, site: Site, tmp_path: Path, scheme: str, card: str, text: str
) -> None:
    shown = job.preview(site.store, site.settings, W48_DUE + timedelta(hours=1), tmp_path, period="2026-W48")
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )
    try:
        browser.get(shown.html.as_uri())
        box = browser.find_element(By.CSS_SELECTOR, "table.card")
        assert box.value_of_css_property("background-color") == card
        assert box.size["width"] == 600
        cell = browser.find_element(By.CSS_SELECTOR, "td.cell")
        assert cell.value_of_css_property("color") == text
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert not browser.find_element(By.CSS_SELECTOR, ".preheader").is_displayed()
        titles = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "h3 a")]
        assert titles == ["A <b>bold</b> story of the week", "Recap: an old one"]
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("stylesheet", [True, False], ids=["with-style", "style-stripped"])
def test_the_digest_email_fits_the_screen_without_its_stylesheet(
    browser: WebDriver, site: Site, tmp_path: Path, width: int, stylesheet: bool
) -> None:
    """A phone at 375 px, and 600 px, with the ``<style>`` block kept and removed (as clients that strip it do): the
    card is fluid (at most 600 px), so nothing scrolls sideways, a long unbroken word included."""
    page_story(
        site.store,
        "Pembrolizumab-plus-chemotherapy-versus-chemotherapy-alone-in-untreated-metastatic-disease: the update",
        first_seen=W48_DUE + timedelta(days=1),
        page="/srv/seeds/long.txt",
    )
    shown = job.preview(site.store, site.settings, W48_DUE + timedelta(days=2), tmp_path, period="2026-W49")
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        browser.get(shown.html.as_uri())
        if not stylesheet:
            browser.execute_script("document.querySelectorAll('style').forEach(s => s.remove())")
            assert browser.find_elements(By.TAG_NAME, "style") == []
        assert browser.execute_script("return window.innerWidth") == width
        assert browser.execute_script("return document.scrollingElement.scrollWidth") <= width
        card = browser.find_element(By.CSS_SELECTOR, "table.card")
        assert card.size["width"] <= min(600, width)
        assert card.size["width"] >= min(600, width) - 16  # fluid: it fills the screen, less the outer gutter
        assert not browser.find_element(By.CSS_SELECTOR, ".preheader").is_displayed()
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _px(element: Any) -> float:
    return float(element.value_of_css_property("font-size").removesuffix("px"))


def test_the_digest_page_headings_outrank_the_story_titles(browser: WebDriver, site: Site) -> None:
    """The page's title, then each section's heading, then the stories' titles under it, then the text."""
    browser.get(f"{site.url}/digests/2026-W48")
    title = _px(browser.find_element(By.TAG_NAME, "h1"))
    sections = [_px(h) for h in browser.find_elements(By.CSS_SELECTOR, "main section > h2")]
    items = [_px(h) for h in browser.find_elements(By.CSS_SELECTOR, "main section li h3")]
    text = _px(browser.find_element(By.CSS_SELECTOR, "main section li p"))
    assert len(sections) == 2 and len(items) == 2
    assert title > max(sections)
    assert min(sections) > max(items), f"section headings {sections} px, story titles {items} px"
    assert min(items) >= text
    browser.get(f"{site.url}/")
    assert _px(browser.find_element(By.TAG_NAME, "h1")) > _px(browser.find_element(By.CSS_SELECTOR, "ol.stories h2"))
