"""The task interface of the shared loop (`loop.py`): what a trainer implements so that [`run_training`] can train it.

A [`Task`] knows its models, data and losses; the loop knows everything else (accelerator, optimizers, schedules,
EMA, the NaN/inf guard, checkpoints, resume, the final staged save). The loop calls the hooks in this order:

    build_models -> [`Trainable`]s      build_data -> [`TrainData`]      build_objective(max_train_steps)
    adam_betas                           checkpointed
    train_step -> [`TaskStep`] (every micro-step)      watch (every optimizer step)
    save, push, report                   (main process, after the last step)

`hf-vq train`'s [`TokenizerTask`] (`tokenizer.py`) and `hf-vq train-prior`'s `PriorTask` (`prior.py`) are the two
tasks. A task never writes into the arguments it was given: what it resolves (Adam's beta1 for the tokenizer) it
returns from a hook, and the loop records the values used in training_args.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .checkpointing import TrainingState

if TYPE_CHECKING:
    from .arguments import LoopArguments

logger = logging.getLogger(__name__)


@dataclass
class Trainable:
    """One model the loop trains, with its own AdamW, learning-rate schedule, gradient clipping and checkpoint
    folder. The first trainable of a task is *the* model: its EMA is kept and it is what the task saves."""

    name: str  # in the logs: `grad_norm/{name}`, `lr/{name}`
    module: nn.Module
    learning_rate: float  # before `--scale-lr`
    folder: str | None = None  # its `save_pretrained` folder inside a checkpoint; defaults to `name`


@dataclass
class TrainData:
    """The training data of a task: an (unprepared) data loader over a stream the loop can set the epoch of."""

    dataloader: Any  # `set_epoch(epoch)`; each rank reads its own shards
    description: str  # for the logs and the model card
    num_examples: int | None  # size of the split if known, for `--num-train-epochs`


@dataclass
class TaskStep:
    """What a task's forward returns to the loop for one batch (this rank's)."""

    losses: list[torch.Tensor]  # each backpropagated once if finite on every rank; empty when `examples == 0`
    logs: dict[str, torch.Tensor]  # scalars, logged as `train/{key}`
    examples: int  # examples in this rank's batch
    skipped_records: int | torch.Tensor = 0  # unreadable records the data pipeline dropped from this batch


class Task:
    """The hooks a trainer implements; [`run_training`] calls them. A task keeps its own models and data."""

    command: str = "hf-vq"  # what messages to the user start with
    example_name: str = "images"  # throughput is logged as `throughput/{example_name}_per_second`
    progress_keys: tuple[str, ...] = ("loss",)  # `train/` logs shown on the progress bar
    output_names: tuple[str, ...] = ()  # what `save` writes in the output folder: --overwrite-output-dir removes it

    def build_models(self) -> list[Trainable]:
        """The models to train, built (fresh or loaded) in train mode; the first is the one saved."""
        raise NotImplementedError

    def build_data(self, accelerator) -> TrainData:
        """The training data (and whatever held-out data `watch` and `save` use, on `accelerator.device`)."""
        raise NotImplementedError

    def build_objective(self, max_train_steps: int, device: torch.device) -> None:
        """Anything that depends on the step budget (loss schedules), on `device`. Called after `build_data`."""

    def adam_betas(self, args: LoopArguments) -> tuple[float, float]:
        """Adam's `(beta1, beta2)` for every optimizer, asked once after `build_objective`: by default the flags'.
        A task that resolves a flag the user left unset returns its value here instead of writing it into `args`;
        the loop builds the optimizers with it and records it in training_args.json.

        Args:
            args (`LoopArguments`):
                The run's arguments, as given.
        """
        return args.adam_beta1, args.adam_beta2

    def checkpointed(self) -> list[nn.Module]:
        """Stateful objects besides the models (e.g. a loss's moving averages): checkpointed (their `state_dict`
        of tensors, as `task_state.safetensors`), and restored with the models' state after a non-finite step."""
        return []

    def train_step(self, accelerator, models: list[nn.Module], batch: dict, step: int) -> TaskStep:
        """Forward of one batch under `accelerator.autocast()` and its losses, one per trainable that steps.
        `models` are the prepared trainables in `build_models` order; `step` counts optimizer steps from 0."""
        raise NotImplementedError

    def watch(self, run: Run) -> None:
        """After every optimizer step, on every process: sample grids, held-out evaluation, every N steps."""

    def save(self, run: Run) -> None:
        """On the main process, after the last step: the final model (`run.sample_model()`) and what goes with it,
        written into `run.save_dir` (a staging folder the loop moves into the output folder once complete)."""
        raise NotImplementedError

    def push(self, run: Run) -> None:
        """On the main process, after saving, with --push-to-hub: upload the output folder to `--hub-model-id` (else
        a repo named after the folder) with [`upload`]."""
        repo_id = run.args.hub_model_id or run.output_dir.resolve().name
        commit = self.upload(run.output_dir, repo_id, private=run.args.hub_private_repo)
        logger.info("Pushed to %s", getattr(commit, "commit_url", repo_id))

    def upload(self, folder: Path, repo_id: str, private: bool | None):
        """[`push`]'s upload, returning its `CommitInfo`: here one saved model (`hf_vq.hub.push_folder`)."""
        from ..hub import push_folder

        return push_folder(folder, repo_id, private=private)

    def report(self, run: Run, seconds: float) -> None:
        """On the main process, after saving (and pushing): tell the user where everything is."""


