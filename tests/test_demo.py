"""`hf-vq demo`'s computations as plain calls, without Gradio or a browser (tests/test_demo_browser.py drives the app):
the token views of each layout, a click mapped to its cell's id, token edits decoded, code usage beside the card's,
the generator's images equal to the pipeline's for a seed, the messages for bad inputs, and the Space export."""

import ast
import json
import re
import shlex
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY_TOKENIZER, TINY_TRANSFORMER, tiny_vqgan_config, tiny_vqvae2_config

pytest.importorskip("diffusers")

from hf_vq import VQGANModel, VQVAE2Model
from hf_vq._version import __version__
from hf_vq.commands.demo import build_parser
from hf_vq.data import from_uint8, to_uint8
from hf_vq.demo.drawing import OVERLAY_ALPHA, code_colours
from hf_vq.demo.export import export_space
from hf_vq.demo.generator import UNCONDITIONAL, GeneratorDemo
from hf_vq.demo.loading import load_models
from hf_vq.demo.tokenizer import TokenizerDemo, read_upload
from hf_vq.modeling.configuration_prior import VQPriorConfig
from hf_vq.modeling.modeling_prior import VQPriorForCausalLM
from hf_vq.pipelines import VQImagePipeline
from hf_vq.pipelines.sampling import sample_images


@pytest.fixture(scope="module")
def photo():
    """A real photo as the upload (scikit-image's cat, read as a file: its `data` loaders take seconds to import),
    48x40 px so that the demo's resize and crop to the model's 32 px do something."""
    path = resources.files("skimage") / "data" / "chelsea.png"
    return Image.open(path).convert("RGB").resize((48, 40), Image.BICUBIC)


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(0)
    return VQGANModel(
        tiny_vqgan_config(**{**TINY_TOKENIZER, "sample_size": 32})
    ).eval()  # f = 4: an 8x8 grid of 16 codes


@pytest.fixture(scope="module")
def analysed(tokenizer, photo):
    demo = TokenizerDemo(tokenizer)
    return demo, demo.analyse(demo.prepare(photo))


def test_each_level_and_residual_stage_is_a_token_view():
    torch.manual_seed(0)
    residual = VQGANModel(tiny_vqgan_config(quantizer_type="residual_vq", num_quantizers=3)).eval()
    names = [view.name for view in TokenizerDemo(residual).views]
    assert names == ["tokens, stage 1 of 3", "tokens, stage 2 of 3", "tokens, stage 3 of 3"]
    assert [view.name for view in TokenizerDemo(VQVAE2Model(tiny_vqvae2_config())).views] == ["top", "bottom"]


