"""`hf-vq reconstruct`, `hf-vq encode` and `hf-vq decode` on real photos, through the CLI dispatcher."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from hf_vq import VQGANConfig, VQGANModel
from hf_vq.cli import main
from hf_vq.data import from_uint8, load_image, to_uint8
from hf_vq.data.tokens import read_tokens

from helpers import TINY_VQGAN as TINY
from helpers import tiny_vqgan_config


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    model = VQGANModel(VQGANConfig(**TINY)).eval()
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two real photos from scikit-image, shrunk so the tiny model runs fast; one is an odd size (61x41)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).resize((61, 41)).save(folder / "cat.png")
    Image.fromarray(data.coffee()).resize((48, 32)).save(folder / "coffee.jpg", quality=95)
    return [folder / "cat.png", folder / "coffee.jpg"]


def test_reconstruct_writes_side_by_side_pngs(saved_model, photos, tmp_path, capsys):
    _, folder = saved_model
    argv = [str(folder), *map(str, photos), "--output_dir", str(tmp_path), "--device", "cpu", "--full-resolution"]
    assert main(["reconstruct", *argv]) == 0  # --output_dir: train's spelling works here too
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        str(tmp_path / "cat_reconstruction.png"),
        str(tmp_path / "coffee_reconstruction.png"),
    ]
    assert all("PSNR" in line and "dB" in line for line in lines)
    side_by_side = np.asarray(Image.open(tmp_path / "cat_reconstruction.png"))
    assert side_by_side.shape == (40, 60 + 4 + 60, 3)  # 61x41 cropped to a multiple of f=2, two panels, a 4 px gap
    original = load_image(photos[0], multiple_of=2)
    assert np.array_equal(side_by_side[:, :60], original.permute(1, 2, 0).numpy())
    model = VQGANModel.from_pretrained(folder).eval()
    pixels = from_uint8(original[None])
    with torch.no_grad():  # 60x40 is over the model's 32-px sample_size: --full-resolution goes tile by tile
        expected = to_uint8(model.tiled_decode(model.tiled_encode(pixels).quantized))[0]
        untiled = to_uint8(model(pixels).reconstruction)[0]
    assert np.array_equal(side_by_side[:, 64:], expected.permute(1, 2, 0).numpy())
    assert not np.array_equal(side_by_side[:, 64:], untiled.permute(1, 2, 0).numpy())  # forward never tiles
    # A tqdm bar on stderr over encode + decode tiles, 32-px tiles overlapping by 8 (stride 24): 60x40 -> starts
    # (0, 24, 28) x (0, 8), 6 tiles a pass; 48x32 -> (0, 16) x (0,), 2 tiles a pass.
    assert "cat.png (60x40)" in captured.err and "12/12" in captured.err
    assert "tile/s" in captured.err or "s/tile" in captured.err  # tqdm's rate (and so its ETA) in tiles
    assert "coffee.jpg (48x32)" in captured.err and "4/4" in captured.err
    assert "12/12" not in captured.out  # stdout keeps one line per image


def test_reconstruct_full_resolution_needs_a_tiled_model(photos, tmp_path, capsys):
    from hf_vq import VQVAE2Config, VQVAE2Model

    folder = tmp_path / "vqvae2"
    config = VQVAE2Config(
        hidden_channels=8,
        residual_hidden_channels=4,
        num_residual_layers=1,
        latent_channels=4,
        num_vq_embeddings=16,
        vq_embed_dim=4,
        top_num_vq_embeddings=16,
        top_vq_embed_dim=4,
    )
    VQVAE2Model(config).save_pretrained(folder)
    with pytest.raises(SystemExit):
        main(["reconstruct", str(folder), str(photos[0]), "--output-dir", str(tmp_path), "--full-resolution"])
    assert "VQVAE2Model cannot do; give --resolution" in capsys.readouterr().err


def test_reconstruct_defaults_to_the_model_size_and_estimates_memory(saved_model, photos, tmp_path):
    from hf_vq.evaluation.memory import estimate_forward_bytes

    model, folder = saved_model
    assert main(["reconstruct", str(folder), str(photos[0]), "--output-dir", str(tmp_path)]) == 0
    assert Image.open(tmp_path / "cat_reconstruction.png").size == (32 + 4 + 32, 32)  # sample_size, like encode
    # The photo of #18 (6028x3391): terabytes at once (attention over the latent grid), about 0.6 GiB in tiles.
    assert estimate_forward_bytes(model, 3391, 6028, tiled=False) > 2**40
    assert estimate_forward_bytes(model, 3391, 6028, tiled=True) < 2**30


def test_reconstruct_with_image_size(saved_model, photos, tmp_path):
    """`--resolution`, train's name for the square size; `--image-size`, the name this command had, still works."""
    _, folder = saved_model
    assert main(["reconstruct", str(folder), str(photos[1]), "--output-dir", str(tmp_path), "--image-size", "16"]) == 0
    assert Image.open(tmp_path / "coffee_reconstruction.png").size == (16 + 4 + 16, 16)
    assert main(["reconstruct", str(folder), str(photos[1]), "--output-dir", str(tmp_path), "--resolution", "8"]) == 0
    assert Image.open(tmp_path / "coffee_reconstruction.png").size == (8 + 4 + 8, 8)


