"""The transformer prior over token ids: vocabulary layout and masking, image-only loss, class dropout, batched
classifier-free guidance against transformers' own `generate`, save / load through the Auto classes, tokenizer
checks, bad input, and a tiny prior that learns the tokens of real photos."""

import ast
import doctest
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoConfig, AutoModelForCausalLM

from hf_vq import VQGANModel
from hf_vq.modeling import configuration_prior, modeling_prior, prior_interface
from hf_vq.modeling.configuration_prior import VQPriorConfig, tokenizer_config_hash
from hf_vq.modeling.modeling_prior import VQPriorForCausalLM
from hf_vq.modeling.prior_interface import VQPriorMixin

from helpers import TINY_TRANSFORMER, tiny_vqgan_config

ONE_GRID = [{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}]
# A VQ-VAE-2-like layout: a coarse grid, and a fine grid with two residual stages per position.
TWO_LEVELS = [
    {"name": "top", "downsampling_factor": 4, "codebook_size": 8},
    {"name": "bottom", "downsampling_factor": 2, "codebook_size": 16, "depth": 2},
]


def tiny_prior(token_levels=ONE_GRID, image_size=16, num_classes=3, **fields) -> VQPriorForCausalLM:
    torch.manual_seed(0)
    config = VQPriorConfig(
        token_levels=token_levels, image_size=image_size, num_classes=num_classes, **{**TINY_TRANSFORMER, **fields}
    )
    return VQPriorForCausalLM(config).eval()


def transformers_generate(prior, labels, guidance_scale, **sampling):
    """The same sampling through `GenerationMixin.generate`: CFG with the null token as negative prompt, the non-image
    ids suppressed."""
    config = prior.config
    prefix = torch.tensor([[config.class_token_id(label)] for label in labels])
    guidance = {}
    if guidance_scale != 1.0:
        null = torch.full_like(prefix, config.null_class_token_id)
        guidance = dict(guidance_scale=guidance_scale, negative_prompt_ids=null)
    sequence = prior.generate(
        input_ids=prefix,
        max_new_tokens=config.sequence_length,
        suppress_tokens=list(range(config.image_vocab_size, config.vocab_size)),
        **guidance,
        **sampling,
    )
    return sequence[:, 1:].reshape(len(labels), *config.latent_shapes[0])


# ------------------------------------------------------------------------------------------ config


