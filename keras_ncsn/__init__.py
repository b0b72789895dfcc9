"""keras-ncsn: Noise Conditional Score Networks (Song & Ermon 2019) in TensorFlow / Keras 3."""

import os

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16
# or AMX. On an AVX2 CPU they made the paper-size MNIST model's forward pass 1.2x and its
# training step 1.08x faster than TensorFlow's default kernels (scripts/bench.py, README
# "Performance"), so keras_ncsn opts in unless the user has chosen. It only takes effect
# when keras_ncsn is imported before TensorFlow, as the scripts do.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
