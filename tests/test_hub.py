"""Hub round trips without a network: pushes recorded at the `HfApi` boundary, loads from a real hub-cache layout
under `HF_HUB_OFFLINE=1`, and remote-code loading in a process where `hf_vq` cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from safetensors.torch import save_file
from transformers import AutoModel

from hf_vq import VQGANConfig, VQGANModel
from hf_vq.hub import add_remote_code, push_folder, push_model_to_hub, save_with_remote_code, upload_file_list

from helpers import TINY_VQGAN as TINY


@pytest.fixture
def model() -> VQGANModel:
    return VQGANModel(VQGANConfig(**TINY)).eval()


@pytest.fixture
def pixel_values() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


class RecordedHub:
    """Stands in for the Hub at the `HfApi` boundary: records repo creation and commits, uploads nothing."""

    def __init__(self):
        self.repos: list[dict] = []
        self.commits: list[dict] = []

    def create_repo(self, api, repo_id, **kwargs):
        self.repos.append({"repo_id": repo_id, **kwargs})
        return RepoUrl(f"https://huggingface.co/{repo_id if '/' in repo_id else 'me/' + repo_id}")

    def create_commit(self, api, repo_id, operations, **kwargs):
        files = {}
        for op in operations:
            with open(op.path_or_fileobj, "rb") as f:  # read now: the temporary folder may be gone afterwards
                files[op.path_in_repo] = f.read()
        self.commits.append({"repo_id": repo_id, "files": files, **kwargs})
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/0123abcd",
            commit_message=kwargs["commit_message"],
            commit_description="",
            oid="0123abcd",
        )


@pytest.fixture
def hub(monkeypatch) -> RecordedHub:
    from huggingface_hub import constants

    recorded = RecordedHub()
    # A logged-in user online; the network itself is replaced by the recorder below.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: recorded.create_repo(api, repo_id, **kw))
    monkeypatch.setattr(
        HfApi,
        "create_commit",
        lambda api, repo_id, operations, **kw: recorded.create_commit(api, repo_id, operations, **kw),
    )
    monkeypatch.setattr(HfApi, "create_branch", lambda api, *a, **kw: pytest.fail("no branch was asked for"))
    return recorded


def trained_folder(model, path):
    """A folder laid out as `hf-vq train` leaves it: model, card, discriminator, grid, eval results, training state."""
    from PIL import Image

    from hf_vq.modeling.configuration_discriminator import VQGANDiscriminatorConfig
    from hf_vq.modeling.modeling_discriminator import VQGANDiscriminator

    path.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 8)).save(path / "samples.png")
    model.card_info = {"training": {"steps": 10}, "grid": "samples.png"}
    model.save_pretrained(path)
    VQGANDiscriminator(VQGANDiscriminatorConfig(num_layers=1, base_channels=8, norm_num_groups=4)).save_pretrained(
        path / "discriminator"
    )
    (path / "eval_results.json").write_text("{}")
    (path / "optimizer.bin").write_bytes(b"training state stays local")
    (path / "checkpoint-10").mkdir()
    (path / "checkpoint-10" / "model.safetensors").write_bytes(b"old")
    (path / "logs.txt").write_text("loss 1.0")
    return path


# ------------------------------------------------------------------------------------------------ push


def test_push_command_uploads_the_folder_in_one_commit(model, tmp_path, hub):
    from hf_vq.cli import main

    folder = trained_folder(model, tmp_path / "run")
    assert main(["push", str(folder), "org/name", "--private"]) == 0

    assert hub.repos == [{"repo_id": "org/name", "private": True, "exist_ok": True, "repo_type": "model"}]
    (commit,) = hub.commits
    assert commit["repo_id"] == "org/name" and commit["revision"] is None and commit["create_pr"] is False
    assert sorted(commit["files"]) == [
        "README.md",
        "card_info.json",
        "config.json",
        "discriminator/config.json",
        "discriminator/model.safetensors",
        "eval_results.json",
        "model.safetensors",
        "samples.png",
    ]
    card = commit["files"]["README.md"].decode()
    assert 'VQGANModel.from_pretrained("org/name")' in card
    assert 'hf-vq reconstruct "org/name" photo.jpg' in card
    assert "| `steps` | 10 |" in card and "![Reconstructions](samples.png)" in card
    assert ModelCard(card).data.model_name == "org/name"
    assert json.loads(commit["files"]["card_info.json"])["model_id"] == "org/name"
    assert commit["files"]["model.safetensors"] == (folder / "model.safetensors").read_bytes()


def test_push_command_with_remote_code_adds_the_modeling_files(model, tmp_path, hub):
    from hf_vq.commands.push import main as push_main

    folder = trained_folder(model, tmp_path / "run")
    assert push_main([str(folder), "org/name", "--remote-code"]) == 0
    (commit,) = hub.commits
    files = set(commit["files"])
    assert {"modeling_vqgan.py", "configuration_vqgan.py", "modeling_utils.py", "layers.py"} <= files
    assert {"samples.png", "discriminator/model.safetensors", "model.safetensors"} <= files
    assert json.loads(commit["files"]["config.json"])["auto_map"]["AutoModel"] == "modeling_vqgan.VQGANModel"
    card = commit["files"]["README.md"].decode()
    assert 'AutoModel.from_pretrained("org/name", trust_remote_code=True)' in card
    assert "| `steps` | 10 |" in card


def test_push_dry_run_lists_files_and_uploads_nothing(model, tmp_path, hub, capsys):
    from hf_vq.commands.push import main as push_main

    folder = trained_folder(model, tmp_path / "run")
    assert push_main([str(folder), "org/name", "--dry-run"]) == 0
    assert capsys.readouterr().out.split() == upload_file_list(folder)
    assert hub.repos == [] and hub.commits == []


def test_push_refuses_a_folder_without_weights(tmp_path, hub):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        push_folder(tmp_path, "org/name")
    assert hub.commits == []


def test_model_push_to_hub_uploads_weights_config_and_card(model, hub, pixel_values):
    model.card_info = {"training": {"steps": 3}}
    commit = model.push_to_hub("name")  # no namespace: the Hub answers with the user's one
    assert commit.commit_url == "https://huggingface.co/me/name/commit/0123abcd"
    (recorded,) = hub.commits
    assert sorted(recorded["files"]) == ["README.md", "card_info.json", "config.json", "model.safetensors"]
    card = recorded["files"]["README.md"].decode()
    assert 'VQGANModel.from_pretrained("me/name")' in card and "| `steps` | 3 |" in card
    assert model.card_info == {"training": {"steps": 3}}  # the model's own card_info is left as it was


def test_push_with_remote_code_ships_the_modeling_files(model, hub):
    push_model_to_hub(model, "org/name", remote_code=True, commit_message="v1")
    (recorded,) = hub.commits
    assert recorded["commit_message"] == "v1"
    code = {name for name in recorded["files"] if name.endswith(".py")}
    assert {"modeling_vqgan.py", "configuration_vqgan.py", "modeling_utils.py", "quantizers.py", "layers.py"} <= code
    config = json.loads(recorded["files"]["config.json"])
    assert config["auto_map"] == {
        "AutoConfig": "configuration_vqgan.VQGANConfig",
        "AutoModel": "modeling_vqgan.VQGANModel",
    }
    assert 'AutoModel.from_pretrained("org/name", trust_remote_code=True)' in recorded["files"]["README.md"].decode()


def test_push_without_a_token_says_how_to_log_in_before_touching_the_network(model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hf_vq.hub.push import HubAccessError

    folder = trained_folder(model, tmp_path / "run")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    monkeypatch.setattr(HfApi, "create_repo", lambda *a, **kw: pytest.fail("the network was reached"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored login either
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    for push in (lambda: push_folder(folder, "me/model"), lambda: push_model_to_hub(model, "me/model")):
        with pytest.raises(HubAccessError, match="No Hugging Face token.*hf auth login.*HF_TOKEN"):
            push()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubAccessError, match="HF_HUB_OFFLINE is set"):
        push_folder(folder, "me/model", token="hf_given")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # nothing changed on disk


def test_unreachable_hub_is_named_with_the_fix(model, tmp_path, monkeypatch):
    import time

    from huggingface_hub import constants

    from hf_vq.hub.push import HubAccessError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # a refused port: fails at once
    start = time.perf_counter()
    with pytest.raises(HubAccessError, match="Could not reach the Hugging Face Hub at http://127.0.0.1:9"):
        push_folder(trained_folder(model, tmp_path / "run"), "me/model", token="hf_given")
    assert time.perf_counter() - start < 10


def test_dry_run_list_with_remote_code_names_the_files_it_would_add(model, tmp_path):
    import shutil

    folder = trained_folder(model, tmp_path / "run")
    plain = upload_file_list(folder)
    listed = upload_file_list(folder, remote_code=True)
    assert not list(folder.glob("*.py"))  # listing writes nothing
    added = sorted(set(listed) - set(plain))
    assert {"modeling_vqgan.py", "configuration_vqgan.py", "modeling_utils.py", "layers.py"} <= set(added)
    assert all(name.endswith(".py") for name in added)
    copy = shutil.copytree(folder, tmp_path / "copy")
    add_remote_code(copy, update_card=False)
    assert sorted(p.name for p in copy.glob("*.py")) == added  # exactly what a real --remote-code push adds


# ------------------------------------------------------------------------------------------------ load from the Hub


def build_hub_cache(cache_dir, repo_id: str, model: VQGANModel, revision: str = "a" * 40):
    """`models--org--name/{refs/main, snapshots/<rev>/...}`, the layout `huggingface_hub` downloads into."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    model.config.to_json_file(snapshot / "config.json")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        snapshot / "model.safetensors",
        metadata={"format": "pt"},
    )
    return snapshot


