"""Low-rank factorization and tensor decomposition benchmark (issue 11): our figures beside Kim et al. 2016.

1. ``tucker`` / ``cp``: resnet-s on Fashion-MNIST, every 3×3 conv but the 1-channel stem decomposed
   (Tucker-2 at ratio 0.5 of the channels / CP at rank = min(in, out)), each layer timed against its dense
   form in onnxruntime at batch 32, 1 thread and kept only when faster; then fine-tuning. Conv parameters,
   the deployed model's latency at batch 32 timed interleaved against the dense deployed model (3 rounds),
   accuracy before / after fine-tuning.
2. ``lenet``: LeNet-300-100 on Fashion-MNIST, SVD of every layer at three ranks of fc1 / fc2 (fc3 kept
   dense): artifact bytes vs accuracy, before and after one epoch of fine-tuning.
3. ``minilm``: the FFN of all-MiniLM-L6-v2 + head on bbc-news: the measured break-even rank of one FFN
   layer pair (factored vs dense at batch 1 × 128 tokens), and params / latency / accuracy (no
   fine-tuning) at three ranks.
4. ``tucker-speed`` / ``cp-speed``: row 1 without training, on a random-init resnet-s (parameters and
   latency do not depend on the weights when ranks come from a ratio); shown when row 1 is missing.
5. ``lenet5-tucker`` / ``lenet5-cp``: conv2 of the trained LeNet-5 (Caffe) on Fashion-MNIST, EVBMF ranks,
   fine-tuned: accuracy after decomposition on a trained CNN that is cached here.

Run: ``python -m benchmarks.bench_factorization tucker cp lenet minilm`` (or ``python -m benchmarks.run
factorization``; ``MODELPRESS_BENCH_FACTORIZATION_ROWS=tucker,cp``). Each row's result is kept under
``benchmarks/runs/`` so rows run separately end up in one docs/bench-factorization.md.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.results import store, stored
from modelpress.artifact.onnx import export_onnx
from modelpress.artifact.packed import export_view
from modelpress.context import DeployTarget, StepContext
from modelpress.decomposition import Decompose, apply_decompose
from modelpress.lowrank import FactoredLinear, LowRank, apply_lowrank
from modelpress.measure import measure, time_interleaved
from modelpress.measure._model import first_rows
from modelpress.measure.layer_timing import time_layer
from modelpress.measure.runtime import ort_predict
from modelpress.select import by_name, exclude
from modelpress.tasks import get
from modelpress.tasks.builtin import cache_dir
from modelpress.tasks.models import build
from modelpress.tasks.train import evaluate, train

ROWS = ("tucker", "cp", "lenet", "minilm", "tucker-speed", "cp-speed", "lenet5-tucker", "lenet5-cp")
DOC = Path(__file__).resolve().parent.parent / "docs" / "bench-factorization.md"
EPOCHS = int(os.environ.get("MODELPRESS_BENCH_FACTORIZATION_EPOCHS", "2"))
# Fine-tuning examples per epoch (the first of the training split): a resnet-s epoch over all 60,000 takes
# about 18 min on the 2 shared cores here, past the ~15 min a row may take.
N_TRAIN = int(os.environ.get("MODELPRESS_BENCH_FACTORIZATION_TRAIN", "15000"))
RESNET = {"tucker": Decompose(method="tucker", ratio=0.5), "cp": Decompose(method="cp", ratio=1.0)}
LR = {"tucker": 1e-3, "cp": 5e-4}  # CP factors are less stable under fine-tuning (Lebedev et al. 2015)
TARGET = DeployTarget(runtime="onnxruntime", batch_size=32, threads=1)


def deployable(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the deployed form: every swap replaced by its ``export_module()`` (the factors as
    standard layers), as ONNX export and params / MACs see it."""
    return copy.deepcopy(export_view(model)).eval()


