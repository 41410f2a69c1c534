"""The `Share` step's configuration (recipe key ``share``)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from modelpress.distillation.config import check_kd_weights
from modelpress.errors import bad_value, is_int, is_number

__all__ = ["BIAS_DTYPES", "CODEBOOK_DTYPES", "INITS", "METHODS", "PER", "TIE_INITS", "Share"]

METHODS = ("cluster", "hash", "tie")
INITS = ("linear", "density", "random")
CODEBOOK_DTYPES = ("float32", "float16", "int8")
TIE_INITS = ("mean", "first")
BIAS_DTYPES = ("float32", "float16")
PER = ("layer", "channel")


def _check_bits(value: Any, name: str) -> None:
    if not is_int(value) or not 1 <= value <= 8:
        raise bad_value(name, "Share", "an int in 1..8 (index bits per weight)", value,
                        "5 bits for fully connected and 8 for conv layers are Deep Compression's choice.")


@dataclass(frozen=True)
class Share:
    """Share weights: cluster them into a codebook, hash them into buckets, or tie whole blocks.

    - ``method``: ``"cluster"`` — Deep Compression weight sharing: per layer, 1-D k-means of the weights
      into ``2**bits`` codes (one of them an exact zero when the layer has pruned zeros), then codebook
      fine-tuning (assignments fixed, each centroid trained with the sum of its weights' gradients);
      stored as the codebook plus entropy-coded indices. ``"hash"`` — HashedNets (Chen et al. 2015):
      each weight position is hashed to one of ``ratio · n`` trained buckets, with a hashed sign.
      ``"tie"`` — ALBERT-style sharing of same-shaped blocks (``blocks`` → ``unique`` copies).
    - ``bits``: index bits of Linear layers (cluster), 1..8; ``conv_bits`` the same for Conv2d layers
      (None: ``bits``). ``clusters``: the number of codes instead (2..256; overrides both), e.g. 20.
    - ``init``: centroid initialization — ``linear`` (evenly spaced over [min, max]; Han et al. found it
      best, as it keeps the rare large weights), ``density`` (evenly spaced quantiles) or ``random``.
    - ``per``: cluster — ``layer`` (one codebook per layer, Deep Compression) or ``channel`` (one codebook
      per output channel: ``out × codes`` values instead of ``codes``, closer weights at a given ``bits``).
    - ``epochs`` / ``lr``: fine-tuning after the swap (codebooks / buckets / tied blocks), on the task's
      training split; 0 skips it.
    - ``distill``: that fine-tuning learns from the model the recipe started from (the reference: its soft
      targets at ``temperature``, weighted ``alpha``, beside the labels) instead of labels alone.
    - ``augment``: that fine-tuning trains on the task's augmented training split (``Task.augment``, as
      `FineTune`'s ``augment``); a task without one trains on its split as it is.
    - ``entropy``: entropy-code the index streams (range coder or zstd, whichever is smaller per stream);
      False stores fixed-width bit-packed indices.
    - ``codebook``: the stored codebook values: ``float32``, ``float16`` or ``int8`` (symmetric per layer;
      this is how clustering composes with int8 — the int8 values are the shared weights). A later
      ``quantize`` step leaves clustered layers as they are (it swaps plain Linear / Conv2d only) and lists
      each one as skipped, saying this.
    - ``bias``: cluster — the stored biases of clustered layers, ``float32`` or ``float16`` (rounded at the
      end of the step, so the measured accuracy is the stored model's).
    - ``ratio``: hash — stored buckets per virtual weight, in (0, 1], e.g. 0.125 = 8× fewer parameters.
    - ``blocks`` / ``unique`` / ``tie_init``: tie — a regular expression fully matching the qualified
      names of the blocks (e.g. ``encoder\\.layer\\.\\d+``), how many distinct blocks remain (consecutive
      blocks are grouped), and their initial weights (``mean`` of the group or its ``first``).
    - ``min_weights``: cluster / hash — layers with fewer weights are left alone (reported as skipped):
      a codebook there costs more than it saves.

    Raises BadInputError (``bad_value``) for any value outside these ranges.
    """

    method: str = "cluster"
    bits: int = 5
    conv_bits: int | None = None
    clusters: int | None = None
    init: str = "linear"
    epochs: int = 0
    lr: float = 1e-4
    entropy: bool = True
    codebook: str = "float32"
    ratio: float = 0.125
    blocks: str | None = None
    unique: int = 1
    tie_init: str = "mean"
    min_weights: int = 64
    seed: int = 0
    bias: str = "float32"
    per: str = "layer"
    distill: bool = False
    alpha: float = 0.5
    temperature: float = 4.0
    augment: bool = False

    def __post_init__(self) -> None:
        own = "Share"
        if self.method not in METHODS:
            raise bad_value("method", own, f"one of {list(METHODS)}", self.method)
        _check_bits(self.bits, "bits")
        if self.conv_bits is not None:
            _check_bits(self.conv_bits, "conv_bits")
        if self.clusters is not None and (not is_int(self.clusters) or not 2 <= self.clusters <= 256):
            raise bad_value("clusters", own, "an int in 2..256 (codes per layer) or null", self.clusters)
        if self.init not in INITS:
            raise bad_value("init", own, f"one of {list(INITS)}", self.init)
        if not is_int(self.epochs, 0):
            raise bad_value("epochs", own, "an int >= 0", self.epochs)
        if not is_number(self.lr) or not 0 < self.lr < 10:
            raise bad_value("lr", own, "a float in (0, 10)", self.lr, "a typical value is 1e-4.")
        if not isinstance(self.entropy, bool):
            raise bad_value("entropy", own, "true or false", self.entropy)
        if self.codebook not in CODEBOOK_DTYPES:
            raise bad_value("codebook", own, f"one of {list(CODEBOOK_DTYPES)}", self.codebook)
        if not is_number(self.ratio) or not 0 < self.ratio <= 1:
            raise bad_value("ratio", own, "a fraction in (0, 1] (stored buckets per weight)", self.ratio,
                            "0.125 stores one parameter per 8 virtual weights.")
        if not is_int(self.unique, 1):
            raise bad_value("unique", own, "an int >= 1 (distinct blocks kept)", self.unique)
        if self.tie_init not in TIE_INITS:
            raise bad_value("tie_init", own, f"one of {list(TIE_INITS)}", self.tie_init)
        if not is_int(self.min_weights, 1):
            raise bad_value("min_weights", own, "an int >= 1", self.min_weights)
        if not is_int(self.seed, 0):
            raise bad_value("seed", own, "an int >= 0", self.seed)
        if self.bias not in BIAS_DTYPES:
            raise bad_value("bias", own, f"one of {list(BIAS_DTYPES)}", self.bias)
        if self.per not in PER:
            raise bad_value("per", own, f"one of {list(PER)}", self.per,
                            "`layer` is Deep Compression's one codebook per layer.")
        if not isinstance(self.distill, bool):
            raise bad_value("distill", own, "true or false", self.distill)
        if not isinstance(self.augment, bool):
            raise bad_value("augment", own, "true or false", self.augment)
        check_kd_weights(own, self.alpha, self.temperature)
        self._check_blocks()

    def _check_blocks(self) -> None:
        if self.method == "tie" and self.blocks is None:
            raise bad_value("blocks", "Share", "a regular expression naming the blocks to tie", None,
                            "e.g. blocks: 'encoder\\.layer\\.\\d+' with unique: 3.")
        if self.blocks is not None:
            if not isinstance(self.blocks, str):
                raise bad_value("blocks", "Share", "a regular expression (string)", self.blocks)
            try:
                re.compile(self.blocks)
            except re.error as e:
                raise bad_value("blocks", "Share", f"a valid regular expression ({e})", self.blocks) from None

    def bits_for(self, is_conv: bool) -> int:
        """Index bits of one layer: ``ceil(log2(clusters))`` when ``clusters`` is set, else ``conv_bits``
        (conv, when set) or ``bits``."""
        if self.clusters is not None:
            return max(1, (self.clusters - 1).bit_length())
        if is_conv and self.conv_bits is not None:
            return self.conv_bits
        return self.bits

    def codes_for(self, is_conv: bool) -> int:
        """Codes per layer (the zero code included when a layer has one): ``clusters`` or ``2**bits``."""
        return self.clusters if self.clusters is not None else 1 << self.bits_for(is_conv)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
