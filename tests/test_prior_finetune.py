"""`hf-vq train-prior --init-from`: fine-tuning a saved prior on a token set of other classes. The class table is
matched by name, extended (new rows start as the null class's row, the null row stays last) or reset; the
pretrained weights are where training starts; a resumed fine-tuning run is exact; what cannot work is refused
before any data is read."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from hf_vq.cli import main as cli
from hf_vq.commands.train_prior import main as train_prior_main
from hf_vq.modeling import VQPriorConfig, VQPriorForCausalLM
from hf_vq.training.prior_init import apply_class_table, fit_class_table

from helpers import save_tokenizer, write_token_set
from helpers import tiny_prior_flags as flags

pytest.importorskip("diffusers")

PRETRAINED_NAMES = ["Left", "right", "tench, Tinca tinca"]  # the prior's classes (16 ids, then 3 classes, then null)
SIZES = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4)  # TINY_PRIOR_FLAGS's prior
QUIET = ("--image-logging-steps", "0", "--eval-steps", "0", "--report-to", "none", "--use-ema", "false")


def tiny_prior(tokenizer, names=PRETRAINED_NAMES, **fields) -> VQPriorForCausalLM:
    config = VQPriorConfig.from_tokenizer(
        tokenizer, image_size=16, num_classes=len(names), id2label=dict(enumerate(names)), **fields
    )
    torch.manual_seed(1)
    return VQPriorForCausalLM(config)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tokenizer, a pretrained prior saved as a pipeline folder, and a token set of classes `up` and `right`."""
    from hf_vq.pipelines import VQImagePipeline

    folder = tmp_path_factory.mktemp("finetune")
    tokenizer = save_tokenizer(folder / "tok")
    prior = tiny_prior(tokenizer, **SIZES, position_embedding="rope+2d")
    VQImagePipeline(vqvae=tokenizer, transformer=prior).save_pretrained(folder / "pretrained")
    write_token_set(folder / "tokens", tokenizer, folder / "tok", names=["up", "RIGHT"])
    return tokenizer, folder / "pretrained", folder / "tokens", prior


def test_classes_are_matched_by_name_and_new_ones_appended():
    table = fit_class_table(PRETRAINED_NAMES, ["up", "RIGHT", "Tench", "left", "tinca  tinca", "new"])
    assert table.names == [*PRETRAINED_NAMES, "up", "tinca  tinca", "new"]
    # Whole names match whatever the case; one synonym of a comma-separated name does; each row serves one class.
    assert table.label_map == [3, 1, 2, 0, 4, 5] and table.sources == [0, 1, 2, None, None, None]
    assert table.map_labels(torch.tensor([1, 0, 5])).tolist() == [1, 3, 5]
    reset = fit_class_table(PRETRAINED_NAMES, ["right", "up"], reset=True)
    assert reset.names == ["right", "up"] and reset.sources == [None, None] and reset.label_map == [0, 1]


def test_the_class_table_grows_keeping_every_learnt_row(setup):
    tokenizer, _, _, pretrained = setup
    prior = tiny_prior(tokenizer, **SIZES, position_embedding="rope+2d")
    prior.load_state_dict(pretrained.state_dict())
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    apply_class_table(prior, fit_class_table(PRETRAINED_NAMES, ["right", "up", "down"]))
    config, after = prior.config, prior.state_dict()
    assert config.num_classes == 5 and config.vocab_size == 16 + 5 + 1 and config.null_class_token_id == 21
    assert config.id2label == dict(enumerate([*PRETRAINED_NAMES, "up", "down"]))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        old, new = before[name], after[name]
        assert torch.equal(new[:19], old[:19])  # image ids and the three known classes
        assert torch.equal(new[21], old[19])  # the null row, still last
        assert torch.equal(new[19], old[19]) and torch.equal(new[20], old[19])  # new classes start as the null
    assert prior.model.embed_tokens.num_embeddings == prior.lm_head.out_features == prior.model.vocab_size == 22
    # A known class predicts exactly as before; a new class as the null class did.
    ids = torch.randint(0, 16, (2, 17))
    ids[:, 0] = torch.tensor([17, 19])
    prior.eval()
    with torch.no_grad():
        logits = prior(input_ids=ids).logits[..., :16]
        pretrained.eval()
        old_ids = ids.clone()
        old_ids[1, 0] = 19  # the pretrained prior's null token
        reference = pretrained(input_ids=old_ids).logits[..., :16]
    torch.testing.assert_close(logits, reference)
    # The config saved with it is consistent (vocab_size is checked against the classes when loaded).
    assert VQPriorConfig.from_dict(config.to_dict()).vocab_size == 22


