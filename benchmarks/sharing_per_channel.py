"""The ``per-channel`` row of the sharing benchmark: one codebook per layer against one per output channel.

The trained LeNet-300-100 of MNIST-5k, clustered as it is (no pruning, no fine-tuning: what the codebooks
alone keep) at the same index bits with ``share: {per: layer}`` and ``share: {per: channel}``, float16
codebooks, entropy-coded indices. Per bits and layout: the artifact bytes (``modelpress.save``'s folder),
the smallest and the mean weight cosine of the clustered layers, and test accuracy.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

from modelpress.artifact import folder_bytes, save
from modelpress.pipeline import compress_
from modelpress.sharing.config import Share
from modelpress.tasks import get
from modelpress.tasks.train import evaluate

__all__ = ["PER_BITS", "per_channel", "per_channel_doc"]

PER_BITS = (2, 3, 4)
_TASK, _MODEL = "mnist-5k", "lenet-300-100"


def per_channel() -> dict:
    """Cluster the baseline per layer and per channel at each of `PER_BITS`; bytes, cosines, accuracy."""
    task = get(_TASK)
    base = task.model(_MODEL)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sharing-per-") as tmp:
        fp32 = folder_bytes(save(base, Path(tmp) / "fp32"))
        for bits in PER_BITS:
            for per in ("layer", "channel"):
                model = copy.deepcopy(base)
                log = compress_(model, Share(bits=bits, per=per, codebook="float16"), task=task, progress=False)
                cos = [layer["cosine_before_finetune"] for layer in log.details["layers"].values()]
                rows.append({"bits": bits, "per": per, "bytes": folder_bytes(save(model, Path(tmp) / f"{per}-{bits}")),
                             "min_cosine": min(cos), "mean_cosine": sum(cos) / len(cos),
                             "metric": evaluate(model, task)})
    return {"task": _TASK, "model": _MODEL, "fp32_bytes": fp32, "metric_base": evaluate(base, task), "rows": rows,
            "load_average": round(os.getloadavg()[0], 1)}


def per_channel_doc(r: dict) -> list[str]:
    """The doc section of the row's result ``r``."""
    lines = [f"## Per-layer vs per-channel codebooks ({r['model']}, {r['task']}, no pruning, no fine-tuning)", "",
             ("`python -m benchmarks.bench_sharing per-channel`: the trained baseline clustered as it is, "
              "`share: {bits: b, per: layer | channel, codebook: float16}` (entropy-coded indices, epochs 0), so "
              f"the table shows what the codebooks alone keep; load average {r['load_average']}. fp32 artifact "
              f"{r['fp32_bytes']:,} B, accuracy {r['metric_base']:.4f}."), "",
             "| bits | codebooks | artifact | ratio to fp32 | weight cosine (smallest / mean layer) | accuracy (test) |",
             "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['bits']} | per {row['per']} | {row['bytes']:,} B | {r['fp32_bytes'] / row['bytes']:.2f}× | "
                     f"{row['min_cosine']:.4f} / {row['mean_cosine']:.4f} | {row['metric']:.4f} |")
    lines += ["", ("Per channel stores `out × 2^bits` codebook values per layer instead of `2^bits` "
                   "(LeNet-300-100's fc1: 300 codebooks); the artifact column counts them and the indices."), ""]
    return lines
