"""The masked (MaskGIT) prior: its vocabulary, bidirectional attention, cosine masking and masked-only loss, one
decoding step against diffusers' `AmusedScheduler.step` (the oracle), sampling invariants (only valid ids, seeds
reproduce, one forward per step), save / load, and `hf-vq train-prior --prior-type masked` with an exact resume,
its held-out score (never an NLL) and `hf-vq generate` with the family's options."""

import ast
import doctest
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel

from hf_vq.cli import main as cli
from hf_vq.commands.train_prior import main as train_prior_main
from hf_vq.data import tokens as token_files
from hf_vq.evaluation.generation import held_out_score, prior_nll
from hf_vq.modeling import (
    MaskedPriorConfig,
    VQPriorForMaskedLM,
    configuration_masked_prior,
    masked_decoding,
    modeling_masked_prior,
)
from hf_vq.modeling.masked_decoding import decoding_step, halton_grid_order, halton_ranks, num_left_masked

from helpers import TINY_TRANSFORMER, save_tokenizer, write_token_set
from helpers import tiny_prior_flags as flags

ONE_GRID = [{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}]
TWO_LEVELS = [  # a coarse grid, and a fine grid with two residual stages per position
    {"name": "top", "downsampling_factor": 4, "codebook_size": 8},
    {"name": "bottom", "downsampling_factor": 2, "codebook_size": 16, "depth": 2},
]


def tiny_masked_prior(token_levels=ONE_GRID, image_size=16, num_classes=3, **fields) -> VQPriorForMaskedLM:
    torch.manual_seed(0)
    config = MaskedPriorConfig(
        token_levels=token_levels, image_size=image_size, num_classes=num_classes, **{**TINY_TRANSFORMER, **fields}
    )
    return VQPriorForMaskedLM(config).eval()


def test_vocabulary_config_and_docstrings():
    config = tiny_masked_prior().config
    assert config.image_vocab_size == 16 and config.null_class_token_id == 19 and config.mask_token_id == 20
    assert config.vocab_size == 21 and config.held_out_mask_ratios == [0.25, 0.5, 0.75, 1.0]
    for fields, name in ((dict(label_smoothing=1.0), "label_smoothing"), (dict(masking_schedule="x"), "masking")):
        with pytest.raises(ValueError, match=name):
            MaskedPriorConfig(token_levels=ONE_GRID, image_size=16, **fields)
    for module in (configuration_masked_prior, modeling_masked_prior):
        assert doctest.testmod(module, raise_on_error=True).attempted > 0
    # Shipped as remote code: standard library, torch, transformers and the modeling folder only.
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers", "huggingface_hub"}
    for module in (configuration_masked_prior, masked_decoding, modeling_masked_prior):
        for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in allowed, (module, node.module)


def test_attention_is_bidirectional_and_the_loss_only_scores_masked_ids():
    prior = tiny_masked_prior(position_embedding="rope+2d")
    ids = prior.build_input_ids(torch.randint(0, 16, (2, 4, 4)), class_labels=[0, 2])
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 16
    # The first image position sees the last one (a causal mask would hide it).
    assert not torch.allclose(prior(input_ids=ids).logits[:, 0], prior(input_ids=changed).logits[:, 0])

    masked, labels = prior.mask_input_ids(ids, generator=torch.Generator().manual_seed(0))
    where = masked == prior.config.mask_token_id
    assert not where[:, 0].any() and where.sum(1).min() >= 1  # the class token is never masked
    assert torch.equal(labels[where], ids[where]) and (labels[~where] == -100).all()
    output = prior(input_ids=masked, labels=labels)
    assert output.logits.shape == (2, 16, 16)  # image positions, image ids only
    expected = torch.nn.functional.cross_entropy(output.logits.flatten(0, 1), labels[:, 1:].flatten())
    torch.testing.assert_close(output.loss, expected)
    smoothed = tiny_masked_prior(label_smoothing=0.1, position_embedding="rope+2d")
    log_p = output.logits[where[:, 1:]].log_softmax(-1)
    manual = 0.9 * -log_p.gather(1, ids[where][:, None]).mean() - 0.1 * log_p.mean()
    torch.testing.assert_close(smoothed(input_ids=masked, labels=labels).loss, manual)


def test_training_masks_a_cosine_scheduled_share_of_the_ids():
    prior = tiny_masked_prior()
    ids = prior.build_input_ids(torch.randint(0, 16, (4000, 4, 4)), class_labels=torch.arange(4000) % 3)
    masked, _ = prior.mask_input_ids(ids, generator=torch.Generator().manual_seed(0))
    counts = (masked[:, 1:] == prior.config.mask_token_id).sum(1).float()
    # ⌈cos(πr/2)·16⌉ with r ~ U(0, 1): E[cos(πr/2)] = 2/π, the ceiling adds ~0.5 of an id (a linear schedule: 0.5).
    assert counts.min() >= 1 and abs(counts.mean() / 16 - (2 / math.pi + 0.5 / 16)) < 0.015


