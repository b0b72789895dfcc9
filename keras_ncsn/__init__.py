"""keras-ncsn: Noise Conditional Score Networks (Song & Ermon 2019) in TensorFlow / Keras 3.

The public API, loaded on first use so that `import keras_ncsn` (and every command's
`--help`) stays free of TensorFlow:

- `get_config(name_or_path, assignments)`: a preset, config.json or run folder's config
- `build_model(config)`: the `NCSN` score network of a config
- `load_run(run_dir)`: (config, model, step) of a run folder written by training
- `AnnealedLangevin`: the paper's annealed Langevin sampler
"""

import os
from typing import TYPE_CHECKING

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16
# or AMX. They also make this model faster on AVX2 CPUs (docs/performance.md), so
# keras_ncsn opts in unless the user has chosen. It only takes effect when keras_ncsn is
# imported before TensorFlow, as the scripts do.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# name -> module that defines it
_API = {
    "NCSN": "keras_ncsn.model",
    "build_model": "keras_ncsn.model",
    "get_config": "keras_ncsn.config",
    "load_run": "keras_ncsn.training",
    "AnnealedLangevin": "keras_ncsn.sampling",
}
__all__ = sorted(_API)

if TYPE_CHECKING:
    from keras_ncsn.config import get_config
    from keras_ncsn.model import NCSN, build_model
    from keras_ncsn.sampling import AnnealedLangevin
    from keras_ncsn.training import load_run


def __getattr__(name: str):
    """Imports a public name's module when the name is first used (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'keras_ncsn' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
