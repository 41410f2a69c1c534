"""Baselines benchmark: the trained reference models every other benchmark starts from.

Trains (first run) or loads (cached under ``$MODELPRESS_CACHE/baselines/``) the Fashion-MNIST baselines
LeNet-300-100, LeNet-5 and resnet-s and the BBC News MiniLM classifier, measures their test accuracy and
checks it against the targets, prints a table and writes docs/bench-baselines.md.

Run: ``make bench`` (all benchmarks) or ``.venv/bin/python -m benchmarks.bench_baselines``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from modelpress.tasks import get
from modelpress.tasks.builtin import RECIPES, baseline_path
from modelpress.tasks.train import evaluate

DOC = Path(__file__).resolve().parent.parent / "docs" / "bench-baselines.md"
COMMAND = ".venv/bin/python -m benchmarks.bench_baselines   (or: make bench)"

# (task, model, target test accuracy)
ROWS: tuple[tuple[str, str, float], ...] = (
    ("fashion-mnist", "lenet-300-100", 0.88),
    ("fashion-mnist", "lenet-5", 0.90),
    ("fashion-mnist", "resnet-s", 0.92),
    ("bbc-news", "minilm-l6", 0.95),
)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _row(task_name: str, model_name: str, target: float) -> dict:
    task = get(task_name)
    cached = baseline_path(task_name, model_name).is_file()
    t0 = time.perf_counter()
    model = task.model(model_name)
    seconds = time.perf_counter() - t0
    acc = evaluate(model, task)
    recipe = RECIPES[(task_name, model_name)]
    return {
        "task": task_name,
        "model": model_name,
        "params": sum(p.numel() for p in model.parameters()),
        "accuracy": acc,
        "target": target,
        "ok": acc >= target,
        "seconds": seconds,
        "cached": cached,
        "recipe": f"{recipe.optimizer} lr {recipe.lr:g}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"{recipe.schedule}" + (", head only (frozen encoder)" if recipe.head_only else ""),
    }


def _table(rows: list[dict]) -> list[str]:
    lines = [
        "| task | model | params | test accuracy | target | met | recipe | train/load s |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        how = "load" if r["cached"] else "train"
        lines.append(
            f"| {r['task']} | {r['model']} | {r['params']:,} | {r['accuracy']:.4f} | {r['target']:.2f} | "
            f"{'yes' if r['ok'] else 'NO'} | {r['recipe']} | {r['seconds']:.0f} ({how}) |"
        )
    return lines


def main() -> list[dict]:
    """Train/load each baseline, print the table, write docs/bench-baselines.md; return the rows."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    for task_name, model_name, target in ROWS:
        print(f"baseline {task_name} / {model_name} ...", flush=True)
        rows.append(_row(task_name, model_name, target))
    table = _table(rows)
    print("\n".join(table))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(
        "\n".join(
            [
                "# Baselines: the trained reference models",
                "",
                "Test accuracy of each built-in baseline on its task's held-out test split (Fashion-MNIST: the",
                "official 10k test images; BBC News: the 445-article stratified 20% split, seed 0). Weights are",
                "trained with a fixed seed and recipe (`modelpress.tasks.builtin.RECIPES`) on first use and",
                "cached under `$MODELPRESS_CACHE/baselines/`.",
                "",
                f"Command: `{COMMAND}`",
                "",
                (
                    f"Machine: {_cpu_name()}, {os.cpu_count()} cores, "
                    f"torch {torch.__version__}, {torch.get_num_threads()} threads."
                ),
                "",
                *table,
                "",
                "`train/load s` is the wall time of `task.model(name)` in this run: reading the cached",
                "safetensors (load), or training when the cache was empty (train; if another job was already",
                "training that baseline, this run waited for it instead of training it twice).",
                "",
            ]
        )
    )
    return rows


if __name__ == "__main__":
    main()
