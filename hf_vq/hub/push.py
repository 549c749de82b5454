"""Uploading saved hf-vq models to the Hub: what goes up from a model folder, and one commit for all of it."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from .cards import CARD_INFO_FILENAME, EVAL_RESULTS_FILENAME, load_card_info, update_model_card
from .remote_code import add_remote_code, save_with_remote_code

logger = logging.getLogger(__name__)


def check_saved_model_folder(folder: str | os.PathLike) -> Path:
    """`folder` as a Path, or a clear error if it holds no saved model (`config.json` and `*.safetensors`)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{folder} is not a saved model folder (needs config.json and *.safetensors): save it with "
            "`model.save_pretrained(folder)` or `hf-vq train` first."
        )
    return folder


def upload_file_list(folder: str | os.PathLike) -> list[str]:
    """Paths (relative, POSIX) that [`push_folder`] uploads from `folder`, sorted.

    Weights (`*.safetensors`, shard index), `config.json`, `README.md`, `card_info.json`, `eval_results.json`,
    remote-code `*.py` files, the card's sample grid, and a discriminator when present (`discriminator/` or
    `discriminator*` files). Training state (optimizer, checkpoints, logs) stays local.
    """
    folder = check_saved_model_folder(folder)
    top_level = {"config.json", "README.md", CARD_INFO_FILENAME, EVAL_RESULTS_FILENAME}
    grid = load_card_info(folder).get("grid")
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        first = relative.split("/")[0]
        if first.startswith("discriminator"):
            files.append(relative)
        elif "/" in relative:
            continue
        elif (
            relative in top_level
            or relative == grid
            or path.suffix in (".safetensors", ".py")
            or relative.endswith(".safetensors.index.json")  # shard index of large weights
        ):
            files.append(relative)
    return files


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    update_card: bool = True,
    remote_code: bool = False,
):
    """Uploads a saved model folder to the Hub in one commit (see [`upload_file_list`] for what goes up).

    The repo is created if needed. With `update_card`, the folder's card is first re-rendered so its snippets
    use `repo_id`; with `remote_code`, the modeling code is first added to the folder (see [`add_remote_code`]).
    Both change the folder in place (`README.md`, `card_info.json`; `config.json` and `*.py`).

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    folder = check_saved_model_folder(folder)  # before the repo is created
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    model = None
    if remote_code:
        model = add_remote_code(folder, update_card=False)
    if update_card or remote_code:
        update_model_card(folder, model=model, model_id=repo_id if update_card else None)
    files = upload_file_list(folder)
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    logger.info("Uploading %d files to %s: %s", len(files), repo_id, ", ".join(files))
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message or f"Upload hf-vq model ({len(files)} files)",
        commit_description=commit_description,
        revision=revision,
        create_pr=create_pr,
    )


def push_model_to_hub(
    model,
    repo_id: str,
    *,
    remote_code: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
):
    """`model.push_to_hub`: saves weights, config and card (with `repo_id` in its snippets) to a temporary folder
    and uploads it in one commit. `remote_code=True` also ships the modeling files (see [`save_with_remote_code`]).

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    repo_id = HfApi(token=token).create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    previous = model.card_info
    model.card_info = {**(previous or {}), "model_id": repo_id}
    if tags:
        model.card_info["tags"] = [*model.card_info.get("tags", []), *tags]
    try:
        with tempfile.TemporaryDirectory() as folder:
            if remote_code:
                save_with_remote_code(model, folder, max_shard_size=max_shard_size)
            else:
                model.save_pretrained(folder, max_shard_size=max_shard_size)
            return push_folder(
                folder,
                repo_id,
                commit_message=commit_message,
                commit_description=commit_description,
                private=private,
                token=token,
                revision=revision,
                create_pr=create_pr,
                update_card=False,
            )
    finally:
        model.card_info = previous
