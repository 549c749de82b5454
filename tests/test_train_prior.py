"""`hf-vq train-prior` on the shared loop: the output pipeline folder, an exact resume, clear errors, and (on real
Fashion-MNIST tokens, where the Debian package is installed) a held-out NLL that training lowers."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_vq import VQGANModel
from hf_vq.data import fashion_mnist
from hf_vq.data import tokens as token_files
from hf_vq.generation_commands import tokenize_main, train_prior_main
from hf_vq.modeling import VQPriorConfig, VQPriorForCausalLM, tokenizer_config_hash
from hf_vq.training.prior import build_input_ids, held_out_nll

from helpers import tiny_vqgan_config

pytest.importorskip("diffusers")

# 16 px images, f = 4: 4x4 = 16 ids of 16 codes per image.
TINY_TOKENIZER = dict(block_out_channels=[8, 16, 16], down_block_types=["DownEncoderBlock2D"] * 3, sample_size=16)
TINY_PRIOR = ["--hidden-size", "32", "--num-hidden-layers", "1", "--num-attention-heads", "4"]
NAMES = ["left", "right"]


def save_tokenizer(folder, seed=0):
    torch.manual_seed(seed)
    model = VQGANModel(tiny_vqgan_config(**TINY_TOKENIZER)).eval()
    model.save_pretrained(folder)
    return VQGANModel.from_pretrained(folder)


def write_token_set(folder, tokenizer, tokenizer_path, rows=64):
    """Two classes with structure a prior can learn: class c's ids are a noisy ramp starting at 4c."""
    meta = token_files.new_tokens_info(
        tokenizer=str(tokenizer_path), tokenizer_config_hash=tokenizer_config_hash(tokenizer),
        tokenizer_class="VQGANModel", token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16,
                                                    "depth": 1}],
        image_size=[16, 16], sequence_length=16, vocabulary_size=16, label_names=NAMES, num_classes=2,
    )  # fmt: skip
    features = token_files.tokens_features(16, "uint16", NAMES, has_labels=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", rows), ("test", 16)):
        token_files.start_split(folder, meta, split, dict(dataset="synthetic", flip=False, shard_size=n))
        labels = np.arange(n) % 2
        ids = (4 * labels[:, None] + np.arange(16)[None] // 2 + rng.integers(0, 2, (n, 16))) % 16
        token_files.write_shard(folder, split, 0, features, ids, np.zeros(n, bool), labels)
        token_files.finish_split(folder, split, num_rows=n, max_label=1)


def flags(tokens, output, *extra):
    return ["--tokens", str(tokens), "--output-dir", str(output), "--max-train-steps", "6", "--train-batch-size", "8",
            "--checkpointing-steps", "3", "--image-logging-steps", "3", "--eval-steps", "3", "--logging-steps", "1",
            "--num-samples-per-class", "2", "--lr-scheduler", "constant_with_warmup", *TINY_PRIOR, *extra]  # fmt: skip


@pytest.mark.slow  # two short runs: ~6 s on a CPU
def test_train_prior_writes_a_pipeline_and_resumes_exactly(tmp_path, capsys):
    from hf_vq.pipelines import VQImagePipeline

    tokenizer = save_tokenizer(tmp_path / "tok")
    write_token_set(tmp_path / "tokens", tokenizer, tmp_path / "tok")
    first = tmp_path / "first"
    assert train_prior_main(flags(tmp_path / "tokens", first)) == 0
    assert f"hf-vq generate {first}" in capsys.readouterr().out
    assert {p.name for p in first.iterdir()} == {
        "model_index.json", "vqvae", "transformer", "README.md", "samples.png", "eval_results.json", "samples",
        "training_args.json", "checkpoint-3", "checkpoint-6", "logs",
    }  # fmt: skip
    assert {p.name for p in (first / "samples").iterdir()} == {"step-0000003.png", "step-0000006.png"}
    results = json.loads((first / "eval_results.json").read_text())
    assert results["split"] == "test" and results["num_sequences"] == 16
    card = (first / "README.md").read_text()
    assert "VQImagePipeline.from_pretrained" in card and "2 classes (left, right)" in card and "nats/token" in card

    pipe = VQImagePipeline.from_pretrained(first)
    prior = pipe.transformer
    assert prior.config.id2label == {0: "left", 1: "right"} and prior.config.num_hidden_layers == 1
    assert prior.config.tokenizer_config_hash == tokenizer_config_hash(tokenizer)
    images = pipe(class_labels=["right"], num_images_per_prompt=2, output_type="np").images
    assert images.shape == (2, 16, 16, 3)
    # The saved prior is the EMA of the weights.
    final = load_file(first / "transformer" / "model.safetensors")
    ema = load_file(first / "checkpoint-6" / "ema" / "model.safetensors")
    assert all(torch.equal(final[k], ema[k]) for k in final)

    # A run killed after checkpoint-3 resumes to the same weights, EMA and optimizer included.
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(first / "checkpoint-3", second / "checkpoint-3")
    assert train_prior_main(flags(tmp_path / "tokens", second, "--resume-from-checkpoint", "latest")) == 0
    for name in ("transformer/model.safetensors", "checkpoint-6/transformer/model.safetensors"):
        expected, resumed = load_file(first / name), load_file(second / name)
        assert expected.keys() == resumed.keys() and all(torch.equal(expected[k], resumed[k]) for k in expected), name


def test_clear_errors(tmp_path, capsys):
    tokenizer = save_tokenizer(tmp_path / "tok")
    write_token_set(tmp_path / "tokens", tokenizer, tmp_path / "tok")
    save_tokenizer(tmp_path / "other", seed=1)
    other = tmp_path / "other"
    text = (other / "config.json").read_text()
    (other / "config.json").write_text(text.replace('"commitment_cost": 0.25', '"commitment_cost": 0.5'))
    assert train_prior_main(flags(tmp_path / "tokens", tmp_path / "out", "--tokenizer", str(other))) == 2
    assert "is not the one the token set" in capsys.readouterr().err
    assert train_prior_main(flags(tmp_path, tmp_path / "out")) == 2
    assert "not a token set. Make one with `hf-vq tokenize" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train_prior_main(["--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--tokens is required" in capsys.readouterr().err
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "model_index.json").write_text("{}")
    assert train_prior_main(flags(tmp_path / "tokens", tmp_path / "done")) == 2
    assert "already holds a trained pipeline" in capsys.readouterr().err


def test_input_ids_put_the_class_token_first():
    config = VQPriorConfig(
        token_levels=[{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}], image_size=8, num_classes=2,
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
    )  # fmt: skip
    ids = build_input_ids(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.array([1, 0]), config)
    assert ids.tolist() == [[17, 1, 2, 3, 4], [16, 5, 6, 7, 8]]
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 2\)"):
        build_input_ids(np.zeros((1, 4), int), np.array([2]), config)
    with pytest.raises(ValueError, match="sequences of 5 ids; the prior expects 4"):
        build_input_ids(np.zeros((1, 5), int), np.array([0]), config)


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist.is_available(), reason="needs the Debian package dataset-fashion-mnist")
def test_training_lowers_the_held_out_nll_of_real_fashion_mnist_tokens(tmp_path):
    tokenizer = save_tokenizer(tmp_path / "tok")
    for split, n in (("train", 512), ("test", 128)):
        argv = [str(tmp_path / "tok"), "--dataset", "fashion_mnist", "--split", split, "--num-images", str(n),
                "--output", str(tmp_path / "tokens"), "--image-size", "16", "--device", "cpu"]  # fmt: skip
        assert tokenize_main(argv) == 0
    held_out, labels = token_files.token_arrays(token_files.load_tokens(tmp_path / "tokens", "test"))
    train, _ = token_files.token_arrays(token_files.load_tokens(tmp_path / "tokens", "train"))
    argv = flags(tmp_path / "tokens", tmp_path / "prior", "--max-train-steps", "80", "--train-batch-size", "32",
                 "--learning-rate", "3e-3", "--use-ema", "false",
                 "--checkpointing-steps", "0", "--image-logging-steps", "0", "--eval-steps", "0")  # fmt: skip
    assert train_prior_main(argv) == 0
    trained = json.loads((tmp_path / "prior" / "eval_results.json").read_text())["nll"]

    torch.manual_seed(0)
    config = VQPriorConfig.from_tokenizer(
        tokenizer,
        image_size=16,
        num_classes=10,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=96,
    )
    untrained = held_out_nll(VQPriorForCausalLM(config), build_input_ids(held_out, labels, config))["nll"]
    # The unigram baseline: each id drawn from the training ids' histogram, scored on the held-out ids.
    frequencies = (np.bincount(train.ravel(), minlength=16) + 1) / (train.size + 16)
    unigram = float(-np.log(frequencies[held_out]).mean())
    # From ~ln(vocabulary) to the unigram level in 80 steps; beating the class-position baseline with a real prior
    # and tokenizer is `benchmarks/generation_quality.py`'s job, not a unit test's.
    assert trained < untrained - 1.0, (trained, untrained)
    assert trained < 1.05 * unigram, (trained, unigram)
