"""`Stats`: the numbers users quote about one model, all measured."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Stats"]


@dataclass(frozen=True)
class Stats:
    """Measured figures of one model on one task (architecture §6).

    - ``size_bytes``: bytes of the saved artifact folder on disk (torch) or of the ``.onnx`` file (onnxruntime).
    - ``params``: stored parameter elements; ``nonzero_params``: those that are not exactly zero.
    - ``macs``: multiply-accumulates for one example (batch 1), from ``torch.utils.flop_counter``.
    - ``latency_ms`` / ``latency_p90_ms``: median / 90th percentile wall time of one forward pass of
      ``batch_size`` examples, in milliseconds, with ``threads`` intra-op threads, after warm-up.
    - ``peak_mem_bytes``: peak bytes allocated during one forward pass at ``batch_size``, weights included.
    - ``metric``: the task's metric on its held-out test split; ``extra``: further metrics by name.
    """

    size_bytes: int
    params: int
    nonzero_params: int
    macs: int
    latency_ms: float
    latency_p90_ms: float
    peak_mem_bytes: int
    metric: float
    runtime: str = "torch"
    threads: int = 1
    batch_size: int = 1
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
