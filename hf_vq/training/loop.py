"""The training loop every hf-vq trainer shares, with Accelerate, around a task that knows its models.

Read top to bottom, a run is a sequence of named steps; the task's hooks (a [`Task`], `task.py`) are in brackets:

    a Hub token (--push-to-hub); accelerator; checks      one process per device, seeds; nothing written yet
    [build_models] -> trainables                          each gets an AdamW + warm-up/decay schedule
    [build_data] -> dataloader; the step budget           counted before anything uses it
    [build_objective], [adam_betas] -> optimizers, schedulers, ema
    accelerator.prepare(models, optimizers, dataloader)   DDP, device placement, autocast, data sharding
    resume                                                load_state + replay each rank's data to its position
    output_dir                                            only now created (or, with --overwrite-output-dir, cleared)
    loop: [train_step] -> guard -> optimizer_step -> log / [watch] / checkpoint
    finish: [save] + training_args.json, staged and moved in (`output.py`) [+ push] + [report]

The loop holds nothing task-specific: the NaN/inf guard (`train_step`), the empty-batch guard, clipping, EMA of the
first model, exact resume and checkpoints (`checkpointing.py`), logs. Every check that can fail at start-up runs
before anything is written, so a run that cannot start changes nothing on disk. It runs on one CPU, one GPU or many
(`accelerate launch`). How a run stops other than by finishing (Ctrl-C, a fault on one rank, a shard that cannot be
read, a split smaller than a batch) is `stopping.py`: always in one paragraph, on every rank together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .arguments import LoopArguments, resolve_max_train_steps
from .checkpointing import (
    TRAINING_STATE_NAME,
    check_checkpoint,
    check_output_dir,
    check_same_configs,
    gather_positions,
    list_checkpoints,
    prepare_output_dir,
    read_training_state,
    register_checkpoint_hooks,
    resolve_resume_checkpoint,
    resume,
    save_checkpoint,
)
from .output import abort_staged_save, begin_staged_save, check_not_finished, finish_staged_save
from .sharding import configure_sharding, is_sharded, unsharded_model
from .step import StepOutput, optimizer_step, train_step
from .stopping import (
    DataReadError,
    NoFullBatchError,
    interruption,
    message_of,
    no_full_batch_message,
    read_batches,
    stop_if_any_rank_failed,
)
from .task import Run, Task, Trainable

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------
# Set-up steps


def build_accelerator(args: LoopArguments):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    report_to = {"none": None, "all": ["tensorboard", "wandb"]}.get(args.report_to, [args.report_to])
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=report_to,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=f"{args.output_dir}/logs"),
        # Each rank reads its own shards (no batch dispatch from rank 0); seeded, resumable sampling.
        dataloader_config=DataLoaderConfiguration(dispatch_batches=False, use_seedable_sampler=True),
        # Our schedules count optimizer steps: step them ourselves, once per real optimizer step.
        step_scheduler_with_optimizer=False,
    )


def build_optimizers(
    args: LoopArguments, trainables: list[Trainable], max_train_steps: int, num_processes: int, device_type="cpu"
) -> tuple[list, list]:
    """AdamW for each trainable (at its learning rate, scaled by `--scale-lr`) and a warm-up + decay schedule
    (`transformers.get_scheduler`) in optimizer steps.

    On CPU and CUDA the AdamW update is torch's fused kernel: one pass over each parameter instead of a chain of
    per-tensor ops, the same AdamW up to floating-point rounding (`benchmarks/train_step_speed.py` times the step
    with both: the `ours+fused AdamW` and `ours` rows).
    """
    from transformers import get_scheduler

    # --scale-lr: the learning rates are per example of the total batch
    scale = args.train_batch_size * args.gradient_accumulation_steps * num_processes if args.scale_lr else 1
    kwargs = dict(betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    if device_type in ("cpu", "cuda"):
        kwargs["fused"] = True
    optimizers = []
    for trainable in trainables:
        parameters = [p for p in trainable.module.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError(f"Every parameter of the {trainable.name} is frozen: there is nothing to train.")
        optimizers.append(torch.optim.AdamW(parameters, lr=trainable.learning_rate * scale, **kwargs))
    steps = dict(num_warmup_steps=args.lr_warmup_steps, num_training_steps=max_train_steps)
    return optimizers, [get_scheduler(args.lr_scheduler, opt, **steps) for opt in optimizers]


def run_arguments(args: LoopArguments, task: Task) -> LoopArguments:
    """The arguments the run reads and training_args.json records: `args` as given, with the values the task
    resolves once its objective is built (Adam's betas, [`Task.adam_betas`]). A copy: `args` stays as it was."""
    beta1, beta2 = task.adam_betas(args)
    return dataclasses.replace(args, adam_beta1=beta1, adam_beta2=beta2)


def build_ema(args: LoopArguments, model: nn.Module):
    """An `AveragedModel` EMA of the model (torch's maintained implementation; no extra dependency), with the
    usual warm-up `decay_n = min(decay, (1 + n) / (10 + n))` so short runs are not dominated by the init."""
    if not args.use_ema:
        return None
    from torch.optim.swa_utils import AveragedModel

    decay = args.ema_decay

    @torch.no_grad()
    def ema_update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = int(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c.to(a.dtype) for a, c in floats], weight)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # integer buffers (counters) are copied, not averaged
                a.copy_(c)

    ema = AveragedModel(model, multi_avg_fn=ema_update, use_buffers=True)
    ema.module.requires_grad_(False)
    return ema


