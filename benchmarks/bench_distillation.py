"""Distillation benchmark (issue 10): our figures beside Hinton et al. 2015 and DistilBERT.

1. ``hinton``: LeNet-300-100 on Fashion-MNIST trained on labels alone vs distilled from resnet-s (the cached
   baseline), the same initialization, epochs, schedule and data per seed; the share of the label-only
   student's gap to the teacher that distillation closes (target ≥ 40%; Hinton et al.: 146 → 74 test
   errors on MNIST, teacher 67, i.e. 91%). ``hinton-lenet5``: the same with the LeNet-5 teacher;
   ``hinton-wide``: the same with Hinton et al.'s own 800-800 student (``mlp-800-800``); ``hinton-long``:
   LeNet-300-100 again with twice the epochs (24); ``hinton-views`` / ``hinton-views-long``: function
   matching (Beyer et al. 2022) — both arms on the same shifted, mixed-up views (`Distill.augment`), the
   distilled arm on pure KL to the teacher's logits of those very images, 12 and 36 epochs.
2. ``minilm``: the bbc-news MiniLM classifier (6 layers) → layers [0, 2, 4] (recipe ``distill-layers``),
   distilled vs the same 3-layer student fine-tuned on labels alone; accuracy share of the teacher's
   (target ≥ 97%, DistilBERT's figure) and latency at batch 1 × 128 tokens timed interleaved with the
   teacher (target ≤ 0.55×).
3. ``recovery``: resnet-s channel-pruned to ≤ 30% of its MACs, then equal epochs of label fine-tuning vs
   ``finetune: {distill: true}``, each followed by the same int4 QAT step.

Every run of a row with one seed is stored under ``benchmarks/runs/distillation-<row>-s<seed>.json``,
so rows and seeds run separately end up in one docs/bench-distillation.md (mean ± std over the seeds run).
Run: ``python -m benchmarks.bench_distillation hinton minilm`` (``MODELPRESS_BENCH_DISTILL_SEEDS=0,1,2``,
``MODELPRESS_BENCH_DISTILL_ROWS=hinton`` for ``make bench``; ``... render`` rewrites the page from the
stored runs; ``... softness`` prints how soft each teacher's targets are).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.results import NOT_RUN, keep_unrun, kept, page_sections, store, stored_glob
from modelpress.context import StepContext
from modelpress.distillation import Distill, gap_closed, teacher_logits, train_student
from modelpress.distillation.student import build_student, size_row
from modelpress.finetune import FineTune, apply_finetune
from modelpress.measure import time_interleaved
from modelpress.measure._model import batch_of
from modelpress.measure.cpu import cpu_info
from modelpress.pipeline.recipe import Recipe
from modelpress.pruning import Prune, apply_prune
from modelpress.quantization import Quantize, apply_quantize
from modelpress.tasks import get
from modelpress.tasks.train import evaluate, torch_predict

DOC = Path(__file__).resolve().parent.parent / "docs" / "bench-distillation.md"

# The LeNet baseline's own schedule (tasks.builtin.RECIPES): 12 epochs, batch 128, Adam 1e-3, cosine.
HINTON_TRAIN = {"epochs": 12, "lr": 1e-3, "batch_size": 128, "optimizer": "adam", "schedule": "cosine"}
HINTON_KD = {"alpha": 0.9, "temperature": 4.0}
RECOVERY_PRUNE = Prune(structure="channel", sparsity=0.5, scope="layer", criterion="l1", round_to=16)
RECOVERY_FT = {"epochs": 1, "lr": 1e-3, "schedule": "cosine", "batch_size": 128}
# int4 weights per group of 32 (the qat-int4 recipe's step, 1 epoch instead of 2), labels only: the same
# step after either recovery, so any difference it keeps comes from the fine-tuning before it.
RECOVERY_QAT = Quantize(mode="qat", bits=4, epochs=1, lr=1e-4, schedule="cosine")
RECOVERY_TRAIN = 10_000  # training examples for the recovery row (of 60,000), see _recovery_task


def _distill_layers() -> Distill:
    """The built-in recipe ``distill-layers``, exactly as shipped."""
    return Recipe.resolve("distill-layers").steps[0].config


def _store(row: str, seed: int, result: dict) -> None:
    store("distillation", f"{row}-s{seed}", result)


def _minilm_schedules() -> list[str]:
    """The stored ``minilm-<train examples>x<epochs>`` sets, largest schedule last."""
    tags = {name.rsplit("-s", 1)[0] for name in stored_glob("distillation", "minilm-*x*-s*")}
    return sorted(tags, key=lambda t: [int(x) for x in t.removeprefix("minilm-").split("x")][::-1])


def _stored(row: str) -> list[dict]:
    return list(stored_glob("distillation", f"{row}-s[0-9]*").values())  # not `hinton-soft…` for `hinton`


# Hinton et al.'s own student size (800-800, unregularized in their label-only baseline); 6 epochs because
# one epoch of it costs about 7× one of LeNet-300-100 here (measured ~20 s vs ~3 s per 60k, 1 thread): 6
# epochs keep its 3 seeds × 2 arms in one 15-minute run.
WIDE_TRAIN = {**HINTON_TRAIN, "epochs": 6}
# Function matching (Beyer et al. 2022): both arms train on the same shifted, mixed-up views (the label arm
# on the mixed labels), the distilled arm on pure KL to the teacher's logits of those very images at T 1,
# their published settings (alpha 1, temperature 1, mixup); views cached on disk, one teacher pass each.
VIEWS_AUGMENT = {"shift": 2, "mixup": 1.0, "views": 3}
VIEWS_KD = {"alpha": 1.0, "temperature": 1.0}
SOFT_KD = {"alpha": 1.0, "temperature": 4.0}  # the teacher's soft targets alone, no label term
MATCHED_KD = {"alpha": 1.0, "temperature": 2.3}  # the same at resnet-s's entropy-matched T (`... softness` prints 2.30)
HINTON_ROWS = {  # row -> (student, teacher, training settings[, distilled arm's alpha / temperature])
    "hinton": ("lenet-300-100", "resnet-s", HINTON_TRAIN),
    "hinton-lenet5": ("lenet-300-100", "lenet-5", HINTON_TRAIN),
    "hinton-wide": ("mlp-800-800", "resnet-s", WIDE_TRAIN),
    "hinton-long": ("lenet-300-100", "resnet-s", {**HINTON_TRAIN, "epochs": 24}),  # twice the schedule
    "hinton-views": ("lenet-300-100", "resnet-s", {**HINTON_TRAIN, "augment": VIEWS_AUGMENT}, VIEWS_KD),
    # "patient": three times the schedule on the same views (each view seen 12 times); ~10 min for 3 seeds
    "hinton-views-long": ("lenet-300-100", "resnet-s", {**HINTON_TRAIN, "epochs": 36, "augment": VIEWS_AUGMENT},
                          VIEWS_KD),
    # Chosen on validation (students on the first 50,000 training images, scored on the last 10,000; one
    # seed; docs/bench-distillation-validation.md) with a lenet-5 teacher trained on those 50,000 only
    # (resnet-s was not yet trained on this machine, and a teacher that saw the validation images inflates
    # distillation's gain there): soft targets alone (alpha 1) at T 4 over twice the schedule was the best
    # setting; 48 epochs gave no more. Both teachers get the row.
    "hinton-soft-long": ("lenet-300-100", "resnet-s", {**HINTON_TRAIN, "epochs": 24}, SOFT_KD),
    "hinton-lenet5-soft-long": ("lenet-300-100", "lenet-5", {**HINTON_TRAIN, "epochs": 24}, SOFT_KD),
    # The same with Hinton et al.'s 800-800 student, which the issue allows where LeNet-300-100 falls short:
    # 40.7% of the gap on that validation split (lenet-300-100: 27.1%); ~4 min per arm over 60,000 images.
    "hinton-wide-soft-long": ("mlp-800-800", "resnet-s", {**HINTON_TRAIN, "epochs": 24}, SOFT_KD),
    "hinton-lenet5-wide-soft-long": ("mlp-800-800", "lenet-5", {**HINTON_TRAIN, "epochs": 24}, SOFT_KD),
    # T 4 was chosen with the lenet-5 teacher; resnet-s's logits are flatter (mean entropy of its T-4 targets
    # on the training images 1.505 nats, lenet-5's 0.706), so "the same softness" for resnet-s is the T at
    # which its training-image targets have lenet-5's T-4 entropy: 2.3 (bisection on the training images,
    # no test data). The "-matched" rows use it.
    "hinton-soft-long-matched": ("lenet-300-100", "resnet-s", {**HINTON_TRAIN, "epochs": 24}, MATCHED_KD),
    "hinton-wide-soft-long-matched": ("mlp-800-800", "resnet-s", {**HINTON_TRAIN, "epochs": 24}, MATCHED_KD),
    # Wider again, the one further width tried (chosen before any run, not tuned): 1200-1200, the width of
    # Hinton et al.'s own teacher MLP, with the validated setting; ~6 min per arm at 1 thread.
    "hinton-xwide-soft-long": ("mlp-1200-1200", "resnet-s", {**HINTON_TRAIN, "epochs": 24}, SOFT_KD),
    # Not an MLP: the same teacher and setting with a convolutional student (lenet-5), to tell a limit of
    # the MLP students from one of this teacher; ~8 min per arm at 1 thread.
    "hinton-cnn-soft-long": ("lenet-5", "resnet-s", {**HINTON_TRAIN, "epochs": 24}, SOFT_KD),
}


def _hinton_row(row: str) -> tuple[str, str, dict, dict]:
    """``(student, teacher, settings, kd)`` of a `HINTON_ROWS` row (kd: `HINTON_KD` unless the row says)."""
    student, teacher, settings, *kd = HINTON_ROWS[row]
    return student, teacher, settings, (kd[0] if kd else HINTON_KD)


HINTON_NOTE = (
    "How this differs from Hinton et al.: their teacher was itself an MLP (1200-1200, dropout, jittered "
    "inputs), so the student could represent the function it was taught; here the teachers are CNNs, and "
    "the students see the same 60,000 un-augmented training images in both arms (the teacher's logits "
    "computed once per image). Each row above changes one thing from the LeNet-300-100 / resnet-s / "
    "12-epoch row: the teacher, the student's width, or (``hinton-long``) the number of epochs; "
    "``hinton-views`` changes the method (function matching, Beyer et al. 2022): both arms train on the "
    "same shifted and mixed-up views, the distilled arm on the teacher's logits of those very images "
    "(alpha 1, T 1), so the comparison isolates what the teacher adds on the same data; "
    "``hinton-views-long`` trains three times as long on the same views (Beyer et al.'s \"patient\"). "
    "The ``*soft-long`` rows change two things, both chosen on a validation split "
    "(docs/bench-distillation-validation.md): soft targets alone (alpha 1, T 4, no label term) and 24 "
    "epochs for both arms (with the plain 12 epochs the same loss gave nothing on validation); "
    "``*wide-soft-long`` also uses the 800-800 student, ``hinton-xwide-soft-long`` a 1200-1200 one, and "
    "``hinton-cnn-soft-long`` a convolutional one (lenet-5) under the same teacher and setting. The "
    "``*-matched`` rows keep that setting but give "
    "the resnet-s teacher the temperature (2.3) at which its targets on the training images are as soft as "
    "lenet-5's at T 4 (resnet-s's logits are flatter), since T 4 was chosen with the lenet-5 teacher.")


def row_hinton(seed: int, cache: dict, row: str = "hinton") -> dict:
    """Labels alone vs distilled, one student and teacher per row (`HINTON_ROWS`): the same
    initialization, epochs, schedule and data per seed; only ``alpha`` / ``temperature`` differ."""
    student_name, teacher_name, settings, kd_cfg = _hinton_row(row)
    task = get("fashion-mnist")
    if teacher_name not in cache:
        teacher = task.model(teacher_name).eval()
        cache[teacher_name] = (teacher, evaluate(teacher, task))
    teacher, t_acc = cache[teacher_name]
    # one pass for all seeds and both arms (remembered); augmented views keep theirs on disk instead
    logits = None if settings.get("augment") else teacher_logits(teacher, task.train)
    accs, secs = {}, {}
    for name, kd in (("labels", {"alpha": 0.0}), ("distilled", kd_cfg)):
        student, _ = build_student(student_name, None, teacher, task, seed=seed)  # same init for both
        t0 = time.perf_counter()
        train_student(student, teacher, task, Distill(**settings, **kd), seed=seed, progress=False, cached=logits)
        secs[name] = round(time.perf_counter() - t0)
        accs[name] = evaluate(student, task)
    n = len(task.test)
    return {
        "command": f"python -m benchmarks.bench_distillation {row}", "seed": seed, "teacher": teacher_name,
        "student": student_name, "config": f"Distill(student={student_name}, {kd_cfg}) vs alpha=0; {settings}",
        "labels_seconds": secs["labels"], "distilled_seconds": secs["distilled"],
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
                 "config": f"recipe distill-layers: {cfg}", "teacher_acc": t_acc, "train_examples": len(task.train),
                 "epochs": cfg.epochs, "store_as": f"minilm-{len(task.train)}x{cfg.epochs}"}  # one stored set per schedule  # fmt: skip
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


def _recovery_task():
    """Fashion-MNIST with its training split cut to the first ``MODELPRESS_BENCH_DISTILL_RECOVERY_TRAIN``
    examples (default `RECOVERY_TRAIN`), so that 3 seeds × 2 arms × (fine-tuning + int4 QAT) fit one run."""
    task = get("fashion-mnist")
    n = int(os.environ.get("MODELPRESS_BENCH_DISTILL_RECOVERY_TRAIN", RECOVERY_TRAIN))
    return dataclasses.replace(task, train=task.train.head(n)) if n < len(task.train) else task


def row_recovery(seed: int, cache: dict) -> dict:
    """resnet-s channel-pruned, then `FineTune` on labels vs ``distill: true`` (equal epochs, same seed),
    each then int4 QAT (`RECOVERY_QAT`, labels): accuracy after fine-tuning and after QAT."""
    if "recovery" not in cache:  # the pruned model is the same for every seed (L1 ranks, no randomness)
        task = _recovery_task()
        teacher = task.model("resnet-s").eval()
        pruned = copy.deepcopy(teacher)
        apply_prune(pruned, RECOVERY_PRUNE, StepContext(task=task, progress=False))
        cache["recovery"] = (task, teacher, pruned, evaluate(teacher, task), evaluate(pruned, task))
    task, teacher, pruned, t_acc, p_acc = cache["recovery"]
    sizes = {"teacher": size_row(teacher, task), "pruned": size_row(pruned, task)}
    knob = os.environ.get("MODELPRESS_BENCH_DISTILL_RECOVERY_TRAIN")
    out = {"command": (f"MODELPRESS_BENCH_DISTILL_RECOVERY_TRAIN={knob} " if knob else "")
           + "python -m benchmarks.bench_distillation recovery", "seed": seed,
           "config": (f"{RECOVERY_PRUNE}; then FineTune({RECOVERY_FT}) with distill false / true (alpha 0.5, T 4); "
                      f"then {RECOVERY_QAT}"),
           "train_examples": len(task.train), "teacher_acc": t_acc, "pruned_acc": p_acc, "sizes": sizes}  # fmt: skip
    for name, distill in (("labels", False), ("distilled", True)):
        model = copy.deepcopy(pruned)
        ctx = StepContext(task=task, progress=False, seed=seed, reference=teacher)
        t0 = time.perf_counter()
        apply_finetune(model, FineTune(**RECOVERY_FT, distill=distill), ctx)
        out[f"{name}_seconds"] = round(time.perf_counter() - t0)
        out[f"{name}_acc"] = evaluate(model, task)
        apply_quantize(model, RECOVERY_QAT, ctx)
        out[f"{name}_qat_acc"] = evaluate(model, task)
    out["gap_closed"] = gap_closed(out["labels_acc"], out["distilled_acc"], out["teacher_acc"])
    out["gap_closed_qat"] = gap_closed(out["labels_qat_acc"], out["distilled_qat_acc"], out["teacher_acc"])
    return out


def _ms(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` (std over the seeds; 0 for one seed), scaled (100: percent)."""
    m = statistics.mean(values) * scale
    s = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _plain_reference(rows: list[dict], aug: dict | None) -> list[str]:
    """For a row on augmented views: the same student on labels alone on the plain images (row ``hinton``,
    same seeds, init and schedule), so a reader sees what the views themselves cost or gave."""
    plain = {r["seed"]: r["labels_acc"] for r in _stored("hinton")}
    seeds = [r["seed"] for r in rows if r["seed"] in plain]
    if not aug or not seeds:
        return []
    views = [r["distilled_acc"] for r in rows if r["seed"] in plain]
    return [(f"| for reference: labels alone on the plain images (row `hinton`, seeds {seeds}) | | accuracy "
             f"{_ms([plain[s] for s in seeds])}%; distilled on views minus it: "
             f"{_ms([v - plain[s] for v, s in zip(views, seeds)])} points |")]


