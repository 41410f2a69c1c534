"""How long one ``mp.measure(model, task)`` takes (issue 8: measurement that scales).

Three models, each measured with ``measure``'s defaults (1 thread, batch 1, 5 warm-up + 30 timed runs):

- LeNet-300-100 on mnist-5k (the trained baseline);
- the MiniLM classifier on bbc-news (the trained baseline);
- a 135M-parameter Llama-shaped language model with the SmolLM-135M shape (hidden 576, 30 layers, 9
  heads, 3 key/value heads, intermediate 1536, vocabulary 49152, tied embeddings) built from a
  transformers ``LlamaConfig`` with random weights (no download), on a synthetic task of random token
  ids (16 test examples × 32 tokens; the metric is meaningless, only the time of measuring it matters).

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=src:. .venv/bin/python -m benchmarks.run measure`` (writes
docs/bench-measure.md), or ``python -m benchmarks.bench_measure --no-doc`` to print only — the form used
to time an older checkout of modelpress with the same script (``--only lenet|minilm|llama`` runs one row).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench-measure.md"
COMMAND = "HF_HUB_OFFLINE=1 PYTHONPATH=src:. .venv/bin/python -m benchmarks.run measure"
LLAMA_TOKENS = 32
LLAMA_EXAMPLES = 16


class LastTokenLM(nn.Module):
    """A causal LM as a classifier of the next token: logits ``(n, vocab)`` at the last position."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, attention_mask=attention_mask).logits[:, -1]


def build_llama(layers: int = 30) -> nn.Module:
    """The SmolLM-135M-shaped Llama (random weights, seed 0) with its source attached."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from modelpress.source import attach_source

    cfg = LlamaConfig(hidden_size=576, num_hidden_layers=layers, num_attention_heads=9, num_key_value_heads=3,
                      intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True,
                      max_position_embeddings=2048)
    torch.manual_seed(0)
    model = LastTokenLM(LlamaForCausalLM(cfg)).eval()
    return attach_source(model, {"kind": "callable", "ref": "benchmarks.bench_measure:build_llama",
                                 "kwargs": {"layers": layers}})


def llama_task(model: nn.Module):
    """A synthetic Task over random token ids for ``model`` (vocabulary 49152)."""
    from modelpress.tasks.metrics import ACCURACY, cross_entropy
    from modelpress.tasks.task import Split, Task

    g = torch.Generator().manual_seed(0)

    def split(n: int, name: str) -> Split:
        ids = torch.randint(0, 49152, (n, LLAMA_TOKENS), generator=g)
        return Split((ids, torch.ones_like(ids)), torch.randint(0, 49152, (n,), generator=g), name)

    return Task(name="random-tokens", description="random token ids (timing only)",
                train=split(LLAMA_EXAMPLES, "train"), calibration=split(LLAMA_EXAMPLES, "calibration"),
                test=split(LLAMA_EXAMPLES, "test"), metric=ACCURACY, loss=cross_entropy,
                model=lambda name=None: model, default_model="llama-135m", model_names=("llama-135m",))


def _cases(only: str | None):
    import importlib

    import modelpress as mp

    if only in (None, "lenet"):
        task = mp.tasks.get("mnist-5k")
        yield "LeNet-300-100", "mnist-5k", task.model("lenet-300-100"), task
    if only in (None, "minilm"):
        task = mp.tasks.get("bbc-news")
        yield "MiniLM classifier", "bbc-news", task.model("minilm-l6"), task
    if only in (None, "llama"):
        # Built through the module's import name, so that the class matches the one its source rebuilds
        # (run as a script, this file is also `__main__`).
        model = importlib.import_module("benchmarks.bench_measure").build_llama()
        yield "Llama 135M (random)", "random tokens", model, llama_task(model)


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - t0, time.process_time() - c0


def rows(only: str | None = None) -> list[tuple]:
    """Per case (``only``: lenet, minilm or llama): ``(model, data, params, size_bytes, measure wall s,
    measure CPU s, size wall s, size CPU s)`` — one full ``measure``, and its size figure alone
    (``modelpress.measure.size.artifact_bytes``, the part that saved an artifact to learn its size).
    CPU seconds (this process) are printed beside the wall time because the machine is shared: under
    load the wall time says more about the neighbours."""
    import importlib

    import modelpress as mp

    size = importlib.import_module("modelpress.measure.size")  # the module, in every modelpress version
    out = []
    for name, data, model, task in _cases(only):
        stats, wall, cpu = _timed(lambda: mp.measure(model, task))  # noqa: B023 - called at once
        nbytes, s_wall, s_cpu = _timed(lambda: size.artifact_bytes(model))  # noqa: B023
        assert nbytes == stats.size_bytes
        out.append((name, data, stats.params, stats.size_bytes, wall, cpu, s_wall, s_cpu))
        print(f"{name:22s} {data:14s} params {stats.params:>11,d}  size {stats.size_bytes:>11,d} B  "
              f"measure {wall:6.1f} s wall {cpu:6.1f} s CPU; its size alone {s_wall:5.1f} s wall "
              f"{s_cpu:5.1f} s CPU (load average {os.getloadavg()[0]:.1f})", flush=True)
    return out


def _write_doc(table: list[tuple]) -> None:
    import platform

    setting = (f"Command: `{COMMAND}`. Machine: {platform.processor() or platform.machine()}, "
               f"torch {torch.__version__}, torch set to 1 thread; measure's defaults (1 thread, batch 1, "
               "5 warm-up + 30 timed forward passes). *size alone*: `modelpress.measure.size.artifact_bytes`.")
    note = ("The Llama row is the SmolLM-135M shape built from a transformers LlamaConfig with random "
            "weights (no download) on random token ids: a timing of measuring, not of a model's quality. "
            "The machine is shared: CPU seconds (this process) are the steadier figure.")
    lines = ["# Benchmark: the time of one `measure`", "", setting, "",
             ("| model | data | params | artifact bytes | `measure` wall (s) | CPU (s) | size alone wall (s) "
              "| CPU (s) |"), "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {d} | {p:,} | {b:,} | {w:.1f} | {c:.1f} | {sw:.1f} | {sc:.1f} |"
              for n, d, p, b, w, c, sw, sc in table]
    lines += ["", note, ""]
    DOC.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    only = args[args.index("--only") + 1] if "--only" in args else None
    torch.set_num_threads(1)  # one fixed setting: on a shared machine idle threads spin and blur CPU time
    table = rows(only)
    if "--no-doc" not in args and only is None:
        _write_doc(table)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
