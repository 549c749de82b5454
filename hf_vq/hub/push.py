"""Uploading saved hf-vq models to the Hub: what goes up from a model folder, and one commit for all of it."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from .cards import CARD_INFO_FILENAME, EVAL_RESULTS_FILENAME, load_card_info, update_model_card
from .remote_code import add_remote_code, remote_code_files, save_with_remote_code

logger = logging.getLogger(__name__)


class HubAccessError(OSError):
    """Uploading cannot start: no token, offline mode, or the Hub unreachable. Nothing was uploaded; the message says
    what to do. `hf-vq push` prints it without a traceback."""


def require_hub_token(token: str | bool | None = None) -> str:
    """The token an upload will use (`token`, else the logged-in one: `huggingface_hub.get_token()`), checked before
    anything touches the network; a [`HubAccessError`] saying how to log in when there is none, or when
    `HF_HUB_OFFLINE` is set."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise HubAccessError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded to the Hub. Unset it (`unset HF_HUB_OFFLINE`) on a "
            "machine with network access and push again; `hf-vq push FOLDER REPO --dry-run` lists what would go up."
        )
    found = token if isinstance(token, str) and token else (None if token is False else get_token())
    if not found:
        raise HubAccessError(
            "No Hugging Face token: uploading to the Hub needs one with write access, and none was given or found. "
            "Log in once with `hf auth login` (or set the HF_TOKEN environment variable, or pass --token / "
            "`token=`), then push again. Nothing was uploaded."
        )
    return found


def _create_repo(api: HfApi, repo_id: str, private: bool | None, repo_type: str = "model") -> str:
    """`api.create_repo` (a Gradio Space for `repo_type="space"`), with a network failure turned into a
    [`HubAccessError`] naming the Hub and the fix."""
    from huggingface_hub import constants

    space = {"space_sdk": "gradio"} if repo_type == "space" else {}
    try:
        return api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, **space).repo_id
    except Exception as error:
        if not _is_network_error(error):
            raise
        raise HubAccessError(
            f"Could not reach the Hugging Face Hub at {constants.ENDPOINT} to create or find {repo_id!r} ({error}). "
            "Check the network connection (and HF_ENDPOINT / proxy settings), then push again. Nothing was uploaded."
        ) from None


# Transport failures of the HTTP client huggingface_hub uses (httpx, or its fork httpx2, by version): by class name,
# so that no particular client has to be imported here.
_NETWORK_ERROR_NAMES = frozenset({"TransportError", "NetworkError", "ConnectError", "TimeoutException"})


def _is_network_error(error: BaseException) -> bool:
    return isinstance(error, (ConnectionError, TimeoutError)) or any(
        cls.__name__ in _NETWORK_ERROR_NAMES for cls in type(error).__mro__
    )


def check_saved_model_folder(folder: str | os.PathLike) -> Path:
    """`folder` as a Path, or a clear error if it holds no saved model (`config.json` and `*.safetensors`)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{folder} is not a saved model folder (needs config.json and *.safetensors): save it with "
            "`model.save_pretrained(folder)` or `hf-vq train` first."
        )
    return folder


def upload_file_list(folder: str | os.PathLike, *, remote_code: bool = False) -> list[str]:
    """Paths (relative, POSIX) that [`push_folder`] uploads from `folder`, sorted (`hf-vq push --dry-run`).

    Weights (`*.safetensors`, shard index), `config.json`, `README.md`, `card_info.json`, `eval_results.json`,
    remote-code `*.py` files, the card's sample grid, and a discriminator when present (`discriminator/` or
    `discriminator*` files). Training state (optimizer, checkpoints, logs) stays local. With `remote_code=True`,
    also the modeling files `push_folder(..., remote_code=True)` would first add (see [`remote_code_files`]);
    nothing is written.
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
    if remote_code:
        files = sorted(set(files) | set(remote_code_files(folder)))
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

    A token is checked for first ([`require_hub_token`]); the repo is created if needed. With `update_card`, the
    folder's card is first re-rendered so its snippets use `repo_id`; with `remote_code`, the modeling code is
    first added to the folder (see [`add_remote_code`]).
    Both change the folder in place (`README.md`, `card_info.json`; `config.json` and `*.py`).

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    folder = check_saved_model_folder(folder)  # before the repo is created
    api = HfApi(token=require_hub_token(token))
    repo_id = _create_repo(api, repo_id, private)
    model = None
    if remote_code:
        model = add_remote_code(folder, update_card=False)
    if update_card or remote_code:
        update_model_card(folder, model=model, model_id=repo_id if update_card else None)
    files = upload_file_list(folder)
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return _commit_files(
        api,
        repo_id,
        folder,
        files,
        commit_message=commit_message or f"Upload hf-vq model ({len(files)} files)",
        commit_description=commit_description,
        revision=revision,
        create_pr=create_pr,
    )


def _commit_files(api: HfApi, repo_id: str, folder: Path, files: list[str], **commit):
    """`files` (relative to `folder`) to `repo_id` in one commit; `commit`: `HfApi.create_commit`'s options."""
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    logger.info("Uploading %d files to %s: %s", len(files), repo_id, ", ".join(files))
    return api.create_commit(repo_id, operations=operations, **commit)


def pipeline_file_list(folder: str | os.PathLike, extra: tuple[str, ...] = ()) -> list[str]:
    """Paths (relative, POSIX, sorted) that [`push_pipeline_folder`] uploads from a diffusers-style pipeline folder:
    `model_index.json`, every file of the component folders it names (`vqvae/`, `transformer/`), `README.md`, and
    the top-level files named in `extra` (a sample grid, eval results) that exist. Anything else (checkpoints, logs,
    per-step grids, training_args.json) stays local."""
    import json

    folder = Path(folder)
    index = folder / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(
            f"{folder} is not a pipeline folder (no model_index.json): save one with "
            "`pipeline.save_pretrained(folder)` or `hf-vq train-prior` first."
        )
    components = [name for name in json.loads(index.read_text()) if not name.startswith("_")]
    files = [name for name in ("model_index.json", "README.md", *extra) if (folder / name).is_file()]
    for name in components:
        files += [p.relative_to(folder).as_posix() for p in (folder / name).rglob("*") if p.is_file()]
    return sorted(set(files))


def push_pipeline_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    extra: tuple[str, ...] = (),
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
):
    """Uploads a pipeline folder (see [`pipeline_file_list`]) to the Hub in one commit, the token checked first
    ([`require_hub_token`]) and the repo created if needed.

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    files = pipeline_file_list(folder, extra)  # before the repo is created
    api = HfApi(token=require_hub_token(token))
    repo_id = _create_repo(api, repo_id, private)
    message = commit_message or f"Upload hf-vq pipeline ({len(files)} files)"
    return _commit_files(api, repo_id, Path(folder), files, commit_message=message)


def push_space_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
):
    """Uploads a demo's Space folder (`hf-vq demo MODEL --export DIR`: `app.py`, `requirements.txt`, `README.md`, the
    model) to the Hub as a Gradio Space in one commit, the token checked first ([`require_hub_token`]) and the Space
    created if needed.

    Returns:
        `huggingface_hub.CommitInfo` of the commit.
    """
    folder = Path(folder)
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    api = HfApi(token=require_hub_token(token))
    repo_id = _create_repo(api, repo_id, private, repo_type="space")
    message = commit_message or f"Upload the hf-vq demo ({len(files)} files)"
    return _commit_files(api, repo_id, folder, files, commit_message=message, repo_type="space")


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
    repo_id = _create_repo(HfApi(token=require_hub_token(token)), repo_id, private)
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