def _measured_on(rows: list[dict]) -> list[str]:
    """The machine line of a section: every machine its runs recorded."""
    machines = sorted({r["machine"] for r in rows if "machine" in r})
    return [f"Measured on: {'; '.join(machines)}.", ""] if machines else []


def _render_hinton(rows: list[dict], row: str) -> list[str]:
    student, teacher, settings, _ = _hinton_row(row)
    aug = settings.get("augment")
    title = (f"## Hinton et al. on Fashion-MNIST (`{row}`): {student} student, {teacher} teacher, {settings['epochs']} epochs"
             + (f", function matching on augmented views {aug}" if aug else ""))
    if not rows:
        return [title, "", NOT_RUN, ""]
    g = [r["gap_closed"] for r in rows if r["gap_closed"] is not None]
    return [
        title, "",
        f"`{rows[0]['command']}` — {rows[0]['config']}; seeds {[r['seed'] for r in rows]}, mean ± std", "",
        f"| | paper (Hinton et al. 2015, MNIST, 800-800 MLP) | ours (Fashion-MNIST, {student}) |",
        "|---|---|---|",
        (f"| teacher test errors | 67 | {_ms([r['teacher_errors'] for r in rows], 1, 1)} of {rows[0]['test_examples']} "
        f"(accuracy {_ms([r['teacher_acc'] for r in rows])}%) |"),
        (f"| student, labels alone | 146 errors | {_ms([r['labels_errors'] for r in rows], 1, 1)} errors "
        f"(accuracy {_ms([r['labels_acc'] for r in rows])}%) |"),
        (f"| student, distilled | 74 errors | {_ms([r['distilled_errors'] for r in rows], 1, 1)} errors "
        f"(accuracy {_ms([r['distilled_acc'] for r in rows])}%) |"),
        f"| share of the gap closed | 91% | {_ms(g, 100, 1)}% |", *_plain_reference(rows, aug), "",
        "Per seed, labels alone → distilled (share of the gap closed; training seconds per arm; load): " + "; ".join(
            f"seed {r['seed']}: {100 * r['labels_acc']:.2f}% → {100 * r['distilled_acc']:.2f}% "
            f"({100 * r['gap_closed']:.1f}%; " + (f"{r['labels_seconds']} s / {r['distilled_seconds']} s; "
            if "labels_seconds" in r else "") + f"load {r.get('loadavg', '?')})"
            for r in rows if r["gap_closed"] is not None) + ".", "", *_measured_on(rows),
    ]  # fmt: skip


