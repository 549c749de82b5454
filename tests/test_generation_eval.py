"""Evaluation of a prior (`hf_vq.evaluation.generation`): the token baselines against hand-computed entropies, the
class-position marginal against the unigram on real images, a prior that memorised a tiny real set against both,
the class probe, and `evaluate_prior` end to end with a tiny feature network standing in for Inception.

Real data: the built-in photos everywhere, and a Fashion-MNIST slice where the Debian package
`dataset-fashion-mnist` is installed (those tests are skipped otherwise).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from hf_vq import VQGANModel
from hf_vq.data import builtin_eval_crops, fashion_mnist, from_uint8, prepare_image
from hf_vq.evaluation.fid import InceptionFeatureExtractor
from hf_vq.evaluation.generation import (
    MARGINAL,
    RECONSTRUCTION,
    UNIGRAM,
    TokenBaselines,
    decode_tokens,
    evaluate_prior,
    position_id_ranges,
    prior_nll,
    train_class_probe,
)
from hf_vq.evaluation.metrics import frechet_distance
from hf_vq.modeling.configuration_prior import VQPriorConfig
from hf_vq.modeling.modeling_prior import VQPriorForCausalLM
from hf_vq.modeling.token_layout import TokenLayout, TokenLevel

from helpers import TINY_TRANSFORMER, tiny_vqgan_config

ONE_GRID = [{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16}]
TWO_LEVELS = [
    {"name": "top", "downsampling_factor": 4, "codebook_size": 8},
    {"name": "bottom", "downsampling_factor": 2, "codebook_size": 16, "depth": 2},
]
needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist.is_available(),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)


def one_grid(image_side: int, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    layout = TokenLayout((TokenLevel("tokens", downsampling_factor=4, codebook_size=codebook_size),))
    return position_id_ranges(layout, (image_side, image_side))


def grey_level_tokens(images: torch.Tensor, grid: int = 4, levels: int = 16) -> torch.Tensor:
    """Real images `uint8` `(N, C, H, W)` -> ids `(N, grid * grid)`: the mean grey level of each cell in `levels`
    bins. Tokens with the images' own structure, without training a tokenizer."""
    cells = F.adaptive_avg_pool2d(images.float().mean(dim=1, keepdim=True), grid)
    return (cells * levels / 256).long().clamp(max=levels - 1).flatten(1)


@pytest.fixture(scope="module")
def photo_views() -> tuple[torch.Tensor, torch.Tensor]:
    """The 15 built-in eval views at 16 px, uint8 `(15, 3, 16, 16)`, labelled by photo (3 classes)."""
    views = builtin_eval_crops()
    images = torch.stack([prepare_image(view, 16) for view in views])
    return images, torch.arange(len(views)) % 3  # whole photos, then corners, photo by photo


