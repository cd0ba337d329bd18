"""Same seed, same numbers: torch's deterministic algorithms, turned on by an explicit call.

With 2 CPU threads some kernels otherwise reduce in a varying order, which 100 smoke pretraining steps amplify
(measured between two `make run`s: ITC loss 0.30 apart, captioning CIDEr 0.71). `configure()` turns deterministic
algorithms on where there is no CUDA; `KLIP_DETERMINISTIC=1` forces them on (on CUDA also set
CUBLAS_WORKSPACE_CONFIG=:4096:8), `KLIP_DETERMINISTIC=0` leaves torch as it is. Deterministic mode's filling of
uninitialised memory with NaN stays off: it was what made notebooks 07 and 08 several times slower (07: 56 s ->
219 s, 08: 25 s -> 233 s); our results never read uninitialised memory.

The `klip` command, every notebook's import cell and the test suite call it; importing `klip_lib` does not.
"""

from __future__ import annotations

import os

ENV = "KLIP_DETERMINISTIC"


def configure(mode: str | None = None) -> bool:
    """Turn torch's deterministic algorithms on as `mode` (default: $KLIP_DETERMINISTIC, else 'auto') says:
    '1' on, '0' untouched, 'auto' on where CUDA is missing. Returns whether they are on afterwards."""
    import torch

    mode = mode if mode is not None else os.environ.get(ENV, "auto")
    if mode not in ("0", "1", "auto"):
        raise ValueError(f"{ENV}={mode!r}: use 0 (off), 1 (on) or auto (on without CUDA)")
    if mode == "1" or (mode == "auto" and not torch.cuda.is_available()):
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False
    return torch.are_deterministic_algorithms_enabled()