def _where_students_stop(hs: dict[str, list[dict]]) -> list[str]:
    """One line per stored Hinton row: each arm's mean test accuracy beside the accuracy a 40% share of the
    gap would need (labels + 0.4 × (teacher − labels)), so the distance to the bar reads in points."""
    lines = []
    for row, rows in hs.items():
        if not rows:
            continue
        student, teacher, settings, kd = _hinton_row(row)
        t, lab, dist = (100 * statistics.mean(r[k] for r in rows) for k in ("teacher_acc", "labels_acc", "distilled_acc"))
        need = lab + 0.4 * (t - lab)
        lines.append(f"| `{row}` | {student} | {teacher} ({t:.2f}%) | T {kd['temperature']:g}, alpha {kd['alpha']:g}, "
                     f"{settings['epochs']} epochs | {lab:.2f}% | {dist:.2f}% | {need:.2f}% | {dist - need:+.2f} |")  # fmt: skip
    if not lines:
        return []
    return ["## Where the students stop (rows whose runs are stored)", "",
            "Mean test accuracy over the row's seeds, and what a 40% share of the gap would need.", "",
            "| row | student | teacher (accuracy) | distilled arm | labels alone | distilled | 40% needs | distilled − need (points) |",
            "|---|---|---|---|---:|---:|---:|---:|", *lines, ""]  # fmt: skip


