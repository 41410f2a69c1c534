"""The candidate chooser: time forms of one computation interleaved, judge them by fidelity, keep the best.

Any decision "which of these equivalent forms ships" goes through `choose`: a deployment format (the
float graph, int8 dynamic, int8 static, MatMulNBits ... in onnxruntime), a factored layer against its
dense form, later OpenVINO or ExecuTorch programs. A candidate is a name, a predict function in the target
runtime and its bytes; the runtime is whatever the predict calls, so the chooser knows none.

How it decides (the margins were measured on small models at batch 1, where latencies of int8 and fp32 lie
so close that a 3% margin let timing noise flip the shipped file between 1× and 3.8× smaller):

1. every candidate runs on the same held-out inputs; its **fidelity** to the reference outputs (top-1
   agreement, cosine, SQNR) must reach the `Floor`, else it is rejected;
2. latencies within ``noise`` (3%) of the fastest accepted one are a tie, and ties go to the smaller file;
3. a *baseline* candidate (the unchanged form: the float graph, the dense layer) is kept only when it is at
   least ``margin`` (10%) faster than every accepted changed one — the user asked for the change;
4. when nothing reaches the floor, the most faithful candidate is kept, and the reason says so.

One layer against its dense form (``x``: inputs captured at the layer, ``(n, in)``), timed in the step's
deployment setting::

    choice = choose([Candidate("dense", lambda i: dense(*i), dense_bytes, baseline=True),
                     Candidate("rank-64", lambda i: factored(*i), factored_bytes)],
                    (x,), dense(x), floor=Floor(sqnr_db=20.0), threads=ctx.target.threads,
                    timing_inputs=(x[: ctx.target.batch_size],))
    choice.winner.name, choice.why, choice.to_dict()   # the table for report.json

Judging data: choices must use neither the test split (it would leak into the reported metric) nor the
examples a quantizer was calibrated on. `holdout_split` takes training examples outside the calibration
split. The built-in baselines were trained on all of ``train`` and the built-in tasks have no third split,
so these examples are training data to the baseline: accuracy on them is near 1.0 for every candidate
and decides nothing, which is why the chooser compares outputs to the reference model's, not to labels.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from modelpress.errors import BadInputError, CompressionError, bad_value
from modelpress.measure._model import check_inputs, check_positive_int, first_rows
from modelpress.measure.fidelity import Fidelity, fidelity
from modelpress.measure.latency import time_interleaved
from modelpress.tasks.task import Predict, Split, Task

__all__ = ["BASELINE_MARGIN", "HOLDOUT_NOTE", "NOISE", "Candidate", "Choice", "Floor", "Row", "choose",
           "holdout_split", "pick"]

BASELINE_MARGIN = 0.10  # a baseline candidate must be this much faster than every accepted changed one
NOISE = 0.03  # relative latency difference treated as a tie (then the smaller file wins)
HOLDOUT_NOTE = ("training examples outside the calibration split (the baseline trained on them; the "
                "quantizer's ranges were not fit on them; never the test split)")


@dataclass(frozen=True)
class Candidate:
    """One form to judge: ``predict(inputs) -> outputs`` in its runtime, and its size in bytes.
    ``baseline``: the unchanged form, kept only when clearly faster. ``info``: extra report columns."""

    name: str
    predict: Predict
    bytes: int
    baseline: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Floor:
    """The least fidelity a candidate needs to be accepted; a None bound is not checked."""

    agreement: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None

    def accepts(self, f: Fidelity) -> bool:
        checks = ((self.agreement, f.agreement), (self.cosine, f.cosine), (self.sqnr_db, f.sqnr_db))
        return all(low is None or (got is not None and got >= low - 1e-12) for low, got in checks)

    def describe(self) -> str:
        parts = [f"{k} ≥ {v:.4f}" for k, v in
                 (("agreement", self.agreement), ("cosine", self.cosine), ("SQNR dB", self.sqnr_db)) if v is not None]
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Row:
    """One candidate as measured: fidelity to the reference, median / p90 latency (ms), bytes, whether
    it reached the floor, or the error that stopped it."""

    name: str
    bytes: int
    baseline: bool = False
    fidelity: Fidelity | None = None
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    accepted: bool = False
    error: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, **dict(self.info), "bytes": self.bytes}
        if self.error is not None:
            return d | {"error": self.error}
        return d | {"fidelity": self.fidelity.to_dict() if self.fidelity else None,
                    "latency_ms": _round(self.latency_ms), "latency_p90_ms": _round(self.latency_p90_ms),
                    "accepted": self.accepted, "baseline": self.baseline}


@dataclass(frozen=True)
class Choice:
    """The winner, every candidate's row (in the order given) and why the winner won, with the figures."""

    winner: Row
    table: tuple[Row, ...]
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner.name, "why": self.why, "candidates": [r.to_dict() for r in self.table]}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _error(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def choose(candidates: Sequence[Candidate], inputs: tuple[Tensor, ...], reference: Tensor, *, floor: Floor,
           timing_inputs: tuple[Tensor, ...] | None = None, threads: int = 1, warmup: int = 3, runs: int = 15,
           margin: float = BASELINE_MARGIN, noise: float = NOISE, rewarm: bool = False) -> Choice:
    """Run every candidate on ``inputs`` (each ``(n, ...)``), compare its outputs with ``reference``
    (``(n, ...)``, e.g. the fp32 model's logits) by `fidelity`, time the ones that ran interleaved on
    ``timing_inputs`` (default: the first row of ``inputs``) with ``threads`` threads, and `pick`.

    ``rewarm``: time each candidate hot (see `time_interleaved`); for candidates in different runtimes.
    A candidate whose predict raises is reported with its error, not fatal. Raises `BadInputError` for
    an empty candidate list or bad counts, `CompressionError` when no candidate runs.
    """
    if not candidates or not all(isinstance(c, Candidate) for c in candidates):
        raise bad_value("candidates", "choose", "a non-empty list of Candidate", candidates)
    inputs = check_inputs(inputs, "choose")
    check_positive_int(threads, "threads", "choose")
    timing_inputs = check_inputs(timing_inputs, "choose") if timing_inputs is not None else first_rows(inputs, 1)
    rows: list[Row] = []
    ran: list[Candidate] = []
    for c in candidates:
        try:
            with torch.no_grad():
                f = fidelity(c.predict(inputs), reference)
        except Exception as e:  # noqa: BLE001 - a candidate its runtime refuses is reported, not fatal
            rows.append(Row(c.name, c.bytes, c.baseline, error=_error(e), info=c.info))
            continue
        rows.append(Row(c.name, c.bytes, c.baseline, fidelity=f, accepted=floor.accepts(f), info=c.info))
        ran.append(c)
    if ran:
        lat = iter(time_interleaved([c.predict for c in ran], timing_inputs, threads=threads, warmup=warmup,
                                    runs=runs, rewarm=rewarm))
        rows = [r if r.error else _timed(r, next(lat)) for r in rows]
    winner, why = pick(rows, floor=floor, margin=margin, noise=noise)
    return Choice(winner, tuple(rows), why)


def _timed(row: Row, lat: Any) -> Row:
    return replace(row, latency_ms=lat.median_ms, latency_p90_ms=lat.p90_ms)


def pick(rows: Sequence[Row], *, floor: Floor | None = None, margin: float = BASELINE_MARGIN,
         noise: float = NOISE) -> tuple[Row, str]:
    """The winner among measured ``rows`` (see the module docstring for the rule) and why, with the
    measured figures. Raises `CompressionError` when every row has an error."""
    ok = [r for r in rows if r.error is None and r.latency_ms is not None]
    if not ok:
        raise CompressionError("no candidate could be run: " + "; ".join(f"{r.name}: {r.error}" for r in rows))
    accepted = [r for r in ok if r.accepted]
    rule = f"fidelity floor {floor.describe()}" if floor is not None else "the fidelity floor"
    if not accepted:
        best = max(ok, key=_faithfulness)
        return best, (f"no candidate reached the {rule}; kept the most faithful, {best.name} "
                      f"({_fid_text(best)}, {best.latency_ms:.4f} ms)")
    changed = [r for r in accepted if not r.baseline]
    pool = list(changed)
    fastest_changed = min(changed, key=lambda r: r.latency_ms) if changed else None
    for r in accepted:
        if r.baseline and (fastest_changed is None or r.latency_ms <= (1 - margin) * fastest_changed.latency_ms):
            pool.append(r)
    fastest = min(r.latency_ms for r in pool)
    near = [r for r in pool if r.latency_ms <= fastest * (1 + noise)]
    best = min(near, key=lambda r: (r.bytes, r.latency_ms))
    return best, _why(best, near, ok, fastest_changed, rule, margin, noise)


def _faithfulness(r: Row) -> tuple[float, float, float]:
    f = r.fidelity
    agree = f.agreement if f and f.agreement is not None else -math.inf
    return (agree, f.sqnr_db if f else -math.inf, -(r.latency_ms or 0.0))


def _fid_text(r: Row) -> str:
    f = r.fidelity
    if f is None:
        return "no fidelity"
    agree = f"agreement {f.agreement:.4f}, " if f.agreement is not None else ""
    return f"{agree}SQNR {f.sqnr_db:.1f} dB"


def _why(best: Row, near: list[Row], ok: list[Row], fastest_changed: Row | None, rule: str, margin: float,
         noise: float) -> str:
    """The winner's figures and rule, then for every other candidate why it lost, with its figures."""
    text = f"{best.name} won: {best.latency_ms:.4f} ms, {best.bytes:,} bytes, {_fid_text(best)}"
    if best.baseline and fastest_changed is not None:
        gain = 1 - best.latency_ms / fastest_changed.latency_ms
        text += (f"; kept the unchanged form, {gain:.0%} faster than the fastest accepted changed one "
                 f"(the margin is {margin:.0%})")
    elif best.baseline:
        text += "; the only candidate that reached the floor is the unchanged form"
    else:
        text += f"; the fastest candidate that reached the {rule}"
    reasons = []
    for r in ok:
        if r is best:
            continue
        fig = f"{r.name} ({r.latency_ms:.4f} ms, {r.bytes:,} bytes, {_fid_text(r)})"
        if not r.accepted:
            reasons.append(f"{fig}: below the floor")
        elif r in near:
            reasons.append(f"{fig}: within {noise:.0%} of the fastest, larger file")
        elif r.baseline and r.latency_ms < best.latency_ms:
            reasons.append(f"{fig}: faster, but by less than the {margin:.0%} an unchanged form needs")
        else:
            reasons.append(f"{fig}: slower")
    return text + ("; " + "; ".join(reasons) if reasons else "")


def _row_key(split: Split, i: int) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for t in split.inputs:
        h.update(t[i].detach().cpu().numpy().tobytes())
    return h.digest()


def holdout_split(task: Task, size: int = 512, *, seed: int = 0) -> Split:
    """Up to ``size`` examples of ``task.train`` that are not in ``task.calibration`` (compared by value),
    drawn with ``seed`` and kept in their order in ``train``: the data choices inside a step are judged on
    (see the module docstring for why there is no better split). Raises `BadInputError` when every
    training example is a calibration example."""
    check_positive_int(size, "size", "holdout_split")
    calib = {_row_key(task.calibration, i) for i in range(len(task.calibration))}
    order = torch.randperm(len(task.train), generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    picked: list[int] = []
    for i in order:
        if _row_key(task.train, i) not in calib:
            picked.append(i)
            if len(picked) == size:
                break
    if not picked:
        raise BadInputError(
            f"task `{task.name}` has no training example outside its calibration split, so there is no data "
            "to judge candidates on. Fix: make the calibration split a strict subset of train."
        )
    idx = torch.tensor(sorted(picked))
    return Split(tuple(t[idx] for t in task.train.inputs), task.train.targets[idx], "holdout")