def test_the_analysis_is_the_models_and_a_click_names_its_cells_id(tokenizer, analysed, photo):
    demo, analysis = analysed
    image = analysis.image
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    with torch.no_grad():
        ids = tokenizer.encode_to_indices(from_uint8(image[None]))[0]  # (8, 8)
        expected = to_uint8(tokenizer(from_uint8(image[None])).reconstruction)[0]
    assert torch.equal(analysis.reconstruction, expected) and torch.equal(analysis.levels[0][0], ids)
    rows = dict(demo.metrics_rows(analysis))
    assert rows["PSNR"] == f"{analysis.metrics['psnr']:.2f} dB" and analysis.metrics["tokens"] == 64
    assert rows["LPIPS (AlexNet)"] == "not measured (LPIPS weights not available)"  # none given here

    picture, grid = demo.token_map(analysis, demo.view(None))
    assert picture.size == (32 * 12, 32 * 12) and (grid.rows, grid.columns) == (8, 8)  # 12x, nearest neighbour
    colours, shown = code_colours(16).astype(float), np.asarray(picture).astype(float)
    for row, column in [(0, 0), (3, 5), (7, 7)]:
        x, y = (column + 0.5) * grid.cell_width, (row + 0.5) * grid.cell_height
        code = int(ids[row, column])
        assert (
            demo.describe_cell(analysis, demo.view("tokens"), x, y)
            == f"tokens, row {row}, column {column}: code {code}"
        )
        # The cell shows its code's colour laid over the photo's pixel.
        under = image[:, int(y) // 12, int(x) // 12].numpy().astype(float)
        np.testing.assert_allclose(
            shown[int(y), int(x)], under * (1 - OVERLAY_ALPHA) + colours[code] * OVERLAY_ALPHA, atol=1
        )
    with pytest.raises(ValueError, match="Unknown token grid 'top'; this tokenizer has tokens"):
        demo.view("top")


def test_a_token_edit_sets_a_region_or_copies_one_and_decodes(tokenizer, analysed):
    demo, analysis = analysed
    view = demo.view(None)
    levels, image = demo.edit(analysis, view, (1, 2, 2, 3), code=5)
    edited, original = levels[0][0], analysis.levels[0][0]
    assert (edited[1:3, 2:5] == 5).all()
    outside = torch.ones_like(edited, dtype=torch.bool)
    outside[1:3, 2:5] = False
    assert torch.equal(edited[outside], original[outside])  # and the analysis itself is unchanged
    with torch.no_grad():
        assert torch.equal(image, to_uint8(tokenizer.decode_indices(levels[0]))[0])

    levels, _ = demo.edit(analysis, view, (0, 0, 3, 3), source=(5, 4))
    assert torch.equal(levels[0][0][0:3, 0:3], original[5:8, 4:7])

    with pytest.raises(ValueError, match=r"must lie inside the 8x8 grid of tokens; got rows 6 to 8, columns 0 to 1"):
        demo.edit(analysis, view, (6, 0, 3, 2), code=1)
    with pytest.raises(ValueError, match=r"The copied region must lie inside .* got rows 7 to 8"):
        demo.edit(analysis, view, (0, 0, 2, 2), source=(7, 0))
    with pytest.raises(ValueError, match=r"The code must be in \[0, 16\) for tokens; got 16"):
        demo.edit(analysis, view, (0, 0, 1, 1), code=16)


def test_code_usage_counts_the_images_tokens_beside_the_cards_record(tokenizer, analysed):
    demo, analysis = analysed
    rows = demo.usage_rows(analysis)
    ids = analysis.levels[0].reshape(-1)
    assert sum(row["count"] for row in rows) == 64 and len(rows) == len(ids.unique())
    assert rows[0]["count"] == int(torch.bincount(ids).max())  # most used first

    recorded = {"dataset": "builtin", "num_images": 15, "metrics": {"codebook_usage": 0.75, "perplexity": 9.5}}
    table = TokenizerDemo(tokenizer, card_results=[recorded]).usage_table(analysis)
    assert table[0][:3] == ["this image", "1", f"{len(ids.unique()) / 16:.1%}"]
    assert table[1] == ["model card: builtin", "15", "75.0%", "9.5"]
    assert "no evaluation recorded" in demo.usage_table(analysis)[1][0]


def test_bad_uploads_and_sizes_get_a_message(tmp_path, tokenizer, photo, monkeypatch):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    with pytest.raises(ValueError, match="notes.png is not an image PIL can read .* Upload a PNG, JPEG, WebP"):
        read_upload(notes)
    with pytest.raises(ValueError, match="No image yet: upload an image"):
        read_upload(None)

    demo = TokenizerDemo(tokenizer)
    assert demo.prepare(photo, own_size=True).shape == (3, 40, 48)  # its own size, a multiple of 4
    monkeypatch.setattr("hf_vq.evaluation.memory.available_bytes", lambda device: 1024)
    with pytest.raises(ValueError, match=r"photo.png: reconstructing it at 48x40 needs about .* choose the model's"):
        demo.prepare(photo, own_size=True, name="photo.png")


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    vqvae = VQGANModel(tiny_vqgan_config(sample_size=8)).eval()
    fields = {**TINY_TRANSFORMER, "num_hidden_layers": 1, "num_classes": 2, "id2label": {0: "boot", 1: "shirt"}}
    prior = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(vqvae, **fields)).eval()
    return VQImagePipeline(vqvae=vqvae, transformer=prior)