def _ort_timed(base: nn.Module, new: nn.Module, x: tuple, tmp: Path, runs: int, rounds: int = 3) -> dict:
    """Dense vs compressed deployed (ONNX, onnxruntime, 1 thread), timed interleaved ``rounds`` times: the
    round with the median speed-up and the range over rounds."""
    tag = f"{os.getpid()}-{time.monotonic_ns()}"  # rows may run in parallel processes
    p0 = export_onnx(deployable(base), x, tmp / f"dense-{tag}.onnx")
    p1 = export_onnx(deployable(new), x, tmp / f"new-{tag}.onnx")
    predicts = [ort_predict(p0, threads=1), ort_predict(p1, threads=1)]
    timings = [time_interleaved(predicts, x, threads=1, warmup=5, runs=runs) for _ in range(rounds)]
    ups = [a.median_ms / b.median_ms for a, b in timings]
    mid = sorted(range(rounds), key=ups.__getitem__)[rounds // 2]
    a, b = timings[mid]
    q = sorted(a.p25_ms / b.p25_ms for a, b in timings)[rounds // 2]
    return {"dense_ms": round(a.median_ms, 3), "new_ms": round(b.median_ms, 3), "speedup": round(ups[mid], 3),
            "speedup_range": [round(min(ups), 3), round(max(ups), 3)], "rounds": rounds,
            "speedup_p25": round(q, 3)}  # fmt: skip


def _conv_params(model: nn.Module) -> int:
    """Parameters in Conv2d layers of the deployed form (factors of decomposed convs included)."""
    return sum(p.numel() for m in deployable(model).modules() if isinstance(m, nn.Conv2d) for p in m.parameters())


def _layers_summary(log) -> dict:
    rows = log.details["layers"]
    return {"kept": sum(r["decision"] == "kept" for r in rows), "rolled_back": [r["module"] for r in rows
            if r["decision"] != "kept"], "layer_ratios": [round(r["new_ms"] / r["dense_ms"], 3) for r in rows
            if r["dense_ms"]], "ranks": {r["module"]: r["rank"] for r in rows}}  # fmt: skip


def row_resnet(tmp: Path, method: str) -> dict:
    return _row_trained(tmp, method, "resnet-s", RESNET[method], "every conv but the stem", method)


# LeNet-5 (Caffe) conv2, 50 × 20 × 5 × 5: the trained CNN that is cached here, ranks by EVBMF (conv1 has one
# input channel). Gives the accuracy after fine-tuning on a trained network while resnet-s is not cached.
LENET5 = {"tucker": Decompose(method="tucker", rank="vbmf"), "cp": Decompose(method="cp", rank="vbmf")}


def _row_trained(tmp: Path, method: str, model_name: str, cfg: Decompose, where: str, row: str) -> dict:
    task = get("fashion-mnist")
    base = task.model(model_name).eval()
    acc0 = evaluate(base, task)
    model = copy.deepcopy(base)
    select = exclude("stem.*") if model_name == "resnet-s" else by_name("conv2")
    t0 = time.perf_counter()
    log = apply_decompose(model, cfg, StepContext(task=task, select=select, progress=False, target=TARGET))
    step_s = time.perf_counter() - t0
    acc1 = evaluate(model, task)
    _say(f"{row}: step {step_s:.0f} s, accuracy {acc0} -> {acc1} before fine-tuning; {_layers_summary(log)}")
    t0 = time.perf_counter()
    train(model, task.train.head(N_TRAIN), task.loss, epochs=EPOCHS, lr=LR[method], batch_size=task.batch_size,
          progress=False, schedule="cosine")  # fmt: skip
    ft_s = time.perf_counter() - t0
    model.eval()
    acc2 = evaluate(model, task)
    lat = _ort_timed(base, model, first_rows(task.test.inputs, 32), tmp, runs=60)
    rank = f"ratio={cfg.ratio}" if cfg.ratio is not None else f"rank={cfg.rank!r}"
    return {"command": f"python -m benchmarks.bench_factorization {row}",
            "config": (f"Decompose(method={method!r}, {rank}) on {where} of {model_name} (step {step_s:.0f} s) + "
                       f"fine-tune {EPOCHS} epoch(s) of {N_TRAIN} training examples, lr {LR[method]} cosine "
                       f"({ft_s:.0f} s)"),
            "acc_base": acc0, "acc_decomposed": acc1, "acc_final": acc2,
            "conv_params_base": _conv_params(base), "conv_params_final": _conv_params(model),
            "params_base": sum(p.numel() for p in base.parameters()),
            "params_final": sum(p.numel() for p in deployable(model).parameters()),
            "latency_b32": lat, **_layers_summary(log)}  # fmt: skip


def row_resnet_speed(tmp: Path, method: str) -> dict:
    """Size and speed only, no training: the same decomposition of a random-init resnet-s. With ranks from
    a ratio, parameters and latency do not depend on the weights; for when the trained Fashion-MNIST
    baseline is not available yet (it takes about 2 h to train on the shared cores here)."""
    torch.manual_seed(0)
    base = build("resnet-s").eval()
    model = copy.deepcopy(base)
    cfg = RESNET[method]
    t0 = time.perf_counter()
    log = apply_decompose(model, cfg, StepContext(select=exclude("stem.*"), progress=False, target=TARGET))
    step_s = time.perf_counter() - t0
    _say(f"{method}-speed: step {step_s:.0f} s; {_layers_summary(log)}")
    lat = _ort_timed(base, model, (torch.randn(32, 1, 28, 28),), tmp, runs=60)
    return {"command": f"python -m benchmarks.bench_factorization {method}-speed",
            "config": (f"Decompose(method={method!r}, ratio={cfg.ratio}) on every conv but the stem of a random-init "
                       f"resnet-s (step {step_s:.0f} s; no accuracy)"),
            "conv_params_base": _conv_params(base), "conv_params_final": _conv_params(model),
            "latency_b32": lat, **_layers_summary(log)}  # fmt: skip


LENET_RANKS = ((16, 8), (32, 16), (64, 32))  # (fc1, fc2); fc3 (100 → 10) stays dense


def _check_round_trip(model: nn.Module, x: torch.Tensor, folder: Path) -> None:
    """The bytes reported are the artifact's: refuse to report them unless it rebuilds the factored model."""
    from modelpress.artifact import load, save

    with torch.no_grad():
        same = torch.equal(load(save(model, folder, overwrite=True))(x), model(x))
    if not same:
        raise RuntimeError("the artifact does not round-trip the factored model (its factors, children of a "
                           "swapped module, are not stored): its bytes would be wrong. Needs nested swaps in save.")


def row_lenet(tmp: Path) -> dict:
    task = get("fashion-mnist")
    base = task.model("lenet-300-100").eval()
    s0 = measure(base, task)
    out = []
    for r1, r2 in LENET_RANKS:
        model = copy.deepcopy(base)
        cfg = LowRank(rank=r1, per_layer={"fc2": {"rank": r2}}, objective="size")
        apply_lowrank(model, cfg, StepContext(task=task, select=by_name("fc[12]"), progress=False, target=TARGET))
        acc1 = evaluate(model, task)
        train(model, task.train, task.loss, epochs=1, lr=1e-4, batch_size=task.batch_size, progress=False)
        _check_round_trip(model.eval(), task.test.inputs[0][:64], tmp / "lenet-artifact")
        s1 = measure(model, task)
        _say(f"lenet ranks {r1}, {r2}: {acc1} -> {s1.metric}, {s1.size_bytes} bytes")
        out.append({"ranks": [r1, r2], "acc_factored": acc1, "acc_final": s1.metric, "bytes": s1.size_bytes,
                    "params": s1.params, "factored": [n for n, m in model.named_modules()
                                                      if isinstance(m, FactoredLinear)]})  # fmt: skip
    return {"command": "python -m benchmarks.bench_factorization lenet",
            "config": "LowRank(rank=r1, per_layer fc2 rank r2, objective=size) on fc1, fc2 + fine-tune 1 epoch, lr 1e-4",
            "acc_base": s0.metric, "bytes_base": s0.size_bytes, "params_base": s0.params, "ranks": out}  # fmt: skip


def _ffn_pair_time(rank: int | None, x: torch.Tensor, inter: nn.Linear, outp: nn.Linear) -> tuple[float, float]:
    """Dense FFN (intermediate, GELU, output) vs its SVD at ``rank``, batch 1 × 128 tokens, onnxruntime."""
    def factored(lin: nn.Linear) -> nn.Module:
        from modelpress.lowrank.ranks import truncated_svd

        left, right, _ = truncated_svd(lin.weight.detach(), rank)
        return FactoredLinear.from_factors(left, right, lin.bias.detach()).export_module()

    dense = nn.Sequential(inter, nn.GELU(), outp)
    new = nn.Sequential(factored(inter), nn.GELU(), factored(outp))
    t = time_layer(dense, new, x, threads=1, runs=40, rounds=3)
    return t.dense_ms, t.new_ms


FFN = r".*\.layer\.\d+\.(intermediate|output)\.dense"  # the FFN Linears, not attention.output.dense


def _say(msg: str) -> None:
    print(f"[bench_factorization {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


MINILM_FT_EPOCHS, MINILM_FT_LR = 1, 5e-5


def row_minilm(tmp: Path) -> dict:
    task = get("bbc-news")
    base = task.model("minilm-l6").eval()
    layer = base.encoder.encoder.layer[0]
    inter, outp = layer.intermediate.dense, layer.output.dense
    x = torch.randn(128, inter.in_features)  # 128 tokens of one sequence
    sweep = []
    for rank in (64, 96, 128, 160, 192, 224, 256, 288, 304):  # parameter break-even of 384 × 1536: 307.2
        d, n = _ffn_pair_time(rank, x, inter, outp)
        sweep.append({"rank": rank, "dense_ms": round(d, 4), "new_ms": round(n, 4), "ratio": round(n / d, 3)})
        _say(f"minilm FFN rank {rank}: {sweep[-1]}")
    slower = [s["rank"] for s in sweep if s["ratio"] >= 1]
    faster = [s["rank"] for s in sweep if s["ratio"] < 1 and (not slower or s["rank"] < min(slower))]
    acc0 = evaluate(base, task)
    _say(f"minilm dense accuracy {acc0}")
    out = []
    for rank in (64, 128, 192):
        model = copy.deepcopy(base)
        cfg = LowRank(rank=rank, objective="size")
        log = apply_lowrank(model, cfg, StepContext(task=task, select=by_name(FFN),
                                                    progress=False, target=DeployTarget(batch_size=1)))  # fmt: skip
        rows = log.details["layers"]
        acc = evaluate(model, task)
        # one epoch of fine-tuning of the whole factored model (the FFN factors included)
        train(model, task.train, task.loss, epochs=MINILM_FT_EPOCHS, lr=MINILM_FT_LR, batch_size=task.batch_size,
              schedule="cosine", seed=0, progress=False)
        out.append({"rank": rank, "acc": acc, "acc_finetuned": evaluate(model.eval(), task),
                    "params_before": log.details["params_before"],
                    "params_after": log.details["params_after"],
                    "layer_ratio_median": sorted(r["new_ms"] / r["dense_ms"] for r in rows)[len(rows) // 2],
                    "energy_median": sorted(r["energy"] for r in rows)[len(rows) // 2]})  # fmt: skip
        _say(f"minilm rank {rank}: {out[-1]}")
    return {"command": "python -m benchmarks.bench_factorization minilm",
            "config": (f"LowRank(rank=r, objective=size) on the 12 FFN Linears, then {MINILM_FT_EPOCHS} epoch of "
                       f"fine-tuning (Adam, lr {MINILM_FT_LR}, cosine); break-even timed on layer 0"),
            "acc_base": acc0, "sweep": sweep, "break_even_rank": max(faster) if faster else None,
            "slower_from": min(slower) if slower else None, "ranks": out}  # fmt: skip


# (reference, (weights, speed-up, accuracy)) beside each resnet row
PAPER = {
    "tucker": ("Kim et al. 2016 (ImageNet CNNs)",
               ("not stated here (the bar: ≥ 2× fewer conv params)", "1.23–2.33× (desktop GPU), 1.42–3.68× (phone)",
                "about 1 point after fine-tuning")),
    "cp": ("Lebedev et al. 2015 (CP-decomposed convs)",
           ("(not compared)", "8.5× on CPU (character-classification CNN)", "about 1 point")),
}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _model_of(r: dict) -> str:
    return "LeNet-5" if "lenet5" in r["command"] else "resnet-s"


def _break_even_text(r: dict) -> str:
    if r.get("slower_from") is not None:
        return (f"Measured latency break-even: faster than dense up to rank **{r['break_even_rank']}**, not faster "
                f"from rank {r['slower_from']} (parameter break-even 307.2).")
    return (f"Measured latency break-even: faster than dense at every rank swept, up to **{r['break_even_rank']}**; "
            "ranks from 307 up would hold more parameters than the layer and are refused, so on this CPU the "
            "parameter break-even binds first.")


def _resnet_lines(r: dict, title: str, paper: str, who: str) -> list[str]:
    lat = r["latency_b32"]
    if "acc_base" in r:
        drop = 100 * (r["acc_base"] - r["acc_final"])
        acc = (f"{_pct(r['acc_base'])} → {_pct(r['acc_final'])} (drop {drop:.2f} points; "
               f"{_pct(r['acc_decomposed'])} before fine-tuning)")
    else:
        acc = "not measured (random init, no training)"
    return [f"## {title}", "", f"`{r['command']}` — {r['config']} (load {r.get('loadavg', '?')})", "",
            f"| | {who} | ours ({_model_of(r)}, {'Fashion-MNIST' if 'acc_base' in r else 'random init, 28×28 inputs'}) |",
            "|---|---|---|",
            (f"| conv parameters | {paper[0]} | {r['conv_params_base']:,} → {r['conv_params_final']:,} "
             f"({r['conv_params_base'] / r['conv_params_final']:.2f}× fewer) |"),
            (f"| speed-up of the deployed model | {paper[1]} | {lat['speedup_p25']}× at batch 32, onnxruntime 1 "
             f"thread, on lower-quartile times (medians: {lat['dense_ms']} → {lat['new_ms']} ms, "
             f"{lat['speedup']}×, {lat['speedup_range'][0]}–{lat['speedup_range'][1]}× over {lat['rounds']} rounds) |"),
            f"| accuracy | {paper[2]} | {acc} |",
            f"| layers kept / rolled back (per-layer timing) | | {r['kept']} / {len(r['rolled_back'])} {r['rolled_back']} |",
            f"| per-layer latency ratios (factored / dense) | | {r['layer_ratios']} |", ""]  # fmt: skip


def render(results: dict[str, dict]) -> str:
    lines = ["# Factorization and decomposition benchmark", "",
             ("Measured on this machine (CPU, torch 2.13, onnxruntime, 1 thread, timed interleaved in one process). "
              "Each row gives the command that produced it; accuracy is on the held-out test split. `load` is "
              "the 1-minute load average when the row finished (2 cores shared by many jobs). Speed-ups compare "
              "the lower quartile of the interleaved calls: under that load a call is often pre-empted, which "
              "inflates the median of the longer call far more; the medians are given beside them."), ""]
    for key, title in (("tucker", "resnet-s, Tucker-2"), ("cp", "resnet-s, CP")):
        who, paper = PAPER[key]
        if key in results:
            lines += _resnet_lines(results[key], title, paper, who)
        elif f"{key}-speed" in results:  # only when the full row is missing
            lines += _resnet_lines(results[f"{key}-speed"], f"{title}: size and speed only (random init)", paper, who)
    for key, method in (("lenet5-tucker", "tucker"), ("lenet5-cp", "cp")):
        if key in results:
            who, paper = PAPER[method]
            lines += _resnet_lines(results[key], f"LeNet-5 conv2, Fashion-MNIST, {method} (EVBMF ranks)", paper, who)
    r = results.get("lenet")
    if r:
        lines += ["## LeNet-300-100, Fashion-MNIST, SVD: bytes vs accuracy", "",
                  f"`{r['command']}` — {r['config']} (load {r.get('loadavg', '?')})", "",
                  "| ranks (fc1, fc2) | artifact bytes | params | accuracy after SVD | after fine-tuning |",
                  "|---|---|---|---|---|",
                  f"| dense | {r['bytes_base']:,} | {r['params_base']:,} | {_pct(r['acc_base'])} | |"]
        for x in r["ranks"]:
            lines.append(f"| {x['ranks']} | {x['bytes']:,} ({r['bytes_base'] / x['bytes']:.2f}× fewer) | "
                         f"{x['params']:,} | {_pct(x['acc_factored'])} | {_pct(x['acc_final'])} |")
        lines.append("")
    r = results.get("minilm")
    if r:
        lines += ["## MiniLM FFN, bbc-news, SVD", "", f"`{r['command']}` — {r['config']} (load {r.get('loadavg', '?')})",
                  "", _break_even_text(r), "", "| rank | dense ms (lower quartile) | factored ms (lower quartile) | ratio |", "|---|---|---|---|"]
        lines += [f"| {s['rank']} | {s['dense_ms']} | {s['new_ms']} | {s['ratio']} |" for s in r["sweep"]]
        lines += ["", ("| rank | FFN params | median layer latency ratio | median energy | accuracy before fine-tuning "
                       "| after |"), "|---|---|---|---|---|---|", f"| dense | | 1 | 1 | {_pct(r['acc_base'])} | |"]
        lines += [f"| {x['rank']} | {x['params_before']:,} → {x['params_after']:,} | {x['layer_ratio_median']:.3f} | "
                  f"{x['energy_median']:.3f} | {_pct(x['acc'])} | "
                  f"{_pct(x['acc_finetuned']) if 'acc_finetuned' in x else 'not run'} |" for x in r["ranks"]]
        lines.append("")
    lines += _verdicts(results)
    return "\n".join(lines)


def _verdicts(results: dict[str, dict]) -> list[str]:
    out = ["## Acceptance (issue 11)", ""]
    for key in ("tucker", "cp"):
        r = results.get(key) or results.get(f"{key}-speed")
        if r:
            fewer = r["conv_params_base"] / r["conv_params_final"]
            up = r["latency_b32"]["speedup_p25"]
            ok = fewer >= 2 and up >= 1.3
            head = (f"- resnet-s {key}: >= 2× fewer conv params ({fewer:.2f}×) and >= 1.3× speed-up at batch 32 "
                    f"({up}×): {'met' if ok else 'NOT met'}")
            if "acc_base" in r:
                drop = 100 * (r["acc_base"] - r["acc_final"])
                out.append(f"{head}; <= 1 point drop after fine-tuning ({drop:.2f}): {'met' if drop <= 1 else 'NOT met'}")
            else:
                out.append(f"{head}; <= 1 point drop: NOT checked (random-init row; the trained baseline was not "
                           "cached when it ran)")
    for key in ("lenet5-tucker", "lenet5-cp"):
        r = results.get(key)
        if r:
            out.append(f"- (extra row, no bar) LeNet-5 conv2 {key.split('-')[1]}, EVBMF ranks: "
                       f"{r['conv_params_base'] / r['conv_params_final']:.2f}× fewer conv params, "
                       f"{r['latency_b32']['speedup_p25']}× deployed speed-up at batch 32, "
                       f"{100 * (r['acc_base'] - r['acc_final']):.2f} point drop after fine-tuning")
    return [*out, ""]


def main(rows: list[str] | None = None) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = os.environ.get("MODELPRESS_BENCH_FACTORIZATION_ROWS")
    rows = rows or (env.split(",") if env else list(ROWS))
    fns = {"tucker": lambda t: row_resnet(t, "tucker"), "cp": lambda t: row_resnet(t, "cp"), "lenet": row_lenet,
           "minilm": row_minilm, "tucker-speed": lambda t: row_resnet_speed(t, "tucker"),
           "cp-speed": lambda t: row_resnet_speed(t, "cp"),
           "lenet5-tucker": lambda t: _row_trained(t, "tucker", "lenet-5", LENET5["tucker"], "conv2", "lenet5-tucker"),
           "lenet5-cp": lambda t: _row_trained(t, "cp", "lenet-5", LENET5["cp"], "conv2", "lenet5-cp")}  # fmt: skip
    unknown = [r for r in rows if r not in fns]
    if unknown:
        print(f"bench_factorization: error: unknown row(s) {unknown}; choose from {list(fns)}", file=sys.stderr)
        raise SystemExit(2)
    tmp = cache_dir() / "bench" / "tmp-factorization"
    tmp.mkdir(parents=True, exist_ok=True)
    for row in rows:
        t0 = time.perf_counter()
        result = fns[row](tmp)
        result["seconds"] = round(time.perf_counter() - t0)
        result["loadavg"] = round(os.getloadavg()[0], 1)
        store("factorization", row, result)
        print(json.dumps({row: result}, indent=1), flush=True)
    DOC.write_text(render(stored("factorization", ROWS)))
    print(DOC.read_text())


if __name__ == "__main__":
    main(sys.argv[1:] or None)
