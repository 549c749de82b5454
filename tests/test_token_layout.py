"""`TokenLayout`: the one description of a tokenizer's ids that checks, cards, evaluation and priors read."""

import pytest
import torch

from hf_vq import TokenLayout, TokenLevel

SINGLE = TokenLayout((TokenLevel("tokens", downsampling_factor=4, codebook_size=16),))
RESIDUAL = TokenLayout((TokenLevel("tokens", downsampling_factor=4, codebook_size=16, depth=3),))
TWO_LEVELS = TokenLayout(
    (
        TokenLevel("top", downsampling_factor=8, codebook_size=8),
        TokenLevel("bottom", downsampling_factor=4, codebook_size=16),
    )
)


def random_ids(layout, batch=2, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    levels = [
        torch.randint(0, level.codebook_size, (batch, *level.token_shape(size, size)), generator=generator)
        for level in layout.levels
    ]
    return layout.join(levels)


@pytest.mark.parametrize("layout", [SINGLE, RESIDUAL, TWO_LEVELS], ids=["single", "residual", "two-levels"])
def test_flatten_unflatten_round_trip_in_a_joint_vocabulary(layout):
    ids = random_ids(layout)
    sequence = layout.flatten(ids)
    assert sequence.shape == (2, layout.sequence_length(32, 32))
    assert int(sequence.min()) >= 0 and int(sequence.max()) < layout.vocabulary_size
    back = layout.split(layout.unflatten(sequence, 32, 32))
    assert all(torch.equal(a, b) for a, b in zip(back, layout.split(ids)))


def test_joint_vocabulary_gives_every_level_and_stage_its_own_range():
    assert RESIDUAL.offsets == [[0, 16, 32]] and RESIDUAL.vocabulary_size == 48
    assert TWO_LEVELS.offsets == [[0], [8]] and TWO_LEVELS.vocabulary_size == 24
    # Residual stages of one position stay together, coarse to fine.
    ids = torch.tensor([[[[1, 2, 3]]]])
    assert RESIDUAL.flatten(ids).tolist() == [[1, 18, 35]]
    # Coarse level first.
    top, bottom = torch.full((1, 1, 1), 7), torch.full((1, 2, 2), 5)
    assert TWO_LEVELS.flatten((top, bottom)).tolist() == [[7, 13, 13, 13, 13]]


def test_count_codes_gives_one_histogram_per_level_and_stage():
    counts = RESIDUAL.count_codes(torch.tensor([[[[0, 1, 1], [0, 2, 1]]]]))
    assert len(counts) == 1 and counts[0].shape == (3, 16)
    assert counts[0][0, 0] == 2 and counts[0][1, 1] == 1 and counts[0][2, 1] == 2
    two = TWO_LEVELS.count_codes(random_ids(TWO_LEVELS))
    assert [c.shape for c in two] == [(1, 8), (1, 16)] and [int(c.sum()) for c in two] == [2 * 16, 2 * 64]


@pytest.mark.parametrize(
    "make_ids, error, match",
    [
        (lambda: (torch.zeros(1, 4, 4, dtype=torch.long),), ValueError, "2 levels"),
        (lambda: (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4)), TypeError, "level 'bottom'"),
        (lambda: (torch.full((1, 4, 4), 8), torch.zeros(1, 8, 8, dtype=torch.long)), ValueError, r"'top'.*\[0, 8\)"),
        (
            lambda: (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long)),
            ValueError,
            "one size",
        ),
        (lambda: torch.zeros(1, 4, 4, dtype=torch.long), ValueError, "2 levels"),
    ],
    ids=["one-level", "float", "out-of-range", "mismatched-grids", "bare-tensor"],
)
def test_check_names_the_level_and_the_fix(make_ids, error, match):
    with pytest.raises(error, match=match):
        TWO_LEVELS.check(make_ids())


def test_unflatten_rejects_a_sequence_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"\(batch, 64\)"):
        SINGLE.unflatten(torch.zeros(1, 63, dtype=torch.long), 32, 32)


# ---------------------------------------------------------------------------------------------- beyond grids

# VAR-style multi-scale tokens: ten square scales of a 256-px image, all from one codebook (13 does not divide 256).
VAR_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
VAR = TokenLayout(
    tuple(TokenLevel(f"scale_{s}", side=s, codebook_size=64, codebook="scales") for s in VAR_SCALES), image_multiple=16
)
# TiTok-style 1-D tokens: 32 of them whatever the image size.
ONE_D = TokenLayout((TokenLevel("tokens", length=32, codebook_size=64),), image_multiple=16)