def test_vocabulary_layout():
    config = VQPriorConfig(token_levels=ONE_GRID, image_size=16, num_classes=3, **TINY_TRANSFORMER)
    assert config.image_vocab_size == 16 and config.latent_shapes == [(4, 4)] and config.sequence_length == 16
    assert [config.class_token_id(c) for c in range(3)] == [16, 17, 18] and config.null_class_token_id == 19
    assert config.vocab_size == 20 and config.max_position_embeddings == 17
    assert config.eos_token_id is None  # no end token: generation never stops early on an image id

    two = VQPriorConfig(token_levels=TWO_LEVELS, image_size=8, num_classes=0, **TINY_TRANSFORMER)
    assert two.image_vocab_size == 8 + 2 * 16 and two.sequence_length == 4 + 16 * 2
    assert two.vocab_size == 41 and two.null_class_token_id == 40

    tables = VQPriorForCausalLM(two)._position_tables(torch.device("cpu"))
    assert tables["low"][:4].tolist() == [0] * 4 and tables["high"][:4].tolist() == [8] * 4
    assert tables["low"][4:8].tolist() == [8, 24, 8, 24] and tables["high"][4:6].tolist() == [24, 40]
    # Rows / columns in finest-grid units, 0 for the prefix; the two stages of a position share them.
    assert tables["rows"][:5].tolist() == [0, 1, 1, 3, 3] and tables["cols"][:5].tolist() == [0, 1, 3, 1, 3]
    assert tables["rows"][5:9].tolist() == [1, 1, 1, 1] and tables["cols"][5:9].tolist() == [1, 1, 2, 2]


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(vocab_size=99), "vocab_size"),
        (dict(num_classes=-1), "num_classes"),
        (dict(class_dropout_prob=1.0), "class_dropout_prob"),
        (dict(position_embedding="alibi"), "position_embedding"),
        (dict(image_size=18), "image_size"),
        (dict(eos_token_id=2), "eos_token_id"),
        (dict(max_position_embeddings=4), "max_position_embeddings"),
        (dict(token_levels=[{"name": "tokens"}]), "token_levels"),
        (dict(token_levels=[{"downsampling_factor": 4, "codebook_size": 0}]), "codebook_size"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        VQPriorConfig(**{**dict(token_levels=ONE_GRID, image_size=16), **fields})


def test_docstring_examples_run():
    for module in (configuration_prior, modeling_prior, prior_interface):
        assert doctest.testmod(module, raise_on_error=True).attempted > 0


def test_modeling_files_ship_as_remote_code():
    """The prior's files import only the standard library, torch, transformers and their own folder (no diffusers,
    nothing else of hf_vq)."""
    folder = Path(__file__).resolve().parents[1] / "hf_vq" / "modeling"
    allowed = set(sys.stdlib_module_names) | {"torch", "transformers", "huggingface_hub"}
    for name in ("configuration_prior.py", "modeling_prior.py", "prior_interface.py"):
        for node in ast.walk(ast.parse((folder / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in allowed, (name, node.module)
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in allowed for a in node.names), name


# ------------------------------------------------------------------------------------------ training


def test_loss_is_image_tokens_only_and_ignores_the_class_position():
    prior = tiny_prior()
    ids = prior.build_input_ids(torch.randint(0, 16, (4, 4, 4)), class_labels=[0, 1, 2, 0])
    assert ids.shape == (4, 17) and ids[:, 0].tolist() == [16, 17, 18, 16]
    output = prior(input_ids=ids, labels=ids)
    expected = F.cross_entropy(output.logits[:, :-1].reshape(-1, 20), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(output.loss, expected)
    labels = ids.clone()
    labels[:, 0] = -100
    torch.testing.assert_close(prior(input_ids=ids, labels=labels).loss, output.loss)

    unconditional = tiny_prior(num_classes=0)
    ids = unconditional.build_input_ids(torch.randint(0, 16, (2, 4, 4)))
    assert (ids[:, 0] == unconditional.config.null_class_token_id).all()


def test_the_causal_prior_implements_the_prior_interface():
    prior = tiny_prior()
    assert isinstance(prior, VQPriorMixin) and prior.held_out_metric == "nll"
    assert prior.sampling_options() == {"temperature": 1.0, "top_k": None, "top_p": None, "cfg_interval": None}
    ids = prior.build_input_ids(torch.randint(0, 16, (2, 4, 4)), class_labels=[0, 2])
    assert set(prior.training_inputs(ids)) == {"input_ids", "labels"}
    torch.testing.assert_close(prior.training_loss(ids), prior(input_ids=ids, labels=ids).loss)  # eval: no dropout
    nats, count = prior.score_input_ids(ids)
    assert count == 2 * 16 and prior.held_out_score(ids[:, 1:], [0, 2])["nats_per_token"] == pytest.approx(nats / 32)
    prior.check_sampling_options({"temperature": 0.5, "top_k": 3})
    with pytest.raises(
        ValueError, match="'num_inference_steps' is not a sampling option.*temperature, top_k, top_p, cfg_interval"
    ):
        prior.check_sampling_options({"num_inference_steps": 8})


def test_class_dropout_replaces_the_class_token_with_null_in_training_only():
    prior = tiny_prior(class_dropout_prob=0.5)
    ids = prior.build_input_ids(torch.randint(0, 16, (1, 4, 4)).expand(64, 4, 4), class_labels=[1] * 64)
    null = ids.clone()
    null[:, 0] = prior.config.null_class_token_id
    with torch.no_grad():
        kept, dropped = prior(input_ids=ids).logits, prior(input_ids=null).logits
        prior.train()
        trained = prior(input_ids=ids, labels=ids).logits
        no_labels = prior(input_ids=ids).logits  # not a training step: nothing dropped
    is_kept = torch.isclose(trained, kept, atol=1e-5).flatten(1).all(1)
    is_dropped = torch.isclose(trained, dropped, atol=1e-5).flatten(1).all(1)
    assert (is_kept ^ is_dropped).all() and 10 < int(is_dropped.sum()) < 54
    torch.testing.assert_close(no_labels, kept)


def test_init_weights_covers_the_grid_embedding():
    prior = tiny_prior(position_embedding="rope+2d")
    grid = prior.grid_position_embedding
    assert grid.row.shape == (5, 32) and grid.col.shape == (5, 32)
    for weight in (grid.row, grid.col):
        assert torch.isfinite(weight).all() and 0.01 < float(weight.detach().std()) < 0.03


# ------------------------------------------------------------------------------------------ sampling


@pytest.mark.parametrize("position_embedding", ["rope", "rope+2d"])
def test_batched_guidance_equals_transformers_generate(position_embedding):
    prior = tiny_prior(position_embedding=position_embedding)
    labels = [0, 1, 2]
    greedy = prior.generate_indices(class_labels=labels, guidance_scale=3.0, temperature=0)
    assert torch.equal(greedy, transformers_generate(prior, labels, 3.0, do_sample=False))
    # Sampling: the same global RNG stream, the same warpers, the same tokens.
    for scale, sampling in ((2.0, dict(temperature=0.7, top_k=5)), (4.0, dict(top_p=0.8))):
        torch.manual_seed(1)
        ours = prior.generate_indices(class_labels=labels, guidance_scale=scale, **sampling)
        torch.manual_seed(1)
        assert torch.equal(ours, transformers_generate(prior, labels, scale, do_sample=True, **sampling))


def test_preallocated_cache_gives_the_full_forward_logits_token_by_token():
    from transformers.cache_utils import Cache

    prior = tiny_prior(position_embedding="rope+2d")
    ids = prior.build_input_ids(torch.randint(0, 16, (2, 4, 4)), class_labels=[0, 2])
    with torch.no_grad():
        full = prior(input_ids=ids).logits
        cache = Cache(layers=[modeling_prior.PreallocatedLayer(17) for _ in range(prior.config.num_hidden_layers)])
        steps = [prior(input_ids=ids[:, :5], cache=cache, use_cache=True).logits]  # a prompt, then one at a time
        steps += [prior(input_ids=ids[:, t : t + 1], cache=cache, use_cache=True).logits for t in range(5, 17)]
        torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    states = torch.zeros(1, 2, 3, 8)
    with pytest.raises(ValueError, match="holds 2 positions"):
        modeling_prior.PreallocatedLayer(2).update(states, states)


def test_guidance_one_equals_unguided_and_skips_the_null_branch():
    prior = tiny_prior()
    batch_sizes = []
    handle = prior.model.register_forward_hook(lambda module, args, output: batch_sizes.append(output[0].shape[0]))
    torch.manual_seed(3)
    ours = prior.generate_indices(class_labels=[2, 0], guidance_scale=1.0)
    assert set(batch_sizes) == {2}
    batch_sizes.clear()
    prior.generate_indices(class_labels=[2, 0], guidance_scale=1.5)
    assert set(batch_sizes) == {4}  # one forward of 2B rows per token
    handle.remove()
    torch.manual_seed(3)
    assert torch.equal(ours, transformers_generate(prior, [2, 0], 1.0, do_sample=True))


def test_seeded_generator_reproduces_samples():
    prior = tiny_prior()

    def sample(seed):
        return prior.generate_indices(
            class_labels=[1], num_images=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(seed)
        )

    first = sample(0)
    assert first.shape == (3, 4, 4) and torch.equal(first, sample(0)) and not torch.equal(first, sample(1))


def test_only_image_ids_are_emitted_even_when_other_tokens_dominate():
    for token_levels, image_size in ((ONE_GRID, 16), (TWO_LEVELS, 8)):
        prior = tiny_prior(token_levels=token_levels, image_size=image_size)
        image_vocab = prior.config.image_vocab_size

        def favour_class_tokens(module, args, logits, image_vocab=image_vocab):
            logits = logits.clone()
            logits[..., image_vocab:] += 1e4  # class and null tokens far above every image id
            logits[..., : image_vocab // 2] += 1e3  # and, for two levels, the ids of the wrong level / stage
            return logits

        prior.lm_head.register_forward_hook(favour_class_tokens)
        settings = [
            dict(temperature=0, guidance_scale=3.0),
            dict(temperature=5.0, guidance_scale=1.0),
            dict(temperature=2.0, top_k=3, guidance_scale=3.0),
            dict(top_p=0.5, guidance_scale=1.0),
        ]
        for sampling in settings:
            ids = prior.generate_indices(class_labels=[0, 2], **sampling)
            levels = prior.config.token_layout.check(ids)  # every level and stage in its own codebook range
            assert [tuple(level.shape[1:]) for level in levels] == prior.config.latent_shapes


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(class_labels=[3]), r"\[0, 3\)"),
        (dict(class_labels=[-1]), r"\[0, 3\)"),
        (dict(class_labels=[0.5]), "ints"),
        (dict(class_labels=[]), "empty"),
        (dict(num_images=0), "num_images"),
        (dict(class_labels=[0], temperature=-1.0), "temperature"),
        (dict(class_labels=[0], top_k=0), "top_k"),
        (dict(class_labels=[0], top_p=0.0), "top_p"),
        (dict(guidance_scale=2.0), "guidance_scale"),
    ],
)
def test_bad_sampling_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_prior().generate_indices(**kwargs)


def test_bad_input_to_an_unconditional_prior_and_to_build_input_ids():
    unconditional = tiny_prior(num_classes=0)
    assert unconditional.generate_indices(num_images=2, temperature=0).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="unconditional prior"):
        unconditional.generate_indices(class_labels=[0])
    with pytest.raises(ValueError, match="guidance_scale"):
        unconditional.generate_indices(guidance_scale=2.0)
    prior = tiny_prior()
    with pytest.raises(ValueError, match="class-conditional"):
        prior.build_input_ids(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="one entry per image"):
        prior.build_input_ids(torch.zeros(2, 4, 4, dtype=torch.long), class_labels=[0])
    with pytest.raises(ValueError, match="do not match"):
        prior.build_input_ids(torch.zeros(2, 8, 8, dtype=torch.long), class_labels=[0, 1])
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        prior.build_input_ids(torch.full((1, 4, 4), 16), class_labels=[0])


# ------------------------------------------------------------------------------------------ tokenizer, saving


def test_tokenizer_layout_and_hash_are_checked(tmp_path):
    torch.manual_seed(0)
    vqvae = VQGANModel(tiny_vqgan_config()).eval()
    prior = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(vqvae, num_classes=2, **TINY_TRANSFORMER)).eval()
    assert prior.config.latent_shapes == [(16, 16)] and prior.config.image_vocab_size == 16
    assert prior.config.tokenizer_config_hash == tokenizer_config_hash(vqvae.config)
    vqvae.save_pretrained(tmp_path / "vqvae")
    prior.check_tokenizer(VQGANModel.from_pretrained(tmp_path / "vqvae"))  # same tokenizer after a round trip
    with pytest.raises(ValueError, match="token layout"):
        prior.check_tokenizer(VQGANModel(tiny_vqgan_config(num_vq_embeddings=32)))
    with pytest.raises(ValueError, match="config hash"):
        prior.check_tokenizer(VQGANModel(tiny_vqgan_config(latent_channels=8)))
    with pytest.raises(ValueError, match="config hash"):
        prior.generate_indices(class_labels=[0], tokenizer=VQGANModel(tiny_vqgan_config(latent_channels=8)))


