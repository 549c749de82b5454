"""Checks of a token set's shards as they are read (`tokens.load_tokens`): a shard that is truncated or not parquet,
one whose columns differ from the split's first shard (a missing `label` column), or one with ids outside the range
its positions may hold. Each is one paragraph that names the token set, the shard and the `hf-vq tokenize` command
that writes the split afresh; nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def retokenize_command(path, info: dict, split: str) -> str:
    """The `hf-vq tokenize` command that writes `split` of the token set at `path` afresh."""
    settings = info.get("splits", {}).get(split, {})
    words = [f"hf-vq tokenize {info.get('tokenizer')} --dataset-name {settings.get('dataset', 'DATASET')}"]
    words += [f"--dataset-config-name {settings['dataset_config']}"] if settings.get("dataset_config") else []
    words += [f"--split {split}", "--flip" if settings.get("flip") else "", f"--output {path} --overwrite"]
    return " ".join(word for word in words if word)


def _shard_error(path, info: dict, split: str, shard: Path, problem: str) -> ValueError:
    return ValueError(
        f"The token set {path}: shard {shard.name} of the {split!r} split {problem}. Delete the shard and tokenize "
        f"the split again (`{retokenize_command(path, info, split)}`); the other splits are kept."
    )


def id_bounds(info: dict):
    """Per position of a row, the `[low, high)` range of ids its level and stage may hold, from the info's token
    levels (None when they cannot be read: the ids are then left to the prior's own check)."""
    try:
        import torch

        from ..modeling.token_layout import TokenLayout

        layout = TokenLayout.from_dict(info["token_levels"])
        shapes = layout.token_shapes(*info["image_size"])
        low = layout.flatten(layout.join([torch.zeros((1, *shape), dtype=torch.long) for shape in shapes]))
        tops = [torch.full((1, *shape), lv.codebook_size - 1) for shape, lv in zip(shapes, layout.levels)]
        high = layout.flatten(layout.join(tops)) + 1
    except (KeyError, TypeError, ValueError):
        return None
    return low[0].numpy(), high[0].numpy()


def read_shard(folder: Path, info: dict, split: str, shard: Path, bounds, first: list):
    """One shard as a pyarrow table, checked: readable, the columns of the first shard (`first`: [its table] or
    []), ids within each position's range. Anything else is a `ValueError` naming the token set, the shard and the
    fix."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(shard)
    except (OSError, pa.ArrowException) as error:
        reason = " ".join(str(error).split())
        raise _shard_error(
            folder, info, split, shard, f"cannot be read as parquet ({reason}): it is truncated or was damaged"
        ) from None
    if first and table.schema.names != first[0].schema.names:
        raise _shard_error(
            folder,
            info,
            split,
            shard,
            f"has the columns {table.schema.names}, while the split's first shard has {first[0].schema.names}",
        )
    if bounds is not None and "tokens" in table.column_names and table.num_rows:
        tokens = table.column("tokens").combine_chunks()
        ids = tokens.values.to_numpy(zero_copy_only=False).astype(np.int64)
        low, high = bounds
        if ids.size == len(tokens) * len(low):  # another length is the prior's to report
            ids = ids.reshape(len(tokens), len(low))
            bad = (ids < low) | (ids >= high)
            if bad.any():
                row, position = (int(v[0]) for v in np.nonzero(bad))
                raise _shard_error(
                    folder,
                    info,
                    split,
                    shard,
                    f"holds ids outside the tokenizer's vocabulary ({int(bad.sum())} of them; row {row}, position "
                    f"{position}: {ids[row, position]}, where [{low[position]}, {high[position]}) is allowed): it "
                    "was not written by `hf-vq tokenize` for the tokenizer in tokens_info.json",
                )
    return table


__all__ = ["id_bounds", "read_shard", "retokenize_command"]