def _render_minilm(rows: list[dict]) -> list[str]:
    if not rows:
        return ["## MiniLM 6 → 3 layers on bbc-news", "", NOT_RUN, ""]
    r0, lat = rows[0], rows[-1]["latency"]
    sz = r0["sizes"]
    return [
        f"## MiniLM 6 → 3 layers on bbc-news (recipe `distill-layers`), {r0['train_examples']} training examples × {r0['epochs']} epoch(s)", "",
        (f"`{r0['command']}` — {r0['config']}; seeds {[r['seed'] for r in rows]}, mean ± std "
        f"(one seed: ± 0); {r0['train_examples']} training examples × {r0['epochs']} epoch(s); about "
        f"{rows[-1]['distilled_seconds']} s of training per student in the last run"), "",
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
                                   "run-to-run noise." if len(rows) == 1 else ".")), "", *_measured_on(rows),
    ]  # fmt: skip


def _render_recovery(rows: list[dict]) -> list[str]:
    title = "## Recovery: resnet-s channel-pruned, label fine-tuning vs `finetune: {distill: true}`, then int4 QAT"
    if not rows:
        return [title, "", NOT_RUN, ""]
    r0 = rows[0]
    sz = r0["sizes"]
    diff = [r["distilled_acc"] - r["labels_acc"] for r in rows]
    diff_q = [r["distilled_qat_acc"] - r["labels_qat_acc"] for r in rows]
    return [
        title, "",
        (f"`{r0['command']}` — {r0['config']}; {r0['train_examples']} training examples; seeds "
         f"{[r['seed'] for r in rows]}, mean ± std; about {r0['distilled_seconds']} s per fine-tuning"), "",
        "| | labels alone | distilled from the unpruned model |", "|---|---|---|",
        (f"| MACs per example | {sz['teacher']['macs']:,} → {sz['pruned']['macs']:,} "
         f"({100 * sz['pruned']['macs'] / sz['teacher']['macs']:.1f}%) | same |"),
        (f"| accuracy: unpruned teacher / pruned before fine-tuning | {_ms([r['teacher_acc'] for r in rows])}% / "
         f"{_ms([r['pruned_acc'] for r in rows])}% | same |"),
        (f"| after fine-tuning | {_ms([r['labels_acc'] for r in rows])}% | {_ms([r['distilled_acc'] for r in rows])}% "
         f"({_ms(diff)} points; gap closed {_ms([r['gap_closed'] for r in rows], 100, 1)}%) |"),
        (f"| then int4 QAT | {_ms([r['labels_qat_acc'] for r in rows])}% | {_ms([r['distilled_qat_acc'] for r in rows])}% "
         f"({_ms(diff_q)} points) |"), "", *_measured_on(rows),
    ]  # fmt: skip


