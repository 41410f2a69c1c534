"""The `Quantize` step's configuration (YAML key ``quantize``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from modelpress.errors import bad_value, is_int, is_number
from modelpress.tasks.train import SCHEDULES

__all__ = ["DEPLOY_FORMATS", "METHODS", "MODES", "Quantize"]

MODES = ("fp16", "bf16", "int8-dynamic", "int8-static", "int8-weight", "int4-weight", "qat")
_GRANULARITIES = ("channel", "tensor", "group")
_OBSERVERS = ("minmax", "percentile", "mse")
_GROUP_SIZES = (32, 64, 128)
METHODS = ("rtn", "gptq")
# "auto" measures the candidates on the task and keeps the best (architecture §6); the others force one format.
DEPLOY_FORMATS = ("auto", "float", "fp16", "dynamic", "static", "static-reduce-range", "nbits")


@dataclass(frozen=True)
class Quantize:
    """Quantize Linear / Conv2d (and optionally Embedding) layers, after training (PTQ) or during it (QAT).

    - ``mode``: ``fp16`` / ``bf16`` (16-bit *storage*; compute stays fp32, which is faster on this CPU),
      ``int8-dynamic`` (int8 weights, activations quantized per call), ``int8-static`` (int8 weights and
      activations calibrated on the task's calibration split), ``int8-weight`` / ``int4-weight``
      (weight-only), ``qat`` (fake quantization with a straight-through estimator during fine-tuning).
    - ``bits``: weight bits, 8 or 4. Implied by the mode for PTQ (None = implied); for ``qat`` 8 means
      int8 weights and activations, 4 means 4-bit weights only (the same artifact as ``int4-weight``).
    - ``granularity``: weight scales per ``channel`` (output channel), per ``tensor``, or per ``group`` of
      ``group_size`` consecutive input weights (32 / 64 / 128). None = ``group`` for 4 bits, else ``channel``.
    - ``symmetric``: weights symmetric (zero point 0, the form onnxruntime's int8 kernels expect) or
      asymmetric (a zero point per scale). None = symmetric for 8 bits, asymmetric for 4 bits: measured on
      MiniLM int4 g32, sentence-embedding cosine 0.968 asymmetric vs 0.957 symmetric (the 16-level grid;
      0.946 with the 15-level ``max/7`` grid used before); MatMulNBits takes packed uint8 zero points at no
      speed cost. Activations are always asymmetric uint8 (ReLU / GELU outputs are mostly positive).
    - ``method``: how 4-bit weight codes are chosen: ``rtn`` (round to nearest on the observed grid) or
      ``gptq`` (GPTQ error compensation, Frantar et al. 2023: each column's rounding error is spread over
      the columns not yet quantized, weighted by the inverse Hessian of the layer's inputs on the
      calibration split; needs the task). Weight-only modes (``int8-weight``, ``int4-weight``) only.
      It pays when the calibration inputs span each layer's inputs (MiniLM, 256 articles × 128 tokens:
      32% lower output error than RTN at group 128); on a small CNN with 256 calibration images and
      512-input layers it raised the model's output error, so compare on held-out data there.
    - ``observer``: how ranges are chosen: ``minmax``, ``percentile`` (clip at ``percentile`` / its
      mirror), ``mse`` (the clipping that minimizes the quantization error). Activations use it in
      ``int8-static`` and ``qat``; weights use ``mse`` when asked, otherwise min-max.
    - ``max_drop``: mixed precision by measured sensitivity: keep the most sensitive layers in float until
      the metric drop on the calibration split is ≤ ``max_drop`` (a fraction, 0.005 = 0.5 points); None
      quantizes every selected layer.
    - ``epochs`` / ``lr`` / ``schedule`` / ``learn_ranges``: QAT fine-tuning; the learning rate is
      ``constant`` or ``cosine`` (decays to 0: measured on resnet-s 4-bit, 2 epochs at 1e-4, it ends
      1.2 points more accurate than constant); ranges observed (moving min-max) or learned (LSQ step
      sizes) when ``learn_ranges``.
    - ``quantize_embeddings``: also quantize ``nn.Embedding`` tables (row-wise / group-wise weights).
      For MiniLM the table is half the parameters, so the 4× / 7× size drops need it.
    - ``calibration_size``: calibration examples used for ranges, sensitivity and deployment choices.
    - ``deploy``: ONNX format for onnxruntime, ``auto`` = measure the candidates and keep the best.
    - ``deploy_tolerance``: how much top-1 agreement with the fp32 reference model a faster deployed
      format may lose against the PyTorch model's own agreement and still be chosen (fraction), measured
      on held-out training examples outside the calibration split (`modelpress.measure.choose`).

    Raises `BadInputError` (``bad_value``) for any value outside these sets.
    """

    mode: str = "int8-static"
    bits: int | None = None
    granularity: str | None = None
    group_size: int = 32
    symmetric: bool | None = None
    method: str = "rtn"
    observer: str = "minmax"
    percentile: float = 99.99
    max_drop: float | None = None
    epochs: int = 1
    lr: float = 1e-4
    schedule: str = "cosine"
    learn_ranges: bool = False
    quantize_embeddings: bool = True
    calibration_size: int = 256
    deploy: str = "auto"
    deploy_tolerance: float = 0.003

    def __post_init__(self) -> None:
        own = "Quantize"
        if self.mode not in MODES:
            raise bad_value("mode", own, f"one of {list(MODES)}", self.mode)
        if self.bits is not None:
            if not is_int(self.bits) or self.bits not in (4, 8):
                raise bad_value("bits", own, "8 or 4 (integer weight bits)", self.bits,
                                "use mode fp16/bf16 for 16-bit; 3-bit and 2-bit are not supported.")
            implied = {"int8-dynamic": 8, "int8-static": 8, "int8-weight": 8, "int4-weight": 4}
            if self.mode in implied and self.bits != implied[self.mode]:
                raise bad_value("bits", own, f"{implied[self.mode]} for mode {self.mode} (or left out)",
                                self.bits, "use mode int4-weight for 4 bits, int8-* for 8 bits.")
            if self.mode in ("fp16", "bf16"):
                raise bad_value("bits", own, f"left out for mode {self.mode}", self.bits)
        if self.granularity is not None and self.granularity not in _GRANULARITIES:
            raise bad_value("granularity", own, f"one of {list(_GRANULARITIES)} or null", self.granularity)
        if not is_int(self.group_size) or self.group_size not in _GROUP_SIZES:
            raise bad_value("group_size", own, f"one of {list(_GROUP_SIZES)}", self.group_size)
        if self.symmetric is not None and not isinstance(self.symmetric, bool):
            raise bad_value("symmetric", own, "true, false or null", self.symmetric)
        if self.method not in METHODS:
            raise bad_value("method", own, f"one of {list(METHODS)}", self.method)
        if self.method != "rtn" and self.mode not in ("int8-weight", "int4-weight"):
            raise bad_value("method", own, "`rtn` for mode " + self.mode, self.method,
                            "use mode int4-weight (or int8-weight) with method gptq.")
        if self.observer not in _OBSERVERS:
            raise bad_value("observer", own, f"one of {list(_OBSERVERS)}", self.observer)
        if not is_number(self.percentile) or not 90.0 < self.percentile <= 100.0:
            raise bad_value("percentile", own, "a number in (90, 100]", self.percentile, "e.g. 99.99.")
        if self.max_drop is not None and (not is_number(self.max_drop) or not 0 <= self.max_drop < 1):
            raise bad_value("max_drop", own, "a fraction in [0, 1) or null", self.max_drop,
                            "0.005 means half a point of accuracy.")
        if not is_int(self.epochs) or self.epochs < 1:
            raise bad_value("epochs", own, "an int ≥ 1", self.epochs)
        if not is_number(self.lr) or not 0 < self.lr < 10:
            raise bad_value("lr", own, "a number in (0, 10)", self.lr, "QAT usually takes 1e-4 to 1e-3.")
        if self.schedule not in SCHEDULES:
            raise bad_value("schedule", own, f"one of {list(SCHEDULES)}", self.schedule)
        if not isinstance(self.learn_ranges, bool):
            raise bad_value("learn_ranges", own, "true or false", self.learn_ranges)
        if not isinstance(self.quantize_embeddings, bool):
            raise bad_value("quantize_embeddings", own, "true or false", self.quantize_embeddings)
        if not is_int(self.calibration_size) or self.calibration_size < 1:
            raise bad_value("calibration_size", own, "an int ≥ 1", self.calibration_size)
        if self.deploy not in DEPLOY_FORMATS:
            raise bad_value("deploy", own, f"one of {list(DEPLOY_FORMATS)}", self.deploy)
        if not is_number(self.deploy_tolerance) or not 0 <= self.deploy_tolerance < 1:
            raise bad_value("deploy_tolerance", own, "a fraction in [0, 1)", self.deploy_tolerance)

    # ---- derived settings (properties, so that the config stays flat data) ----------------------------

    @property
    def weight_bits(self) -> int | None:
        """Integer weight bits, or None for the 16-bit float modes."""
        if self.mode in ("fp16", "bf16"):
            return None
        if self.mode == "int4-weight":
            return 4
        if self.mode == "qat":
            return self.bits or 8
        return 8

    @property
    def weight_granularity(self) -> str:
        if self.granularity is not None:
            return self.granularity
        return "group" if self.weight_bits == 4 else "channel"

    @property
    def weight_symmetric(self) -> bool:
        """Symmetric weight codes: as given, else symmetric for 8 bits and asymmetric below."""
        if self.symmetric is not None:
            return self.symmetric
        return self.weight_bits != 4

    @property
    def activations(self) -> str:
        """How activations are quantized: ``none``, ``dynamic`` (per call) or ``static`` (calibrated)."""
        if self.mode == "int8-dynamic":
            return "dynamic"
        if self.mode == "int8-static" or (self.mode == "qat" and self.weight_bits == 8):
            return "static"
        return "none"

    def to_dict(self) -> dict:
        return asdict(self)
