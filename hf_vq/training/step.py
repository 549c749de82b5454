"""One step of the shared loop (`loop.py`): the task's forward and backward behind the NaN/inf and empty-batch
guard (`train_step`), then clipping and the optimizers (`optimizer_step`). The task's side of the step, its
`TaskStep`, is part of the task interface (`task.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .task import Task


@dataclass
class StepOutput:
    """What the loop keeps of one guarded micro-step: this rank's logs, and the verdict and counts of every rank."""

    logs: dict[str, torch.Tensor]  # detached scalars
    finite: bool
    examples: int  # summed over all processes
    skipped_records: int  # summed over all processes
    empty: bool = False  # some rank's batch held no readable example: skipped data, not a non-finite step


def forward_state(modules: list[nn.Module]) -> list[torch.Tensor]:
    """What a forward may write besides activations: the whole state (parameters included) of every submodule
    that holds persistent buffers of its own. A module with state may also write its parameters in forward (a
    quantizer's k-means init, EMA codes and dead-code restarts write its codebook); modules without buffers don't,
    so a model's bulk (convolutions, attention, norms) is not copied every step."""
    tensors, seen = [], set()
    for module in modules:
        for sub in module.modules():
            # Non-persistent buffers are derived constants (masks, caches), not state: they do not count.
            own = [name for name, _ in sub.named_buffers(recurse=False) if name not in sub._non_persistent_buffers_set]
            if not own:
                continue
            for tensor in sub.state_dict(keep_vars=True).values():
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    tensors.append(tensor.data)
    return tensors


def train_step(accelerator, task: Task, models: list[nn.Module], batch: dict, step: int) -> StepOutput:
    """The task's forward on one batch (`task.train_step`, a `TaskStep`), then backward. Nothing is backpropagated
    unless every rank's losses are finite and every rank has examples, so a bad batch leaves the gradients untouched
    and the state its forward wrote (see [`forward_state`]) is restored. That agreement, the ranks with examples and
    the example and skipped-record counts travel in one all-reduce: one host sync per micro-step."""
    state = forward_state([accelerator.unwrap_model(m) for m in models] + task.checkpointed())
    saved = [t.clone() for t in state]
    out = task.train_step(accelerator, models, batch, step)
    has_examples = out.examples > 0 and len(out.losses) > 0
    ok = torch.stack([torch.isfinite(x) for x in out.losses]).all() if has_examples else torch.tensor(False)
    device = accelerator.device
    skipped = torch.as_tensor(out.skipped_records, dtype=torch.float32).to(device)
    counts = torch.tensor([float(out.examples), float(has_examples)], device=device)
    local = torch.cat([ok.to(device, torch.float32)[None], counts, skipped[None]])
    agreed, examples, with_examples, skipped = accelerator.reduce(local, reduction="sum").tolist()
    finite = agreed == accelerator.num_processes
    empty = with_examples < accelerator.num_processes
    if finite:
        for loss in out.losses:
            accelerator.backward(loss)
    else:
        with torch.no_grad():
            for tensor, copy in zip(state, saved):
                tensor.copy_(copy)
    logs = {k: v.detach().float() for k, v in out.logs.items()}
    return StepOutput(logs, finite, int(examples), int(skipped), empty)


def optimizer_step(
    accelerator, args, models: dict[str, nn.Module], optimizers, schedulers, window_ok: bool
) -> tuple[bool, dict]:
    """Clip, check the gradient norms, step (`args`: `LoopArguments`). `models` maps trainable names to prepared
    modules, in optimizer order. Returns (stepped, grad norms by name). A non-finite window is discarded."""
    norms = {}
    if window_ok and args.max_grad_norm > 0:
        for name, m in models.items():
            trained = [p for p in m.parameters() if p.requires_grad]
            norms[name] = accelerator.clip_grad_norm_(trained, args.max_grad_norm)
        window_ok = all(bool(torch.isfinite(torch.as_tensor(n))) for n in norms.values())
    if window_ok:
        for opt in optimizers:
            opt.step()
        if not accelerator.optimizer_step_was_skipped:  # fp16 loss scaling skips overflowing steps
            for sched in schedulers:
                sched.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return window_ok, {k: float(v) for k, v in norms.items()}


__all__ = ["StepOutput", "forward_state", "optimizer_step", "train_step"]
