"""`hf-vq tokenize`, `hf-vq generate` and `hf-vq evaluate-prior` as a user runs them (through the `hf-vq` entry
point, `hf_vq.cli.main`): the token set equals what the tokenizer encodes, a killed run resumes, grids have the
promised shape and seeds, evaluate-prior reads the splits it was given, bad input gets a clear error, and a typo in a
flag gets a did-you-mean."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vq import VQGANModel
from hf_vq.cli import main as cli
from hf_vq.data import ImageTransform, decode_image
from hf_vq.data import tokens as token_files
from hf_vq.modeling import VQPriorConfig, VQPriorForCausalLM

from helpers import TINY_TOKENIZER, tiny_feature_network, tiny_vqgan_config

pytest.importorskip("diffusers")


def tokenize_main(argv: list[str]) -> int:
    return cli(["tokenize", *argv])


def generate_main(argv: list[str]) -> int:
    return cli(["generate", *argv])


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    torch.manual_seed(0)
    VQGANModel(tiny_vqgan_config(**TINY_TOKENIZER)).save_pretrained(folder)
    return folder


def class_folder(root, per_class=3, size=20):
    """An image folder with one subfolder per class (`datasets`' imagefolder labels them) and one unreadable file."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("boot", "shirt")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            image[:, : size // 2] = 255 * c  # an asymmetric image: its flip encodes differently
            Image.fromarray(image).save(root / name / f"{i}.png")
    (root / "shirt" / "broken.png").write_bytes(b"not an image")
    return root


def test_tokenize_writes_what_the_tokenizer_encodes(tmp_path, tokenizer_dir, capsys):
    import datasets

    source, output = class_folder(tmp_path / "images"), tmp_path / "tokens"
    argv = [
        str(tokenizer_dir),
        "--dataset",
        str(source),
        "--output",
        str(output),
        "--flip",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ]
    assert tokenize_main(argv) == 0
    assert capsys.readouterr().out.strip() == f"{output}\ttrain: 12 rows of 16 uint16 ids"  # 6 readable x 2 views

    info = token_files.load_tokens_info(output)
    assert info["label_names"] == ["boot", "shirt"] and info["num_classes"] == 2
    assert info["image_size"] == [16, 16] and info["tokenizer"] == str(tokenizer_dir.resolve())
    assert info["splits"]["train"]["complete"] and info["splits"]["train"]["flip"]
    dataset = token_files.load_tokens(output)
    assert dataset.features["label"].names == ["boot", "shirt"]

    model = VQGANModel.from_pretrained(tokenizer_dir).eval()
    raw = datasets.load_dataset(str(source), split="train", streaming=True)
    raw = raw.cast_column("image", datasets.Image(decode=False))
    transform = ImageTransform("image", 16, train=False)
    good = [r for r in raw if _readable(r["image"])]
    pixels = torch.stack([transform(r, i)["pixel_values"] for i, r in enumerate(good)])
    with torch.no_grad():
        plain = model.token_layout.flatten(model.encode_to_indices(pixels))
        flipped = model.token_layout.flatten(model.encode_to_indices(torch.flip(pixels, dims=[-1])))
    ids, labels = token_files.token_arrays(dataset)
    np.testing.assert_array_equal(ids[0::2], plain.numpy())
    np.testing.assert_array_equal(ids[1::2], flipped.numpy())
    assert not np.array_equal(ids[0::2], ids[1::2])
    assert labels[0::2].tolist() == [r["label"] for r in good] and dataset["flipped"][:2] == [False, True]


def _readable(value) -> bool:
    try:
        decode_image(value)
        return True
    except Exception:
        return False


def test_ctrl_c_in_tokenize_says_which_shards_were_kept_and_the_command_continues(
    tmp_path, tokenizer_dir, capsys, monkeypatch
):
    source, output = class_folder(tmp_path / "images"), tmp_path / "tokens"
    argv = ["tokenize", str(tokenizer_dir), "--dataset", str(source), "--output", str(output), "--shard-size", "2"]
    real_write = token_files.write_shard
    written = []

    def write_then_ctrl_c(*args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(real_write(*args, **kwargs))

    monkeypatch.setattr(token_files, "write_shard", write_then_ctrl_c)
    assert cli([*argv, "--device", "cpu"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"hf-vq tokenize: stopped by Ctrl-C; kept 2 finished shards of train in {output} (the last: "
        f"train-00001.parquet). The same command continues after them: hf-vq {' '.join(argv)} --device cpu"
    )
    monkeypatch.setattr(token_files, "write_shard", real_write)
    assert cli([*argv, "--device", "cpu"]) == 0  # that command finishes the split after the two shards kept
    assert len(list((output / "data").iterdir())) == 4


def test_a_killed_tokenize_run_resumes_after_its_finished_shards(tmp_path, tokenizer_dir, capsys):
    source, output = class_folder(tmp_path / "images"), tmp_path / "tokens"
    argv = [
        str(tokenizer_dir),
        "--dataset",
        str(source),
        "--output",
        str(output),
        "--shard-size",
        "2",
        "--device",
        "cpu",
    ]
    assert tokenize_main(argv) == 0
    shards = sorted((output / "data").iterdir())
    assert [p.name for p in shards] == [f"train-0000{i}.parquet" for i in range(4)]  # 7 records, 2 per shard
    expected = token_files.token_arrays(token_files.load_tokens(output))[0]
    stamps = {p.name: p.stat().st_mtime_ns for p in shards}

    # Killed while writing shard 2: shards 0 and 1 are finished, shard 2 is a .tmp file, the split not complete.
    os.replace(shards[2], shards[2].with_name(shards[2].name + ".tmp"))
    shards[3].unlink()
    meta = json.loads((output / "tokens_info.json").read_text())
    meta["splits"]["train"]["complete"] = False
    (output / "tokens_info.json").write_text(json.dumps(meta))
    assert tokenize_main(argv) == 0
    after = sorted((output / "data").iterdir())
    assert [p.name for p in after] == [p.name for p in shards]
    assert all(after[i].stat().st_mtime_ns == stamps[after[i].name] for i in (0, 1))  # not rewritten
    np.testing.assert_array_equal(token_files.token_arrays(token_files.load_tokens(output))[0], expected)

    capsys.readouterr()
    assert tokenize_main([*argv, "--flip"]) == 2
    assert "already holds tokens made with other settings ({'flip': False}" in capsys.readouterr().err
    assert tokenize_main([*argv[:-2], "--image-size", "18"]) == 2  # the old spelling of --resolution
    assert "--resolution 18 is not divisible by the tokenizer's downsampling factor 4" in capsys.readouterr().err
    assert tokenize_main([*argv, "--label-column", "kind"]) == 2
    assert "--label-column 'kind' is not a column" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory, tokenizer_dir):
    from hf_vq.pipelines import VQImagePipeline

    folder = tmp_path_factory.mktemp("pipeline")
    tokenizer = VQGANModel.from_pretrained(tokenizer_dir).eval()
    torch.manual_seed(0)
    prior = VQPriorForCausalLM(
        VQPriorConfig.from_tokenizer(
            tokenizer,
            num_classes=2,
            id2label={0: "boot", 1: "shirt"},
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
        )
    ).eval()
    VQImagePipeline(vqvae=tokenizer, transformer=prior).save_pretrained(folder)
    return folder


def test_generate_writes_a_grid_from_a_pipeline_or_a_prior(tmp_path, pipeline_dir, capsys):
    grid = tmp_path / "grid.png"
    common = ["--num-images", "3", "--guidance-scale", "2", "--seed", "1", "--device", "cpu"]
    assert generate_main([str(pipeline_dir), "--class-label", "1", "boot", *common, "--output", str(grid)]) == 0
    assert "6 images (2 label(s) x 3), 16px" in capsys.readouterr().out
    image = Image.open(grid)
    assert image.size == (3 * 16 + 2 * 2, 2 * 16 + 2)  # a row per label, 2 px gaps

    # The same seed gives the same images; a prior folder alone finds its tokenizer through its config.
    again = tmp_path / "again.png"
    assert (
        generate_main(
            [str(pipeline_dir / "transformer"), "--class-label", "shirt", "0", *common, "--output", str(again)]
        )
        == 0
    )
    np.testing.assert_array_equal(np.asarray(Image.open(again)), np.asarray(image))

    every_class = tmp_path / "all.png"
    assert generate_main([str(pipeline_dir), "--num-images", "2", "--output", str(every_class)]) == 0
    assert Image.open(every_class).size == (2 * 16 + 2, 2 * 16 + 2)


def test_any_sampling_option_of_the_family_passes_through(tmp_path, pipeline_dir, capsys):
    """`--sampling-option NAME=VALUE` reaches the family's `generate_indices` as a named flag would, so a new family's
    options need no new flag; one the family does not take is refused before sampling, naming those it takes."""
    common = [str(pipeline_dir), "--class-label", "1", "--num-images", "2", "--seed", "3", "--device", "cpu"]
    named, generic = tmp_path / "named.png", tmp_path / "generic.png"
    assert generate_main([*common, "--top-k", "2", "--temperature", "0.5", "--output", str(named)]) == 0
    argv = [*common, "--sampling-option", "top-k=2", "--sampling-option", "temperature=0.5", "--output", str(generic)]
    assert generate_main(argv) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(generic)), np.asarray(Image.open(named)))
    capsys.readouterr()

    refused = tmp_path / "refused.png"
    assert generate_main([*common, "--sampling-option", "decoding_order=halton", "--output", str(refused)]) == 2
    err = capsys.readouterr().err
    assert "'decoding_order' is not a sampling option of VQPriorForCausalLM" in err
    assert "its options are temperature, top_k, top_p, cfg_interval" in err
    assert generate_main([*common, "--sampling-option", "top_k", "--output", str(refused)]) == 2
    assert "--sampling-option expects NAME=VALUE (e.g. top_k=50); got 'top_k'" in capsys.readouterr().err
    assert generate_main([*common, "--top-k", "2", "--sampling-option", "top_k=3", "--output", str(refused)]) == 2
    assert "the option 'top_k' is already given" in capsys.readouterr().err
    assert not refused.exists()