def ahead_beyond_spread(rows: list[dict], a: str, b: str) -> tuple[float, str]:
    """Mean of ``row[b] - row[a]`` over seeds and the verdict: "met" when every seed has ``b`` ahead and the
    mean difference exceeds the larger standard deviation of the two arms over the seeds (the seed spread);
    with one seed the spread is unknown, so not met."""
    diff = [r[b] - r[a] for r in rows]
    mean = statistics.mean(diff)
    if len(rows) < 2:
        return mean, "NOT shown (one seed gives no spread)"
    spread = max(statistics.stdev(r[a] for r in rows), statistics.stdev(r[b] for r in rows))
    ok = min(diff) > 0 and mean > spread
    return mean, f"{'met' if ok else 'NOT met'} (larger arm std {100 * spread:.2f} points, smallest seed difference {100 * min(diff):+.2f})"


def _verdicts(hs: dict[str, list[dict]], ms: dict[str, list[dict]], rec: list[dict]) -> list[str]:
    lines = ["## Acceptance (issue 10)", "",
             ("\"Ahead beyond the seed spread\" means: ahead on every seed, and the mean difference larger than "
              "the larger of the two arms' standard deviations over the seeds."), ""]  # fmt: skip
    for row, h in hs.items():
        if not h:
            continue
        student, teacher, settings, _ = _hinton_row(row)
        g = statistics.mean(r["gap_closed"] for r in h if r["gap_closed"] is not None)
        lines.append(f"- Hinton `{row}`, {student} student, {teacher} teacher, {settings['epochs']} epochs: distillation closes ≥ 40% of the gap: "
                     f"{100 * g:.1f}% ({len(h)} seed(s)): {'met' if g >= 0.4 else 'NOT met'}")  # fmt: skip
    for m in ms.values():
        share = statistics.mean(r["share_of_teacher"] for r in m)
        ahead, verdict = ahead_beyond_spread(m, "labels_acc", "distilled_acc")
        ratio = m[-1]["latency"]["ratio"]
        lines.append(f"- MiniLM 6 → 3, {m[0]['train_examples']} training examples × {m[0]['epochs']} epoch(s): "
                     f"≥ 97% of the teacher: {100 * share:.1f}%: {'met' if share >= 0.97 else 'NOT met'}; "
                     f"latency ≤ 0.55×: {ratio}: {'met' if ratio <= 0.55 else 'NOT met'}; ahead of labels alone "
                     f"beyond the seed spread: {100 * ahead:+.2f} points ({len(m)} seed(s)): {verdict}")  # fmt: skip
    if rec:
        for key, what in (("acc", "after fine-tuning"), ("qat_acc", "after the int4 QAT that follows")):
            ahead, verdict = ahead_beyond_spread(rec, f"labels_{key}", f"distilled_{key}")
            lines.append(f"- Recovery of pruned resnet-s, distilled vs labels {what}: {100 * ahead:+.2f} points "
                         f"({len(rec)} seed(s)): {verdict}")  # fmt: skip
    return lines + [""]


