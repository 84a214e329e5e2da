"""Issue 17: the unsubscribe page in a real browser. Debian's chromium and chromium-driver
(installed on first use, as the Dovecot tests install theirs), driven headless by selenium:
open the link of a caught message, choose, confirm, see the confirmation; the address is
suppressed. The screenshots go to the test's folder; with CAMPAIGNS_SCREENSHOTS=1 to
docs/screenshots/ (how the committed ones were made). When chromium cannot be provided or
started, the test fails saying why: it never skips."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests import debian
from tests.test_unsubscribe import page_url, served, sent, suppressions, uris  # noqa: F401

DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def _shots(project: Any) -> Path:
    """docs/screenshots when asked for (CAMPAIGNS_SCREENSHOTS=1), else the test's folder: a
    test run leaves the checkout as it found it."""
    import os
    return DOCS_SCREENSHOTS if os.environ.get("CAMPAIGNS_SCREENSHOTS") == "1" else project.root


def _browser(language: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium = debian.ensure("chromium", "chromium")
    driver = debian.ensure("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=820,720", f"--lang={language}"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": f"{language},en;q=0.5"})
    # the Debian driver, never one Selenium Manager would download
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_unsubscribe_page_in_a_real_browser(project, sent, served):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    _shots(project).mkdir(parents=True, exist_ok=True)
    browser = _browser("it-IT")
    try:
        browser.get(page_url(served, uris(sent["n3@example.test"])[0]))
        confirm = browser.find_element(By.ID, "confirm")
        assert confirm.text == "Conferma la cancellazione"
        assert "Negozio Più (news@shop.test)" in browser.find_element(By.TAG_NAME, "main").text
        # the vendored stylesheet applied (a red button), not the browser's default look
        assert browser.execute_script(
            "return getComputedStyle(arguments[0]).backgroundColor", confirm) == "rgb(179, 38, 30)"
        browser.save_screenshot(str(_shots(project) / "unsubscribe.png"))
        assert "n3@example.test" not in suppressions(project)      # the GET changed nothing
        browser.find_element(By.CSS_SELECTOR, "input[name=scope][value=all]").click()
        confirm.click()
        done = WebDriverWait(browser, 15).until(seen.presence_of_element_located((By.ID, "done")))
        assert done.text == "Iscrizione annullata"
        assert "Registrato il" in browser.find_element(By.TAG_NAME, "main").text
        browser.save_screenshot(str(_shots(project) / "unsubscribe-done.png"))
    finally:
        browser.quit()
    got = suppressions(project)["n3@example.test"]
    assert [(s.source, s.scope) for s in got] == [("unsubscribe", "bulk")]
    assert "page" in got[0].reason