def test_generated_images_are_the_pipelines_for_the_seed(pipe):
    demo = GeneratorDemo(pipe)
    assert demo.class_choices() == ["boot", "shirt", UNCONDITIONAL]
    assert [c.name for c in demo.controls] == ["temperature", "top_k", "top_p"]  # what this family takes
    assert demo.defaults == {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
    assert next(c for c in demo.controls if c.name == "top_k").maximum == 16  # the image vocabulary

    passes = []
    options = {"temperature": 0.8, "top_k": 0, "top_p": 1.0}
    images = demo.generate("shirt", 2, 2.0, 7, options, progress=passes.append)
    expected = sample_images(pipe, [1], 2, 2.0, torch.Generator().manual_seed(7), temperature=0.8)
    assert torch.equal(images, expected) and images.shape == (2, 3, 8, 8)
    assert passes == list(range(1, 17))  # one forward pass of the prior per token of the 4x4 grid
    assert torch.equal(demo.generate("1", 2, 2.0, 7, options), images)  # a class id picks the same class
    unconditional = demo.generate(UNCONDITIONAL, 1, 2.0, 7, options)  # guidance needs a class: left out
    assert torch.equal(
        unconditional, sample_images(pipe, None, 1, 1.0, torch.Generator().manual_seed(7), temperature=0.8)
    )

    with pytest.raises(ValueError, match="Unknown class name 'sandal'; the prior knows 2 classes: 'boot', 'shirt'"):
        demo.generate("sandal", 1, 1.0, 0, options)
    with pytest.raises(ValueError, match=r"Class 5 is not a class of this prior: ids are in \[0, 2\)"):
        demo.generate("5", 1, 1.0, 0, options)
    with pytest.raises(ValueError, match="The number of images must be at least 1; got 0"):
        demo.generate("boot", 0, 1.0, 0, options)


def test_a_masked_prior_gets_its_steps_control_and_edits_the_painted_tokens_only():
    """A masked prior's decoding steps appear as a control with no change to the demo, and its Edit regenerates the
    tokens under the painted pixels as `VQImagePipeline(image=..., mask_image=...)` does, keeping the others."""
    from hf_vq.modeling import MaskedPriorConfig, VQPriorForMaskedLM

    torch.manual_seed(0)
    vqvae = VQGANModel(tiny_vqgan_config(sample_size=8)).eval()  # 4x4 tokens
    config = MaskedPriorConfig.from_tokenizer(
        vqvae, num_classes=2, id2label={0: "boot", 1: "shirt"}, **TINY_TRANSFORMER
    )
    pipe = VQImagePipeline(vqvae=vqvae, transformer=VQPriorForMaskedLM(config).eval())
    demo = GeneratorDemo(pipe)
    steps = next(c for c in demo.controls if c.name == "num_inference_steps")
    assert demo.can_edit and steps.maximum == 16 and demo.defaults["num_inference_steps"] == 12
    assert not GeneratorDemo(pipe_of_causal_prior(vqvae)).can_edit

    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 8, 8))  # the top-left quarter: 2x2 of the 4x4 tokens once fitted to the 8-px canvas
    options = {"num_inference_steps": 4, "temperature": 1.0, "top_k": 0}
    passes = []
    image, edits = demo.edit(picture, mask, "boot", 2, 1.0, 3, options, progress=passes.append)
    assert image.size == (8, 8) and edits.shape == (2, 3, 8, 8) and passes == [1, 2, 3, 4]
    region = demo.fit_to_canvas(mask, Image.NEAREST)
    kwargs = dict(class_labels=["boot"], image=image, mask_image=region, num_images_per_prompt=2)
    expected = pipe(**kwargs, generator=torch.Generator().manual_seed(3), output_type="pt", num_inference_steps=4)
    assert torch.equal(edits, to_uint8(expected.images.float(), (0.0, 1.0)))
    ids = pipe(**kwargs, generator=torch.Generator().manual_seed(3), output_type="latent", num_inference_steps=4)
    with torch.no_grad():
        kept = vqvae.encode_to_indices(from_uint8(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]))
    outside = torch.ones(4, 4, dtype=torch.bool)
    outside[:2, :2] = False  # the painted quarter's tokens
    assert torch.equal(ids.images[:, outside], kept.expand(2, -1, -1)[:, outside])  # the others are kept
    with pytest.raises(ValueError, match="Nothing is painted: paint over the region to regenerate"):
        demo.edit(picture, Image.new("L", (16, 16), 0), "boot", 1, 1.0, 0, options)


def pipe_of_causal_prior(vqvae):
    config = VQPriorConfig.from_tokenizer(vqvae, **TINY_TRANSFORMER)
    return VQImagePipeline(vqvae=vqvae, transformer=VQPriorForCausalLM(config).eval())


def test_a_tokenizer_pipeline_or_prior_folder_gives_what_the_demo_shows(tmp_path, pipe):
    """A tokenizer folder gives the tokenizer tabs only; a pipeline folder, and a prior folder alone (its tokenizer
    found through its config), the tokenizer tabs of its tokenizer and the generator tabs; the card's evaluations
    come along."""
    pipe.save_pretrained(tmp_path / "pipeline")
    tokenizer_dir = tmp_path / "pipeline" / "vqvae"
    recorded = {"dataset": "builtin", "num_images": 15, "metrics": {"codebook_usage": 0.5, "perplexity": 3.0}}
    info = json.loads((tokenizer_dir / "card_info.json").read_text())
    (tokenizer_dir / "card_info.json").write_text(json.dumps({**info, "results": recorded}))

    alone = load_models(str(tokenizer_dir), device="cpu")
    assert isinstance(alone.tokenizer, VQGANModel) and alone.pipeline is None and alone.card_results == [recorded]
    whole = load_models(str(tmp_path / "pipeline"), device="cpu")
    assert isinstance(whole.pipeline, VQImagePipeline) and whole.card_results == [recorded]
    assert whole.tokenizer is whole.pipeline.vqvae and not whole.tokenizer.training
    prior = pipe.transformer
    recorded_tokenizer = prior.config.tokenizer_name_or_path
    prior.config.tokenizer_name_or_path = str(tokenizer_dir)  # as `hf-vq train-prior` records it
    try:
        prior.save_pretrained(tmp_path / "prior")
    finally:
        prior.config.tokenizer_name_or_path = recorded_tokenizer  # the fixture is the module's
    found = load_models(str(tmp_path / "prior"), device="cpu")
    assert isinstance(found.pipeline.transformer, VQPriorForCausalLM) and found.card_results == [recorded]
    with pytest.raises(FileNotFoundError, match="is not a model folder"):
        load_models(str(tmp_path), device="cpu")


