"""FUSAR-KLIP workbench: data, HCoT captioning, model, losses, SCIO, training, tasks, maps.

Importing the package turns on torch's deterministic algorithms on machines without CUDA, so two runs with
the same seed give the same numbers: with 2 CPU threads some kernels otherwise reduce in a varying order
(measured: six pretraining steps gave different weights in every process). `KLIP_DETERMINISTIC=0` turns it
off, `=1` forces it on (on CUDA it also needs CUBLAS_WORKSPACE_CONFIG=:4096:8).
"""

import os as _os


def _deterministic() -> None:
    mode = _os.environ.get("KLIP_DETERMINISTIC", "auto")
    if mode == "0":
        return
    import torch

    if mode == "1" or not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True, warn_only=True)


_deterministic()