@pytest.mark.parametrize("suffix", [".safetensors", ".npy"])
def test_encode_then_decode_round_trips_through_token_files(saved_model, photos, tmp_path, suffix):
    model, folder = saved_model
    tokens = tmp_path / f"tokens{suffix}"
    assert main(["encode", str(folder), *map(str, photos), "--output", str(tokens), "--batch-size", "1"]) == 0
    indices, names = read_tokens(tokens)
    assert indices.shape == (2, 16, 16) and indices.dtype == torch.long  # sample_size 32, f = 2
    images = torch.stack([load_image(p, 32) for p in photos])
    with torch.no_grad():
        assert torch.equal(indices, model.encode_to_indices(from_uint8(images)))
    if suffix == ".safetensors":
        assert names == ["cat.png", "coffee.jpg"]
        with safe_open(str(tokens), framework="pt") as f:
            metadata = f.metadata()
        assert metadata["codebook_size"] == "16" and metadata["downsampling_factor"] == "2"
        assert metadata["image_size"] == "32" and metadata["model"] == str(folder)
    else:
        assert names is None

    out = tmp_path / "decoded"
    assert main(["decode", str(folder), str(tokens), "--output-dir", str(out)]) == 0
    expected_names = ["cat.png", "coffee.png"] if suffix == ".safetensors" else ["00000.png", "00001.png"]
    assert sorted(p.name for p in out.iterdir()) == expected_names
    with torch.no_grad():
        expected = to_uint8(model.decode_indices(indices))
    decoded = np.asarray(Image.open(out / expected_names[0]))
    assert np.array_equal(decoded, expected[0].permute(1, 2, 0).numpy())


def test_encode_and_decode_follow_the_token_layout_of_residual_vq(photos, tmp_path):
    """Residual VQ: Q ids per position, `(N, h, w, Q)`, as `model.token_layout` describes them; a single image's ids
    without the batch dimension decode too."""
    torch.manual_seed(0)
    model = VQGANModel(tiny_vqgan_config(quantizer_type="residual_vq", num_quantizers=3)).eval()
    model.save_pretrained(tmp_path / "model")
    tokens = tmp_path / "tokens.safetensors"
    assert main(["encode", str(tmp_path / "model"), *map(str, photos), "--output", str(tokens)]) == 0
    indices, _ = read_tokens(tokens)
    assert indices.shape == (2, *model.token_layout.token_shapes(32, 32)[0]) == (2, 16, 16, 3)
    np.save(tmp_path / "one.npy", indices[1].numpy())  # (h, w, Q): one image
    assert main(["decode", str(tmp_path / "model"), str(tmp_path / "one.npy"), "--output-dir", str(tmp_path)]) == 0
    with torch.no_grad():
        expected = to_uint8(model.decode_indices(indices[1:]))[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "00000.png")), expected.permute(1, 2, 0).numpy())


def test_encode_rejects_unknown_output_format(saved_model, photos, tmp_path):
    _, folder = saved_model
    with pytest.raises(SystemExit):
        main(["encode", str(folder), str(photos[0]), "--output", str(tmp_path / "tokens.txt")])


def test_decode_rejects_out_of_range_tokens(saved_model, tmp_path, capsys):
    _, folder = saved_model
    np.save(tmp_path / "bad.npy", np.full((1, 4, 4), 99, dtype=np.int64))
    argv = ["decode", str(folder), str(tmp_path / "bad.npy"), "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 2  # the CLI prints the library's ValueError as one paragraph (#17)
    assert "[0, 16)" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        main([*argv, "--debug"])  # --debug: the exception itself, with its traceback


def test_image_folder_is_an_evaluation_dataset(tmp_path, photos):
    """`--dataset FOLDER` streams through the training data loader; unreadable files are skipped, not counted."""
    from hf_vq.evaluation import iter_eval_images

    folder = tmp_path / "images"
    folder.mkdir()
    for i, photo in enumerate(photos * 2):
        Image.open(photo).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    images = list(iter_eval_images(str(folder), image_size=24, split="train", num_images=3))
    assert len(images) == 3 and all(im.shape == (3, 24, 24) and im.dtype == torch.uint8 for im in images)


def test_reconstruct_refuses_a_size_that_cannot_fit(saved_model, tmp_path, capsys):
    _, folder = saved_model
    Image.new("RGB", (2048, 2048), (90, 140, 200)).save(tmp_path / "big.png")
    argv = [
        "reconstruct",
        str(folder),
        str(tmp_path / "big.png"),
        "--image-size",
        "2048",
        "--output-dir",
        str(tmp_path),
    ]
    assert main(argv) != 0  # attention over a 1024x1024 latent grid: terabytes
    err = capsys.readouterr().err
    assert "needs about" in err and "give --full-resolution (tiled) or a smaller --resolution" in err
    assert not (tmp_path / "big_reconstruction.png").exists()
