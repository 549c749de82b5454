"""A new prior family needs new code and a registry entry, nothing else: a tiny family defined in this file (each
image id drawn independently from a per-class, per-position table) implements the prior interface, is registered in
`PRIOR_TYPES`, and then trains with `hf-vq train-prior --prior-type`, evaluates, gets a card, saves and loads as a
`VQImagePipeline`, samples with its own sampling option through the pipeline and `hf-vq generate`, and loads as a
prior alone by its `model_type`, with no change to library code."""

import json
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

# Imported into this module's namespace on purpose: diffusers loads a pipeline component of an unknown library by
# finding a base class it knows (PreTrainedModel) in the component's module.
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from hf_vq.cli import main as cli
from hf_vq.commands.train_prior import main as train_prior_main
from hf_vq.data import tokens as token_files
from hf_vq.evaluation.generation import held_out_score, prior_nll
from hf_vq.loading import load_pipeline
from hf_vq.modeling import VQPriorConfig, VQPriorMixin
from hf_vq.training.prior_types import PRIOR_TYPES, PriorType

from helpers import save_tokenizer, write_token_set
from helpers import tiny_prior_flags as flags

pytest.importorskip("diffusers")


class TablePriorConfig(VQPriorConfig):
    """The family's config: `VQPriorConfig`'s vocabulary and token layout under its own `model_type`."""

    model_type = "hf_vq_test_table_prior"