def test_from_pretrained_reads_the_hub_cache_offline(model, tmp_path, pixel_values):
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # set by conftest before any HF import: a cache miss fails, never a download
    build_hub_cache(tmp_path, "org/name", model)
    with torch.no_grad():
        expected = model(pixel_values).reconstruction
        for loader in (VQGANModel, AutoModel):
            loaded = loader.from_pretrained("org/name", cache_dir=tmp_path).eval()
            assert type(loaded) is VQGANModel
            assert torch.equal(loaded(pixel_values).reconstruction, expected)
    with pytest.raises(OSError):
        VQGANModel.from_pretrained("org/missing", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ remote code


@pytest.mark.slow  # a subprocess importing torch and transformers: ~10 s on 2 busy cores
def test_remote_code_loads_with_transformers_alone(model, tmp_path, pixel_values):
    """Both ways of shipping the code (saved with it, or added to a folder saved without it, as `hf-vq train`
    leaves it) load in one fresh process where `import hf_vq` fails, and give the model's own tokens and images."""
    folders = {"save_with_remote_code": tmp_path / "saved", "add_remote_code": tmp_path / "added"}
    written = {"save_with_remote_code": save_with_remote_code(model, folders["save_with_remote_code"])}
    model.save_pretrained(folders["add_remote_code"])
    weights = (folders["add_remote_code"] / "model.safetensors").read_bytes()
    add_remote_code(folders["add_remote_code"])
    assert (folders["add_remote_code"] / "model.safetensors").read_bytes() == weights  # weights are not rewritten
    written["add_remote_code"] = sorted(folders["add_remote_code"].glob("*.py"))
    for how, folder in folders.items():
        assert {p.name for p in written[how]} >= {"modeling_vqgan.py", "configuration_vqgan.py"}, how
        assert 'AutoModel.from_pretrained("' in (folder / "README.md").read_text(), how
    with torch.no_grad():
        expected = model.encode_to_indices(pixel_values)
        torch.save(
            {"pixel_values": pixel_values, "indices": expected, "images": model.decode_indices(expected)},
            tmp_path / "expected.pt",
        )

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_vq"] = None  # any `import hf_vq` now raises ImportError
        import torch
        from transformers import AutoModel

        expected = torch.load({str(tmp_path / "expected.pt")!r})
        for folder in {[str(folder) for folder in folders.values()]!r}:
            model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
            assert not type(model).__module__.startswith("hf_vq"), type(model).__module__
            with torch.no_grad():
                indices = model.encode_to_indices(expected["pixel_values"])
                assert torch.equal(indices, expected["indices"]), folder
                assert torch.allclose(model.decode_indices(indices), expected["images"], atol=1e-6), folder
            print("loaded", type(model).__name__, "from", type(model).__module__)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("loaded VQGANModel from transformers_modules") == 2, out.stdout


def test_remote_code_export_leaves_later_saves_plain(model, tmp_path):
    save_with_remote_code(model, tmp_path / "remote")
    model.save_pretrained(tmp_path / "plain")
    assert not list((tmp_path / "plain").glob("*.py"))
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "trust_remote_code" not in (tmp_path / "plain" / "README.md").read_text()
    assert "trust_remote_code" in (tmp_path / "remote" / "README.md").read_text()
