"""Habits transformers users bring: `output_hidden_states` (argument and config), `return_dict` from the config,
a warning for [0, 255] pixels given to a [-1, 1] model, and a clear error for a cut-short weights file."""

from __future__ import annotations

import logging

import pytest
import torch

from hf_vq import VQGANModel

from helpers import tiny_vqgan_config
from helpers.model_testers import TESTERS


@pytest.fixture(params=TESTERS, ids=lambda t: t.model_class.__name__)
def tester(request):
    """Every family of the shared ModelTester set; its `hidden_state_shapes` are for a (2, 3, 32, 32) input."""
    return request.param


def pixels(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_hidden_states_are_none_unless_asked_for_and_the_output_type_never_changes(tester):
    model = tester.model_class(tester.config()).eval()
    with torch.no_grad():
        plain = model(pixels())
        asked = model(pixels(), output_hidden_states=True)
        # The last decoder stage feeds the output convolution: it is the real activation, not a copy made elsewhere.
        last_stage_output = tester.last_stage_to_output(model, asked.hidden_states[-1])
    assert type(plain) is type(asked) is tester.output_class
    assert plain.hidden_states is None
    assert [tuple(h.shape[1:]) for h in asked.hidden_states] == list(tester.hidden_state_shapes)
    assert all(h.shape[0] == 2 for h in asked.hidden_states)
    assert torch.equal(plain.reconstruction, asked.reconstruction)  # collecting changes nothing
    assert torch.equal(last_stage_output, asked.reconstruction)


def test_config_output_hidden_states_and_return_dict_are_honoured(tester):
    """transformers' ModelTesterMixin checks: the flag through the config, and the tuple output with it."""
    shapes = tester.hidden_state_shapes
    model = tester.model_class(tester.config(output_hidden_states=True)).eval()
    with torch.no_grad():
        output = model(pixels())
        assert len(output.hidden_states) == len(shapes)
        assert model(pixels(), output_hidden_states=False).hidden_states is None  # the argument wins
        as_tuple = model(pixels(), return_dict=False)
    assert isinstance(as_tuple, tuple) and isinstance(as_tuple[-1], tuple) and len(as_tuple[-1]) == len(shapes)
    model.config.return_dict = False
    with torch.no_grad():
        assert isinstance(model(pixels()), tuple)


def test_gradients_reach_the_retained_hidden_states(tester):
    """ModelTesterMixin's `test_retain_grad_hidden_states_attentions`: the stages are part of the graph."""
    model = tester.model_class(tester.config())
    output = model(pixels(), output_hidden_states=True)
    first, last = output.hidden_states[0], output.hidden_states[-1]
    first.retain_grad()
    last.retain_grad()
    output.reconstruction.flatten()[0].backward()
    assert first.grad is not None and last.grad is not None and last.grad.abs().sum() > 0


def test_pixels_in_0_255_are_warned_about_once_per_model(tester, caplog):
    model = tester.model_class(tester.config()).eval()
    uint8_range = (pixels() + 1) * 127.5
    with caplog.at_level(logging.WARNING, logger="hf_vq.modeling.modeling_utils"), torch.no_grad():
        model(pixels())
        assert not caplog.records  # inputs in the range say nothing
        model(uint8_range)
        model(uint8_range)
        model.encode_to_indices(uint8_range)
        if tester.single_grid:
            model.encode(uint8_range)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "far outside this model's pixel range [-1, 1]" in warnings[0] and "images / 127.5 - 1" in warnings[0]
    other = tester.model_class(tester.config()).eval()
    with caplog.at_level(logging.WARNING, logger="hf_vq.modeling.modeling_utils"), torch.no_grad():
        other(uint8_range)
    assert len(caplog.records) == 2  # once per model, not once per process


def test_nan_pixels_are_still_refused():
    model = VQGANModel(tiny_vqgan_config()).eval()
    bad = pixels()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(bad)


@pytest.mark.parametrize("keep", [0.5, 0.0001, 0.0], ids=["half", "header-cut", "empty"])
def test_a_cut_short_weights_file_is_named_with_the_fix(tmp_path, keep):
    from transformers import AutoModel

    VQGANModel(tiny_vqgan_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    for loader in (VQGANModel, AutoModel):
        with pytest.raises(OSError) as error:
            loader.from_pretrained(tmp_path)
        message = str(error.value)
        assert str(weights) in message and "incomplete or corrupt" in message
        assert "force_download=True" in message and "save_pretrained" in message
