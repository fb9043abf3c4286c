import json
import shutil
import threading
import time
import urllib.request

import numpy as np
import pytest

from edgesam_edge.camera.errors import SinkError
from edgesam_edge.camera.mjpeg import MjpegSink
from edgesam_edge.camera.sinks import parse_sink
from edgesam_edge.camera.frame import Frame


@pytest.fixture
def served():
    """An MJPEG sink on a free localhost port, fed a 320x240 frame every 20 ms."""
    sink = MjpegSink("127.0.0.1", 0)
    sink.prepare()
    assert sink.running
    sink.open((320, 240), 30)
    stop = threading.Event()

    def feed():
        i = 0
        while not stop.is_set():
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, : (i * 7) % 320] = 200
            sink.write(Frame(img, i, time.perf_counter()), [], img)
            i += 1
            time.sleep(0.02)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    yield sink
    stop.set()
    t.join()
    sink.close()
    assert not sink.running


def wait_event(sink, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        got = sink.poll()
        if got:
            return got
        time.sleep(0.05)
    return []


def test_page_frame_stream_and_prompt_over_http(served):
    base = served.url
    assert served.host == "127.0.0.1"
    page = urllib.request.urlopen(base, timeout=5).read().decode()
    assert "<img" in page and "/prompt" in page
    jpg = urllib.request.urlopen(base + "frame.jpg", timeout=5).read()
    assert jpg[:2] == b"\xff\xd8"
    with urllib.request.urlopen(base + "stream", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        chunk = r.read(4096)
    assert b"--frame" in chunk and b"image/jpeg" in chunk
    req = urllib.request.Request(base + "prompt", data=json.dumps({"x": 12, "y": 34, "label": 0}).encode(),
                                 headers={"Content-Type": "application/json"})
    assert json.loads(urllib.request.urlopen(req, timeout=5).read())["ok"] is True
    ev = wait_event(served)
    assert [(e.kind, e.x, e.y, e.label) for e in ev] == [("point", 12.0, 34.0, 0)]
    bad = urllib.request.Request(base + "prompt", data=b'{"x": "left"}')
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=5)
    assert info.value.code == 400


def test_port_in_use_is_a_sink_error(served):
    other = parse_sink(f"mjpeg://127.0.0.1:{served.port}")
    with pytest.raises(SinkError, match="in use"):
        other.prepare()


def _chrome():
    """A headless Chromium through selenium; skipped only when the browser is not installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("chromium / chromedriver not installed (run .ci/install-browser)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=800,600"):
        opts.add_argument(flag)
    opts.page_load_strategy = "eager"
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_click_in_a_real_browser_reaches_the_loop(served):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chrome()
    try:
        browser.set_page_load_timeout(20)
        browser.get(served.url)
        img = browser.find_element(By.ID, "view")
        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return arguments[0].naturalWidth", img) == 320)
        served.poll()
        size = img.size  # displayed size; the page maps clicks to frame pixels
        ActionChains(browser).move_to_element_with_offset(img, 40 - size["width"] // 2, 60 - size["height"] // 2) \
            .click().perform()
        ev = wait_event(served)
        assert len(ev) == 1 and ev[0].kind == "point" and ev[0].label == 1
        assert abs(ev[0].x - 40 * 320 / size["width"]) <= 2 and abs(ev[0].y - 60 * 240 / size["height"]) <= 2
        # drag = box, right click = negative point
        ActionChains(browser).move_to_element_with_offset(img, -100, -80).click_and_hold() \
            .move_by_offset(120, 90).release().perform()
        ev = wait_event(served)
        assert ev and ev[0].kind == "box"
        x0, y0, x1, y1 = ev[0].box
        assert x1 - x0 > 100 and y1 - y0 > 70
        ActionChains(browser).move_to_element(img).context_click().perform()
        ev = wait_event(served)
        assert ev and ev[0].kind == "point" and ev[0].label == 0
        WebDriverWait(browser, 10).until(
            lambda d: d.find_element(By.ID, "status").text.startswith("sent"))
    finally:
        browser.quit()
