"""Distillation benchmark (issue 10): our figures beside Hinton et al. 2015 and DistilBERT.

1. ``hinton``: LeNet-300-100 on Fashion-MNIST trained on labels alone vs distilled from resnet-s (the cached
   baseline), the same initialization, epochs, schedule and data per seed; the share of the label-only
   student's gap to the teacher that distillation closes (target ≥ 40%; Hinton et al.: 146 → 74 test
   errors on MNIST, teacher 67, i.e. 91%).
2. ``minilm``: the bbc-news MiniLM classifier (6 layers) → layers [0, 2, 4] (recipe ``distill-layers``),
   distilled vs the same 3-layer student fine-tuned on labels alone; accuracy share of the teacher's
   (target ≥ 97%, DistilBERT's figure) and latency at batch 1 × 128 tokens timed interleaved with the
   teacher (target ≤ 0.55×).
3. ``recovery``: resnet-s channel-pruned to ≤ 30% of its MACs, then equal epochs of label fine-tuning vs
   ``finetune: {distill: true}``.

Every run of a row with one seed is stored under ``$MODELPRESS_CACHE/bench/distillation-<row>-s<seed>.json``,
so rows and seeds run separately end up in one docs/bench-distillation.md (mean ± std over the seeds run).
Run: ``python -m benchmarks.bench_distillation hinton minilm`` (``MODELPRESS_BENCH_DISTILL_SEEDS=0,1,2``,
``MODELPRESS_BENCH_DISTILL_ROWS=hinton`` for ``make bench``; ``... render`` rewrites the page from the
stored runs).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from modelpress.context import StepContext
from modelpress.distillation import Distill, gap_closed, teacher_logits, train_student
from modelpress.distillation.student import build_student, size_row
from modelpress.finetune import FineTune, apply_finetune
from modelpress.measure import time_interleaved
from modelpress.measure._model import batch_of
from modelpress.pipeline.recipe import Recipe
from modelpress.pruning import Prune, apply_prune
from modelpress.tasks import get
from modelpress.tasks.builtin import cache_dir
from modelpress.tasks.train import evaluate, torch_predict

ROWS = ("hinton", "hinton-lenet5", "minilm", "recovery")
DOC = Path(__file__).resolve().parent.parent / "docs" / "bench-distillation.md"

# The LeNet baseline's own schedule (tasks.builtin.RECIPES): 12 epochs, batch 128, Adam 1e-3, cosine.
HINTON_TRAIN = {"epochs": 12, "lr": 1e-3, "batch_size": 128, "optimizer": "adam", "schedule": "cosine"}
HINTON_KD = {"alpha": 0.9, "temperature": 4.0}
RECOVERY_PRUNE = Prune(structure="channel", sparsity=0.5, scope="layer", criterion="l1", round_to=16)
RECOVERY_FT = {"epochs": 2, "lr": 1e-3, "schedule": "cosine", "batch_size": 128}


def _distill_layers() -> Distill:
    """The built-in recipe ``distill-layers``, exactly as shipped."""
    return Recipe.resolve("distill-layers").steps[0].config


def _path(row: str, seed: int) -> Path:
    return cache_dir() / "bench" / f"distillation-{row}-s{seed}.json"


def _store(row: str, seed: int, result: dict) -> None:
    _path(row, seed).parent.mkdir(parents=True, exist_ok=True)
    _path(row, seed).write_text(json.dumps(result, indent=1))


def _stored(row: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cache_dir() / "bench").glob(f"distillation-{row}-s*.json"))]


def row_hinton(seed: int, cache: dict, teacher_name: str = "resnet-s") -> dict:
    """Labels alone vs distilled from ``teacher_name`` (row ``hinton``: resnet-s; ``hinton-lenet5``: the
    smaller LeNet-5 teacher, a second point of the same comparison)."""
    task = get("fashion-mnist")
    if teacher_name not in cache:  # the teacher's logits once for all seeds (the step computes them per run)
        teacher = task.model(teacher_name).eval()
        cache[teacher_name] = (teacher, evaluate(teacher, task), teacher_logits(teacher, task.train))
    teacher, t_acc, logits = cache[teacher_name]
    accs = {}
    for name, kd in (("labels", {"alpha": 0.0}), ("distilled", HINTON_KD)):
        student, _ = build_student("lenet-300-100", None, teacher, task, seed=seed)  # same init for both
        train_student(student, teacher, task, Distill(**HINTON_TRAIN, **kd), seed=seed, progress=False, cached=logits)
        accs[name] = evaluate(student, task)
    n = len(task.test)
    return {
        "command": f"python -m benchmarks.bench_distillation {'hinton' if teacher_name == 'resnet-s' else 'hinton-lenet5'}",
        "seed": seed, "teacher": teacher_name,
        "config": f"Distill(student=lenet-300-100, {HINTON_KD}) vs alpha=0; {HINTON_TRAIN}",
        "teacher_acc": t_acc, "labels_acc": accs["labels"], "distilled_acc": accs["distilled"],
        "teacher_errors": round((1 - t_acc) * n), "labels_errors": round((1 - accs["labels"]) * n),
        "distilled_errors": round((1 - accs["distilled"]) * n), "test_examples": n,
        "gap_closed": gap_closed(accs["labels"], accs["distilled"], t_acc),
    }  # fmt: skip


def _latency(teacher: torch.nn.Module, student: torch.nn.Module, task, rounds: int = 3) -> dict:
    """Teacher vs student at batch 1 × 128 tokens, 1 thread, interleaved; the median round's ratio."""
    x = batch_of(task.test, 1)
    ratios, ms = [], []
    for _ in range(rounds):
        a, b = time_interleaved([torch_predict(teacher.eval()), torch_predict(student.eval())], x, threads=1,
                                warmup=5, runs=40)  # fmt: skip
        ratios.append(b.median_ms / a.median_ms)
        ms.append((a.median_ms, b.median_ms))
    mid = sorted(range(rounds), key=ratios.__getitem__)[rounds // 2]
    return {"teacher_ms": round(ms[mid][0], 3), "student_ms": round(ms[mid][1], 3), "ratio": round(ratios[mid], 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)]}  # fmt: skip