def _kept_verdicts(new: list[str], old: dict[str, list[str]]) -> list[str]:
    """The old page's acceptance lines for rows the new page has none for (the text before ":" names a row)."""
    keys = {line.split(":", 1)[0] for line in new if line.startswith("- ")}
    return [x for x in old.get("## Acceptance (issue 10)", []) if x.startswith("- ") and x.split(":", 1)[0] not in keys]


def render() -> str:
    old = page_sections(DOC, skip=lambda line: line.startswith(HINTON_NOTE[:40]))  # the note ends the Hinton rows
    hs = {row: _stored(row) for row in HINTON_ROWS}
    ms = {tag: _stored(tag) for tag in _minilm_schedules()}
    r = _stored("recovery")
    head = ["# Distillation benchmark", "",
            ("Each section names the machine it was measured on (CPU, torch 2.13; latency 1 thread, timed "
             "interleaved in one process). "
            "Accuracy is on the held-out test split; errors are counted on it. Each row gives the command "
            "that produced it; `load` is the 1-minute load average when a run finished (2 shared cores)."), ""]  # fmt: skip
    loads = sorted({x["loadavg"] for rows in (*hs.values(), *ms.values(), r) for x in rows if "loadavg" in x})
    if loads:
        head += [f"Load averages while these runs finished: {loads}.", ""]
    body = [line for row, rows in hs.items() for line in _render_hinton(rows, row)] + [HINTON_NOTE, ""]
    body += _where_students_stop(hs)
    body += [line for rows in ms.values() for line in _render_minilm(rows)] or _kept_minilm(old)
    body += _render_recovery(r)
    verdicts = _verdicts(hs, ms, r)
    return "\n".join(head + keep_unrun(body, old) + verdicts[:-1] + _kept_verdicts(verdicts, old) + [""])


