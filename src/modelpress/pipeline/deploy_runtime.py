"""Which runtime runs the deployed graph, when no step's deploy hook chose one (pruned, distilled,
factored or plain models): onnxruntime, OpenVINO in f32 or in a 16-bit precision the CPU executes, or
ExecuTorch's fp32 program lowered to XNNPACK (the phone runtime).

The same graph is faster in one runtime or the other depending on its shapes and the CPU (measured in
docs/bench-runtimes.md: OpenVINO in bf16 ran MiniLM 0.57× onnxruntime's fp32 time, while a 0.9 ms CNN at
batch 1 pays OpenVINO's per-call overhead), so the candidates are timed in the deployment setting and
judged by `modelpress.measure.choose.choose` on held-out examples against the reference model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from modelpress.context import StepContext

__all__ = ["TOLERANCE", "choose_runtime"]

# The agreement (or cosine) with the reference a runtime may lose against the PyTorch model's own:
# the default `deploy_tolerance` of Quantize, so that 16-bit compute passes where its outputs hold.
TOLERANCE = 0.003


def choose_runtime(path: Path, model: nn.Module, ctx: StepContext) -> dict[str, Any]:
    """Time the ONNX graph at ``path`` in onnxruntime (unless the target runtime is ``openvino`` or
    ``executorch``), in OpenVINO (f32 and each 16-bit precision this CPU executes) and ``model`` as an
    ExecuTorch fp32 program (where installed; ``model.pte`` written beside ``path`` where it wins), keep the fastest whose fidelity to
    ``ctx.reference`` (else ``model``) is within `TOLERANCE` of ``model``'s own, and where OpenVINO wins
    write its IR beside ``path`` (``model.xml`` / ``.bin``, the precision recorded in it). Returns the
    report entry: ``runtime``, ``precision``, ``candidate``, ``why``, ``floor``, ``candidates``, ``notes``.
    Raises `BadInputError` when the target runtime is ``openvino`` / ``executorch`` and it is not installed,
    `CompressionError` when no candidate runs."""
    from modelpress.measure._model import batch_of
    from modelpress.measure.choose import HOLDOUT_NOTE, Candidate, Floor, choose, holdout_split
    from modelpress.measure.executorch_runtime import require_executorch
    from modelpress.measure.fidelity import fidelity
    from modelpress.measure.onnx_size import onnx_bytes
    from modelpress.measure.openvino_runtime import (
        openvino_available,
        openvino_forms,
        require_openvino,
        to_ir,
    )
    from modelpress.measure.runtime import ort_predict
    from modelpress.quantization.deploy_executorch import executorch_candidates, ship_executorch
    from modelpress.tasks.train import torch_predict

    target = ctx.target
    if target.runtime == "openvino" and not openvino_available():
        require_openvino("runtime openvino")
    if target.runtime == "executorch":
        require_executorch("runtime executorch")
    holdout = holdout_split(ctx.task, 512, seed=ctx.seed)
    ref = torch_predict(ctx.reference or model, batch_size=64)(holdout.inputs)
    own = fidelity(torch_predict(model, batch_size=64)(holdout.inputs), ref)
    floor = (Floor(agreement=own.agreement - TOLERANCE) if own.agreement is not None
             else Floor(cosine=own.cosine - TOLERANCE))
    candidates = [] if target.runtime in ("openvino", "executorch") else [
        Candidate("onnxruntime", ort_predict(path, threads=target.threads), onnx_bytes(path),
                  info={"runtime": "onnxruntime", "precision": "f32"})]
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelpress-ov-") as tmp:
        if target.runtime in ("auto", "openvino"):
            forms, notes = openvino_forms(path, tmp, threads=target.threads)  # compiled: the files may go
            candidates += [Candidate(f"openvino {f.precision}", f.predict, f.bytes, info={
                "runtime": "openvino", "precision": f.precision, "executed": f.executed.label}) for f in forms]
        et, more = executorch_candidates(model, None, ctx, Path(tmp))  # the fp32 program, where it may run
        notes += more
        candidates += [Candidate(c.name, c.predict, c.bytes, info=c.info | {"precision": "f32"}) for c in et]
        choice = choose(candidates, holdout.inputs, ref, floor=floor, threads=target.threads,
                        timing_inputs=batch_of(holdout, target.batch_size), rewarm=True)
        winner = choice.winner
        runtime, precision = winner.info["runtime"], winner.info["precision"]
        if runtime == "executorch":
            ship_executorch(next(c for c in et if c.name == winner.name), Path(path))
    if runtime == "openvino":
        to_ir(path, Path(path).with_suffix(".xml"), precision=precision)
    extra = {"executorch": {k: winner.info[k] for k in ("ops", "carried")}} if runtime == "executorch" else {}
    return {"runtime": runtime, "precision": precision, "candidate": winner.name, "why": choice.why, **extra,
            "floor": f"{floor.describe()} (the PyTorch model's own fidelity minus {TOLERANCE})",
            "judged_on": {"split": holdout.name, "examples": len(holdout), "what": HOLDOUT_NOTE},
            "candidates": [r.to_dict() for r in choice.table], "notes": notes}
