"""The data pipeline on tiny data sets written by the tests: shapes, normalisation, shards, labels, errors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mindspore.dataset.vision import Inter
from PIL import Image

from src.data import BatchAugment, DataError, check_dataset, create_dataset, prepare_digits, rand_augment
from src.data.dataset import CIFAR_RECORD

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def make_cfg(data_dir: Path, **overrides) -> SimpleNamespace:
    cfg = dict(
        dataset="imagefolder", data_dir=str(data_dir), train_split="train", val_split="val", num_workers=2,
        batch_size=2, eval_batch_size=0, img_size=16, num_classes=3, train_crop="random_resized", crop_padding=2,
        scale=[0.08, 1.0], ratio=[0.75, 4 / 3], hflip=0.5, color_jitter=0.4, auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25, mixup=0.0, cutmix=0.0, mixup_prob=1.0, mixup_switch_prob=0.5, label_smoothing=0.1,
        interpolation="bicubic", crop_pct=0.875, mean=MEAN, std=STD, seed=0, steps_per_epoch=0, shuffle=True,
    )  # fmt: skip
    cfg.update(overrides)
    return SimpleNamespace(**cfg)


def write_folder(root: Path, per_class: int = 4, classes=("ant", "bee", "cat")) -> dict:
    """Solid-colour images of mixed sizes and formats; returns {colour (r, g, b): class index}."""
    colours = {}
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            colour = (40 * c + 10, 20 * i + 5, 200 - 30 * c)
            colours[colour] = c
            image = Image.new("RGB", (20 + 3 * i, 18 + 2 * c), colour)
            image.save(root / name / f"{i}.{'png' if i % 2 else 'bmp'}")
    return colours


@pytest.fixture
def folder(tmp_path: Path) -> dict:
    return {"train": write_folder(tmp_path / "train"), "val": write_folder(tmp_path / "val", per_class=2)}


def batches(data) -> list:
    return list(data.create_tuple_iterator(num_epochs=1, output_numpy=True))


def colour_of(image: np.ndarray) -> tuple:
    """The RGB colour of a normalised, solid-colour CHW image."""
    rgb = image.mean(axis=(1, 2)) * np.array(STD) + np.array(MEAN)
    return tuple(int(v) for v in np.round(rgb * 255))


def test_train_and_eval_batches(tmp_path: Path, folder: dict) -> None:
    cfg = make_cfg(tmp_path, eval_batch_size=4)
    data, info = create_dataset(cfg, "train", training=True)
    assert (info.num_classes, info.num_images, info.class_names) == (3, 12, ["ant", "bee", "cat"])
    out = batches(data)
    assert len(out) == 6 and not info.soft_labels
    for image, label in out:
        assert image.shape == (2, 3, 16, 16) and image.dtype == np.float32
        assert label.shape == (2,) and label.dtype == np.int32
    data, info = create_dataset(cfg, "val", training=False)
    out = batches(data)
    assert [b[0].shape[0] for b in out] == [4, 2]  # drop_remainder is off for evaluation
    assert sorted(np.concatenate([b[1] for b in out]).tolist()) == [0, 0, 1, 1, 2, 2]


def test_eval_normalisation_and_labels(tmp_path: Path, folder: dict) -> None:
    data, _ = create_dataset(make_cfg(tmp_path), "val", training=False)
    for images, labels in batches(data):
        for image, label in zip(images, labels):
            colour = colour_of(image)
            assert folder["val"][colour] == label
            expected = (np.array(colour) / 255.0 - MEAN) / STD
            np.testing.assert_allclose(image, np.broadcast_to(expected[:, None, None], image.shape), atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_two_shards_are_disjoint_halves(tmp_path: Path, folder: dict, training: bool) -> None:
    cfg = make_cfg(tmp_path, batch_size=1, train_crop="none", hflip=0.0, color_jitter=0.0, auto_augment="", reprob=0)
    seen = []
    for rank in (0, 1):
        data, _ = create_dataset(cfg, "train", training=training, rank_size=2, rank_id=rank)
        seen.append({colour_of(image[0]) for image, _ in batches(data)})
    assert len(seen[0]) == len(seen[1]) == 6
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(folder["train"])


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_soft_labels(tmp_path: Path, folder: dict, mixup: float, cutmix: float) -> None:
    cfg = make_cfg(tmp_path, batch_size=4, mixup=mixup, cutmix=cutmix)
    data, info = create_dataset(cfg, "train", training=True)
    assert info.soft_labels
    for image, target in batches(data):
        assert image.shape == (4, 3, 16, 16) and target.shape == (4, 3) and target.dtype == np.float32
        np.testing.assert_allclose(target.sum(axis=1), 1.0, atol=1e-6)
        assert target.min() >= 0.1 / 3 - 1e-6  # smoothing keeps every class above off = 0.1 / 3


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0)])
def test_mixed_pixels_match_mixed_targets(mixup: float, cutmix: float) -> None:
    aug = BatchAugment(num_classes=5, mixup=mixup, cutmix=cutmix, seed=3)
    labels = np.arange(5, dtype=np.int32)
    images = np.broadcast_to(labels[:, None, None, None], (5, 3, 8, 8)).astype(np.float32)
    for _ in range(10):
        mixed, target = aug(images, labels)
        for k in range(5):
            partner = 4 - k
            if k == partner:
                continue
            if cutmix:  # the share of pasted pixels is the partner's weight
                share = float(np.mean(mixed[k] == partner))
            else:  # every pixel is lam * k + (1 - lam) * partner
                share = float((mixed[k, 0, 0, 0] - k) / (partner - k))
                np.testing.assert_allclose(mixed[k], mixed[k, 0, 0, 0])
            assert target[k, partner] == pytest.approx(share, abs=1e-6)
            assert target[k, k] == pytest.approx(1 - share, abs=1e-6)


def test_random_erasing_fills_one_box() -> None:
    images = np.zeros((6, 3, 20, 20), np.float32)
    erased, labels = BatchAugment(num_classes=2, reprob=1.0, seed=0)(images, np.zeros(6, np.int32))
    assert labels.dtype == np.int32
    for image in erased:
        rows, cols = np.nonzero(np.any(image != 0, axis=0))
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 0.02 * 400 * 0.5 <= area <= 400 / 3 * 1.5 and area == rows.size


def test_same_seed_same_batches(tmp_path: Path, folder: dict) -> None:
    def run(seed: int) -> list:
        data, _ = create_dataset(make_cfg(tmp_path, seed=seed, reprob=0.5, mixup=0.8, cutmix=1.0), "train", True)
        return batches(data)

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_steps_per_epoch_truncates(tmp_path: Path, folder: dict) -> None:
    data, _ = create_dataset(make_cfg(tmp_path, steps_per_epoch=2), "train", training=True)
    assert data.get_dataset_size() == 2 and len(batches(data)) == 2


def test_rand_augment_spec() -> None:
    op = rand_augment("rand-m7-n3-mstd0.5-inc1", Inter.BILINEAR, (0, 0, 0))
    assert (op.num_ops, op.magnitude, op.num_magnitude_bins) == (3, 7, 11)
    for bad in ("augmix-m5", "rand-m9-w0", "rand-x"):
        with pytest.raises(DataError, match="auto_augment"):
            rand_augment(bad, Inter.BILINEAR, (0, 0, 0))


def test_data_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        check_dataset(make_cfg(missing), "train")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "train"))):
        check_dataset(make_cfg(tmp_path), "train")
    (tmp_path / "train" / "ant").mkdir(parents=True)
    (tmp_path / "train" / "ant" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="no images"):
        check_dataset(make_cfg(tmp_path), "train")
    write_folder(tmp_path / "val", per_class=1)
    with pytest.raises(DataError, match=r"3 classes but num_classes is 5 \(found: ant, bee, cat\)"):
        check_dataset(make_cfg(tmp_path, num_classes=5), "val")
    with pytest.raises(DataError, match="fewer than one batch"):
        create_dataset(make_cfg(tmp_path, batch_size=8), "val", training=True)


def test_corrupt_image_names_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MindSpore copies an undecodable file to ./abnormal_image.jpg
    write_folder(tmp_path / "train", per_class=3)
    bad = tmp_path / "train" / "bee" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(64))
    data, info = create_dataset(make_cfg(tmp_path), "train", training=True)
    assert info.num_images == 10
    with pytest.raises(RuntimeError, match=re.escape(str(bad))):
        batches(data)


def write_cifar(folder: Path, counts: dict, seed: int = 0) -> dict:
    """Random CIFAR-10 records; returns {file name: (N, 3073) uint8 records}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = {}
    for name, n in counts.items():
        rec = rng.integers(0, 256, (n, CIFAR_RECORD), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        rec.tofile(folder / name)
        records[name] = rec
    return records


def test_fake_cifar10_loads(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    train = {f"data_batch_{i}.bin": 3 for i in range(1, 6)}
    records = write_cifar(folder, {**train, "test_batch.bin": 5})
    cfg = make_cfg(tmp_path, dataset="cifar10", num_classes=10, img_size=32, train_crop="random_crop", crop_pct=1.0)
    data, info = create_dataset(cfg, "train", training=True)
    assert (info.num_images, info.root, len(batches(data))) == (15, str(folder), 7)
    data, info = create_dataset(cfg, "val", training=False)
    images, labels = (np.concatenate(col) for col in zip(*batches(data)))
    expected = records["test_batch.bin"]
    np.testing.assert_array_equal(labels, expected[:, 0])
    pixels = images.transpose(0, 2, 3, 1) * np.array(STD) + np.array(MEAN)
    np.testing.assert_allclose(pixels * 255, expected[:, 1:].reshape(5, 3, 32, 32).transpose(0, 2, 3, 1), atol=1e-3)


def test_cifar10_errors(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, dataset="cifar10", num_classes=10)
    write_cifar(tmp_path, {"data_batch_1.bin": 2, "data_batch_2.bin": 2})
    with pytest.raises(DataError, match="data_batch_3.bin, data_batch_4.bin, data_batch_5.bin"):
        check_dataset(cfg, "train")
    with pytest.raises(DataError, match="test_batch.bin"):
        check_dataset(cfg, "val")
    (tmp_path / "test_batch.bin").write_bytes(bytes(CIFAR_RECORD + 5))
    with pytest.raises(DataError, match="not a positive multiple"):
        check_dataset(cfg, "val")
    write_cifar(tmp_path, {"test_batch.bin": 2})
    assert check_dataset(cfg, "val").num_images == 2
    with pytest.raises(DataError, match="10 classes but num_classes is 3"):
        check_dataset(make_cfg(tmp_path, dataset="cifar10"), "val")


def test_prepare_digits(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    assert prepare_digits(str(out), size=16) == {"train": 1438, "val": 359}
    (out / "train" / "0" / "stray.png").write_bytes(b"left over")
    assert prepare_digits(str(out), size=16) == {"train": 1438, "val": 359}  # re-running starts clean
    counts = {s: {d: len(os.listdir(out / s / str(d))) for d in range(10)} for s in ("train", "val")}
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 1797
    for d in range(10):  # a stratified 20% hold-out
        total = counts["train"][d] + counts["val"][d]
        assert abs(counts["val"][d] - 0.2 * total) <= 1
    digits = np.load(Path(__file__).resolve().parents[1] / "data" / "digits.npz")
    name = sorted(os.listdir(out / "val" / "5"))[0]
    image = Image.open(out / "val" / "5" / name)
    grey = np.round(digits["images"][int(name[:-4])].astype(np.float64) * 255 / 16)
    assert image.mode == "RGB" and digits["labels"][int(name[:-4])] == 5
    np.testing.assert_array_equal(np.asarray(image), np.kron(grey, np.ones((2, 2)))[:, :, None].repeat(3, axis=2))
    info = check_dataset(make_cfg(out, num_classes=10), "train")
    assert info.num_images == 1438 and info.class_names == [str(d) for d in range(10)]
    foreign = tmp_path / "mine"
    (foreign / "train").mkdir(parents=True)
    (foreign / "train" / "keep.txt").write_text("not the digits")
    with pytest.raises(DataError, match="not written by prepare_digits"):
        prepare_digits(str(foreign))
    assert (foreign / "train" / "keep.txt").exists()