def _kept_minilm(old: dict[str, list[str]]) -> list[str]:
    """With no MiniLM schedule stored: the page's MiniLM sections as they stood (marked), else "Not run yet"."""
    sections = {h: kept(lines) for h, lines in old.items() if h.startswith("## MiniLM 6 → 3")}
    return [line for h, body in sections.items() if body for line in (h, "", *body, "")] or _render_minilm([])


def target_entropy(logits: torch.Tensor, temperature: float) -> float:
    """Mean entropy (nats) of ``softmax(logits / temperature)`` over the rows of ``logits`` ``(n, classes)``."""
    p = torch.softmax(logits / temperature, 1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())


def matched_temperature(logits: torch.Tensor, entropy: float, lo: float = 0.25, hi: float = 20.0) -> float:
    """The temperature at which ``logits``' targets have mean entropy ``entropy`` (bisection; the entropy
    grows with the temperature)."""
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if target_entropy(logits, mid) < entropy else (lo, mid)
    return (lo + hi) / 2


def softness() -> str:
    """The Fashion-MNIST teachers' training-image accuracy and target entropy at T 4, and the temperature
    at which resnet-s's targets are as soft as lenet-5's at T 4 (the ``-matched`` rows' 2.3)."""
    task = get("fashion-mnist")
    logits = {name: teacher_logits(task.model(name).eval(), task.train) for name in ("lenet-5", "resnet-s")}
    lines = [f"{name}: training-image accuracy {float((z.argmax(1) == task.train.targets).float().mean()):.4f}, "
             f"target entropy at T 4 {target_entropy(z, 4.0):.3f} nats" for name, z in logits.items()]
    t = matched_temperature(logits["resnet-s"], target_entropy(logits["lenet-5"], 4.0))
    return "\n".join([*lines, f"resnet-s temperature with lenet-5's T-4 entropy: {t:.2f}"])