def test_one_decoding_step_selects_the_tokens_amused_scheduler_selects():
    """Oracle: diffusers' `AmusedScheduler.step` (cosine schedule, `mask_by_random_topk`) on the same probabilities,
    ids and generator. 20 ids over 8 steps keep ⌊cos(π/2·(t+1)/8)·20⌋ off integers, where float32 (theirs) and
    float64 (ours) could floor differently."""
    diffusers = pytest.importorskip("diffusers")
    batch, length, vocabulary, steps, mask_id = 3, 20, 12, 8, 99
    scheduler = diffusers.AmusedScheduler(mask_token_id=mask_id, masking_schedule="cosine")
    scheduler.set_timesteps(steps, temperature=(4.5, 0.0))
    torch.manual_seed(1)
    for step in range(steps):
        logits = torch.randn(batch, length, vocabulary) * 3
        masked = torch.rand(batch, length) < 0.8 if step else torch.ones(batch, length, dtype=torch.bool)
        ids = torch.randint(0, vocabulary, (batch, length)).masked_fill(masked, mask_id)
        theirs = scheduler.step(logits, scheduler.timesteps[step], ids, generator=torch.Generator().manual_seed(step))
        left = num_left_masked(step, steps, torch.full((batch, 1), length), masked.sum(1, keepdim=True))
        temperature = float(scheduler.temperatures[step])
        ours, still = decoding_step(
            logits.softmax(-1),
            ids,
            masked,
            left,
            mask_id,
            choice_temperature=temperature,
            generator=torch.Generator().manual_seed(step),
        )
        assert torch.equal(ours, theirs.prev_sample), step
        assert torch.equal(still, ours == mask_id) and (still.sum(1) < masked.sum(1)).all()  # >= 1 revealed


