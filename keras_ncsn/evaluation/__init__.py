"""Evaluation of score models: held-out DSM loss, FID/KID/Inception score, nearest neighbours.

`metrics` (NumPy), `features` (InceptionV3 or a small classifier as feature extractor) and
`report` (sample a run or export, compute everything, write metrics.json and report.md).
"""