def set_up(args: LoopArguments, task: Task) -> Run:
    """Check first, count second, build third, write last: the output folder and the checkpoint to resume are
    checked, models, data, step budget, objective, optimizers and schedules built and prepared, the checkpoint
    loaded; only then is the output folder created (or cleared by `--overwrite-output-dir`)."""
    import transformers
    from accelerate.utils import set_seed

    if args.push_to_hub:  # no token (or offline): say so now, not after the whole run
        from ..hub import require_hub_token

        require_hub_token()
    accelerator = build_accelerator(args)
    configure_sharding(accelerator, args)  # an FSDP2 launch: checked, and turned on for CPUs too (sharding.py)
    # One line per checkpoint, not one per file: accelerate's per-file INFO logs and transformers' shard bars off.
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    transformers.utils.logging.disable_progress_bar()
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
    )
    set_seed(args.seed)
    check_output_dir(args)
    checkpoint = resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)
    if checkpoint is not None:
        check_checkpoint(checkpoint, trust=args.trust_checkpoint, rank=accelerator.process_index)
    # A finished run resumed for no step is refused before anything is built (with --num-train-epochs, once counted).
    budget_known = args.max_train_steps is not None or args.num_train_epochs is None
    if checkpoint is not None and budget_known:
        state_file = checkpoint / TRAINING_STATE_NAME
        step = read_training_state(state_file).get("global_step", 0) if state_file.is_file() else 0
        check_not_finished(args.output_dir, step, resolve_max_train_steps(args, None, 1))

    trainables = task.build_models()
    folders = {t.folder or t.name: t.module for t in trainables}
    if checkpoint is not None:
        check_same_configs(checkpoint, folders)
    data = task.build_data(accelerator)
    max_train_steps = resolve_max_train_steps(args, data.num_examples, accelerator.num_processes)
    task.build_objective(max_train_steps, accelerator.device)
    args = run_arguments(args, task)
    optimizers, schedulers = build_optimizers(
        args, trainables, max_train_steps, accelerator.num_processes, accelerator.device.type
    )
    learning_rates = [opt.defaults["lr"] for opt in optimizers]
    n = len(trainables)
    prepared = accelerator.prepare(*(t.module for t in trainables), *optimizers, *schedulers, data.dataloader)
    models, optimizers, schedulers = list(prepared[:n]), list(prepared[n : 2 * n]), list(prepared[2 * n : 3 * n])
    run = Run(
        args=args,
        task=task,
        accelerator=accelerator,
        names=[t.name for t in trainables],
        models=models,
        optimizers=optimizers,
        schedulers=schedulers,
        learning_rates=learning_rates,
        dataloader=prepared[-1],
        data=data,
        ema=build_ema(args, accelerator.unwrap_model(models[0])),
        max_train_steps=max_train_steps,
    )
    # training_state.json and task_state.safetensors: JSON and safetensors, never pickles (see checkpointing.py).
    folders = {name: accelerator.unwrap_model(m) for name, m in zip(folders, models)}
    register_checkpoint_hooks(accelerator, folders, ema=run.ema, state=run.state, stateful=task.checkpointed())
    run.epoch, run.replay = resume(accelerator, run.state, checkpoint, max_train_steps, run.ema)
    if checkpoint is not None and not budget_known:
        check_not_finished(args.output_dir, run.state.global_step, max_train_steps)
    prepare_output_dir(args, accelerator, task.output_names)  # the run is valid: now, and only now, write
    return run