@pytest.fixture(scope="module")
def fashion() -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST test split at 14 px (2x2 mean), uint8 `(10000, 1, 14, 14)`, and labels."""
    images, labels = fashion_mnist.load_fashion_mnist_arrays("test")
    small = F.avg_pool2d(torch.tensor(images, dtype=torch.float32)[:, None], 2).round().to(torch.uint8)
    return small, torch.tensor(labels, dtype=torch.long)


# ------------------------------------------------------------------------------------------------ baselines


def test_baseline_nll_is_the_empirical_entropy_on_the_fitted_data():
    low, high = one_grid(8, 4)[0][:2], one_grid(8, 4)[1][:2]  # two positions of 4 ids
    tokens = torch.tensor([[0, 1], [0, 2], [1, 1], [3, 0]])
    labels = torch.tensor([0, 0, 1, 1])
    baselines = TokenBaselines.fit(tokens, labels, low=low, high=high, num_classes=2, smoothing=0.0)
    # Unigram: ids 0, 1, 2, 3 seen 3, 3, 1, 1 times of 8.
    entropy = -(2 * 3 / 8 * math.log(3 / 8) + 2 * 1 / 8 * math.log(1 / 8))
    unigram = baselines.nll(UNIGRAM, tokens, labels)
    assert unigram["nats_per_token"] == pytest.approx(entropy)
    assert unigram["bits_per_token"] == pytest.approx(entropy / math.log(2)) and unigram["num_tokens"] == 8
    # Class-position marginal: class 0 at position 0 is always 0 (H = 0); the three other cells hold two
    # different ids each (H = ln 2): 6 of the 8 tokens cost ln 2.
    assert baselines.nll(MARGINAL, tokens, labels)["nats_per_token"] == pytest.approx(6 / 8 * math.log(2))
    # Smoothing: a total pseudo-count of 1 spread over the 4 ids of a position (unigram).
    smoothed = TokenBaselines.fit(tokens, labels, low=low, high=high, num_classes=2, smoothing=1.0)
    held_out = torch.tensor([[2, 3]])
    expected = -(math.log((1 + 0.25) / 9) + math.log((1 + 0.25) / 9)) / 2
    assert smoothed.nll(UNIGRAM, held_out)["nats_per_token"] == pytest.approx(expected)
    assert math.isinf(baselines.nll(MARGINAL, held_out, torch.tensor([0]))["nats_per_token"])  # unseen, unsmoothed


def test_position_ranges_are_the_priors_sampling_ranges():
    prior = VQPriorForCausalLM(VQPriorConfig(token_levels=TWO_LEVELS, image_size=8, **TINY_TRANSFORMER))
    low, high = position_id_ranges(prior.config.token_layout, prior.config.image_size)
    tables = prior._position_tables(torch.device("cpu"))
    assert torch.equal(low, tables["low"]) and torch.equal(high, tables["high"])


def test_baselines_sample_their_distributions():
    low, high = position_id_ranges(VQPriorConfig(token_levels=TWO_LEVELS, image_size=8).token_layout, (8, 8))
    rng = torch.Generator().manual_seed(0)
    tokens = low + (torch.rand(400, len(low), generator=rng) ** 3 * (high - low)).long()  # skewed towards low
    labels = torch.arange(400) % 2
    tokens[labels == 1, 0] = low[0] + 5  # class 1 always holds id 5 at position 0
    baselines = TokenBaselines.fit(tokens, labels, low=low, high=high, num_classes=2, smoothing=0.0)
    samples = baselines.sample(MARGINAL, torch.ones(2000, dtype=torch.long), seed=1)
    assert samples.shape == (2000, len(low)) and ((samples >= low) & (samples < high)).all()
    assert (samples[:, 0] == low[0] + 5).all()
    unigram = baselines.sample(UNIGRAM, num_samples=4000, seed=2)
    frequency = (unigram[:, 4] == low[4]).double().mean()  # the most common id of position 4's range
    assert frequency == pytest.approx(baselines.log_unigram[4, 0].exp().item(), abs=0.03)
    assert torch.equal(
        baselines.sample(UNIGRAM, num_samples=5, seed=3), baselines.sample(UNIGRAM, num_samples=5, seed=3)
    )


@needs_fashion_mnist
def test_class_position_marginal_beats_the_unigram_on_fashion_mnist(fashion):
    images, labels = fashion
    tokens = grey_level_tokens(images)
    low, high = one_grid(16, 16)
    baselines = TokenBaselines.fit(tokens[:5000], labels[:5000], low=low, high=high, num_classes=10)
    unigram = baselines.nll(UNIGRAM, tokens[5000:], labels[5000:])["nats_per_token"]
    marginal = baselines.nll(MARGINAL, tokens[5000:], labels[5000:])["nats_per_token"]
    assert marginal < unigram - 0.4, (marginal, unigram)  # measured: 1.76 vs 2.39 nats


# ------------------------------------------------------------------------------------------------ the prior


def test_prior_nll_is_the_masked_cross_entropy():
    torch.manual_seed(0)
    prior = VQPriorForCausalLM(VQPriorConfig(token_levels=TWO_LEVELS, image_size=8, num_classes=3, **TINY_TRANSFORMER))
    low, high = position_id_ranges(prior.config.token_layout, (8, 8))
    tokens = low + (torch.rand(5, len(low)) * (high - low)).long()
    labels = torch.tensor([0, 2, 1, 1, 0])
    measured = prior_nll(prior, tokens, labels, batch_size=2)
    input_ids = prior.build_input_ids(prior.config.token_layout.unflatten(tokens, 8, 8), labels)
    with torch.no_grad():
        logits = prior.eval()(input_ids=input_ids).logits[:, :-1]
        full = prior(input_ids=input_ids, labels=input_ids).loss.item()
    by_hand = (
        -sum(
            F.log_softmax(logits[b, t, low[t] : high[t]], dim=-1)[tokens[b, t] - low[t]].item()
            for b in range(5)
            for t in range(len(low))
        )
        / tokens.numel()
    )
    assert measured["nats_per_token"] == pytest.approx(by_hand, rel=1e-5)
    assert measured["nats_per_token"] < full  # dropping class / null / other-range ids only adds probability


def test_a_prior_that_memorised_a_tiny_real_set_beats_both_baselines(photo_views):
    images, labels = photo_views
    tokens = grey_level_tokens(images)  # 15 views of 3 photos, 16 ids of 16 grey levels each
    torch.manual_seed(0)
    prior = VQPriorForCausalLM(
        VQPriorConfig(token_levels=ONE_GRID, image_size=16, num_classes=3, class_dropout_prob=0.0, **TINY_TRANSFORMER)
    )
    input_ids = prior.build_input_ids(tokens.view(-1, 4, 4), labels)
    before = prior_nll(prior, tokens, labels)["nats_per_token"]
    optimizer = torch.optim.AdamW(prior.parameters(), lr=3e-3)  # 1e-2 spiked: 0.34 nats on 1 thread, 0.70 on 2
    prior.train()
    for _ in range(60):
        loss = prior(input_ids=input_ids, labels=input_ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    low, high = one_grid(16, 16)
    baselines = TokenBaselines.fit(tokens, labels, low=low, high=high, num_classes=3, smoothing=0.0)
    unigram = baselines.nll(UNIGRAM, tokens, labels)["nats_per_token"]
    marginal = baselines.nll(MARGINAL, tokens, labels)["nats_per_token"]
    after = prior_nll(prior, tokens, labels)["nats_per_token"]
    assert after < before and marginal < unigram
    assert after < 0.5 * marginal, (after, marginal, unigram)  # measured: 0.45 vs 1.23 and 2.20 nats, 1 or 2 threads


# ------------------------------------------------------------------------------------------------ class probe


@needs_fashion_mnist
def test_class_probe_learns_fashion_mnist_deterministically(fashion):
    images, labels = fashion
    state = torch.random.get_rng_state()
    probe = train_class_probe(images[:2000], labels[:2000], epochs=2, batch_size=100, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    first, again = (train_class_probe(images[:300], labels[:300], epochs=1, batch_size=100) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    accuracy = probe.accuracy(images[8000:9000], labels[8000:9000])
    assert accuracy > 0.6, accuracy  # chance: 0.1; measured 0.70
    # RGB input to a grayscale probe: read as the channel mean, the same predictions.
    rgb = images[8000:8100].expand(-1, 3, -1, -1)
    assert torch.equal(probe.predict(rgb), probe.predict(images[8000:8100]))


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_features() -> InceptionFeatureExtractor:
    """A TorchScript stand-in for Inception: (B, 3, 299, 299) in [-1, 1] -> (B, 16), as in test_evaluation."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 16))
    extractor = InceptionFeatureExtractor(torch.jit.script(network))
    for _ in range(2):  # TorchScript's profiling executor optimises on the first calls: pay for it once, here
        extractor(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    return extractor


@pytest.fixture(scope="module")
def tokenized_views(photo_views):
    """A tiny f4 VQ-GAN at 16 px and the ids of the built-in views, flattened `(15, 16)`."""
    images, _ = photo_views
    torch.manual_seed(0)
    config = tiny_vqgan_config(
        block_out_channels=[8, 8, 16], down_block_types=["DownEncoderBlock2D"] * 3, sample_size=16
    )
    tokenizer = VQGANModel(config).eval()
    with torch.no_grad():
        ids = tokenizer.token_layout.flatten(tokenizer.encode_to_indices(from_uint8(images)))
    return tokenizer, ids


def test_evaluate_prior_end_to_end(photo_views, tokenized_views, tiny_features):
    images, labels = photo_views
    tokenizer, ids = tokenized_views
    torch.manual_seed(0)
    prior = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(tokenizer, num_classes=3, **TINY_TRANSFORMER)).eval()
    probe = train_class_probe(images, labels, epochs=4, batch_size=5)
    results = evaluate_prior(
        prior,
        tokenizer,
        train_tokens=ids,
        train_labels=labels,
        held_out_tokens=ids,
        held_out_labels=labels,
        held_out_images=images,
        class_probe=probe,
        guidance_scales=(1.0, 3.0),
        num_images=12,
        batch_size=8,
        inception=tiny_features,
    )
    json.dumps(results)  # a plain, serialisable dict
    rows = results["rows"]
    assert set(rows) == {"prior_guidance_1", "prior_guidance_3", UNIGRAM, MARGINAL, RECONSTRUCTION, "real"}
    assert results["num_images"] == 12 and results["num_nll_images"] == 15 and results["sequence_length"] == 16
    assert rows["prior_guidance_1"]["nll"]["nats_per_token"] == pytest.approx(
        prior_nll(prior, ids, labels)["nats_per_token"], rel=1e-5
    )
    assert rows["prior_guidance_3"]["nll"] is None  # NLL belongs to the model, not to a sampling setting
    low, high = position_id_ranges(tokenizer.token_layout, (16, 16))
    baselines = TokenBaselines.fit(ids, labels, low=low, high=high, num_classes=3)
    assert rows[MARGINAL]["nll"] == baselines.nll(MARGINAL, ids, labels)
    # FID of the ceiling is the Fréchet distance of the decoded held-out ids to the real images, at N = 12.
    decoded = decode_tokens(tokenizer, ids[:12], (16, 16))
    assert rows[RECONSTRUCTION]["fid"] == pytest.approx(
        frechet_distance(tiny_features(images[:12]), tiny_features(decoded)), rel=1e-6
    )
    assert rows[RECONSTRUCTION]["class_accuracy"] == probe.accuracy(decoded, labels[:12])
    assert rows["real"]["fid"] is None and rows["real"]["class_accuracy"] == probe.accuracy(images[:12], labels[:12])
    assert results["probe"]["real_held_out_accuracy"] == probe.accuracy(images, labels)
    for name, row in rows.items():
        assert 0.0 <= row["class_accuracy"] <= 1.0
        assert name == "real" or (math.isfinite(row["fid"]) and math.isfinite(row["kid"]))


