"""Make docs/live-page.png: the live view's page in headless Chromium, on `edgesam live` with the demo model.

    python docs/live_page_screenshot.py            # needs chromium + chromium-driver (.ci/install-browser)

Runs ``edgesam live`` on the synthetic scene with one box per object, opens the page,
waits until every object is listed and the rates are shown, and saves the screenshot.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "live-page.png"


def main() -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "edgesam_edge", "live",
                             "synthetic://?size=640x480&fps=30&objects=3&seed=0&motion=slow", "--headless",
                             "--prompt-from-gt", "--sink", f"mjpeg://127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=700,1000"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        end = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > end or proc.poll() is not None:
                    raise SystemExit("edgesam live did not start")
                time.sleep(0.5)
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#object-rows tr")) == 3)
        wait.until(lambda d: "fps" in d.find_element(By.ID, "rates").text and "\u2013" not in
                   d.find_element(By.ID, "rates").text)
        time.sleep(3)  # a few seconds of tracking, so the masks have settled
        browser.save_screenshot(str(OUT))
    finally:
        browser.quit()
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
