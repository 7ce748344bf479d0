"""The dashboard in a real browser: a headless Chromium (Debian's, with its chromedriver)
driven by Selenium against a real stack, as an operator would use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from saga_streams.http_client import http_json
from saga_streams.local.screenshots import CHROMEDRIVER, CHROMIUM, start_chromium
from tests.e2e import Stack

pytestmark = pytest.mark.kafka

#: The page polls every 2 s; a saga on a healthy stack ends well within this.
WAIT_S = 60.0
#: Step 2 waits on a killed service-b: a short step timeout makes it retry early, and
#: enough attempts keep it STARTED (not given up) until the operator cancels it.
STACK_ENV = {
    "SERVICE_A_FAILURE_RATE": "0",
    "SERVICE_B_FAILURE_RATE": "0",
    "STEP_TIMEOUT": "2",
    "STEP_MAX_ATTEMPTS": "100",
    "RETRY_MAX_DELAY": "4",
}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "Chromium is not installed: run scripts/install-test-tools (make test does)"
    )
    driver = start_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, what: str, found: Callable[[WebDriver], object]) -> None:
    """Wait (bounded) until ``found`` answers something true; fail naming ``what``."""
    # The page redraws every 2 s: an element found just before a redraw goes stale, and
    # the next poll of the wait finds its successor.
    wait = WebDriverWait(
        driver, WAIT_S, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,)
    )
    wait.until(found, message=f"the dashboard never showed {what} within {WAIT_S:g}s")


def click(driver: WebDriver, css: str) -> None:
    """Click what ``css`` selects, again if a redraw replaced it in between."""

    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_for(driver, f"something to click at {css}", clicked)


def text_of(driver: WebDriver, css: str) -> str:
    """The text of what ``css`` selects ("" if nothing), read in one step in the page."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
    return str(driver.execute_script(script, css)).strip()


def row(saga_id: str, status: str = "") -> str:
    where = f'[data-status="{status}"]' if status else ""
    return f'#saga-rows tr[data-saga-id="{saga_id}"]{where}'


def flags_of(driver: WebDriver, saga_id: str) -> set[str]:
    """How the list marks a saga: ``stuck``, ``retrying`` (none if it is not listed)."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.dataset.flags : '';"
    return set(str(driver.execute_script(script, row(saga_id)) or "").split())


def open_dashboard(driver: WebDriver, stack: Stack) -> None:
    """Load the page and point its balances at the stack's participants (whose ports are
    not the defaults 8001-8003), through the page's own settings form."""
    driver.get(stack.url("orchestrator", "/"))
    assert driver.title == "saga_streams dashboard"
    urls = ",".join(stack.url(name) for name in ("service-a", "service-b", "service-c"))
    field = driver.find_element(By.ID, "participant-urls")
    field.clear()
    field.send_keys(urls)
    driver.find_element(By.ID, "save-settings").click()
    wait_for(driver, "the balance of A", lambda d: text_of(d, 'tr[data-account="A"] .balance'))


def balance_shown(driver: WebDriver, stack: Stack, role: str, account: str) -> bool:
    status, body = http_json("GET", stack.url(role, "/accounts"))
    assert status == 200, body
    (balance,) = [a["balance"] for a in body["accounts"] if a["account"] == account]
    return text_of(driver, f'tr[data-account="{account}"] .balance') == f"${balance}"


def check_completed_transfer(driver: WebDriver, stack: Stack, shots: Path) -> str:
    status, body = stack.transfer(25)
    assert status == 202, body
    saga_id = str(body["saga_id"])
    wait_for(
        driver,
        f"saga {saga_id} COMPLETED",
        lambda d: d.find_elements(By.CSS_SELECTOR, row(saga_id, "COMPLETED")),
    )
    wait_for(
        driver,
        "one COMPLETED in the counts",
        lambda d: text_of(d, '[data-status-count="COMPLETED"] .count') == "1",
    )
    wait_for(driver, "A's new balance", lambda d: balance_shown(d, stack, "service-a", "A"))
    wait_for(driver, "B's new balance", lambda d: balance_shown(d, stack, "service-b", "B"))
    driver.save_screenshot(str(shots / "list.png"))

    click(driver, row(saga_id))
    wait_for(driver, "the detail of the saga", lambda d: text_of(d, "#detail-id") == saga_id)
    wait_for(
        driver,
        "two succeeded steps",
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, '#step-rows tr[data-outcome="SUCCEEDED"]')) == 2
        ),
    )
    assert text_of(driver, "#detail-status") == "COMPLETED"
    if "history" in stack.saga(saga_id):
        wait_for(driver, "the history", lambda d: d.find_elements(By.CSS_SELECTOR, "#history li"))
        assert driver.find_element(By.ID, "history-section").is_displayed()
    else:
        assert not driver.find_element(By.ID, "history-section").is_displayed()
    driver.save_screenshot(str(shots / "detail.png"))
    return saga_id


def check_cancel_of_a_stuck_saga(driver: WebDriver, stack: Stack, shots: Path) -> str:
    stack.workers["service-b"].kill()
    status, body = stack.transfer(10)
    assert status == 202, body
    saga_id = str(body["saga_id"])
    threshold = driver.find_element(By.ID, "stuck-after")
    threshold.clear()
    threshold.send_keys("1")
    # Stuck (in flight past the threshold) and retrying (step 2 sent again and again).
    wait_for(
        driver,
        f"saga {saga_id} stuck and retrying",
        lambda d: {"stuck", "retrying"} <= flags_of(d, saga_id),
    )

    lookup = driver.find_element(By.ID, "saga-lookup")
    lookup.clear()
    lookup.send_keys(saga_id)
    driver.find_element(By.ID, "lookup-button").click()
    wait_for(
        driver,
        "step 2 pending",
        lambda d: d.find_elements(
            By.CSS_SELECTOR, '#step-rows tr[data-step="2"][data-outcome="PENDING"]'
        ),
    )
    driver.save_screenshot(str(shots / "stuck.png"))
    driver.find_element(By.ID, "cancel-button").click()
    wait_for(driver, "the cancel's answer", lambda d: text_of(d, "#action-result"))
    result = driver.find_element(By.ID, "action-result")
    assert result.get_attribute("class") == "done", result.text
    assert result.text.startswith(f"cancel accepted: saga {saga_id}"), result.text
    wait_for(
        driver,
        "the saga compensating",
        lambda d: text_of(d, "#detail-status") in ("COMPENSATING", "ROLLED_BACK"),
    )
    return saga_id


def test_dashboard_follows_sagas_and_cancels_a_stuck_one(
    stack_factory: Callable[..., Stack], browser: WebDriver, tmp_path: Path
) -> None:
    stack = stack_factory(**STACK_ENV)
    stack.start()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    open_dashboard(browser, stack)
    check_completed_transfer(browser, stack, shots)

    cancelled = check_cancel_of_a_stuck_saga(browser, stack, shots)
    # service-b back: the compensation of step 2 it missed is delivered and acknowledged.
    stack.start_worker("service-b").wait_ready()
    wait_for(
        browser,
        "the cancelled saga ROLLED_BACK",
        lambda d: text_of(d, "#detail-status") == "ROLLED_BACK",
    )
    assert browser.find_elements(By.CSS_SELECTOR, row(cancelled, "ROLLED_BACK"))
    browser.save_screenshot(str(shots / "cancelled.png"))
    stack.assert_invariants()
