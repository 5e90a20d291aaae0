"""The serve page in a real browser: headless Chromium draws with a pen and reads the answer, which for the fixture
model's drawings must be their label; labels with the token; and shows which model answers."""

import hashlib
import json
import os
import shutil

import httpx
import numpy as np
import pytest
from selenium.webdriver.support.wait import WebDriverWait

from browser import MISSING, PHONE, chromium, draw, settle
from carsketch.strokes import strokes_to_bitmap
from carsketch.inference.collected_store import CollectedStore
from carsketch.inference.onnx_model import OnnxModel
from carsketch.inference.reloading_model import ReloadingModel
from carsketch.inference.app import create_app
from conftest import AIRPLANE, make_drawings
from servers import running

pytestmark = [pytest.mark.skipif(MISSING is not None, reason=str(MISSING)), pytest.mark.slow]


@pytest.fixture(scope="module")
def browser(model_path, tmp_path_factory):
    """The page, served with a store of labelled drawings: (driver, url, store)."""
    store = CollectedStore(tmp_path_factory.mktemp("collected") / "drawings.ndjson")
    with running(create_app(OnnxModel(model_path), store)) as url, chromium() as driver:
        yield driver, url, store


def short_md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()[:8]


@pytest.fixture
def page(browser):
    driver, url, _ = browser
    driver.get(url + "/")
    return driver, url


def shown_bitmap(driver) -> np.ndarray:
    """The red channel of the page's 28x28 'what the model sees' canvas."""
    rgba = driver.execute_script("return Array.from(document.getElementById('bitmap').getContext('2d')"
                                 ".getImageData(0, 0, 28, 28).data);")
    return np.array(rgba, np.uint8).reshape(28, 28, 4)[..., 0]


def test_the_page_shows_what_the_api_gives_for_the_strokes_drawn(page):
    driver, url = page
    draw(driver, AIRPLANE)
    shown = settle(driver)
    # The page sends the strokes as Google's simplified drawings: aligned to 0, the longer side 0-255,
    # simplified; so they rasterise to the drawing that was drawn, whatever the pad's size on screen.
    drawing = shown["drawing"]
    points = np.concatenate([np.array(stroke) for stroke in drawing], axis=1)
    assert len(drawing) == len(AIRPLANE) and points.min(axis=1).tolist() == [0, 0] and points.max() == 255
    assert np.abs(strokes_to_bitmap(drawing).astype(float) - strokes_to_bitmap(AIRPLANE)).mean() < 3
    api = httpx.post(f"{url}/api/predict", json={"drawing": drawing}).json()["results"][0]
    probability = driver.find_element("id", "probability")
    assert probability.text == f"{api['car_probability']:.3f}"
    assert float(probability.get_attribute("data-value")) == pytest.approx(api["car_probability"], abs=1e-6)
    assert driver.find_element("id", "label").text == {"car": "Car", "not_car": "Not a car"}[api["label"]]
    assert np.array_equal(shown_bitmap(driver), strokes_to_bitmap(drawing))


@pytest.mark.parametrize("kind, label", [("car", "Car"), ("other", "Not a car")])
def test_the_page_labels_what_is_drawn(page, kind, label):
    driver, _ = page
    draw(driver, make_drawings(kind, 1, 8800)[0])
    assert settle(driver)["label"] == {"Car": "car", "Not a car": "not_car"}[label]
    assert driver.find_element("id", "label").text == label


def test_undo_takes_back_the_last_stroke_and_clear_all_of_them(page):
    driver, _ = page
    draw(driver, AIRPLANE)
    assert len(settle(driver)["drawing"]) == 5
    driver.find_element("id", "undo").click()
    after_undo = settle(driver)
    assert len(after_undo["drawing"]) == 4
    assert np.array_equal(shown_bitmap(driver), strokes_to_bitmap(after_undo["drawing"]))
    driver.find_element("id", "clear").click()
    assert settle(driver) is None
    assert driver.find_element("id", "label").text == "Draw something" and not shown_bitmap(driver).any()


def test_the_page_fits_a_phone_screen(page):
    driver, _ = page
    assert driver.execute_script("return window.innerWidth") == PHONE[0]
    assert driver.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    for element in ("pad", "undo", "clear", "probability", "is-car", "not-car", "kept", "model"):
        assert driver.find_element("id", element).is_displayed()


def test_it_is_not_a_car_keeps_the_drawing_with_that_label_and_clears_the_pad(browser):
    driver, url, store = browser
    driver.get(url + "/")
    kept = driver.find_element("id", "kept")
    WebDriverWait(driver, 30).until(lambda _: " kept (" in kept.text)  # the counts, once the page has asked
    before = store.summary()
    assert kept.text == (f"{before['total']} drawing{'' if before['total'] == 1 else 's'} kept ({before['car']} car, "
                         f"{before['not_car']} not car) in {store.path} on the server, to train the next model.")
    draw(driver, make_drawings("other", 1, 8900)[0])
    drawing = settle(driver)["drawing"]
    driver.find_element("id", "not-car").click()
    assert settle(driver) is None  # saved, and the pad cleared for the next drawing
    records = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert records[-1]["label"] == "not_car" and records[-1]["drawing"] == drawing
    assert len(records) == before["total"] + 1
    assert kept.text.startswith(f"Saved as not a car. {before['total'] + 1} drawing")
    assert f"{before['not_car'] + 1} not car" in kept.text
    assert driver.find_element("id", "label").text == "Draw something"
    assert not driver.find_element("id", "not-car").is_enabled()


def test_the_page_shows_which_model_answers_and_sees_a_new_one_taken_up(model_path, inverted_model_path, tmp_path):
    served = shutil.copyfile(model_path, tmp_path / "car_sketch.onnx")
    app = create_app(ReloadingModel(OnnxModel(served), poll_seconds=0.1))
    with running(app) as url, chromium() as driver:
        driver.get(url + "/")
        model = driver.find_element("id", "model")
        WebDriverWait(driver, 30).until(lambda _: model.text.startswith(f"Model {short_md5(model_path)}, loaded "))
        shutil.copyfile(inverted_model_path, tmp_path / "new.onnx")
        os.replace(tmp_path / "new.onnx", served)
        WebDriverWait(driver, 30).until(lambda _: model.text.startswith(f"Model {short_md5(inverted_model_path)}, "))
        draw(driver, make_drawings("car", 1, 8800)[0])
        assert settle(driver)["label"] == "not_car"  # the inverted model answers


def test_labelling_needs_the_url_with_the_token_and_the_page_says_so(model_path, tmp_path):
    store = CollectedStore(tmp_path / "drawings.ndjson")
    with running(create_app(OnnxModel(model_path), store, token="s3cret")) as url, chromium() as driver:
        for query in ("", "?token=s3cret"):
            driver.get(f"{url}/{query}")
            kept = driver.find_element("id", "kept")
            WebDriverWait(driver, 30).until(lambda _: " kept (" in kept.text)
            draw(driver, make_drawings("car", 1, 8900)[0])
            settle(driver)
            driver.find_element("id", "is-car").click()
            settle(driver)
            if not query:
                assert kept.text == ("Not saved: labelling needs the page's URL as `carsketch serve` printed it, "
                                     "with ?token=...: open that one")
                assert not store.path.exists()
        assert kept.text.startswith("Saved as a car. 1 drawing kept")
    assert len(store.path.read_text().splitlines()) == 1
