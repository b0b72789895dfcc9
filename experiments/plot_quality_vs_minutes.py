"""Plot sample quality against training minutes from docs/figures/quick_tuning.json.

    python experiments/plot_quality_vs_minutes.py            # -> docs/figures/quality_vs_minutes.png

The JSON lists one entry per evaluated model: its series (a config), training minutes on
the idle 2-core CPU, and the classifier metrics of `scripts/evaluate.py` (confident
fraction, class entropy, FID and the real-vs-real FID floor at the same sample count).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(HERE, os.pardir, "docs", "figures")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(DOCS, "quick_tuning.json"))
    parser.add_argument("--out", default=os.path.join(DOCS, "quality_vs_minutes.png"))
    args = parser.parse_args(argv)
    try:
        import matplotlib
    except ImportError:
        print('error: this plot needs matplotlib: pip install "keras-ncsn[plots]" '
              '(or: pip install "matplotlib>=3.7")', file=sys.stderr)
        return 2

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.data, encoding="utf-8") as f:
        data = json.load(f)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for series in sorted({row["series"] for row in data["rows"]}):
        rows = sorted((r for r in data["rows"] if r["series"] == series),
                      key=lambda r: r["train_minutes"])
        minutes = [r["train_minutes"] for r in rows]
        left.plot(minutes, [r["confident"] for r in rows], "o-", label=series)
        with_fid = [r for r in rows if r.get("fid") is not None]  # older rows lack FID
        right.plot([r["train_minutes"] for r in with_fid],
                   [r["fid"] / r["fid_floor"] for r in with_fid], "o-", label=series)
    left.axhline(data["real_confident"], color="gray", linestyle="--", label="real digits")
    left.set_ylabel("confident fraction (max p > 0.9)")
    right.axhline(1.0, color="gray", linestyle="--", label="real-vs-real floor")
    right.set_ylabel("classifier FID / real-vs-real floor")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xlabel("training minutes (idle 2-core CPU)")
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle(data.get("title", "sample quality against training time"), fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