def test_evaluate_prior_unconditional_and_bad_input(photo_views, tokenized_views, tiny_features):
    images, _ = photo_views
    tokenizer, ids = tokenized_views
    torch.manual_seed(0)
    prior = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(tokenizer, **TINY_TRANSFORMER)).eval()
    results = evaluate_prior(
        prior,
        tokenizer,
        train_tokens=ids,
        held_out_tokens=ids,
        held_out_images=images,
        num_images=6,
        inception=tiny_features,
    )
    assert results["guidance_scales"] == [1.0] and set(results["rows"]) == {
        "prior_guidance_1",
        UNIGRAM,
        MARGINAL,
        RECONSTRUCTION,
        "real",
    }
    assert all(row["class_accuracy"] is None for row in results["rows"].values()) and results["probe"] is None
    conditional = VQPriorForCausalLM(VQPriorConfig.from_tokenizer(tokenizer, num_classes=3, **TINY_TRANSFORMER)).eval()
    with pytest.raises(ValueError, match="class-conditional"):
        evaluate_prior(conditional, tokenizer, train_tokens=ids, held_out_tokens=ids, held_out_images=images)
    other = VQGANModel(
        tiny_vqgan_config(
            block_out_channels=[8, 8, 16],
            down_block_types=["DownEncoderBlock2D"] * 3,
            sample_size=16,
            num_vq_embeddings=32,
        )
    )
    with pytest.raises(ValueError, match="token layout"):
        evaluate_prior(prior, other, train_tokens=ids, held_out_tokens=ids, held_out_images=images)
    with pytest.raises(ValueError, match="uint8"):
        evaluate_prior(prior, tokenizer, train_tokens=ids, held_out_tokens=ids, held_out_images=images.float())
