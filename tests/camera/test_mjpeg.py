import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgesam_edge.camera import rle
from edgesam_edge.camera.errors import SinkError
from edgesam_edge.camera.frame import Frame
from edgesam_edge.camera.mjpeg import MjpegSink
from edgesam_edge.camera.mjpeg_page import PAGE, PAGE_CSP
from edgesam_edge.camera.sinks import parse_sink
from edgesam_edge.camera.tracker import Track

W, H = 320, 240
STATUS = {"display_fps": 29.5, "model_fps": 4.0, "latency_ms": 12.0}


def fake_track(oid, state="tracked", score=0.9):
    mask = np.zeros((H, W), bool)
    x0, y0 = 20 + 60 * oid, 30 + 20 * oid
    mask[y0: y0 + 40, x0: x0 + 50] = True
    return Track(oid, mask, (float(x0), float(y0), float(x0 + 50), float(y0 + 40)), score, state, 0)


class Feeder:
    """Writes a 320x240 frame (a moving bar) with ``tracks`` every 20 ms and the loop's figures, as the loop would."""

    def __init__(self, sink):
        self.sink = sink
        self.tracks = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        i = 0
        while not self.stop.is_set():
            img = np.zeros((H, W, 3), np.uint8)
            img[:, : (i * 7) % W] = 200
            self.sink.write(Frame(img, i, time.perf_counter()), list(self.tracks.values()), img)
            self.sink.status(STATUS)
            i += 1
            self.stop.wait(0.02)

    def close(self):
        self.stop.set()
        self.thread.join()


@pytest.fixture
def feeder():
    """An MJPEG sink on a free localhost port, fed by a :class:`Feeder`."""
    sink = MjpegSink("127.0.0.1", 0)
    sink.prepare()
    assert sink.running
    sink.open((W, H), 30)
    f = Feeder(sink)
    yield f
    f.close()
    sink.close()
    assert not sink.running


@pytest.fixture
def served(feeder):
    return feeder.sink


def wait_event(sink, timeout=10.0, kind=None):
    end = time.time() + timeout
    while time.time() < end:
        got = sink.poll()
        if kind is not None:
            got = [e for e in got if e.kind == kind]
        if got:
            return got
        time.sleep(0.05)
    return []