@pytest.mark.slow  # three short runs, ~4 s
def test_fine_tuning_starts_from_the_pretrained_weights_and_resumes_exactly(tmp_path, setup):
    from hf_vq.pipelines import VQImagePipeline

    _, pretrained, tokens, prior = setup
    init = ("--init-from", str(pretrained), "--max-train-steps", "4", "--checkpointing-steps", "2", *QUIET)
    first = tmp_path / "first"
    assert train_prior_main(flags(tokens, first, *init, "--class-dropout-prob", "0.5")) == 0
    tuned = VQImagePipeline.from_pretrained(first).transformer
    # The pretrained classes kept, `up` appended; `RIGHT` trained the pretrained `right` row.
    assert tuned.config.id2label == dict(enumerate([*PRETRAINED_NAMES, "up"])) and tuned.config.num_classes == 4
    start, end = prior.state_dict(), tuned.state_dict()
    weight = "model.layers.0.mlp.down_proj.weight"
    moved = (end[weight] - start[weight]).norm() / start[weight].norm()
    assert 0 < moved < 0.2, moved  # 4 steps from the pretrained weights, not from a fresh init
    fresh = VQPriorForCausalLM(tuned.config).state_dict()[weight]
    assert (end[weight] - fresh).norm() > 5 * (end[weight] - start[weight]).norm()
    rows = end["model.embed_tokens.weight"]
    assert not torch.equal(rows[16 + 1], start["model.embed_tokens.weight"][16 + 1])  # `right` was trained on
    assert torch.equal(rows[16], start["model.embed_tokens.weight"][16])  # `Left` was not: no example, no gradient
    # The sample grid shows the token set's classes, `up` and `right`, as the prior's rows 3 and 1.
    images = VQImagePipeline.from_pretrained(first)(class_labels=["up", "right"], output_type="np").images
    assert images.shape == (2, 16, 16, 3)

    # Killed after checkpoint-2: the same command resumes to the same weights.
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(first / "checkpoint-2", second / "checkpoint-2")
    resume = ("--class-dropout-prob", "0.5", "--resume-from-checkpoint", "latest")
    assert train_prior_main(flags(tokens, second, *init, *resume)) == 0
    expected, resumed = (
        load_file(first / "transformer/model.safetensors"),
        load_file(second / "transformer/model.safetensors"),
    )
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)

    # --reset-classes: the token set's two classes only.
    reset = tmp_path / "reset"
    assert train_prior_main(flags(tokens, reset, *init, "--reset-classes", "true", "--max-train-steps", "1")) == 0
    config = VQImagePipeline.from_pretrained(reset).transformer.config
    assert config.id2label == {0: "up", 1: "RIGHT"} and config.vocab_size == 16 + 2 + 1


def test_what_cannot_be_fine_tuned_is_refused_before_any_data_is_read(tmp_path, setup, capsys):
    tokens = setup[2]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        train_prior_main(flags(tokens, out, "--reset-classes", "true"))
    assert exit_info.value.code == 2
    assert "--reset-classes replaces the class table of the prior given with --init-from" in capsys.readouterr().err
    # A prior of another tokenizer: its ids mean other codes.
    other = save_tokenizer(tmp_path / "other", seed=1)
    config = other.config.to_dict()
    config["commitment_cost"] = 0.5
    other = type(other)(type(other.config).from_dict(config))
    tiny_prior(other, **SIZES).save_pretrained(tmp_path / "foreign")
    assert cli(["train-prior", *flags(tokens, out, "--init-from", str(tmp_path / "foreign"))]) == 2
    assert "config hash" in capsys.readouterr().err
    assert not out.exists()
