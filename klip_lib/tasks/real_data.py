"""Loaders for the real SAR samples in `../shared/data/real` (README there): SAR-ACD aircraft chips,
HRSID ship scenes with instance masks, the Sen1Floods11 water chip.

Bad input never gives a silent wrong score: a class folder without images, a mask whose size differs
from its image, or a label raster on another grid raises an error naming the file; an unreadable image
is skipped and its reason returned to the caller (who prints it).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import to_model_image
from ..errors import UserError
from .classification import Chips, chip_window

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
SAR_ACD_POLS = ["HH"]  # Gaofen-3 1 m HH chips (README of the samples)
HRSID_POLS = ["HH"]  # a single intensity channel; to_model_image puts it first whatever its name
SEN1FLOODS11_NODATA = -1  # label value of unlabelled pixels (0 land, 1 water)


class RealDataError(UserError, ValueError):
    """A real-data file or folder that cannot be scored; the message names it and says what to do."""


def read_chip_db(path: str | os.PathLike) -> np.ndarray:
    """A greyscale image file (JPEG/PNG amplitude quick-look) as [1, H, W] relative dB (20 log10 of the
    digital numbers, 0 -> NaN), the conversion `klip_lib.data.import_folder` applies to chips."""
    from PIL import Image, UnidentifiedImageError

    from ..data.physics import amplitude_to_db

    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise RealDataError(f"{path}: cannot read the image ({e.__class__.__name__}: {e})") from e
    return amplitude_to_db(np.where(a > 0, a, np.nan))[None]


def class_folders(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """class name -> sorted image files of a one-folder-per-class dataset; a class folder without images raises."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RealDataError(f"{folder}: no such folder (expected one sub-folder of images per class)")
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise RealDataError(f"class folder {sub} has no images ({', '.join(IMAGE_SUFFIXES)}): "
                                "add its images or remove the folder")
        classes[sub.name] = files
    if not classes:
        raise RealDataError(f"{folder}: no class sub-folders found")
    return classes


def stratified_split(folder: str | os.PathLike, out_path: str | os.PathLike, test_fraction: float = 0.3,
                     seed: int = 0) -> dict:
    """The fixed stratified train/test split of a class-folder dataset, as {"train"|"test": {class: [relative
    file]}}: read from `out_path` when it exists (checked against the folder), else drawn per class and written."""
    from ..files import write_json_atomic

    folder, out_path = Path(folder), Path(out_path)
    classes = class_folders(folder)
    if out_path.is_file():
        split = json.loads(out_path.read_text())
        missing = [f for part in split["splits"].values() for files in part.values() for f in files
                   if not (folder / f).is_file()]
        if missing or sorted(split["splits"]["train"]) != sorted(classes):
            raise RealDataError(f"{out_path}: the saved split does not match {folder} ({len(missing)} files missing, "
                                f"classes {sorted(split['splits']['train'])} vs {sorted(classes)}); delete it to draw a new one")
        return split["splits"]
    rng = random.Random(seed)
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for name, files in classes.items():
        rel = [f"{name}/{f.name}" for f in files]
        rng.shuffle(rel)
        n_test = max(1, round(len(rel) * test_fraction))
        splits["test"][name], splits["train"][name] = sorted(rel[:n_test]), sorted(rel[n_test:])
    write_json_atomic(out_path, {"folder": str(folder), "test_fraction": test_fraction, "seed": seed, "splits": splits})
    return splits


