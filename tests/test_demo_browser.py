"""`hf-vq demo` used in a real browser, as a person would: the app is the Space folder `hf-vq demo PIPELINE --export`
writes, started with `python app.py` on a free port (so the export is tested by running it), and Chromium is driven
through playwright. One app start and one browser, for one test.

- upload a photo, wait for its reconstruction, read the PSNR and LPIPS shown: they are `hf-vq evaluate`'s numbers
  for that image; a text file named .png gets a message, not a stack trace;
- click a cell of the token map: the id shown is the tokenizer's id there;
- generate 2 images of a class picked by name with a fixed seed: they are the pipeline's images for that seed, pixel
  for pixel; an unknown class name gets a message.

A failing test saves a screenshot under its tmp_path and prints the path. `HF_VQ_DEMO_SCREENSHOT=PATH` saves the
Reconstruct tab's screenshot there (the README's: `benchmarks/results/demo_screenshot.png`).

Skips, saying why, without the `demo-tests` extra (Gradio, playwright) or a Chromium (`apt-get install chromium`).
"""

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from importlib import resources

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY_TOKENIZER, free_port, tiny_feature_network, tiny_vqgan_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = os.environ.get("HF_VQ_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if importlib.util.find_spec("gradio") is None or importlib.util.find_spec("playwright") is None:
    pytest.skip("the demo-tests extra is not installed: pip install -e '.[demo-tests]'", allow_module_level=True)
if CHROMIUM is None:
    pytest.skip("no Chromium found: apt-get install chromium (or set HF_VQ_CHROMIUM)", allow_module_level=True)
pytest.importorskip("diffusers")

from playwright.sync_api import expect, sync_playwright

from hf_vq import VQGANModel
from hf_vq.cli import main
from hf_vq.data import decode_image, from_uint8, prepare_image
from hf_vq.modeling.configuration_prior import VQPriorConfig
from hf_vq.modeling.modeling_prior import VQPriorForCausalLM
from hf_vq.pipelines import VQImagePipeline
from hf_vq.pipelines.sampling import sample_images

START_TIMEOUT = 180  # seconds for `python app.py` to serve: imports of torch, transformers, diffusers and Gradio
# What the page is given to answer (a reconstruction, a message, sampling): playwright's default for `expect` is 5 s,
# which a loaded 2-core machine exceeds.
expect.set_options(timeout=60_000)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """A 32-px tokenizer (an 8x8 grid of 16 codes) and a one-layer prior over it with two named classes."""
    folder = tmp_path_factory.mktemp("models") / "pipeline"
    torch.manual_seed(0)
    tokenizer = VQGANModel(tiny_vqgan_config(**{**TINY_TOKENIZER, "sample_size": 32})).eval()
    fields = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    config = VQPriorConfig.from_tokenizer(tokenizer, num_classes=2, id2label={0: "boot", 1: "shirt"}, **fields)
    VQImagePipeline(vqvae=tokenizer, transformer=VQPriorForCausalLM(config).eval()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def app(pipeline_dir, tmp_path_factory):
    """`python app.py` of the exported Space, started on a free port; yields its URL and a function that waits
    until it serves. Not waited for here: the browser starts, and `hf-vq evaluate` runs, while the app imports."""
    space = tmp_path_factory.mktemp("export") / "space"
    assert main(["demo", str(pipeline_dir), "--export", str(space)]) == 0
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
    }
    log_path = space.parent / "app.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"

    def wait_until_serving() -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`python app.py` did not serve {url}; its log:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.25)

    try:
        yield url, wait_until_serving
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """scikit-image's cat at 48x40 px (the demo resizes and crops it to the model's 32 px), alone in a folder."""
    path = tmp_path_factory.mktemp("images") / "cat.png"
    cat = Image.open(resources.files("skimage") / "data" / "chelsea.png").convert("RGB")
    cat.resize((48, 40), Image.BICUBIC).save(path)
    return path


@pytest.fixture(scope="module")
def evaluated(app, pipeline_dir, photo, tmp_path_factory):
    """`hf-vq evaluate`'s metrics for the photo (a folder of it twice: evaluation needs two images)."""
    folder = tmp_path_factory.mktemp("evaluate")
    for name in ("cat.png", "cat_again.png"):
        shutil.copyfile(photo, folder / name)
    results = folder / "results.json"
    argv = ["evaluate", str(pipeline_dir / "vqvae"), "--dataset-name", str(folder), "--num-images", "2"]
    argv += ["--batch-size", "1", "--fid-network", tiny_feature_network(folder), "--output", str(results)]
    assert main([*argv, "--no-card"]) == 0
    return json.loads(results.read_text())["metrics"]


@pytest.fixture(scope="module")
def page(app):
    url, wait_until_serving = app
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        wait_until_serving()
        page.goto(url)
        yield page
        browser.close()