def main(rows: list[str] | None = None) -> None:
    # 1 thread: on a shared, oversubscribed CPU two OpenMP threads spend their time waiting at barriers
    torch.set_num_threads(int(os.environ.get("MODELPRESS_BENCH_THREADS", "1")))  # latency is timed at 1 too
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = os.environ.get("MODELPRESS_BENCH_DISTILL_ROWS")
    rows = rows or (env.split(",") if env else ["hinton", "minilm"])
    if rows == ["softness"]:  # how soft each teacher's targets are, and resnet-s's matched temperature
        print(softness())
        return
    if rows == ["render"]:  # rewrite the page from the stored runs only
        DOC.write_text(render())
        print(DOC.read_text())
        return
    seeds = [int(s) for s in os.environ.get("MODELPRESS_BENCH_DISTILL_SEEDS", "0,1,2").split(",")]
    fns = {**{row: functools.partial(row_hinton, row=row) for row in HINTON_ROWS},
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
            result["machine"] = f"{os.cpu_count()} CPU cores, {cpu_info().describe()}"
            _store(result.pop("store_as", row), seed, result)
            print(json.dumps({row: result}, indent=1), flush=True)
            DOC.write_text(render())  # after every run, so a stopped benchmark still leaves its figures
    print(DOC.read_text())


if __name__ == "__main__":
    main(sys.argv[1:] or None)