def _minilm_task_and_config():
    """bbc-news and the recipe's config; ``MODELPRESS_BENCH_DISTILL_MINILM_TRAIN`` (train on the first n
    examples) and ``..._EPOCHS`` shorten the training where the machine is too busy for the full recipe."""
    task, cfg = get("bbc-news"), _distill_layers()
    n = os.environ.get("MODELPRESS_BENCH_DISTILL_MINILM_TRAIN")
    epochs = os.environ.get("MODELPRESS_BENCH_DISTILL_MINILM_EPOCHS")
    if n:
        task = dataclasses.replace(task, train=task.train.head(int(n)))
    if epochs:
        cfg = dataclasses.replace(cfg, epochs=int(epochs))
    return task, cfg


def row_minilm(seed: int, cache: dict) -> dict:
    task, cfg = _minilm_task_and_config()
    if "minilm" not in cache:
        teacher = task.model().eval()
        cache["minilm"] = (teacher, evaluate(teacher, task), teacher_logits(teacher, task.train, 32))
    teacher, t_acc, logits = cache["minilm"]
    knobs = " ".join(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MODELPRESS_BENCH_DISTILL_MINILM"))
    out: dict = {"command": f"{knobs} python -m benchmarks.bench_distillation minilm".strip(), "seed": seed,
                 "config": f"recipe distill-layers: {cfg}", "teacher_acc": t_acc, "train_examples": len(task.train)}  # fmt: skip
    for name, kd in (("labels", dataclasses.replace(cfg, alpha=0.0)), ("distilled", cfg)):
        student, _ = build_student(cfg.student, None, teacher, task, seed=seed)
        if name == "labels":
            out["student_before_acc"] = evaluate(student, task)
            out["sizes"] = {"teacher": size_row(teacher, task), "student": size_row(student, task)}
        t0 = time.perf_counter()
        train_student(student, teacher, task, kd, seed=seed, progress=False, cached=logits)
        out[f"{name}_seconds"] = round(time.perf_counter() - t0)
        out[f"{name}_acc"] = evaluate(student, task)
    out["latency"] = _latency(teacher, student, task)
    out["share_of_teacher"] = out["distilled_acc"] / t_acc
    return out


def row_recovery(seed: int, cache: dict) -> dict:
    task = get("fashion-mnist")
    teacher = task.model("resnet-s").eval()
    pruned = copy.deepcopy(teacher)
    apply_prune(pruned, RECOVERY_PRUNE, StepContext(task=task, progress=False))
    sizes = {"teacher": size_row(teacher, task), "pruned": size_row(pruned, task)}
    out = {"command": "python -m benchmarks.bench_distillation recovery", "seed": seed,
           "config": f"{RECOVERY_PRUNE} then FineTune({RECOVERY_FT}) with distill false / true (alpha 0.5, T 4)",
           "teacher_acc": evaluate(teacher, task), "pruned_acc": evaluate(pruned, task), "sizes": sizes}  # fmt: skip
    for name, distill in (("labels", False), ("distilled", True)):
        model = copy.deepcopy(pruned)
        ctx = StepContext(task=task, progress=False, seed=seed, reference=teacher)
        apply_finetune(model, FineTune(**RECOVERY_FT, distill=distill), ctx)
        out[f"{name}_acc"] = evaluate(model, task)
    out["gap_closed"] = gap_closed(out["labels_acc"], out["distilled_acc"], out["teacher_acc"])
    return out


def _ms(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` (std over the seeds; 0 for one seed), scaled (100: percent)."""
    m = statistics.mean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _render_hinton(rows: list[dict], teacher: str) -> list[str]:
    if not rows:
        return [f"## Hinton et al. on Fashion-MNIST: LeNet-300-100 student, {teacher} teacher", "", "Not run yet.", ""]
    g = [r["gap_closed"] for r in rows if r["gap_closed"] is not None]
    return [
        f"## Hinton et al. on Fashion-MNIST: LeNet-300-100 student, {teacher} teacher", "",
        f"`{rows[0]['command']}` — {rows[0]['config']}; seeds {[r['seed'] for r in rows]}, mean ± std", "",
        "| | paper (Hinton et al. 2015, MNIST, 800-800 MLP) | ours (Fashion-MNIST, LeNet-300-100) |",
        "|---|---|---|",
        (f"| teacher test errors | 67 | {_ms([r['teacher_errors'] for r in rows], 1, 1)} of {rows[0]['test_examples']} "
        f"(accuracy {_ms([r['teacher_acc'] for r in rows])}%) |"),
        (f"| student, labels alone | 146 errors | {_ms([r['labels_errors'] for r in rows], 1, 1)} errors "
        f"(accuracy {_ms([r['labels_acc'] for r in rows])}%) |"),
        (f"| student, distilled | 74 errors | {_ms([r['distilled_errors'] for r in rows], 1, 1)} errors "
        f"(accuracy {_ms([r['distilled_acc'] for r in rows])}%) |"),
        f"| share of the gap closed | 91% | {_ms(g, 100, 1)}% |", "",
    ]  # fmt: skip


def _render_minilm(rows: list[dict]) -> list[str]:
    if not rows:
        return ["## MiniLM 6 → 3 layers on bbc-news", "", "Not run yet.", ""]
    r0, lat = rows[0], rows[-1]["latency"]
    sz = r0["sizes"]
    return [
        "## MiniLM 6 → 3 layers on bbc-news (recipe `distill-layers`)", "",
        (f"`{r0['command']}` — {r0['config']}; seeds {[r['seed'] for r in rows]}, mean ± std "
        f"(one seed: ± 0); {r0['train_examples']} training examples; about {r0['distilled_seconds']} s of "
        "training per student"), "",
        "| | paper (DistilBERT, Sanh et al. 2019) | ours |",
        "|---|---|---|",
        "| teacher → student | BERT-base 12 → 6 layers | all-MiniLM-L6-v2 classifier 6 → 3 layers [0, 2, 4] |",
        f"| params | 110M → 66M | {sz['teacher']['params']:,} → {sz['student']['params']:,} |",
        f"| MACs per example | | {sz['teacher']['macs']:,} → {sz['student']['macs']:,} |",
        f"| teacher accuracy | | {_ms([r['teacher_acc'] for r in rows])}% |",
        f"| student before training (teacher's layers and head) | | {_ms([r['student_before_acc'] for r in rows])}% |",
        f"| student fine-tuned on labels alone | | {_ms([r['labels_acc'] for r in rows])}% |",
        (f"| student distilled | 97% of the teacher (GLUE) | {_ms([r['distilled_acc'] for r in rows])}% "
        f"= {_ms([r['share_of_teacher'] for r in rows], 100, 1)}% of the teacher |"),
        (f"| latency, batch 1 × 128 tokens, 1 thread | 60% faster (CPU) | {lat['teacher_ms']} → {lat['student_ms']} ms "
        f"(ratio {lat['ratio']}, {lat['ratio_range'][0]}–{lat['ratio_range'][1]} over 3 interleaved rounds) |"), "",
        (f"Distilled minus labels alone: {_ms([r['distilled_acc'] - r['labels_acc'] for r in rows])} points over "
         f"{len(rows)} seed(s)" + (" — one seed gives no spread, so this difference is not shown to exceed "
                                   "run-to-run noise." if len(rows) == 1 else ".")), "",
    ]  # fmt: skip


def _render_recovery(rows: list[dict]) -> list[str]:
    if not rows:
        return ["## Recovery after channel pruning", "", "Not run yet.", ""]
    r0 = rows[0]
    sz = r0["sizes"]
    return [
        "## Recovery: resnet-s channel-pruned, label fine-tuning vs `finetune: {distill: true}`", "",
        f"`{r0['command']}` — {r0['config']}; seeds {[r['seed'] for r in rows]}", "",
        "| | ours (Fashion-MNIST) |", "|---|---|",
        (f"| MACs | {sz['teacher']['macs']:,} → {sz['pruned']['macs']:,} "
        f"({100 * sz['pruned']['macs'] / sz['teacher']['macs']:.1f}%) |"),
        (f"| accuracy: teacher / pruned before fine-tuning | {_ms([r['teacher_acc'] for r in rows])}% / "
        f"{_ms([r['pruned_acc'] for r in rows])}% |"),
        f"| after label fine-tuning | {_ms([r['labels_acc'] for r in rows])}% |",
        f"| after distillation fine-tuning | {_ms([r['distilled_acc'] for r in rows])}% |", "",
    ]  # fmt: skip


def _verdicts(hs: dict[str, list[dict]], m: list[dict]) -> list[str]:
    lines = ["## Acceptance (issue 10)", ""]
    for teacher, h in hs.items():
        if not h:
            continue
        g = statistics.mean(r["gap_closed"] for r in h if r["gap_closed"] is not None)
        lines.append(f"- Hinton, {teacher} teacher: distillation closes ≥ 40% of the gap: {100 * g:.1f}% "
                     f"({len(h)} seed(s)): {'met' if g >= 0.4 else 'NOT met'}")  # fmt: skip
    if m:
        share = statistics.mean(r["share_of_teacher"] for r in m)
        ahead = statistics.mean(r["distilled_acc"] - r["labels_acc"] for r in m)
        ratio = m[-1]["latency"]["ratio"]
        lines.append(f"- MiniLM 6 → 3: ≥ 97% of the teacher: {100 * share:.1f}%: {'met' if share >= 0.97 else 'NOT met'}; "
                     f"latency ≤ 0.55×: {ratio}: {'met' if ratio <= 0.55 else 'NOT met'}; ahead of labels alone: "
                     f"{100 * ahead:+.2f} points ({len(m)} seed(s)): {'met' if ahead > 0 else 'NOT met'}"
                     + (" on one seed only, so not shown beyond run-to-run noise" if len(m) == 1 else ""))  # fmt: skip
    return lines + [""]


def render() -> str:
    h, h5, m, r = _stored("hinton"), _stored("hinton-lenet5"), _stored("minilm"), _stored("recovery")
    head = ["# Distillation benchmark", "",
            ("Measured on this machine (CPU, torch 2.13; latency 1 thread, timed interleaved in one process). "
            "Accuracy is on the held-out test split; errors are counted on it. Each row gives the command "
            "that produced it; `load` is the 1-minute load average when a run finished (2 shared cores)."), ""]  # fmt: skip
    loads = sorted({x["loadavg"] for x in h + h5 + m + r if "loadavg" in x})
    if loads:
        head += [f"Load averages while these runs finished: {loads}.", ""]
    body = _render_hinton(h, "resnet-s") + _render_hinton(h5, "lenet-5") + _render_minilm(m) + _render_recovery(r)
    return "\n".join(head + body + _verdicts({"resnet-s": h, "lenet-5": h5}, m))


def main(rows: list[str] | None = None) -> None:
    # 1 thread: on a shared, oversubscribed CPU two OpenMP threads spend their time waiting at barriers
    torch.set_num_threads(int(os.environ.get("MODELPRESS_BENCH_THREADS", "1")))  # latency is timed at 1 too
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = os.environ.get("MODELPRESS_BENCH_DISTILL_ROWS")
    rows = rows or (env.split(",") if env else ["hinton", "minilm"])
    if rows == ["render"]:  # rewrite the page from the stored runs only
        DOC.write_text(render())
        print(DOC.read_text())
        return
    seeds = [int(s) for s in os.environ.get("MODELPRESS_BENCH_DISTILL_SEEDS", "0,1,2").split(",")]
    fns = {"hinton": row_hinton, "hinton-lenet5": lambda seed, cache: row_hinton(seed, cache, "lenet-5"),
           "minilm": row_minilm, "recovery": row_recovery}  # fmt: skip
    unknown = [r for r in rows if r not in fns]
    if unknown:
        print(f"bench_distillation: error: unknown row(s) {unknown}; choose from {list(fns)}", file=sys.stderr)
        raise SystemExit(2)
    cache: dict = {}
    for row in rows:
        for seed in seeds:
            t0 = time.perf_counter()
            result = fns[row](seed, cache)
            result["seconds"] = round(time.perf_counter() - t0)
            result["loadavg"] = round(os.getloadavg()[0], 1)
            _store(row, seed, result)
            print(json.dumps({row: result}, indent=1), flush=True)
            DOC.write_text(render())  # after every run, so a stopped benchmark still leaves its figures
    print(DOC.read_text())


if __name__ == "__main__":
    main(sys.argv[1:] or None)