@pytest.mark.parametrize("layout, size", [(VAR, 256), (ONE_D, 256), (ONE_D, 512)], ids=["var", "1d-256", "1d-512"])
def test_flatten_unflatten_and_check_read_multi_scale_and_1d_layouts(layout, size):
    ids = random_ids(layout, size=size)
    assert layout.check(ids) == layout.split(ids) and layout.check(ids, image_size=(size, size)) == layout.split(ids)
    sequence = layout.flatten(ids)
    assert sequence.shape == (2, layout.sequence_length(size, size)) and int(sequence.max()) < layout.vocabulary_size
    back = layout.split(layout.unflatten(sequence, size, size))
    assert all(torch.equal(a, b) for a, b in zip(back, layout.split(ids)))


def test_levels_that_share_a_codebook_share_one_id_range():
    assert VAR.token_shapes(256, 256) == [(s, s) for s in VAR_SCALES]
    assert VAR.sequence_length(256, 256) == sum(s * s for s in VAR_SCALES) == 680
    assert VAR.vocabulary_size == 64 and VAR.offsets == [[0]] * 10 and VAR.codebook_names == ["scales"]
    ids = VAR.join([torch.full((1, s, s), 5) for s in VAR_SCALES])
    assert VAR.flatten(ids).unique().tolist() == [5]  # the same code is the same id at every scale
    # Two codebooks, one shared by two levels: offsets per codebook, not per level.
    mixed = TokenLayout(
        (
            TokenLevel("coarse", side=1, codebook_size=8, codebook="a"),
            TokenLevel("other", side=2, codebook_size=16),
            TokenLevel("fine", side=2, codebook_size=8, codebook="a"),
        )
    )
    assert mixed.offsets == [[0], [8], [0]] and mixed.vocabulary_size == 24 and mixed.codebook_names == ["a", "other"]


def test_a_1d_layout_has_the_same_length_at_every_image_size():
    assert ONE_D.token_shapes(64, 64) == ONE_D.token_shapes(512, 256) == [(32,)]
    assert ONE_D.sequence_length(512, 512) == 32 and ONE_D.vocabulary_size == 64 and ONE_D.offsets == [[0]]
    residual = TokenLayout((TokenLevel("tokens", length=32, codebook_size=64, depth=2),))
    assert residual.token_shapes(64, 64) == [(32, 2)] and residual.offsets == [[0, 64]]


def test_count_codes_per_level_and_per_shared_codebook():
    ids = VAR.join([torch.full((2, s, s), s) for s in VAR_SCALES])
    per_level = VAR.count_codes(ids)
    assert [int(c.sum()) for c in per_level] == [2 * s * s for s in VAR_SCALES]
    (shared,) = VAR.codebook_counts(per_level)
    assert shared.shape == (1, 64) and int(shared.sum()) == 2 * 680
    assert shared[0, VAR_SCALES].tolist() == [2 * s * s for s in VAR_SCALES]
    (one_d,) = ONE_D.codebook_counts(ONE_D.count_codes(torch.arange(32).repeat(3, 1)))
    assert one_d.shape == (1, 64) and one_d[0, :32].tolist() == [3] * 32 and int(one_d[0, 32:].sum()) == 0
    assert TWO_LEVELS.codebook_counts(TWO_LEVELS.count_codes(random_ids(TWO_LEVELS)))[1].shape == (1, 16)


@pytest.mark.parametrize(
    "layout, ids, image_size, match",
    [
        (ONE_D, torch.zeros(1, 31, dtype=torch.long), None, r"shape \(batch, 32\); got \(1, 31\)"),
        (ONE_D, torch.zeros(1, 4, 8, dtype=torch.long), None, r"shape \(batch, 32\)"),
        (ONE_D, torch.full((1, 32), 64), None, r"\[0, 64\)"),
        (VAR, tuple(torch.zeros(1, s + (s == 13), s, dtype=torch.long) for s in VAR_SCALES), None, "'scale_13'"),
        (SINGLE, torch.zeros(1, 8, 8, dtype=torch.long), (64, 64), r"64x64 images must have shape \(batch, 16, 16\)"),
    ],
    ids=["1d-short", "1d-as-grid", "1d-out-of-range", "var-wrong-scale", "grid-for-another-size"],
)
def test_check_validates_each_level_against_its_token_shape(layout, ids, image_size, match):
    with pytest.raises(ValueError, match=match):
        layout.check(ids, image_size=image_size)