def log_step(run: Run, step_out: StepOutput, grad_norms: dict, examples_per_second: float, progress) -> None:
    step, logs = run.state.global_step, {f"train/{k}": float(v) for k, v in step_out.logs.items()}
    logs.update({f"grad_norm/{k}": v for k, v in grad_norms.items()})
    logs.update({f"lr/{name}": s.get_last_lr()[0] for name, s in zip(run.names, run.schedulers)})
    logs[f"throughput/{run.task.example_name}_per_second"] = examples_per_second
    logs["data/skipped_records"] = run.state.skipped_records
    logs["data/empty_batches"] = run.state.empty_batches
    logs["train/nonfinite_steps"] = run.state.nonfinite_steps
    run.accelerator.log(logs, step=step)
    shown = run.task.progress_keys
    progress.set_postfix({k.split("/")[1]: f"{v:.3g}" for k, v in logs.items() if k.split("/")[1] in shown})


def run_training(args: LoopArguments, task: Task) -> int:
    """Trains `task` with the loop. Returns 0, or 1 if the run was stopped (non-finite losses, no readable data,
    a shard or a checkpoint that could not be read or written) with a message saying why."""
    start_time = time.perf_counter()
    # What this run creates, removed again if it stops before its first step for want of data (NoFullBatchError).
    created = [path for path in (Path(args.output_dir), Path(args.output_dir, "logs")) if not path.exists()]
    try:
        run = set_up(args, task)
    except KeyboardInterrupt:
        raise interruption(args, None) from None
    args, accelerator = run.args, run.accelerator  # the values used: the task's resolved betas included
    if accelerator.is_main_process:
        config = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in asdict(args).items()}
        accelerator.init_trackers(args.tracker_project_name, config=config)
        model = accelerator.unwrap_model(run.model)
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        per_step = args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
        logger.info(
            "Training %s (%.2fM parameters) on %s for %d steps, %d %s per step over %d process(es)",
            type(model).__name__,
            millions,
            run.data.description,
            run.max_train_steps,
            per_step,
            task.example_name,
            accelerator.num_processes,
        )
    from tqdm.auto import tqdm

    bar = dict(desc="train", dynamic_ncols=True, disable=not accelerator.is_main_process)
    progress = tqdm(total=run.max_train_steps, initial=min(run.state.global_step, run.max_train_steps), **bar)
    try:
        stop_message = train_loop(run, progress)
    except (DataReadError, OSError) as error:
        stop_message = message_of(error)
    except NoFullBatchError:
        accelerator.end_training()
        if accelerator.is_main_process and created:  # the output folder, else its logs/: nothing else was written
            shutil.rmtree(created[0], ignore_errors=True)
        raise
    except KeyboardInterrupt:
        accelerator.end_training()
        raise interruption(args, run.state.global_step) from None
    finally:
        progress.close()  # the bar ends before anything is said about the run
    if stop_message is not None:  # every rank stops here together (the stop was agreed in a collective)
        accelerator.wait_for_everyone()  # and tears down together: see `stop_if_any_rank_failed`
        accelerator.end_training()
        if accelerator.is_main_process:  # the loop configured logging: the message reaches stderr
            logger.error("%s: %s", task.command, stop_message)
        return 1
    try:
        finish(run, time.perf_counter() - start_time)
    except KeyboardInterrupt:
        raise interruption(args, run.state.global_step) from None
    return 0