def wait_for(cond, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get_json(base, path):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return json.loads(r.read())


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
    assert post(base, "prompt", {"x": 12, "y": 34, "label": 0}) == (200, {"ok": True, "event": "point 12,34 label 0"})
    ev = wait_event(served)
    assert [(e.kind, e.x, e.y, e.label) for e in ev] == [("point", 12.0, 34.0, 0)]
    code, answer = post(base, "prompt", {"x": "left"})
    assert code == 400 and answer["ok"] is False and "x" in answer["error"]


def test_objects_remove_pause_and_snapshot_over_http(feeder):
    sink, base = feeder.sink, feeder.sink.url
    feeder.tracks = {1: fake_track(1), 2: fake_track(2, "lost", 0.2)}
    assert wait_for(lambda: len(get_json(base, "tracks")["objects"]) == 2)
    t = get_json(base, "tracks")
    assert t["size"] == [W, H] and t["paused"] is False and t["max_objects"] == 32 and t["status"] == STATUS
    assert [(o["id"], o["state"], o["score"]) for o in t["objects"]] == [(1, "tracked", 0.9), (2, "lost", 0.2)]
    assert all(len(o["color"]) == 7 and o["color"].startswith("#") for o in t["objects"])
    # remove: an event for the loop; unknown ids are a 404
    assert post(base, "remove", {"id": 2})[0] == 200
    assert [(e.kind, e.object_id) for e in wait_event(sink)] == [("remove", 2)]
    assert post(base, "remove", {"id": 7})[0] == 404
    assert post(base, "remove", {"id": "2"})[0] == 400
    # snapshot: the PNG and the masks of the same frame
    snap = get_json(base, "snapshot.json")
    png = urllib.request.urlopen(base + snap["png"].lstrip("/"), timeout=5).read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and snap["size"] == [H, W]
    masks = {o["id"]: rle.decode(o["mask"]) for o in snap["objects"]}
    assert np.array_equal(masks[1], fake_track(1).mask) and np.array_equal(masks[2], fake_track(2).mask)
    # pause: the shown frame freezes while frames keep coming; the tracks stay live
    assert post(base, "pause", {"paused": True}) == (200, {"ok": True, "event": "pause", "paused": True})
    frozen = urllib.request.urlopen(base + "frame.jpg", timeout=5).read()
    seen = get_json(base, "tracks")["frame"]
    assert wait_for(lambda: get_json(base, "tracks")["frame"] > seen + 5)
    assert urllib.request.urlopen(base + "frame.jpg", timeout=5).read() == frozen
    assert get_json(base, "tracks")["paused"] is True and sink.paused
    assert post(base, "pause", {"paused": False})[0] == 200
    assert wait_for(lambda: urllib.request.urlopen(base + "frame.jpg", timeout=5).read() != frozen)
    assert post(base, "pause", {"paused": "yes"})[0] == 400


def test_port_in_use_is_a_sink_error(served):
    other = parse_sink(f"mjpeg://127.0.0.1:{served.port}")
    with pytest.raises(SinkError, match="in use"):
        other.prepare()


def test_page_csp_allows_exactly_its_inline_script_and_style():
    import base64
    import hashlib
    import re

    for tag in ("script", "style"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", PAGE, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in PAGE_CSP
    assert "frame-ancestors 'none'" in PAGE_CSP and "unsafe-inline" not in PAGE_CSP


# -- the page in a real browser -------------------------------------------------------------------

def _chrome(downloads=None):
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
                 "--window-size=800,900"):
        opts.add_argument(flag)
    if downloads is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False,
                                               "profile.default_content_setting_values.automatic_downloads": 1})
    opts.page_load_strategy = "eager"
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    if downloads is not None:
        browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return browser


def _open(browser, sink):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_page_load_timeout(20)
    browser.get(sink.url)
    img = browser.find_element(By.ID, "view")
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return arguments[0].naturalWidth", img) == W)
    sink.poll()
    return img


