"""The chest X-ray viewer in a real browser: Orthanc → our MONAI Label app (tiny random ROSALIA) → OHIF with our
extension and mode, driven by selenium as a user would (select, type, click), checked against the server's own
answer to the same request. Screenshots go to ``outputs/viewer_screenshots/`` (``ILS_VIEWER_SCREENSHOTS``)."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image


INSTRUCTION = "Segment the opacity in the right lung base."


def _report() -> str:
    """The multi-line report written for the sample CR (shipped with monai_ils)."""
    from monai_ils.data import sample

    return (Path(sample.__file__).parent / "sample" / "RG1_UNCR.txt").read_text()


# ----------------------------------------------------------------------------------------------- helpers
def server_infer(url: str, model: str, image: str, params: dict, output: str):
    return requests.post(f"{url}/infer/{model}?image={image}&output={output}", data={"params": json.dumps(params)}, timeout=300)


def wait_for(driver, script: str, timeout: float, what: str):
    deadline = time.time() + timeout
    value = None
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.5)
    logs = [entry["message"] for entry in driver.get_log("browser")][-15:]
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; browser console:\n" + "\n".join(logs))


IMAGE_SHOWN = """
const els = (window.cornerstone && window.cornerstone.getEnabledElements()) || [];
const vp = els[0] && els[0].viewport;
const id = vp && vp.getCurrentImageId && vp.getCurrentImageId();
return !!(id && window.cornerstone.cache.getImage(id) && document.querySelector('[data-testid=ils-panel] [data-testid=ils-run]'));
"""

# the labelmap our panel drew: segment labels and its pixels (base64 of the uint8 label ids)
READ_LABELMAP = """
const title = arguments[0];
const seg = window.services.segmentationService.getSegmentations().find(s => (s.label || '').startsWith(title));
if (!seg) { return null; }
const cs = window.cornerstoneTools.segmentation.state.getSegmentation(seg.segmentationId);
const imageIds = cs.representationData.Labelmap.imageIds;
const image = window.cornerstone.cache.getImage(imageIds[0]);
const data = image.voxelManager ? image.voxelManager.getScalarData() : image.getPixelData();
const bytes = new Uint8Array(data.length);
for (let i = 0; i < data.length; i++) { bytes[i] = data[i]; }
let binary = '';
for (let i = 0; i < bytes.length; i += 0x8000) { binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)); }
const segments = {};
for (const [index, s] of Object.entries(seg.segments || {})) { if (s) { segments[index] = s.label; } }
return {rows: image.rows, columns: image.columns, count: imageIds.length, data: btoa(binary), segments: segments,
        representations: window.services.segmentationService.getSegmentationRepresentations(
            window.cornerstone.getEnabledElements()[0].viewport.id, {segmentationId: seg.segmentationId}).length};
"""

# canvas (CSS px, relative to the canvas) of image pixels given as [column, row]
IMAGE_TO_CANVAS = """
const points = arguments[0];
const vp = window.cornerstone.getEnabledElements()[0].viewport;
const imageId = vp.getCurrentImageId();
return points.map(([c, r]) => vp.worldToCanvas(window.cornerstone.utilities.imageToWorldCoords(imageId, [c + 0.5, r + 0.5])));
"""


def canvas_pixels(driver) -> np.ndarray:
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.CSS_SELECTOR, "canvas.cornerstone-canvas")
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")).astype(int)


def labelmap_array(found: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(found["data"]), np.uint8).reshape(found["rows"], found["columns"])


def open_study(driver, url: str, study_uid: str) -> None:
    driver.get(f"{url}/viewer/ils-cxr?StudyInstanceUIDs={study_uid}")
    wait_for(driver, IMAGE_SHOWN, 120, "the CR in the viewport and the ILS panel")
    time.sleep(1.0)  # let the first render settle before the 'before' screenshot


def choose_model(driver, model: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.CSS_SELECTOR, "[data-testid=ils-model]")).select_by_value(model)


STATUS = "document.querySelector('[data-testid=ils-status]')"


def run_and_wait(driver, timeout: float = 240.0) -> str:
    """Click Run and wait until the panel counts one more finished run; returns its status line."""
    from selenium.webdriver.common.by import By

    runs = int(driver.execute_script(f"return {STATUS}.dataset.runs"))
    driver.find_element(By.CSS_SELECTOR, "[data-testid=ils-run]").click()
    return wait_for(
        driver,
        f"const s = {STATUS}; return Number(s.dataset.runs) > {runs} ? s.textContent : null;",
        timeout,
        "the panel's status after Run",
    )


def type_into(driver, selector: str, text: str) -> None:
    """Replace a field's text with keystrokes, as a user does (select all, delete, type)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.CSS_SELECTOR, selector)
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    if text:
        field.send_keys(text)


