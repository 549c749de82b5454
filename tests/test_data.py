"""`hf_vq.data`: decoding to RGB, crops, bad-record skipping, sources, built-in photos, the training stream."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vq.data import (
    BUILTIN_EVAL_PHOTOS,
    BUILTIN_TRAIN_PHOTOS,
    ImageTransform,
    build_train_dataloader,
    build_train_stream,
    builtin_eval_crops,
    builtin_photo_paths,
    collate_images,
    decode_image,
    load_eval_images,
)

from helpers import write_mixed_folder


def test_decode_converts_every_mode_to_8bit_rgb(tmp_path):
    write_mixed_folder(tmp_path)
    for name in ("rgb", "gray", "rgba", "palette", "gray16"):
        image = decode_image({"path": str(tmp_path / f"{name}.png"), "bytes": None})
        assert image.mode == "RGB", name
    # 16-bit samples are rescaled, not clipped: 40000 / 65535 of full scale.
    gray16 = np.asarray(decode_image(str(tmp_path / "gray16.png")))
    assert abs(int(gray16[0, 0, 0]) - round(40000 / 65535 * 255)) <= 1
    # Transparent pixels are composited on white.
    clear = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert np.asarray(decode_image(clear))[0, 0].tolist() == [255, 255, 255]
    for bad in ("truncated.jpg", "notes.png"):
        with pytest.raises((OSError, ValueError)):
            decode_image((tmp_path / bad).read_bytes())


def test_transform_crops_into_pixel_range_and_is_deterministic():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    train = ImageTransform("image", 32, train=True, seed=3)
    a, b = train({"image": image}, 5)["pixel_values"], train({"image": image}, 5)["pixel_values"]
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)  # keyed randomness: the same position gives the same crop (exact resume)
    crops = {tuple(train({"image": image}, i)["pixel_values"].flatten()[:64].tolist()) for i in range(8)}
    assert len(crops) > 1  # different positions, different crops
    unit = ImageTransform("image", 32, train=False, pixel_range=(0.0, 1.0))({"image": image}, 0)["pixel_values"]
    assert float(unit.min()) >= 0.0 and float(unit.max()) <= 1.0


def test_bad_records_are_skipped_and_counted_through_the_loader(tmp_path):
    good, bad = write_mixed_folder(tmp_path / "images")
    stream = build_train_stream(str(tmp_path / "images"), resolution=32, shuffle_buffer_size=4)
    loader = build_train_dataloader(stream, batch_size=good + bad, num_workers=0)
    state = torch.get_rng_state()
    (batch,) = list(loader)
    # The global RNG is the training step's: a loader drawing from it would shift those draws after a resume.
    assert torch.equal(torch.get_rng_state(), state)
    assert batch["pixel_values"].shape == (good, 3, 32, 32)
    assert int(batch["num_skipped"]) == bad


def test_collate_of_only_bad_records_is_an_empty_batch():
    batch = collate_images([{"pixel_values": None}, {"pixel_values": None}])
    assert batch["pixel_values"].shape[0] == 0 and int(batch["num_skipped"]) == 2


def test_parquet_shards_stream_with_one_shard_per_file(tmp_path):
    import datasets

    images = [Image.fromarray(np.full((24, 24, 3), i * 10, dtype=np.uint8)) for i in range(8)]
    ds = datasets.Dataset.from_dict({"picture": images}).cast_column("picture", datasets.Image())
    for shard in range(4):
        ds.shard(4, shard, contiguous=True).to_parquet(str(tmp_path / f"train-{shard}.parquet"))
    stream = build_train_stream(str(tmp_path / "*.parquet"), resolution=16, shuffle_buffer_size=0)
    assert stream.n_shards == 4
    values = sorted(round((float(e["pixel_values"][0, 0, 0]) + 1) / 2 * 255) for e in stream.dataset)
    assert values == [i * 10 for i in range(8)]  # the image column was found by type, each image seen once


def test_builtin_photos_exist_and_the_split_is_by_photo():
    train, held_out = builtin_photo_paths("train"), builtin_photo_paths("eval")
    assert len(train) == len(BUILTIN_TRAIN_PHOTOS) and len(held_out) == len(BUILTIN_EVAL_PHOTOS)
    assert not {p.name for p in train} & {p.name for p in held_out}
    for path in train + held_out:
        assert Image.open(path).mode == "RGB", path  # photos, not grayscale or RGBA assets
    crops = builtin_eval_crops()
    assert len(crops) == 5 * len(BUILTIN_EVAL_PHOTOS)
    images, skipped = load_eval_images(None, num_images=4, resolution=32)
    assert images.shape == (4, 3, 32, 32) and skipped == 0


@pytest.mark.slow  # decodes and augments the built-in photos twice: ~3-7 s
def test_builtin_stream_is_endless_and_reproducible():
    first = build_train_stream(None, resolution=32, seed=7, shuffle_buffer_size=8)
    second = build_train_stream(None, resolution=32, seed=7, shuffle_buffer_size=8)
    a = [e["pixel_values"] for _, e in zip(range(6), first.dataset)]
    b = [e["pixel_values"] for _, e in zip(range(6), second.dataset)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert first.n_shards >= 2


def test_local_or_hub_is_decided_from_the_name_before_any_lookup(tmp_path):
    from hf_vq.data.locations import check_dataset_source, looks_like_local_path

    for local in (
        "/data/photos",
        "./photos",
        "../photos",
        "~/photos",
        "a/b/c",
        "shard.parquet",
        "photos\\x",
        "my photos",
    ):
        assert looks_like_local_path(local), local
    for either in ("my_photos", "org/name", "cifar10", "org/model.v1"):
        assert not looks_like_local_path(either), either
    assert check_dataset_source(str(tmp_path)) == "local"
    assert check_dataset_source(str(tmp_path / "*.parquet")) == "local"  # a glob: local files
    with pytest.raises(FileNotFoundError, match="the Hub was not tried"):
        check_dataset_source(str(tmp_path / "missing"))