def test_image_multiple_is_the_one_size_an_image_side_divides_by():
    assert SINGLE.image_multiple == 4 and TWO_LEVELS.image_multiple == 8 and VAR.image_multiple == 16
    assert TokenLayout((TokenLevel("a", 4, 8), TokenLevel("b", 6, 8))).image_multiple == 12  # both grids whole
    assert TokenLayout((TokenLevel("tokens", length=8, codebook_size=4),)).image_multiple == 1
    with pytest.raises(ValueError, match="top grid's downsampling factor 8; got 36x36.*32x32"):
        TWO_LEVELS.check_image_size(36, 36)
    with pytest.raises(ValueError, match="image multiple 16; got 210x256.*208x256"):
        VAR.check_image_size(210, 256)
    with pytest.raises(ValueError, match="`image_multiple` must be a positive multiple of .*\\[8, 4\\]"):
        TokenLayout(TWO_LEVELS.levels, image_multiple=12)
    with pytest.warns(FutureWarning, match="image_multiple"):
        assert TWO_LEVELS.downsampling_factor == 8  # the old name, for code written before image_multiple


@pytest.mark.parametrize(
    "layout", [SINGLE, RESIDUAL, TWO_LEVELS, VAR, ONE_D], ids=["single", "residual", "two", "var", "1d"]
)
def test_the_dict_form_round_trips_and_reads_level_lists_already_on_disk(layout):
    assert TokenLayout.from_dict(layout.to_dict()) == layout
    assert TokenLayout.from_dict([level.to_dict() for level in layout.levels]).levels == layout.levels
    # Token sets, token files and prior configs written before side / length / codebook existed read unchanged.
    stored = [{"name": "tokens", "downsampling_factor": 4, "codebook_size": 16, "depth": 3}]
    assert TokenLayout.from_dict(stored) == RESIDUAL and RESIDUAL.to_dict()["levels"] == stored
    assert TokenLevel.from_dict({"downsampling_factor": 4, "codebook_size": 16}) == SINGLE.levels[0]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TokenLevel("tokens", 4, 16, side=4), "exactly one of `downsampling_factor`"),
        (lambda: TokenLevel("tokens", codebook_size=16), "exactly one of"),
        (lambda: TokenLevel("tokens", length=0, codebook_size=16), "`length` must be an integer >= 1; got 0"),
        (lambda: TokenLevel.from_dict({"name": "tokens"}), "`codebook_size`"),
        (lambda: TokenLevel.from_dict({"factor": 4, "codebook_size": 16}), r"unknown keys \['factor'\]"),
        (
            lambda: TokenLayout(
                (
                    TokenLevel("a", side=1, codebook_size=8, codebook="c"),
                    TokenLevel("b", side=2, codebook_size=16, codebook="c"),
                )
            ),
            "share the codebook 'c'",
        ),
        (lambda: TokenLayout((TokenLevel("a", 4, 8), TokenLevel("a", 8, 8))), "names must differ"),
    ],
    ids=["two-rules", "no-rule", "zero-length", "no-codebook-size", "unknown-key", "shared-disagree", "same-names"],
)
def test_bad_levels_say_what_was_expected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_prior_reads_shared_codebooks_and_1d_levels():
    """The prior's vocabulary is the layout's: one range of K ids for ten scales that share a codebook."""
    from hf_vq import VQPriorConfig, VQPriorForCausalLM

    tiny = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    var = VQPriorConfig(token_levels=VAR.to_dict()["levels"], image_size=256, num_classes=2, **tiny)
    assert var.image_vocab_size == 64 and var.vocab_size == 64 + 2 + 1 and var.sequence_length == 680
    assert var.token_layout.levels == VAR.levels
    prior = VQPriorForCausalLM(VQPriorConfig(**{**var.to_dict(), "position_embedding": "rope+2d"}))
    tables = prior._position_tables(torch.device("cpu"))
    assert tables["low"].unique().tolist() == [0] and tables["high"].unique().tolist() == [64]
    assert int(tables["rows"].max()) == 16  # every scale in units of the 16x16 grid
    one_d = VQPriorConfig(token_levels=ONE_D.to_dict()["levels"], image_size=64, **tiny)
    assert one_d.sequence_length == 32 and one_d.image_vocab_size == 64
    with pytest.raises(ValueError, match="position_embedding.*sequences; use position_embedding='rope'"):
        VQPriorConfig(token_levels=ONE_D.to_dict()["levels"], image_size=64, position_embedding="rope+2d", **tiny)


def test_docstring_examples_run():
    import doctest

    from hf_vq.modeling import token_layout

    assert doctest.testmod(token_layout, raise_on_error=True).attempted > 0
