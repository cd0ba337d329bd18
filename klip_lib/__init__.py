"""FUSAR-KLIP workbench: data, HCoT captioning, model, losses, SCIO, training, tasks, maps.

`KLIP_DETERMINISTIC=1` in the environment turns on torch's deterministic algorithms when the package is
imported, so two runs with the same seed give the same numbers: with 2 CPU threads some kernels otherwise
reduce in a varying order (measured: six pretraining steps gave different weights in every process). It is
off by default because it made the detection and segmentation notebooks several times slower on CPU
(07: 56 s -> 219 s, 08: 25 s -> 233 s, one run each). On CUDA also set CUBLAS_WORKSPACE_CONFIG=:4096:8.
"""

import os as _os

if _os.environ.get("KLIP_DETERMINISTIC") == "1":
    import torch as _torch

    _torch.use_deterministic_algorithms(True, warn_only=True)
