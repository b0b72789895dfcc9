"""Evaluation of score models: held-out DSM loss, FID/KID/Inception score, nearest neighbours.

`metrics` (NumPy), `features` (InceptionV3 or a small classifier as feature extractor),
`report` (sample a run or export, compute everything, write metrics.json and report.md) and
`likelihood` (held-out bits/dim of a run or export under `keras_ncsn.likelihood`'s bound).
"""