def train_loop(run: Run, progress) -> str | None:
    """The steps, from the resumed position to the budget, counted on the `progress` bar. Returns None, or why the
    run had to stop."""
    args, task, accelerator, state = run.args, run.task, run.accelerator, run.state
    epoch, replay = run.epoch, run.replay
    checkpoints = list_checkpoints(run.output_dir)
    last_checkpoint = checkpoints[-1] if checkpoints else None
    named_models = dict(zip(run.names, run.models))
    window_ok, window_empty, window_start, window_examples = True, False, time.perf_counter(), 0
    stop_message, failed = None, None  # failed: what this rank could not write, shared at the next boundary
    while state.global_step < run.max_train_steps and stop_message is None:
        run.dataloader.set_epoch(epoch)
        # After a resume, replay this rank's stream to where the checkpoint left it (deterministic data: hf_vq.data).
        batches = accelerator.skip_first_batches(run.dataloader, replay) if replay else run.dataloader
        batches_in_epoch, replay = replay, 0
        for batch in read_batches(batches, run.data.description):
            stop_if_any_rank_failed(accelerator, batch if isinstance(batch, DataReadError) else failed)
            batches_in_epoch += 1
            with accelerator.accumulate(*run.models):
                step_out = train_step(accelerator, task, run.models, batch, state.global_step)
                window_ok &= step_out.finite or step_out.empty  # an empty batch is missing data, not a bad step
                window_empty |= step_out.empty
                state.images_seen += step_out.examples
                state.skipped_records += step_out.skipped_records
                window_examples += step_out.examples
                state.micro_steps += 1
                if step_out.empty:  # skipped data: counted, and the run stops only after a window of nothing
                    state.empty_batches += 1
                    state.consecutive_empty_batches += 1
                    if state.consecutive_empty_batches >= args.max_empty_batches:
                        stop_message = (
                            f"{state.consecutive_empty_batches} batches in a row held no readable example in "
                            f"{run.data.description} ({state.skipped_records} unreadable records skipped so far); "
                            "stopping. Check the data source (--dataset-name, --image-column) or raise "
                            "--max-empty-batches if readable records are this sparse."
                        )
                        break
                else:
                    state.consecutive_empty_batches = 0
                if not accelerator.sync_gradients:
                    continue
                stepped, grad_norms = optimizer_step(
                    accelerator, args, named_models, run.optimizers, run.schedulers, window_ok and not window_empty
                )
            skipped_data, window_ok, window_empty = window_empty and window_ok, True, False
            if skipped_data:  # the window held an empty batch: nothing was updated, and nothing went wrong
                continue
            if not stepped:  # NaN/inf guard: nothing was updated; stop after too many in a row
                state.nonfinite_steps += 1
                state.consecutive_nonfinite += 1
                step, in_a_row = state.global_step, state.consecutive_nonfinite
                logger.warning("Step %d skipped: non-finite loss or gradient (%d in a row)", step, in_a_row)
                accelerator.log({"train/nonfinite_steps": state.nonfinite_steps}, step=state.global_step)
                if state.consecutive_nonfinite >= args.max_consecutive_nonfinite:
                    stop_message = (
                        f"{state.consecutive_nonfinite} steps in a row had a non-finite loss or gradient; stopping. "
                        f"Last good checkpoint: {last_checkpoint or 'none yet'}. Resume from it with "
                        f"--resume-from-checkpoint {last_checkpoint or 'latest'} and a lower --learning-rate "
                        "(or --mixed-precision bf16 / no instead of fp16)."
                    )
                    break
                continue
            state.consecutive_nonfinite = 0
            if run.ema is not None:
                run.ema.update_parameters(accelerator.unwrap_model(run.model))
                state.ema_updates += 1
            state.global_step += 1
            progress.update(1)
            step = state.global_step

            if step % args.logging_steps == 0 or step == run.max_train_steps:
                rate = window_examples / max(time.perf_counter() - window_start, 1e-9)
                log_step(run, step_out, grad_norms, rate, progress)
                window_start, window_examples = time.perf_counter(), 0
            try:
                task.watch(run)
            except OSError as error:  # e.g. a full disk under the sample grid, which the main process alone writes
                failed = error
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                state.epochs, state.batches_in_epoch = gather_positions(accelerator, epoch, batches_in_epoch)
                last_checkpoint = save_checkpoint(accelerator, run.output_dir, step, args.checkpoints_total_limit)
                logger.info("Saved checkpoint %s", last_checkpoint)
            if step >= run.max_train_steps:
                break
        else:
            if batches_in_epoch == 0:
                raise NoFullBatchError(no_full_batch_message(run))
            epoch += 1  # the stream ran out: next pass, reshuffled
    stop_if_any_rank_failed(accelerator, failed)  # after the last step
    return stop_message


def finish(run: Run, seconds: float) -> None:
    """The task's final save and the arguments beside it, staged and moved into the output folder (`output.py`:
    a kill leaves the old model or the new one), then the push to the Hub and the task's report."""
    accelerator, args, output_dir = run.accelerator, run.args, run.output_dir
    accelerator.wait_for_everyone()
    if is_sharded(accelerator):  # every rank sends its shards; the main process saves the whole model
        run.unsharded = unsharded_model(accelerator, run.model)
    failure = None
    if accelerator.is_main_process:
        try:
            run.save_dir = begin_staged_save(output_dir)
            run.task.save(run)
            (run.save_dir / "training_args.json").write_text(json.dumps(asdict(args), indent=2) + "\n")
            finish_staged_save(output_dir)
        except OSError as error:
            abort_staged_save(output_dir)
            failure = OSError(
                error.errno,
                f"Could not write the final model into {output_dir} ({error.strerror or error}); the folder is as it "
                "was before the save. Free some space and run the same command with --resume-from-checkpoint latest: "
                f"it saves again from the last checkpoint ({(list_checkpoints(output_dir) or ['none written'])[-1]}).",
            )
            failure.__cause__ = error
        finally:
            run.save_dir = output_dir
    stop_if_any_rank_failed(accelerator, failure)  # the other ranks stop too, instead of waiting at the barrier
    if accelerator.is_main_process:
        if args.push_to_hub:
            run.task.push(run)
        run.task.report(run, seconds)
    accelerator.wait_for_everyone()
    accelerator.end_training()