def test_generate_errors_are_clear(tmp_path, pipeline_dir, capsys):
    output = ["--output", str(tmp_path / "grid.png")]
    assert generate_main([str(pipeline_dir), "--class-label", "sandal", *output]) == 2
    assert "Unknown class name 'sandal'; the prior knows 2 classes: 'boot', 'shirt'" in capsys.readouterr().err
    assert generate_main([str(pipeline_dir), "--class-label", "5", *output]) == 2
    assert "`class_labels` must be in [0, 2)" in capsys.readouterr().err
    assert generate_main([str(pipeline_dir), "--num-images", "0", *output]) == 2
    assert "--num-images must be an integer >= 1; got 0" in capsys.readouterr().err
    lonely = tmp_path / "prior"
    shutil.copytree(pipeline_dir / "transformer", lonely)
    config = json.loads((lonely / "config.json").read_text())
    (lonely / "config.json").write_text(json.dumps({**config, "tokenizer_name_or_path": None}))
    assert generate_main([str(lonely), *output]) == 2
    assert "does not record its tokenizer: pass --tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "grid.png").exists()


def test_evaluate_prior_measures_the_pipeline_on_the_token_sets_splits(tmp_path, tokenizer_dir, pipeline_dir, capsys):
    from hf_vq.evaluation import prior_nll

    source, tokens = tmp_path / "images", tmp_path / "tokens"
    class_folder(source / "train")  # 6 readable images (and a broken one), 2 classes
    class_folder(source / "test", per_class=2)  # 4 readable: the counts below tell the splits apart
    for split in ("train", "test"):
        argv = [
            str(tokenizer_dir),
            "--dataset",
            str(source),
            "--split",
            split,
            "--output",
            str(tokens),
            "--device",
            "cpu",
        ]
        assert tokenize_main(argv) == 0
    output = tmp_path / "results.json"
    argv = [
        "evaluate-prior",
        str(pipeline_dir),
        "--tokens",
        str(tokens),
        "--num-images",
        "4",
        "--guidance-scales",
        "1",
        "2",
        "--probe-images",
        "6",
        "--probe-epochs",
        "1",
        "--fid-network",
        tiny_feature_network(tmp_path),
        "--output",
        str(output),
    ]
    assert cli(argv) == 0
    results = json.loads(output.read_text())
    assert results["num_images"] == 4 and results["num_nll_images"] == 4 and results["num_train_token_images"] == 6
    assert results["probe"]["num_real_held_out_images"] == 4 and results["guidance_scales"] == [1.0, 2.0]
    held_out, labels = token_files.token_arrays(token_files.load_tokens(tokens, "test"))
    prior = VQPriorForCausalLM.from_pretrained(pipeline_dir / "transformer")
    assert results["rows"]["prior_guidance_1"]["nll"] == pytest.approx(prior_nll(prior, held_out, labels), rel=1e-5)
    table = capsys.readouterr().out
    assert "prior_guidance_2" in table and "class_position_marginal" in table and f"results in {output}" in table
    assert cli([*argv[:-1], str(tmp_path / "again.json"), "--split", "validation"]) == 2
    assert "has no 'validation' split" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ parser habits


@pytest.mark.parametrize(
    ("argv", "suggested"),
    [
        (["tokenize", "TOKENIZER", "--output", "tokens", "--datset-name", "images"], "--dataset-name"),
        (["tokenize", "TOKENIZER", "--output", "tokens", "--dataset", "images", "--num-image", "3"], "--num-images"),
        (["generate", "PIPELINE", "--guidance", "2"], "--guidance-scale"),
        (["generate", "PIPELINE", "--num_image", "2"], "--num-images"),
        (["evaluate-prior", "PIPELINE", "--tokens", "tokens", "--guidance-scale", "2"], "--guidance-scales"),
    ],
)
def test_an_unknown_flag_gets_a_did_you_mean(argv, suggested, capsys):
    """Before anything loads or a missing required flag is reported: the typo is what the user needs to hear."""
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"did you mean {suggested}?" in err
    assert err.startswith(f"usage: hf-vq {argv[0]} ") and "--help lists every flag" in err