def test_click_in_a_real_browser_reaches_the_loop(served):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chrome()
    try:
        img = _open(browser, served)
        size = img.size  # displayed size; the page maps clicks to frame pixels
        ActionChains(browser).move_to_element_with_offset(img, 40 - size["width"] // 2, 60 - size["height"] // 2) \
            .click().perform()
        ev = wait_event(served)
        assert len(ev) == 1 and ev[0].kind == "point" and ev[0].label == 1
        assert abs(ev[0].x - 40 * W / size["width"]) <= 2 and abs(ev[0].y - 60 * H / size["height"]) <= 2
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


def _touch(browser, img, dx, dy, hold=0.05, move=None):
    """A finger on ``img`` at (dx, dy) from its centre: held ``hold`` s, optionally moved by ``move``."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    finger = PointerInput(interaction.POINTER_TOUCH, "finger")
    actions = ActionBuilder(browser, mouse=finger)
    actions.pointer_action.move_to(img, dx, dy).pointer_down().pause(hold)
    if move is not None:
        half = (move[0] // 2, move[1] // 2)
        actions.pointer_action.move_by(*half).move_by(move[0] - half[0], move[1] - half[1])
    actions.pointer_action.pointer_up()
    actions.perform()


def test_touch_in_a_real_browser_tap_long_press_and_drag(served):
    browser = _chrome()
    try:
        img = _open(browser, served)
        sx, sy = W / img.size["width"], H / img.size["height"]
        _touch(browser, img, -50, -30)  # tap: a new object
        ev = wait_event(served)
        assert [(e.kind, e.label) for e in ev] == [("point", 1)]
        assert abs(ev[0].x - (W / 2 - 50 * sx)) <= 3 and abs(ev[0].y - (H / 2 - 30 * sy)) <= 3
        _touch(browser, img, 20, 10, hold=0.9)  # long press: a negative point
        ev = wait_event(served)
        assert [(e.kind, e.label) for e in ev] == [("point", 0)]
        _touch(browser, img, -100, -80, move=(120, 90))  # drag: a box
        ev = wait_event(served)
        assert [e.kind for e in ev] == ["box"]
        x0, y0, x1, y1 = ev[0].box
        assert abs((x1 - x0) - 120 * sx) <= 4 and abs((y1 - y0) - 90 * sy) <= 4
    finally:
        browser.quit()


def test_the_page_lists_objects_removes_pauses_and_snapshots(feeder, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sink = feeder.sink
    feeder.tracks = {1: fake_track(1), 2: fake_track(2, "occluded", 0.25), 3: fake_track(3, "pending", 0.0)}
    browser = _chrome(downloads=tmp_path)
    try:
        _open(browser, sink)
        wait = WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException,))  # rows are redrawn

        def rows(d):
            return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")[:4]]
                    for tr in d.find_elements(By.CSS_SELECTOR, "#object-rows tr")]

        wait.until(lambda d: len(rows(d)) == 3)
        assert [r[0] for r in rows(browser)] == ["#1", "#2", "#3"]
        assert [r[2:] for r in rows(browser)] == [["tracked", "0.90"], ["occluded", "0.25"], ["pending", "0.00"]]
        swatch = browser.find_element(By.CSS_SELECTOR, "#object-rows tr[data-id='2'] .swatch")
        rgb = swatch.value_of_css_property("background-color")
        expected = get_json(sink.url, "tracks")["objects"][1]["color"]
        assert rgb.replace(" ", "") == "rgba({},{},{},1)".format(*(int(expected[i:i + 2], 16) for i in (1, 3, 5)))
        # the status line: display rate, model rate, latency
        wait.until(lambda d: "display 29.5 fps" in d.find_element(By.ID, "rates").text)
        rates = browser.find_element(By.ID, "rates").text
        assert "model 4.0/s" in rates and "latency 12 ms" in rates and "3 of 32 objects" in rates
        # remove one
        browser.find_element(By.CSS_SELECTOR, "#object-rows tr[data-id='2'] button.remove").click()
        ev = wait_event(sink)
        assert [(e.kind, e.object_id) for e in ev] == [("remove", 2)]
        feeder.tracks = {k: v for k, v in feeder.tracks.items() if k != 2}
        wait.until(lambda d: [r[0] for r in rows(d)] == ["#1", "#3"])
        # clear all
        browser.find_element(By.ID, "clear").click()
        assert [e.kind for e in wait_event(sink)] == ["clear"]
        # pause and resume
        browser.find_element(By.ID, "pause").click()
        wait.until(lambda d: sink.paused and d.find_element(By.ID, "pause").text == "resume (p)")
        assert browser.find_element(By.ID, "badge").is_displayed()
        browser.find_element(By.ID, "pause").click()
        wait.until(lambda d: not sink.paused and d.find_element(By.ID, "pause").text == "pause (p)")
        assert not browser.find_element(By.ID, "badge").is_displayed()
        # snapshot: a PNG and the masks as JSON with RLE, downloaded
        browser.find_element(By.ID, "snapshot").click()
        assert wait_for(lambda: len([p for p in tmp_path.glob("edgesam-*") if p.suffix in (".png", ".json")]) == 2,
                        20), list(tmp_path.iterdir())
        png = next(tmp_path.glob("edgesam-*.png")).read_bytes()
        snap = json.loads(next(tmp_path.glob("edgesam-*.json")).read_text())
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(next(tmp_path.glob("edgesam-*.png"))).stem == f"edgesam-{snap['frame']}"
        masks = {o["id"]: rle.decode(o["mask"]) for o in snap["objects"] if o["mask"] is not None}
        assert np.array_equal(masks[1], fake_track(1).mask)
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("snapshot of frame"))
    finally:
        browser.quit()