@contextlib.contextmanager
def screenshot_on_failure(page, tmp_path, name: str):
    try:
        yield
    except BaseException:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot of the page when {name} failed: {path}")
        raise


def see_message(page, text: str) -> None:
    """Waits for a message in the page (a `gr.Error` toast) containing `text`, then closes it."""
    expect(page.get_by_test_id("toast-text").first).to_contain_text(text)
    page.get_by_test_id("toast-close").first.click()


def test_the_demo_in_a_browser(evaluated, page, pipeline_dir, photo, tmp_path):
    """One test, so that `make test`'s two xdist workers do not each start the app and a browser: the tokenizer tabs
    first, then the generator tab, each keeping a screenshot if it fails."""
    check_reconstruct_and_token_map(page, evaluated, pipeline_dir, photo, tmp_path)
    check_generate(page, pipeline_dir, tmp_path)


def check_reconstruct_and_token_map(page, evaluated, pipeline_dir, photo, tmp_path):
    """Upload a photo (after a text file, refused with a message), read PSNR and LPIPS, click a token cell."""
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    with screenshot_on_failure(page, tmp_path, "reconstruct"):
        page.set_input_files("#upload input[type=file]", str(notes))
        see_message(page, "notes.png is not an image PIL can read (UnidentifiedImageError: cannot identify image file")
        page.locator("#upload button[aria-label=Clear]").click()
        page.set_input_files("#upload input[type=file]", str(photo))
        expect(page.locator("#metrics")).to_contain_text("PSNR")
        shown = page.inner_text("#metrics")
        if os.environ.get("HF_VQ_DEMO_SCREENSHOT"):  # the README's, once the three images have loaded
            loaded = "[...document.images].filter(image => image.complete && image.naturalWidth > 0).length >= 3"
            page.wait_for_function(loaded)
            page.screenshot(path=os.environ["HF_VQ_DEMO_SCREENSHOT"])
        assert re.search(r"PSNR\s+([\d.]+) dB", shown).group(1) == f"{evaluated['psnr']:.2f}"
        assert re.search(r"LPIPS \(AlexNet\)\s+([\d.]+)", shown).group(1) == f"{evaluated['lpips']:.4f}"

        page.get_by_role("tab", name="Token map").click()
        token_map = page.locator("#token-map img")
        # The picture is drawn inside its element's box with `object-fit: contain` (centred, letterboxed when the
        # box is wider than the picture), so a cell is found in the drawn picture, not in the element's box.
        page.wait_for_function(
            "() => { const i = document.querySelector('#token-map img'); "
            "return i && i.complete && i.naturalWidth > 0; }"
        )
        natural = token_map.evaluate("image => [image.naturalWidth, image.naturalHeight]")
        box = token_map.bounding_box()
        scale = min(box["width"] / natural[0], box["height"] / natural[1])
        drawn = (natural[0] * scale, natural[1] * scale)
        left, top = (box["width"] - drawn[0]) / 2, (box["height"] - drawn[1]) / 2
        row, column = 2, 5
        x, y = left + (column + 0.5) * drawn[0] / 8, top + (row + 0.5) * drawn[1] / 8
        token_map.click(position={"x": x, "y": y})
        tokenizer = VQGANModel.from_pretrained(pipeline_dir / "vqvae").eval()
        with torch.no_grad():
            ids = tokenizer.encode_to_indices(from_uint8(prepare_image(decode_image(photo), 32, 4)[None]))[0]
        expect(page.locator("#cell textarea")).to_have_value(
            f"tokens, row {row}, column {column}: code {ids[row, column]}"
        )


def check_generate(page, pipeline_dir, tmp_path):
    """Generate 2 images of a class picked by name with a fixed seed (after an unknown name, refused)."""
    with screenshot_on_failure(page, tmp_path, "generate"):
        page.get_by_role("tab", name="Generate").click()
        picker = page.locator("#class input")
        picker.fill("sandal")
        picker.press("Enter")
        page.locator("#generate-button").click()
        see_message(page, "Unknown class name 'sandal'; the prior knows 2 classes: 'boot', 'shirt'")

        picker.fill("shirt")
        picker.press("Enter")
        page.locator("#seed input").fill("7")
        count = page.locator("#num-images input[type=number]")
        count.fill("2")
        count.press("Enter")
        page.locator("#generate-button").click()
        samples = page.locator("#samples img")
        expect(samples).to_have_count(2)
        shown = []
        for source in samples.evaluate_all("images => images.map(image => image.src)"):
            body = page.request.get(source).body()
            shown.append(torch.from_numpy(np.array(Image.open(io.BytesIO(body)).convert("RGB"))).permute(2, 0, 1))

    pipe = VQImagePipeline.from_pretrained(pipeline_dir)
    expected = sample_images(pipe, pipe.get_label_ids(["shirt"]), 2, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(torch.stack(shown), expected)