def test_the_space_export_pins_this_hf_vq_and_carries_the_model(tmp_path, pipe):
    pipe.save_pretrained(tmp_path / "pipeline")
    files = export_space(str(tmp_path / "pipeline"), tmp_path / "space", examples=[])
    assert {"app.py", "requirements.txt", "README.md", "model/model_index.json"} <= set(files)
    assert "model/vqvae/config.json" in files and "model/transformer/model.safetensors" in files
    space = tmp_path / "space"
    assert (space / "requirements.txt").read_text() == f"hf-vq[demo]=={__version__}\n"
    app = (space / "app.py").read_text()
    ast.parse(app)
    assert (
        'MODEL = str(HERE / "model")' in app
        and "demo = build_demo(MODEL, examples=EXAMPLES, title='hf-vq demo: pipeline')" in app
    )
    readme = (space / "README.md").read_text()
    assert "sdk: gradio\n" in readme and "app_file: app.py" in readme and "generate images" in readme

    files = export_space("org/tokenizer", tmp_path / "hub", examples=[])  # a Hub id is loaded by the Space
    assert "MODEL = 'org/tokenizer'" in (tmp_path / "hub" / "app.py").read_text() and "model/config.json" not in files
    with pytest.raises(FileExistsError, match="already exists and is not empty. Give a new folder"):
        export_space("org/tokenizer", tmp_path / "space")
    with pytest.raises(FileNotFoundError, match="is not a model or pipeline folder"):
        export_space(str(tmp_path), tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub", "pipeline", "space"]  # no staging folder left


def test_push_space_uploads_the_exported_demo_as_a_gradio_space(tmp_path, pipe, monkeypatch, capsys):
    """`hf-vq push MODEL REPO --space`: the Space folder `--export` writes goes up in one commit to a Gradio Space (the
    Hub stood in for), `--dry-run` lists it, offline says so, and a model upload's flags are refused."""
    from huggingface_hub import HfApi, constants

    from hf_vq.cli import main

    pipe.save_pretrained(tmp_path / "pipeline")
    common = ["push", str(tmp_path / "pipeline"), "org/demo", "--space"]
    assert main([*common, "--dry-run"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"app.py", "requirements.txt", "README.md", "model/model_index.json"} <= set(listed)
    assert main(common) == 2
    assert "HF_HUB_OFFLINE is set, so nothing can be uploaded" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--create-pr"])
    assert "--space uploads the demo as one new commit to a Space; --create-pr only apply" in capsys.readouterr().err

    calls = {}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "create_repo", record(calls, "repo"))
    monkeypatch.setattr(HfApi, "create_commit", record(calls, "commit"))
    assert main([*common, "--token", "hf_test"]) == 0
    repo_id, repo = calls["repo"]
    assert repo_id == "org/demo" and repo["repo_type"] == "space" and repo["space_sdk"] == "gradio"
    _, commit = calls["commit"]
    assert commit["repo_type"] == "space" and sorted(op.path_in_repo for op in commit["operations"]) == listed
    assert capsys.readouterr().out.strip() == "https://huggingface.co/spaces/org/demo/commit/1"


def record(calls: dict, name: str):
    """A stand-in for an `HfApi` method that records its call under `name` and answers like the Hub."""

    def method(api, repo_id, **kwargs):
        calls[name] = (repo_id, kwargs)
        answer = {"repo_id": repo_id, "commit_url": f"https://huggingface.co/spaces/{repo_id}/commit/1"}
        return type("Answer", (), answer)()

    return method


def test_without_gradio_the_command_says_what_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    from hf_vq.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a)
    )
    assert main(["demo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "hf-vq demo: error: hf-vq demo needs Gradio, which is not installed." in err
    assert "pip install 'hf-vq[demo]'" in err and "pip install -e '.[demo]'" in err and err.count("\n") == 1


def test_the_readmes_demo_commands_parse():
    """The commands of the README's Demo section are the command's real flags."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Demo\n", 1)[1].split("\n## ", 1)[0]
    commands = [shlex.split(line) for line in re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()]
    assert [command[:2] for command in commands] == [["hf-vq", "demo"]] * 3
    parsed = [build_parser().parse_args(command[2:]) for command in commands]
    assert parsed[1].port == 7861 and parsed[1].share and parsed[2].export == "my-space"
