"""Reading weight files safely, ours and external: safetensors, or torch files through
`torch.load(weights_only=True)`, which rebuilds tensors and plain containers and runs no code.

A torch file that holds other Python objects needs full unpickling, and unpickling runs whatever code the
file carries. Such a file is refused with CheckpointError naming it, unless the caller trusts it and says so
(`allow_pickle=True`, `--allow-pickle`); then it loads with a warning naming the file.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from .errors import UserError

ALLOW_PICKLE = "pass allow_pickle=True (on the command line: --allow-pickle)"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be loaded: pickle refused, or weights that do not match the config."""


def permit_pickle(path: str | os.PathLike, allow_pickle: bool, how: str = ALLOW_PICKLE) -> None:
    """Warn that `path` will be unpickled when the caller allows it; raise CheckpointError otherwise. `how`
    says how to allow it where the caller is not a Python call (an `external` entry, a command-line flag)."""
    if not allow_pickle:
        raise CheckpointError(
            f"{path}: refusing to unpickle it: it holds Python objects besides tensors, and unpickling runs any "
            f"code they carry. Convert it to .safetensors, or, if you trust the file, {how}"
        )
    warnings.warn(f"{path}: unpickling it (allow_pickle): this runs any code the file carries; load only files "
                  "you trust", UserWarning, stacklevel=3)


def torch_load(path: str | os.PathLike, allow_pickle: bool = False, how: str = ALLOW_PICKLE):
    """What torch.save wrote to `path`, on the CPU: with weights_only=True; unpickled only as permit_pickle says."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        permit_pickle(path, allow_pickle, how)
    return torch.load(path, map_location="cpu", weights_only=False)


def needs_unpickling(path: str | os.PathLike) -> bool:
    """Whether torch.load(weights_only=True) refuses `path` (a file that is no torch file, or is damaged, is left
    to the loader that reads it, which says what is wrong)."""
    if str(path).endswith(".safetensors"):
        return False
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        return True
    except Exception:
        return False
    return False


def weights_only_for(paths: str | os.PathLike | list, allow_pickle: bool, how: str = ALLOW_PICKLE) -> bool:
    """The `weights_only` to give a library loader (timm, open_clip, transformers) that reads `paths`: True
    unless one of them needs unpickling, which only `allow_pickle` permits (see permit_pickle)."""
    for path in paths if isinstance(paths, list) else [paths]:
        if needs_unpickling(path):
            permit_pickle(path, allow_pickle, how)
            return False
    return True


def pickle_files(folder: str | os.PathLike) -> list[Path]:
    """The torch pickle files a checkpoint folder offers its loader: none when it has safetensors weights
    (timm, open_clip and transformers read those first)."""
    files = sorted(Path(folder).iterdir())
    if any(p.suffix == ".safetensors" for p in files):
        return []
    return [p for p in files if p.suffix in PICKLE_SUFFIXES]
