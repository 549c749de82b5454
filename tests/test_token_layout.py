"""`TokenLayout`: the one description of a tokenizer's ids that checks, cards, evaluation and priors read."""

import pytest
import torch

from hf_vq import TokenLayout, TokenLevel

SINGLE = TokenLayout((TokenLevel("tokens", downsampling_factor=4, codebook_size=16),))
RESIDUAL = TokenLayout((TokenLevel("tokens", downsampling_factor=4, codebook_size=16, depth=3),))
TWO_LEVELS = TokenLayout(
    (TokenLevel("top", downsampling_factor=8, codebook_size=8), TokenLevel("bottom", downsampling_factor=4, codebook_size=16))
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
    assert 0 <= int(sequence.min()) and int(sequence.max()) < layout.vocabulary_size
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
        (lambda: (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long)), ValueError, "one size"),
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