def mask_and_background_points(mask: np.ndarray, n: int = 200, margin: int = 8, seed: int = 0):
    """Image pixels deep inside the mask and deep outside it (``margin`` px from its edge and the border)."""
    from scipy import ndimage

    inside = ndimage.binary_erosion(mask, iterations=margin)
    outside = ndimage.binary_erosion(~mask, iterations=margin, border_value=0)
    rng = np.random.default_rng(seed)

    def pick(region):
        rows, cols = np.nonzero(region)
        assert rows.size, "the returned mask has no pixels this far from its edge"
        idx = rng.choice(rows.size, size=min(n, rows.size), replace=False)
        return [[int(cols[i]), int(rows[i])] for i in idx]

    return pick(inside), pick(outside)


def changed_fraction(driver, before: np.ndarray, after: np.ndarray, points) -> float:
    canvas = driver.execute_script(IMAGE_TO_CANVAS, points)
    height, width = before.shape[:2]
    changed = 0
    for x, y in canvas:
        x, y = int(round(x)), int(round(y))
        assert 0 <= x < width and 0 <= y < height, f"canvas point {(x, y)} outside the {width}x{height} canvas"
        changed += int(np.abs(after[y, x] - before[y, x]).sum() > 30)
    return changed / len(canvas)


# ----------------------------------------------------------------------------------------------- scenarios
@pytest.fixture(scope="module")
def page(browser, ils_server, orthanc):
    open_study(browser, ils_server, orthanc.study_uid)
    return browser


def test_rosalia_instruction_draws_mask_and_shows_answer(page, ils_server, orthanc, screenshots):
    from selenium.webdriver.common.by import By

    expected = server_infer(ils_server, "rosalia", orthanc.series_uid, {"instruction": INSTRUCTION}, "image")
    assert expected.status_code == 200, expected.text
    mask = np.asarray(Image.open(io.BytesIO(expected.content))) > 0
    assert mask.shape == orthanc.image_shape and 0.001 < mask.mean() < 0.999, "the tiny model's mask must have both classes"
    answer = server_infer(ils_server, "rosalia", orthanc.series_uid, {"instruction": INSTRUCTION}, "json").json()["answer"]

    before = canvas_pixels(page)
    assert before.std() > 10, "the CR is not rendered (uniform canvas)"
    page.save_screenshot(str(screenshots / "0_study_opened.png"))

    choose_model(page, "rosalia")
    type_into(page, "[data-testid=ils-instruction]", INSTRUCTION)
    status = run_and_wait(page)
    assert status.startswith("Done"), status
    time.sleep(1.5)  # the labelmap redraw follows the data-modified event
    page.save_screenshot(str(screenshots / "1_rosalia_mask_and_answer.png"))

    assert page.find_element(By.CSS_SELECTOR, "[data-testid=ils-answer]").text == answer.strip()
    found = page.execute_script(READ_LABELMAP, "rosalia")
    assert found is not None, "no segmentation named 'rosalia: …' was added"
    assert found["count"] == 1 and found["representations"] == 1
    assert found["segments"] == {"1": "opacity"}  # named by the lesion the instruction names
    np.testing.assert_array_equal(labelmap_array(found), mask.astype(np.uint8))

    after = canvas_pixels(page)
    inside, outside = mask_and_background_points(mask)
    assert changed_fraction(page, before, after, inside) > 0.9, "the canvas does not show the mask where the label has it"
    assert changed_fraction(page, before, after, outside) < 0.05, "the canvas changed where the label is background"