class TablePrior(PreTrainedModel, VQPriorMixin):
    """Every image id independent given the class: logits from a `(class or null, position)` table."""

    config_class = TablePriorConfig
    held_out_metric = "table_cross_entropy"
    held_out_description = "cross-entropy of each image id under its position's independent logits (a test family)"
    model_card_name = "per-position table prior"
    model_card_tag = "table-prior"
    calls: ClassVar[list[dict]] = []  # the sampling options each `generate_indices` call received

    def __init__(self, config: TablePriorConfig):
        super().__init__(config)
        self.table = nn.Embedding(config.num_classes + 1, config.sequence_length * config.image_vocab_size)
        self.post_init()

    def forward(self, input_ids: torch.LongTensor, labels: torch.LongTensor | None = None) -> CausalLMOutput:
        config = self.config
        rows = input_ids[:, 0] - config.image_vocab_size  # class, or num_classes for the null token
        if labels is not None and self.training and config.num_classes > 0:  # class dropout, for guidance
            drop = torch.rand(rows.shape, device=rows.device) < config.class_dropout_prob
            rows = torch.where(drop, config.num_classes, rows)
        logits = self.table(rows).view(-1, config.sequence_length, config.image_vocab_size)  # (B, L, V)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten())
        return CausalLMOutput(loss=loss, logits=logits)

    def training_inputs(self, input_ids):
        return {"input_ids": input_ids, "labels": input_ids}

    def score_input_ids(self, input_ids):
        logits, targets = self(input_ids).logits.float(), input_ids[:, 1:]
        return float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")), targets.numel()

    def model_card_details(self) -> str:
        return f"a {self.config.num_classes + 1}-row table"

    @torch.no_grad()
    def generate_indices(
        self,
        class_labels=None,
        num_images: int = 1,
        guidance_scale: float = 1.0,
        generator=None,
        tokenizer=None,
        num_inference_steps: int = 2,
    ):
        """Draws the positions in `num_inference_steps` chunks (the family's own sampling option)."""
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        TablePrior.calls.append({"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale})
        config = self.config
        prefix = self._prefix_ids(class_labels, num_images, self.device)
        logits = self(prefix[:, None]).logits
        if guidance_scale != 1.0:
            null = self(torch.full_like(prefix, config.null_class_token_id)[:, None]).logits
            logits = null + guidance_scale * (logits - null)
        ids = torch.empty(len(prefix), config.sequence_length, dtype=torch.long, device=self.device)
        for chunk in torch.arange(config.sequence_length).chunk(num_inference_steps):
            probabilities = logits[:, chunk].softmax(-1).flatten(0, 1)
            ids[:, chunk] = torch.multinomial(probabilities, 1, generator=generator).view(len(prefix), -1)
        return config.token_layout.unflatten(ids, *config.image_size)


@pytest.fixture
def table_family(monkeypatch):
    """The family registered as a user would (Auto classes + `PRIOR_TYPES`), removed from the registry after."""
    AutoConfig.register(TablePriorConfig.model_type, TablePriorConfig, exist_ok=True)
    AutoModel.register(TablePriorConfig, TablePrior, exist_ok=True)
    monkeypatch.setitem(PRIOR_TYPES, "table", PriorType(TablePriorConfig, TablePrior))
    TablePrior.calls.clear()
    return "table"


@pytest.fixture(scope="module")
def token_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prior_family")
    tokenizer = save_tokenizer(folder / "tok")
    write_token_set(folder / "tokens", tokenizer, folder / "tok")
    return tokenizer, folder / "tok", folder / "tokens"


@pytest.mark.slow  # two short training runs and a generate: ~7 s on a CPU
def test_a_family_defined_outside_the_library_trains_samples_and_loads(tmp_path, token_set, table_family, capsys):
    from hf_vq.pipelines import VQImagePipeline

    _, tokenizer_dir, tokens = token_set
    output = tmp_path / "table"
    steps = ["--max-train-steps", "4", "--checkpointing-steps", "2", "--eval-steps", "2", "--image-logging-steps", "2"]
    assert train_prior_main([*flags(tokens, output), "--prior-type", table_family, *steps]) == 0

    # The pipeline folder, with the family's prior and its held-out score, named as the family names it.
    index = json.loads((output / "model_index.json").read_text())
    assert index["transformer"][1] == "TablePrior"
    results = json.loads((output / "eval_results.json").read_text())
    assert results["metric"] == "table_cross_entropy" and results["num_tokens"] == 16 * 16
    assert results["description"] == TablePrior.held_out_description
    card = (output / "README.md").read_text()
    assert "per-position table prior (`TablePrior`" in card and "2 classes (left, right)" in card
    assert "Held-out `table_cross_entropy`" in card and "not a negative log-likelihood" in card
    assert "`num_inference_steps=2`" in card and "table-prior" in card
    assert f'VQImagePipeline.from_pretrained("{output}")' in card  # the output folder, not the staging one

    pipe = VQImagePipeline.from_pretrained(output)
    prior = pipe.transformer
    assert type(prior) is TablePrior and prior.config.id2label == {0: "left", 1: "right"}
    held_out, labels = token_files.token_arrays(token_files.load_tokens(tokens, "test"))
    assert results["nats_per_token"] == pytest.approx(held_out_score(prior, held_out, labels)["nats_per_token"])
    with pytest.raises(ValueError, match="'table_cross_entropy'.*not an NLL"):
        prior_nll(prior, held_out, labels)

    # The family's sampling option goes through the pipeline; another family's is refused, naming this one's.
    generator = torch.Generator().manual_seed(0)
    options = {"num_inference_steps": 4, "output_type": "latent", "generator": generator}
    ids = pipe(class_labels=["right"], num_images_per_prompt=3, **options).images
    assert ids.shape == (3, 4, 4) and TablePrior.calls[-1]["num_inference_steps"] == 4
    generator = torch.Generator().manual_seed(0)
    again = prior.generate_indices(class_labels=[1], num_images=3, num_inference_steps=4, generator=generator)
    assert torch.equal(ids, again)
    with pytest.raises(ValueError, match="'temperature' is not a sampling option of TablePrior.*num_inference_steps"):
        pipe(class_labels=[0], temperature=0.5)

    # `hf-vq generate` passes the option too, and the family's prior alone loads by its model_type.
    grid = tmp_path / "grid.png"
    argv = ["generate", str(output), "--num-images", "2", "--num-inference-steps", "3", "--output", str(grid)]
    assert cli(argv) == 0 and grid.is_file()
    assert TablePrior.calls[-1] == {"num_inference_steps": 3, "guidance_scale": 1.0}
    assert cli(["generate", str(output), "--temperature", "0.5", "--output", str(grid)]) == 2
    assert "'temperature' is not a sampling option of TablePrior" in capsys.readouterr().err
    alone = load_pipeline(str(output / "transformer"), tokenizer=str(tokenizer_dir))
    assert type(alone.transformer) is TablePrior

    # --init-from continues a prior of the family; under another --prior-type it is refused, naming the fix.
    resumed = tmp_path / "resumed"
    argv = [*flags(tokens, resumed), "--prior-type", table_family, "--init-from", str(output), *steps]
    assert train_prior_main(argv) == 0
    assert cli(["train-prior", *flags(tokens, tmp_path / "wrong"), "--init-from", str(output)]) == 2
    assert "holds a 'table' prior (TablePrior); --prior-type is 'causal'. Pass --prior-type table" in (
        capsys.readouterr().err
    )


def test_the_registry_refuses_a_model_without_the_interface():
    with pytest.raises(TypeError, match="VQPriorMixin"):
        PriorType(TablePriorConfig, nn.Module)
    with pytest.raises(TypeError, match="config_class"):
        PriorType(VQPriorConfig, TablePrior)


def test_an_unregistered_prior_type_is_named_with_the_registered_ones(tmp_path, token_set, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_prior_main([*flags(token_set[2], tmp_path / "out"), "--prior-type", "diffusion"])
    assert exit_info.value.code == 2
    assert "--prior-type: invalid choice: 'diffusion' (choose from 'causal', 'masked')" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
