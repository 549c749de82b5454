"""Every mistake a user can make at the command line ends in one paragraph that names what was wrong, what was
expected and the fix, with no traceback (unless `--debug`), and changes nothing on disk (issue #17).

Each test runs `hf_vq.cli.main` in-process as the `hf-vq` executable would, on tiny models and tmp folders.
"""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_vq import VQGANConfig, VQGANModel
from hf_vq.cli import main

from helpers import TINY_DISCRIMINATOR, TINY_VQGAN, tiny_train_flags, write_image_parquet_shards, write_random_images


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its size and content hash: what "nothing changed" is checked against."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, hash(p.read_bytes()))
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def fails(capsys, argv, *expected) -> str:
    """Runs `hf-vq ARGV`, expects status 2 and a one-line message that contains every `expected` fragment."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("hf-vq ")]
    assert len(lines) == 1, captured.err[-3000:]
    assert "Traceback" not in captured.err
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    return lines[0]


def train_argv(output_dir, *extra, model_config=TINY_VQGAN):
    run = ["--dataset-name", str(IMAGES), "--max-train-steps", "1", "--checkpointing-steps", "1"]
    run += ["--eval-steps", "0", "--image-logging-steps", "1"]
    return ["train", *tiny_train_flags(output_dir, *run, *extra, model_config=model_config)]


IMAGES = Path(tempfile.gettempdir()) / "hf-vq-test-errors-images"  # filled by the `images` fixture


@pytest.fixture(scope="module", autouse=True)
def images(tmp_path_factory):
    """Four small photos-like images: a training set that loads in milliseconds (the built-in photos take seconds)."""
    global IMAGES
    IMAGES = tmp_path_factory.mktemp("images")
    write_random_images(IMAGES, 4)
    return IMAGES


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    VQGANModel(VQGANConfig(**TINY_VQGAN)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corrupt_model(tmp_path_factory, saved_model):
    """A model folder whose model.safetensors was cut in half (a download or copy cut short)."""
    folder = tmp_path_factory.mktemp("corrupt")
    for name in ("config.json", "model.safetensors"):
        data = (saved_model / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2] if name.endswith(".safetensors") else data)
    return folder


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photo")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    return folder / "a.png"


# ------------------------------------------------------------------------------------------------ config values


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"block_out_channels": [-8, 16]}, "`block_out_channels` must be positive channel counts; got [-8, 16]"),
        ({"latent_channels": 0}, "`latent_channels` must be a positive integer; got 0"),
        ({"num_vq_embeddings": "many"}, "`num_vq_embeddings` must be of type int; got 'many'"),
        ({"block_out_channels": 8}, "`block_out_channels` must be of type list[int] or tuple[int, ...]; got 8"),
        ({"norm_num_groups": 0}, "`norm_num_groups` must be a divisor of every entry"),
        (
            {"num_vq_embedings": 32},
            "`num_vq_embedings` is not a field of VQGANConfig. Did you mean `num_vq_embeddings`",
        ),
    ],
)
def test_invalid_model_config_values_are_named_before_anything_is_written(tmp_path, capsys, fields, message):
    fails(capsys, train_argv(tmp_path / "out", model_config={**TINY_VQGAN, **fields}), "--model-config: ", message)
    assert not (tmp_path / "out").exists()  # no output folder, no samples/: nothing created by a failed start


def without(argv: list[str], flag: str) -> list[str]:
    i = argv.index(flag)
    return argv[:i] + argv[i + 2 :]


def test_wrong_types_in_a_yaml_or_json_config_file_name_field_type_and_value(tmp_path, capsys):
    argv = without(without(train_argv(tmp_path / "out"), "--model-config"), "--discriminator-config")
    config = tmp_path / "run.yaml"
    # A mapping in the file is the same as inline JSON: the types reach the config as the user wrote them.
    config.write_text("model_config:\n  block_out_channels: 8\n")
    fails(capsys, [*argv, "--config", str(config)], "`block_out_channels` must be of type", "; got 8.")
    config.write_text("model_config:\n  num_vq_embeddings: many\n")
    fails(capsys, [*argv, "--config", str(config)], "`num_vq_embeddings` must be of type int; got 'many'")
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"discriminator_config": {**TINY_DISCRIMINATOR, "base_channels": "8"}}))
    fails(capsys, [*argv, "--config", str(config)], "--discriminator-config: `base_channels` must be of type int")
    assert not (tmp_path / "out").exists()


def test_fsq_config_gets_no_codebook_options_it_would_reject(tmp_path):
    """The recommended k-means init / dead-code restarts are added only to quantizers with a learned codebook."""
    from hf_vq.training import TokenizerTask, parse_args

    fsq = {**TINY_VQGAN, "quantizer_type": "fsq", "fsq_levels": [4, 4], "num_vq_embeddings": 16}
    model = TokenizerTask(parse_args(train_argv(tmp_path, model_config=fsq)[1:])).build_models()[0].module
    assert model.config.quantizer_type == "fsq" and not model.config.kmeans_init
    vq = TokenizerTask(parse_args(train_argv(tmp_path)[1:])).build_models()[0].module
    assert vq.config.kmeans_init and vq.config.dead_code_restart  # still added where they apply


# ------------------------------------------------------------------------------------------------ where things are


def test_init_from_a_missing_folder_is_not_sent_to_the_hub(tmp_path, capsys):
    argv = without(train_argv(tmp_path / "out"), "--model-config")
    fails(
        capsys,
        [*argv, "--init-from", "./no/such/folder"],
        "--init-from './no/such/folder': there is no file or",
        "the Hub was not tried",
    )
    fails(capsys, [*argv, "--init-from", "nobody/nothing"], "no Hub model 'nobody/nothing' is in the offline cache")
    fails(capsys, [*argv, "--init-from", str(tmp_path)], "is not a model folder (no config.json in it)")
    assert snapshot(tmp_path) == {}


def test_truncated_weights_are_named_for_init_from_and_every_command(tmp_path, capsys, corrupt_model, photo):
    weights = str(corrupt_model / "model.safetensors")
    argv = without(train_argv(tmp_path / "out"), "--model-config")
    fails(capsys, [*argv, "--init-from", str(corrupt_model)], weights, "incomplete or corrupt")
    out = tmp_path / "outputs"
    fails(capsys, ["reconstruct", str(corrupt_model), str(photo), "--output-dir", str(out)], weights, "corrupt")
    fails(capsys, ["encode", str(corrupt_model), str(photo), "--output", str(out / "t.npy")], weights, "corrupt")
    fails(capsys, ["evaluate", str(corrupt_model), "--no-lpips", "--num-images", "2"], weights, "corrupt")
    assert not out.exists() and not (tmp_path / "out").exists()
    assert sorted(p.name for p in corrupt_model.iterdir()) == ["config.json", "model.safetensors"]


def test_output_dir_under_a_file_or_without_permission(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file")
    fails(capsys, train_argv(tmp_path / "notes.txt" / "run"), "notes.txt is a file, not a folder")
    # A read-only folder that anyone may enter (pytest's tmp_path is private to its owner).
    locked = Path(tempfile.mkdtemp(prefix="hf-vq-locked-"))
    try:
        locked.chmod(0o555)
        if os.geteuid() == 0:  # root may write anywhere: check as an unprivileged user, as the user was
            os.seteuid(65534)
            try:
                assert main(train_argv(locked / "run")) == 2
            finally:
                os.seteuid(0)
            err = capsys.readouterr().err
            assert f"--output-dir '{locked / 'run'}': you may not write in {locked}" in err
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        else:
            fails(capsys, train_argv(locked / "run"), f"you may not write in {locked}")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)
        shutil.rmtree(locked)
    assert snapshot(tmp_path) == {"notes.txt": (6, hash(b"a file"))}


def test_missing_dataset_is_decided_local_or_hub_in_seconds(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    fails(
        capsys,
        train_argv("out", "--dataset-name", "my_photos"),
        f"--dataset-name 'my_photos': there is no file or folder '{tmp_path / 'my_photos'}'",
        "no Hub dataset 'my_photos' is in the offline cache",
    )
    fails(capsys, train_argv("out", "--dataset-name", str(tmp_path / "gone")), "it can only be a local path")
    assert time.perf_counter() - start < 10  # the issue measured 47-76 s of Hub retries
    assert snapshot(tmp_path) == {}


def test_a_corrupt_parquet_shard_is_named_before_training(tmp_path, capsys):
    shard = write_image_parquet_shards(tmp_path, num_images=4, step=10)[1]
    shard.write_bytes(shard.read_bytes()[:300])  # cut short, as by an interrupted download
    fails(
        capsys,
        train_argv(tmp_path / "out", "--dataset-name", str(tmp_path / "data")),
        f"the parquet shard {shard} is truncated or corrupt",
    )
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ resume


def test_resuming_with_another_model_config_names_the_differing_fields(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_argv(run, "--image-logging-steps", "0")) == 0
    capsys.readouterr()
    before = snapshot(run)
    other = {**TINY_VQGAN, "num_vq_embeddings": 32, "latent_channels": 8}
    fails(
        capsys,
        train_argv(run, "--resume-from-checkpoint", "latest", "--max-train-steps", "2", model_config=other),
        "its model was trained with another config",
        "`latent_channels` 4 in the checkpoint, 8 now",
        "`num_vq_embeddings` 16 in the checkpoint, 32 now",
    )
    assert snapshot(run) == before


# ------------------------------------------------------------------------------------------------ commands


def test_reconstruct_and_encode_name_bad_inputs_and_write_nothing(tmp_path, capsys, saved_model, photo):
    (tmp_path / "notes.png").write_text("text, not an image")
    out = tmp_path / "out"
    for command, target in (("reconstruct", ["--output-dir", str(out)]), ("encode", ["--output", str(out / "t.npy")])):
        fails(
            capsys,
            [command, str(saved_model), str(photo), str(tmp_path / "notes.png"), *target],
            "1 of the 2 input(s) cannot be used",
            "notes.png: not an image PIL can read",
        )
        fails(capsys, [command, str(saved_model), str(tmp_path / "gone.png"), *target], "gone.png: no such file")
        fails(
            capsys,
            [command, str(tmp_path / "no_model"), str(photo), *target],
            "model '" + str(tmp_path / "no_model") + "': there is no file or folder",
        )
    assert not out.exists()


def test_evaluate_on_a_missing_dataset_folder_says_so(tmp_path, capsys, saved_model):
    before = snapshot(saved_model)
    # `--dataset`, the name evaluate had, still works; the message says the one name every command now uses.
    missing = str(tmp_path / "nothing")
    fails(
        capsys,
        ["evaluate", str(saved_model), "--dataset", missing, "--no-lpips"],
        f"--dataset-name '{missing}': there is no file or folder",
    )
    fails(
        capsys,
        ["evaluate", str(saved_model), "--dataset-name", missing, "--no-lpips"],
        f"--dataset-name '{missing}': there is no file or folder",
    )
    assert snapshot(saved_model) == before  # no eval_results.json, card untouched


@pytest.mark.parametrize(
    ("argv", "suggested"),
    [
        (["evaluate", "MODEL", "--datasett-name", "x"], "--dataset-name"),
        (["evaluate", "MODEL", "--dataset-config", "x", "--image-sise", "32"], "--resolution"),
        (["encode", "MODEL", "a.png", "--output", "t.npy", "--batch_sise", "2"], "--batch-size"),
        (["train", "--dataset", "x"], "--dataset-name"),
    ],
)
def test_every_command_suggests_the_flag_it_knows(capsys, argv, suggested):
    """The same parser habits in every subcommand (`hf_vq.parsing`): an unknown flag, an old spelling's typo or an
    underscore spelling's typo gets a did-you-mean naming the flag `--help` shows, after a one-line usage."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"did you mean {suggested}?" in err
    assert err.startswith(f"usage: hf-vq {argv[0]} ") and "--help lists every flag" in err
    assert len(err.strip().splitlines()) == 2


