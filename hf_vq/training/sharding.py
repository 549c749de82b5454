"""Sharded training with FSDP2: the loop's side of `accelerate launch --use_fsdp --fsdp_version 2`.

Under accelerate's FSDP plugin (version 2) `accelerator.prepare` shards the model with `torch.distributed.fsdp
.fully_shard`: each decoder layer is its own unit (auto-wrap on the model's `_no_split_modules`, `LlamaDecoderLayer`
for the priors, when the launch names no policy), parameters, gradients and AdamW states are split across the
processes, and `--mixed-precision bf16` becomes FSDP's mixed-precision policy (bf16 compute, fp32 weights).
Checkpoints are sharded (`accelerator.save_state` writes torch.distributed.checkpoint folders, each process its own
part) inside hf-vq's usual atomic `checkpoint-N.tmp` -> `checkpoint-N` rename; a model folder there holds only its
`config.json`. What leaves the run unsharded is gathered on every process at once ([`unsharded_model`]): the sample
grids and held-out scores every N steps, and the final pipeline folder, a normal one that loads anywhere.

On CPU. accelerate 1.16 turns its FSDP plugin on only for accelerator devices (`AcceleratorState`: the FSDP branch
covers MULTI_GPU, MULTI_XPU, ... but not MULTI_CPU), so `accelerate launch --use_fsdp` on CPUs would silently train
unsharded, replicated. `fully_shard` itself runs on a CPU mesh with gloo; [`configure_sharding`] therefore turns the
plugin on for a multi-process CPU run that asked for it, and from then on the same accelerate code runs as on GPUs
(`fsdp2_prepare_model`, its DCP checkpoints, clipping). This is how the 2-process CPU tests run it.

Not with FSDP: `--use-ema` (an EMA would be a second, unsharded copy of the model) and FSDP version 1.
"""

from __future__ import annotations

import copy
import logging
import os

import torch
from torch import nn

logger = logging.getLogger(__name__)


def is_sharded(accelerator) -> bool:
    """Whether the models of this run are sharded with FSDP2."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def _fsdp_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def configure_sharding(accelerator, args) -> None:
    """Checks and completes an FSDP launch, before any model is built (`args`: the `LoopArguments`): FSDP version 2
    only, no EMA; auto-wrap on the decoder layers when the launch names no policy; on CPU, the plugin turned on (see
    the module docstring). A run launched without FSDP is left as it is."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if not _fsdp_requested():
        return
    state = AcceleratorState()
    if accelerator.distributed_type == DistributedType.MULTI_CPU:
        # accelerate left FSDP off on CPU: the plugin it built from the launch's FSDP_* settings, turned on.
        plugin = getattr(state, "fsdp_plugin", None) or FullyShardedDataParallelPlugin()
        if args.mixed_precision != "no":
            plugin.set_mixed_precision(args.mixed_precision)
        for shared in (PartialState._shared_state, AcceleratorState._shared_state):  # both keep a copy
            shared["distributed_type"] = DistributedType.FSDP
        state.fsdp_plugin = plugin
    if not is_sharded(accelerator):
        return
    plugin = state.fsdp_plugin
    if plugin.fsdp_version != 2:
        raise ValueError(
            f"hf-vq shards with FSDP2; this launch asked for FSDP version {plugin.fsdp_version}. Launch with "
            "`accelerate launch --use_fsdp --fsdp_version 2 ...` (or `fsdp_version: 2` in the accelerate config)."
        )
    if args.use_ema:
        raise ValueError(
            "--use-ema keeps a second, unsharded copy of the model on every process, which sharding is there to "
            "avoid: with FSDP, train with --use-ema false (the final pipeline then holds the trained weights)."
        )
    if plugin.auto_wrap_policy is None and "FSDP_AUTO_WRAP_POLICY" not in os.environ:
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

        # No policy given: one FSDP unit per decoder layer (the model's `_no_split_modules`), not one for the whole.
        plugin.auto_wrap_policy = transformer_auto_wrap_policy
    logger.info(
        "FSDP2 over %d processes (%s): parameters, gradients and optimizer states sharded, sharded checkpoints",
        accelerator.num_processes,
        accelerator.device.type,
    )


def _plain_class(module: nn.Module) -> type:
    """The model's own class: `fully_shard` swaps it for a subclass that also inherits `FSDPModule`."""
    from torch.distributed.fsdp import FSDPModule

    return next(c for c in type(module).__mro__ if not issubclass(c, FSDPModule))


def unsharded_model(accelerator, model: nn.Module) -> nn.Module | None:
    """The whole model of a sharded run, as a plain module on the CPU in the main process (None in the others).
    Every process must call it: the shards are gathered with a collective.

    Args:
        accelerator (`Accelerator`): the run's accelerator.
        model (`nn.Module`): the prepared (sharded) model.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered into the main process's CPU memory
    state = get_model_state_dict(model, options=options)
    if not accelerator.is_main_process:
        return None
    with torch.device("meta"):
        whole = _plain_class(model)(copy.deepcopy(model.config))
    whole.load_state_dict(state, strict=False, assign=True)
    # Derived, non-persistent buffers (rotary frequencies) are in no state dict: FSDP leaves them whole on each rank.
    buffers = dict(model.named_buffers())
    for name, buffer in list(whole.named_buffers()):
        owner, _, leaf = name.rpartition(".")
        if buffer.is_meta:
            whole.get_submodule(owner).register_buffer(leaf, buffers[name].detach().cpu().clone(), persistent=False)
    missing = [name for name, p in whole.named_parameters() if p.is_meta]
    if missing:
        raise RuntimeError(f"Gathering the sharded model left parameters unset: {missing[:5]}")
    whole.tie_weights()
    # On the run's device, as an unsharded run's model is for its grids and scores: FSDP is for models whose weights
    # fit one device but whose gradients and AdamW states do not.
    return whole.to(accelerator.device).train(model.training)


# What a torch.distributed.checkpoint `.metadata` pickle may name: DCP's own dataclasses, tensor sizes, dtypes and
# layouts, paths. Anything else is refused before torch unpickles the file (it uses a plain `pickle.load`).
_DCP_METADATA_GLOBALS = {
    "torch.distributed.checkpoint.metadata": None,  # any of its dataclasses
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"},
}


def check_sharded_checkpoint(checkpoint: os.PathLike) -> None:
    """Refuses a sharded checkpoint (torch.distributed.checkpoint folders) whose `.metadata` files name anything but
    DCP's own metadata classes: torch reads them with a plain `pickle.load`, which would run code a crafted file
    holds. Checked before the resume loads anything; a checkpoint without such folders passes."""
    import pickle
    from pathlib import Path

    class AllowList(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            allowed = _DCP_METADATA_GLOBALS.get(module, ())
            is_dtype = module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype))
            if is_dtype or (module in _DCP_METADATA_GLOBALS and (allowed is None or name in allowed)):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"{module}.{name} is not a checkpoint metadata class")

    for path in sorted(Path(checkpoint).glob("*/.metadata")):
        try:
            with open(path, "rb") as file:
                AllowList(file).load()
        except Exception as error:
            raise ValueError(
                f"{Path(path).resolve()} is not the metadata of a sharded checkpoint that hf-vq can read safely "
                f"({type(error).__name__}: {error}). It was not written by hf-vq's FSDP training, or it is corrupt; "
                "hf-vq never unpickles arbitrary objects from a checkpoint."
            ) from None


__all__ = ["check_sharded_checkpoint", "configure_sharding", "is_sharded", "unsharded_model"]