# ----------------------------------------------------------------------------------------------------------
# The run: what the loop hands to the hooks


@dataclass
class Run:
    """Everything one training run holds, prepared for the accelerator."""

    args: LoopArguments  # as given, with the task's resolved values ([`run_arguments`]): training_args.json
    task: Task
    accelerator: Any
    names: list[str]  # trainables' names, in `models` order
    models: list  # prepared (DDP-wrapped when distributed)
    optimizers: list
    schedulers: list
    learning_rates: list[float]  # the rates actually used (scaled with `--scale-lr`), per model
    dataloader: Any
    data: TrainData
    ema: Any | None
    max_train_steps: int
    state: TrainingState = field(default_factory=TrainingState)
    epoch: int = 0  # this rank's data epoch and batches to replay in it, after a resume
    replay: int = 0
    save_dir: Path | None = None  # where `Task.save` writes: the final save's staging folder (see `finish`)
    unsharded: Any | None = None  # a sharded (FSDP) run's whole model, while gathered to be saved or shown

    def __post_init__(self):
        self.save_dir = self.save_dir or self.output_dir

    @property
    def model(self):
        return self.models[0]

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    def sample_model(self):
        """What gets saved and shown: the EMA weights when enabled; the gathered whole model of a sharded run."""
        if self.unsharded is not None:
            return self.unsharded
        return self.ema.module if self.ema is not None else self.accelerator.unwrap_model(self.model)

    def training_recipe(self, **task_rows: Any) -> dict:
        """The model card's `training` table: the loop's rows, with the task's (`task_rows`) after the schedule."""
        args, accelerator = self.args, self.accelerator
        device = accelerator.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type.upper()  # CPU, MPS, ...
        return {
            "dataset": self.data.description,
            "steps": self.state.global_step,
            "batch_size": args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes,
            "learning_rate": self.learning_rates[0],
            "lr_schedule": f"{args.lr_scheduler}, {args.lr_warmup_steps} warm-up steps",
            **task_rows,
            "precision": args.mixed_precision if args.mixed_precision != "no" else "fp32",
            "ema": f"decay {args.ema_decay} (saved weights)" if args.use_ema else "off",
            "hardware": f"{accelerator.num_processes}x {name}",
        }


__all__ = ["Run", "Task", "TaskStep", "TrainData", "Trainable"]