def test_help_shows_one_name_per_concept_and_the_old_spellings_once(capsys):
    for command in ("evaluate", "tokenize", "encode", "reconstruct"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal's width
        assert "--resolution" in text and "--image-size RESOLUTION" not in text and "--image_size" not in text
        assert "Older spellings that still work: " in text and "--image-size (--resolution)" in text
        if command in ("evaluate", "tokenize"):
            assert "--dataset-name DATASET_NAME" in text and "--dataset-config-name" in text
            assert "--dataset (--dataset-name), --dataset-config (--dataset-config-name)" in text


def test_debug_shows_the_traceback_instead(tmp_path, photo):
    with pytest.raises(FileNotFoundError, match="there is no file or folder"):
        main(["reconstruct", str(tmp_path / "no_model"), str(photo), "--debug"])


def test_a_folder_of_another_model_type_is_refused_naming_the_class_to_use(tmp_path, saved_model):
    """transformers only warns on a model_type mismatch: `VQPriorForCausalLM.from_pretrained(a_tokenizer)` used to
    return a prior of random weights behind a page-long load report."""
    from hf_vq.modeling import MaskedPriorConfig, VQPriorForCausalLM, VQPriorForMaskedLM, VQVAEModel

    from helpers import TINY_TRANSFORMER

    message = "not the `hf_vq_prior` that VQPriorConfig reads. Load it with `VQGANModel.from_pretrained`"
    with pytest.raises(ValueError, match=message):
        VQPriorForCausalLM.from_pretrained(saved_model)
    with pytest.raises(ValueError, match="holds a `hf_vq_vqgan` model \\(VQGANModel\\), not the `hf_vq_vqvae`"):
        VQVAEModel.from_pretrained(saved_model)
    level = {"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}
    config = MaskedPriorConfig(token_levels=[level], image_size=16, num_classes=3, **TINY_TRANSFORMER)
    VQPriorForMaskedLM(config).save_pretrained(tmp_path / "masked")
    with pytest.raises(ValueError, match="`hf_vq_masked_prior` model \\(VQPriorForMaskedLM\\), not the `hf_vq_prior`"):
        VQPriorForCausalLM.from_pretrained(tmp_path / "masked")
    assert type(VQGANModel.from_pretrained(saved_model)) is VQGANModel  # the right class still loads
