"""Drawing on the serve page in headless Chromium (Debian's chromium and chromium-driver) through Selenium.

The browser test uses it. Run as a script, it retakes the README's screenshot of a car drawn on the page:

    python -m tests.browser --model model_data/car_sketch.onnx docs/serve.png
"""

import argparse
import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.support.wait import WebDriverWait

from tests.servers import serve_process

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = None if CHROMIUM and CHROMEDRIVER else (
    "headless Chromium not found (chromium and chromedriver on PATH): "
    "`apt-get install chromium chromium-driver`, as .ci/run does")
PHONE = (390, 844)  # CSS pixels of a common phone's screen
# A car drawn for the screenshot (not from the dataset): body, window line and post, two 12-sided wheels.
CAR = [[[5, 5, 40, 75, 175, 210, 250, 252, 5], [150, 115, 105, 65, 62, 100, 108, 150, 150]],
       [[45, 208], [104, 102]], [[128, 128], [64, 103]],
       [[93, 89, 79, 65, 51, 41, 37, 41, 51, 65, 79, 89, 93],
        [155, 169, 179, 183, 179, 169, 155, 141, 131, 127, 131, 141, 155]],
       [[223, 219, 209, 195, 181, 171, 167, 171, 181, 195, 209, 219, 223],
        [155, 169, 179, 183, 179, 169, 155, 141, 131, 127, 131, 141, 155]]]


@contextlib.contextmanager
def chromium(size: tuple[int, int] = PHONE, pixel_ratio: float = 1) -> Iterator[webdriver.Chrome]:
    """Headless Chromium emulating a phone's screen of `size` CSS pixels; quit afterwards."""
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": {
        "width": size[0], "height": size[1], "pixelRatio": pixel_ratio, "mobile": True, "touch": True}})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def draw(driver: webdriver.Chrome, strokes: list, pointer: str = interaction.POINTER_PEN) -> None:
    """Draw strokes in 0-255 coordinates on the page's pad with pointer actions, filling 80% of it."""
    left, top, width = driver.execute_script(
        "const box = document.getElementById('pad').getBoundingClientRect(); return [box.left, box.top, box.width];")
    scale, margin = 0.8 * width / 255, 0.1 * width
    actions = ActionBuilder(driver, mouse=PointerInput(pointer, pointer), duration=0)
    for xs, ys in strokes:
        points = [(round(left + margin + x * scale), round(top + margin + y * scale)) for x, y in zip(xs, ys)]
        actions.pointer_action.move_to_location(*points[0]).pointer_down()
        for point in points[1:]:
            actions.pointer_action.move_to_location(*point)
        actions.pointer_action.pointer_up()
    actions.perform()


def settle(driver: webdriver.Chrome, timeout: float = 30) -> dict | None:
    """Once the page is idle (no stroke, timer or request pending), the result it shows and its drawing."""
    WebDriverWait(driver, timeout).until(lambda _: driver.execute_script("return carsketch.idle"))
    return driver.execute_script("return carsketch.shown")


def screenshot(model: Path, destination: Path) -> None:
    """The page on a phone's screen with CAR drawn on it, served by `carsketch serve` with `model` (labelled drawings
    going where they go by default; none is added)."""
    with serve_process(model) as (_, url), chromium(PHONE) as driver:
        driver.get(url + "/")
        draw(driver, CAR)
        print(settle(driver)["car_probability"])
        driver.save_screenshot(str(destination))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshot the serve page with a car drawn on it.")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("destination", type=Path)
    args = parser.parse_args()
    screenshot(args.model, args.destination)