def fixed_scale(db: np.ndarray, side: int) -> np.ndarray:
    """A chip [C, H, W] centre-padded (NaN, no data) or centre-cropped to `side` x `side` px at its own pixel
    spacing: every chip then shares one ground sampling distance after resizing, so a target's size in metres, a
    class cue in SAR (an A330 is larger than an ARJ21), survives. `side` 0: the chip unchanged (resizing then
    stretches each chip to the model's size on its own, aspect and scale lost)."""
    if side <= 0:
        return db
    h, w = db.shape[1:]
    return chip_window(db, [(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2], 1.0, side)


def load_class_chips(folder: str | os.PathLike, splits: dict, image_size: int, channels: int = 2,
                     max_per_class: int | None = None, pols: list[str] = SAR_ACD_POLS, chip_side: int = 0) -> Chips:
    """The chips of a split (`stratified_split`) as model images; the first `max_per_class` files of each class
    and split are kept (all when None); unreadable files are skipped with their reason. `chip_side` > 0 brings
    every chip to that many pixels at its own spacing first (`fixed_scale`), a larger chip cropped at its centre."""
    if chip_side < 0:
        raise RealDataError(f"{folder}: chip_side must be 0 (resize each chip) or a side in pixels, got {chip_side}")
    folder = Path(folder)
    classes = sorted(splits["train"])
    images, labels, split, files, skipped = [], [], [], [], []
    for part in ("train", "test"):
        for k, name in enumerate(classes):
            for rel in splits[part][name][:max_per_class]:
                try:
                    db = read_chip_db(folder / rel)
                except RealDataError as e:
                    skipped.append((str(folder / rel), str(e)))
                    continue
                images.append(to_model_image(fixed_scale(db, chip_side), pols, channels, image_size))
                labels.append(k)
                split.append(part)
                files.append(rel)
    if not images:
        raise RealDataError(f"{folder}: no readable images ({len(skipped)} skipped)")
    return Chips(torch.stack(images), torch.tensor(labels), split, classes, files, skipped)


def boxes_from_instance_mask(mask: np.ndarray) -> np.ndarray:
    """[K, 4] boxes (x0, y0, x1, y1; x1/y1 exclusive) of the instances of an RGB instance mask [H, W, 3]:
    one box per distinct non-black colour, in order of first appearance (row-major)."""
    flat = mask.reshape(-1, mask.shape[-1]).astype(np.int64)
    code = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    colours, first = np.unique(code, return_index=True)
    boxes = []
    for c in colours[np.argsort(first)]:
        if c == 0:
            continue
        ys, xs = np.divmod(np.flatnonzero(code == c), mask.shape[1])
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


@dataclass
class Scene:
    """A real SAR scene with its boxes."""

    name: str  # file stem
    db: np.ndarray  # [1, H, W] relative dB
    boxes: np.ndarray  # [K, 4] x0, y0, x1, y1 in pixels (exclusive ends)


def load_hrsid(folder: str | os.PathLike) -> list[Scene]:
    """The HRSID scenes of `folder` (`<stem>.png` + `<stem>_instance_id_RGB.png`), boxes from the instance
    masks; a scene without its mask, or a mask of another size than its image, raises naming the files."""
    from PIL import Image

    folder = Path(folder)
    stems = sorted(p.stem for p in folder.glob("*.png") if "_instance_" not in p.stem)
    if not stems:
        raise RealDataError(f"{folder}: no HRSID scenes (<name>.png with <name>_instance_id_RGB.png)")
    scenes = []
    for stem in stems:
        image_path, mask_path = folder / f"{stem}.png", folder / f"{stem}_instance_id_RGB.png"
        if not mask_path.is_file():
            raise RealDataError(f"{image_path}: no instance mask {mask_path.name} beside it")
        db = read_chip_db(image_path)
        with Image.open(mask_path) as im:
            mask = np.asarray(im.convert("RGB"))
        if mask.shape[:2] != db.shape[1:]:
            raise RealDataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} px but its image "
                                f"{image_path.name} is {db.shape[2]}x{db.shape[1]} px; fix or remove the pair")
        scenes.append(Scene(stem, db, boxes_from_instance_mask(mask)))
    return scenes


def load_sen1floods11(folder: str | os.PathLike) -> tuple[np.ndarray, list[str], np.ndarray, str]:
    """(bands [C, H, W] dB, polarizations, label [H, W] int (-1 nodata, 0 land, 1 water), chip name) of the
    first `*_S1Hand.tif` with its `*_LabelHand.tif`; a label of another size raises naming both files."""
    from ..data.geotiff import read_tile

    folder = Path(folder)
    chips = sorted(folder.glob("*_S1Hand.tif"))
    if not chips:
        raise RealDataError(f"{folder}: no Sen1Floods11 chip (<name>_S1Hand.tif with <name>_LabelHand.tif)")
    s1 = chips[0]
    label_path = s1.with_name(s1.name.replace("_S1Hand", "_LabelHand"))
    if not label_path.is_file():
        raise RealDataError(f"{s1}: no label {label_path.name} beside it")
    bands, meta = read_tile(s1)
    label, _ = read_tile(label_path)
    if label.shape[1:] != bands.shape[1:]:
        raise RealDataError(f"{label_path}: label is {label.shape[2]}x{label.shape[1]} px but {s1.name} is "
                            f"{bands.shape[2]}x{bands.shape[1]} px; use a label on the image's grid")
    label = np.nan_to_num(label[0], nan=SEN1FLOODS11_NODATA).astype(np.int64)
    return bands, meta.polarizations, label, s1.name.replace("_S1Hand.tif", "")
