"""``make screenshots``: pictures of the dashboard for README.

Starts a local stack (its own broker and workers, failure injection off), makes a few
transfers (one beyond the balance, so that a FAILED saga shows too), waits until they
end, opens ``GET /`` in a headless Chromium and writes ``list.png`` (counts, saga list,
balances) and ``detail.png`` (the first transfer's steps and history) into
``docs/screenshots/``. Needs Debian's ``chromium`` and ``chromium-driver``
(``scripts/install-test-tools``) and Selenium (the dev extras).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from saga_streams.local.cluster import LocalCluster

__all__ = ["CHROMEDRIVER", "CHROME_FLAGS", "CHROMIUM", "main", "start_chromium"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Headless, and nothing that reaches for the network: the page needs only loopback.
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1500",
)
#: Amounts of the transfers shown; 2000 is beyond A's $1000, so that saga FAILS.
AMOUNTS = (25, 10.5, 99.99, 2000, 7)
WAIT_S = 60.0
_NO_FAILURES = {f"SERVICE_{x}_FAILURE_RATE": "0" for x in "ABC"}


def start_chromium(profile: Path) -> WebDriver:
    """Debian's Chromium, headless, through its own chromedriver (no driver download)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise SystemExit("Chromium is not installed: run scripts/install-test-tools")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    return webdriver.Chrome(options=options, service=service)


def _until(driver: WebDriver, css: str, count: int = 1) -> None:
    wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= count,
        message=f"the dashboard showed no {css} within {WAIT_S:g}s",
    )


def photograph(driver: WebDriver, cluster: LocalCluster, first: str, out: Path) -> None:
    driver.get(cluster.url("orchestrator", "/"))
    urls = ",".join(cluster.url(name) for name in ("service-a", "service-b", "service-c"))
    field = driver.find_element(By.ID, "participant-urls")
    field.clear()
    field.send_keys(urls)
    driver.find_element(By.ID, "save-settings").click()
    _until(driver, "tr[data-account] .balance", 3)
    _until(driver, "#saga-rows tr[data-saga-id]", len(AMOUNTS))
    driver.save_screenshot(str(out / "list.png"))
    driver.execute_script(
        "document.querySelector(arguments[0]).click()", f'tr[data-saga-id="{first}"]'
    )
    _until(driver, "#step-rows tr[data-outcome]", 2)
    driver.save_screenshot(str(out / "detail.png"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="saga-screenshots-") as root:
        cluster = LocalCluster(Path(root), _NO_FAILURES, worker_args=("--loglevel", "warn"))
        try:
            cluster.start()
            ids = [str(cluster.transfer(amount)[1]["saga_id"]) for amount in AMOUNTS]
            cluster.wait_terminal(ids)
            driver = start_chromium(Path(root) / "chromium-profile")
            try:
                photograph(driver, cluster, ids[0], args.out)
            finally:
                driver.quit()
        finally:
            cluster.close()
    print(f"wrote {args.out / 'list.png'} and {args.out / 'detail.png'}")


if __name__ == "__main__":
    main()