@pytest.mark.parametrize("position_embedding", ["rope", "rope+2d"])
def test_save_load_through_auto_classes(tmp_path, position_embedding):
    prior = tiny_prior(position_embedding=position_embedding, id2label={0: "a", 1: "b", 2: "c"})
    prior.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is VQPriorConfig
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is VQPriorForCausalLM and loaded.config.id2label == {0: "a", 1: "b", 2: "c"}
    expected, received = prior.state_dict(), loaded.state_dict()
    assert expected.keys() == received.keys() and all(torch.equal(expected[k], received[k]) for k in expected)

    def sample(model):
        return model.generate_indices(
            class_labels=[0, 2], guidance_scale=2.0, generator=torch.Generator().manual_seed(0)
        )

    assert torch.equal(sample(prior), sample(loaded))


# ------------------------------------------------------------------------------------------ learning


def _photo_tokens(vqvae):
    """Token grids of 16x16 crops of two real photos (skimage's astronaut and coffee), class = photo."""
    data = pytest.importorskip("skimage.data")
    crops, labels = [], []
    for label, (photo, size) in enumerate(((data.astronaut(), (32, 32)), (data.coffee(), (48, 32)))):
        image = np.asarray(Image.fromarray(photo).resize(size, Image.BICUBIC), dtype=np.float32) / 127.5 - 1
        for top in range(0, image.shape[0], 16):
            for left in range(0, image.shape[1], 16):
                crops.append(torch.from_numpy(image[top : top + 16, left : left + 16]).permute(2, 0, 1))
                labels.append(label)
    with torch.no_grad():
        return vqvae.encode_to_indices(torch.stack(crops)), torch.tensor(labels)


def test_tiny_prior_learns_real_photo_tokens():
    torch.manual_seed(0)
    vqvae = VQGANModel(tiny_vqgan_config()).eval()
    tokens, labels = _photo_tokens(vqvae)
    prior = VQPriorForCausalLM(
        VQPriorConfig.from_tokenizer(
            vqvae, image_size=16, num_classes=2, position_embedding="rope+2d", **TINY_TRANSFORMER
        )
    )
    ids = prior.build_input_ids(tokens, labels)
    prior.eval()
    with torch.no_grad():
        before = prior(input_ids=ids, labels=ids).loss
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    prior.train()
    for _ in range(30):
        loss = prior(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    with torch.no_grad():
        after = prior(input_ids=ids, labels=ids).loss
    assert after < 0.8 * before, (float(before), float(after))
    generator = torch.Generator().manual_seed(0)
    samples = prior.generate_indices(class_labels=[0, 1], guidance_scale=2.0, generator=generator)
    assert vqvae.decode_indices(samples).shape == (2, 3, 16, 16)