def test_halton_order_is_the_first_visits_of_the_halton_sequence():
    # Halton points from index 1: x in base 2 (1/2, 1/4, 3/4, 1/8, 5/8, 3/8, 7/8, 1/16), y in base 3 (1/3, 2/3, 1/9,
    # 4/9, 7/9, 2/9, 5/9, 8/9); on a 4x4 grid, cell (4y, 4x): (1,2) (2,1) (0,3) (1,0) (3,2) (0,1) (2,3) (3,0).
    assert halton_grid_order(4, 4)[:8] == [6, 9, 3, 4, 14, 1, 11, 12]
    assert sorted(halton_grid_order(6, 8)) == list(range(48)) and halton_grid_order(1, 4) == [2, 1, 3, 0]
    order = halton_grid_order(4, 4)
    assert len({(cell // 8, cell % 4 // 2) for cell in order[:5]}) == 4  # 5 ids in 4 quadrants (raster: 2)
    ranks = halton_ranks([(2, 2), (4, 4)], [1, 2])  # TWO_LEVELS at 8 px: 4 + 16 * 2 positions
    assert sorted(ranks.tolist()) == list(range(36)) and ranks[1] == 0  # the top grid's Halton cell 1 first
    assert (ranks[4::2] + 1 == ranks[5::2]).all()  # a position's second stage right after its first


@pytest.mark.parametrize("decoding_order", ["confidence", "halton"])
def test_sampling_emits_only_valid_ids_reproduces_and_runs_one_forward_per_step(decoding_order):
    prior = tiny_masked_prior(token_levels=TWO_LEVELS, image_size=8)
    boost = torch.zeros(40)
    boost[:8], boost[24:] = 30.0, 30.0  # the top level's ids and the second stage's: the likeliest at every position
    prior.lm_head.register_forward_hook(lambda module, args, logits: logits + boost)
    calls = []
    prior.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(kwargs["input_ids"].shape), with_kwargs=True
    )

    def sample(seed):
        return prior.generate_indices(
            class_labels=[0, 2],
            num_images=2,
            guidance_scale=3.0,
            num_inference_steps=5,
            top_k=4,
            decoding_order=decoding_order,
            guidance_schedule="linear",
            generator=torch.Generator().manual_seed(seed),
        )

    top, bottom = sample(0)
    assert calls == [(8, 1 + 36)] * 5  # 5 steps, each one batch of 2 x 4 rows (conditional + null)
    assert top.shape == (4, 2, 2) and bottom.shape == (4, 4, 4, 2)
    assert top.min() >= 0 and top.max() < 8 and bottom.min() >= 0 and bottom.max() < 16
    again = sample(0)
    assert torch.equal(top, again[0]) and torch.equal(bottom, again[1])
    assert not torch.equal(bottom, sample(1)[1])
    with pytest.raises(ValueError, match="num_inference_steps"):
        prior.generate_indices(class_labels=[0], num_inference_steps=37)
    with pytest.raises(ValueError, match="decoding_order"):
        prior.generate_indices(class_labels=[0], decoding_order="raster")


@pytest.mark.parametrize("position_embedding", ["rope+2d", "rope2d"])
def test_save_load_through_auto_model(tmp_path, position_embedding):
    prior = tiny_masked_prior(position_embedding=position_embedding, id2label={0: "a", 1: "b", 2: "c"})
    prior.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is MaskedPriorConfig
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is VQPriorForMaskedLM and loaded.config.id2label == {0: "a", 1: "b", 2: "c"}
    expected, received = prior.state_dict(), loaded.state_dict()
    assert expected.keys() == received.keys() and all(torch.equal(expected[k], received[k]) for k in expected)
    ids = prior.build_input_ids(torch.randint(0, 16, (2, 4, 4)), class_labels=[0, 2])
    torch.testing.assert_close(loaded(input_ids=ids).logits, prior(input_ids=ids).logits)
    if position_embedding == "rope2d":  # LlamaGen's 2-D rotary module replaced Llama's
        assert type(loaded.model.rotary_emb).__name__ == "Rope2DEmbedding"


@pytest.fixture(scope="module")
def token_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("masked_prior")
    tokenizer = save_tokenizer(folder / "tok")
    write_token_set(folder / "tokens", tokenizer, folder / "tok")
    return folder / "tokens"


@pytest.mark.slow  # two short runs, a pipeline, four CLI calls: ~6 s on a CPU
def test_train_prior_masked_resumes_exactly_and_generates(tmp_path, token_set, capsys):
    first = tmp_path / "first"
    masked = ("--prior-type", "masked", "--class-dropout-prob", "0.5")
    quiet = ("--image-logging-steps", "0", "--eval-steps", "0")  # the final grid and score only; no RNG draws
    assert train_prior_main(flags(token_set, first, *masked, *quiet)) == 0
    results = json.loads((first / "eval_results.json").read_text())
    assert results["metric"] == "masked_token_ce" and "not an NLL" in results["description"]
    assert results["num_tokens"] == 16 * 16 // 4 * (1 + 2 + 3 + 4)  # 16 images at ratios 0.25 ... 1.0
    card = (first / "README.md").read_text()
    assert "`VQPriorForMaskedLM`" in card and "not a negative log-likelihood" in card and "maskgit" in card

    # A run killed after checkpoint-3 resumes to the same weights: the masks come from the restored RNG.
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(first / "checkpoint-3", second / "checkpoint-3")
    assert train_prior_main(flags(token_set, second, *masked, *quiet, "--resume-from-checkpoint", "latest")) == 0
    expected, resumed = (
        load_file(first / "transformer/model.safetensors"),
        load_file(second / "transformer/model.safetensors"),
    )
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)

    import hf_vq.modeling  # noqa: F401  (registers the models, as hf-vq generate does)
    from hf_vq.pipelines import VQImagePipeline

    prior = VQImagePipeline.from_pretrained(first).transformer
    held_out, labels = token_files.token_arrays(token_files.load_tokens(token_set, "test"))
    assert results["nats_per_token"] == pytest.approx(
        held_out_score(prior, held_out, labels, batch_size=5)["nats_per_token"]
    )
    with pytest.raises(ValueError, match="'masked_token_ce'.*not an NLL"):
        prior_nll(prior, held_out, labels)
    grid = tmp_path / "grid.png"
    argv = ["generate", str(first), "--num-images", "2", "--num-inference-steps", "4", "--output", str(grid)]
    assert cli([*argv, "--sampling-option", "decoding_order=halton", "--guidance-scale", "2"]) == 0 and grid.is_file()
    assert cli([*argv, "--temperature", "0.5", "--top-p", "0.9"]) == 2
    assert "'top_p' is not a sampling option of VQPriorForMaskedLM" in capsys.readouterr().err

    evaluate = ["evaluate-prior", str(first), "--tokens", str(token_set), "--sampling-option", "top_p=0.9"]
    assert cli(evaluate) == 2 and "'top_p' is not a sampling option" in capsys.readouterr().err

    # Editing from the command line: a row of 2 edits of the image per class label.
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), 4)).save(tmp_path / "mask.png")
    edit = ["--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--class-label", "left", "1"]
    assert cli([*argv, *edit]) == 0 and Image.open(grid).size == (2 * 16 + 2, 2 * 16 + 2)
    assert cli([*argv, "--mask", str(tmp_path / "mask.png")]) == 2
    assert "--mask was given without --image" in capsys.readouterr().err
