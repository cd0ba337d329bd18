"""FUSAR-KLIP workbench: data, HCoT captioning, model, losses, SCIO, training, tasks, maps.

Importing the package turns on torch's deterministic algorithms on a machine without CUDA, so two runs with the
same seed give the same numbers: with 2 CPU threads some kernels otherwise reduce in a varying order, which 100
smoke pretraining steps amplify (measured between two `make run`s: ITC loss 0.30 apart, captioning CIDEr 0.71).
`KLIP_DETERMINISTIC=1` forces it on (on CUDA also set CUBLAS_WORKSPACE_CONFIG=:4096:8), `KLIP_DETERMINISTIC=0` off.
Deterministic mode's filling of uninitialised memory with NaN is turned off: it was what made notebooks 07 and 08
several times slower (07: 56 s -> 219 s, 08: 25 s -> 233 s); without the fill they take the same time either way.
"""

import os as _os


def _deterministic() -> None:
    mode = _os.environ.get("KLIP_DETERMINISTIC", "auto")
    if mode == "0":
        return
    import torch

    if mode == "1" or not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True, warn_only=True)
        # the NaN fill of every torch.empty that deterministic mode adds; our results never read uninitialised memory
        torch.utils.deterministic.fill_uninitialized_memory = False


_deterministic()