def test_grounding_report_draws_its_mask(page, ils_server, orthanc, screenshots):
    from selenium.webdriver.common.by import By

    report = _report()
    assert "\n" in report
    expected = server_infer(ils_server, "grounding", orthanc.series_uid, {"report": report}, "image")
    assert expected.status_code == 200, expected.text
    label = np.asarray(Image.open(io.BytesIO(expected.content)))
    result = server_infer(ils_server, "grounding", orthanc.series_uid, {"report": report}, "json").json()
    present = result["labels_present"]
    assert present and label.any(), "the grounding of the sample report has a mask"

    choose_model(page, "grounding")
    type_into(page, "[data-testid=ils-report]", report)
    assert page.execute_script("return document.querySelector('[data-testid=ils-report]').value") == report
    status = run_and_wait(page)
    assert status.startswith("Done"), status
    time.sleep(1.5)
    page.save_screenshot(str(screenshots / "2_grounding_mask.png"))

    found = page.execute_script(READ_LABELMAP, "grounding")
    assert found is not None, "no segmentation named 'grounding: …' was added"
    assert sorted(found["segments"].values()) == sorted(present)
    np.testing.assert_array_equal(labelmap_array(found), label)
    findings = page.find_element(By.CSS_SELECTOR, "[data-testid=ils-findings]").text
    assert all(lesion in findings for lesion in present)
    # the earlier rosalia segmentation was replaced, not stacked under it
    assert page.execute_script(READ_LABELMAP, "rosalia") is None


def test_empty_instruction_toast_shows_server_reason(page, ils_server, orthanc, screenshots):
    from selenium.webdriver.common.by import By

    refused = server_infer(ils_server, "rosalia", orthanc.series_uid, {"instruction": ""}, "image")
    assert refused.status_code == 400
    detail = refused.json()["detail"]

    choose_model(page, "rosalia")
    type_into(page, "[data-testid=ils-instruction]", "")
    assert page.execute_script("return document.querySelector('[data-testid=ils-instruction]').value") == ""
    status = run_and_wait(page, timeout=60)
    assert "HTTP 400" in status, status
    toast = wait_for(
        page,
        "const t = [...document.querySelectorAll('[data-sonner-toast]')].map(e => e.innerText).join('\\n');"
        "return t.includes(arguments[0]) ? t : null;".replace("arguments[0]", json.dumps(detail[:80])),
        20,
        "a toast with the server's reason",
    )
    assert detail[:80] in toast
    page.save_screenshot(str(screenshots / "3_empty_instruction_toast.png"))


def test_monailabel_client_path_unchanged_behind_the_wrapper(ils_server, orthanc, tmp_path):
    """MONAI Label's own Python client (as 3D Slicer-style tools call /infer) against the wrapped server."""
    from monailabel.client import MONAILabelClient

    client = MONAILabelClient(ils_server, tmpdir=str(tmp_path))
    info = client.info()
    assert set(info["models"]) == {"rosalia", "grounding"} and info["lesion_types"][0] == "cardiomegaly"
    label, params = client.infer("rosalia", orthanc.series_uid, {"instruction": INSTRUCTION})
    expected = server_infer(ils_server, "rosalia", orthanc.series_uid, {"instruction": INSTRUCTION}, "image")
    np.testing.assert_array_equal(np.asarray(Image.open(label)), np.asarray(Image.open(io.BytesIO(expected.content))))
    assert isinstance(params["answer"], str) and params["image"]["photometric_interpretation"] == "MONOCHROME1"
    # MONAI Label's own routes are still there beside /viewer/
    assert requests.get(f"{ils_server}/ohif/", timeout=30).status_code == 200
    assert requests.get(f"{ils_server}/viewer", timeout=30, allow_redirects=False).status_code in (301, 302, 307)
    assert requests.get(f"{ils_server}/viewer/no/such/asset.js", timeout=30).status_code == 404
    routed = requests.get(f"{ils_server}/viewer/ils-cxr?StudyInstanceUIDs={orthanc.study_uid}", timeout=30)
    assert routed.status_code == 200 and "window.PUBLIC_URL = '/viewer/'" in routed.text


def test_study_list_offers_the_mode_for_the_cr(browser, ils_server, orthanc, screenshots):
    """The study list (QIDO through the server's proxy) shows the CR, and 'Chest X-ray ILS' is enabled for it."""
    from selenium.webdriver.common.by import By

    browser.get(f"{ils_server}/viewer/")
    uid = orthanc.study_uid
    wait_for(browser, f"return !!document.querySelector('[data-cy=\"studyRow-{uid}\"]')", 60, "the CR in the study list")
    browser.find_element(By.CSS_SELECTOR, f'[data-cy="studyRow-{uid}"]').click()
    selector = f'[data-cy="mode-ils-cxr-{uid}"]'
    wait_for(browser, f"return !!document.querySelector('{selector}')", 20, "the mode buttons of the expanded row")
    button = browser.find_element(By.CSS_SELECTOR, selector)
    assert button.text.strip() == "Chest X-ray ILS" and button.is_enabled()
    browser.save_screenshot(str(screenshots / "4_study_list.png"))
