"""Shared-weight modules that replace ``nn.Linear`` / ``nn.Conv2d``: clustered and hashed.

`ClusteredLinear` / `ClusteredConv2d` (Deep Compression): a codebook of shared values (a trainable
``nn.Parameter``) and a fixed index per weight. The weight is ``table[indices]`` with ``table`` the
codebook, preceded by an exact ``0.0`` when the layer reserves code 0 for pruned zeros; so autograd
gives each centroid the *sum* of its weights' gradients (indexing's backward is a scatter-add) and a
pruned weight stays exactly zero whatever the optimizer does. Stored as the codebook (float32, float16
or int8 + scale, whichever reproduces it exactly) and the entropy-coded indices
(`modelpress.sharing.coding`).

`HashedLinear` / `HashedConv2d` (HashedNets, Chen et al. 2015): ``buckets`` trainable values; virtual
weight ``i`` is ``sign[i] · buckets[bucket[i]]`` with bucket and sign from the position hash
(`modelpress.sharing.hashing`). Stored as the buckets and the seed.

Both export (`export_module`, `to_dense`) as a standard ``nn.Linear`` / ``nn.Conv2d`` holding the decoded
weights: that is what ONNX export, params and MACs see, and what the runtime holds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from modelpress.artifact.packed import PackedModule
from modelpress.errors import BadInputError

# The op helpers live with the quantized modules, which swap the same Linear / Conv2d layers.
from modelpress.quantization.modules import _run_op, _to_dense, op_meta
from modelpress.sharing.coding import decode_indices, encode_indices
from modelpress.sharing.hashing import hash_positions
from modelpress.sharing.kmeans import kmeans_1d

__all__ = ["CLUSTERED_TYPES", "HASHED_TYPES", "ClusteredConv2d", "ClusteredLinear", "HashedConv2d",
           "HashedLinear", "cluster_weight"]


def cluster_weight(weight: Tensor, codes: int, *, init: str = "linear", seed: int = 0,
                   per: str = "layer") -> tuple[Tensor, Tensor, bool]:
    """Cluster one layer's weight into ``codes`` codes (2..256), one codebook for the layer or (``per=
    "channel"``) one per output channel (row ``weight[o]``).

    When the weight has exact zeros (pruned), code 0 is reserved for them and the non-zeros share
    ``codes - 1`` centroids; else all ``codes`` are centroids. Returns ``(codebook, indices, zero_code)``:
    codebook float32 ``(codes - zero_code,)`` — ``(out, codes - zero_code)`` per channel —, indices int64
    of ``weight``'s shape in ``[0, codes)`` (per channel: into the row's own codebook).
    """
    w = weight.detach().float()
    zero = bool((w == 0).any())
    k = codes - int(zero)
    if per == "channel":
        rows = [_cluster_values(r, k, zero, init, seed) for r in w.reshape(w.shape[0], -1)]
        return torch.stack([c for c, _ in rows]), torch.stack([i for _, i in rows]).reshape(w.shape), zero
    codebook, indices = _cluster_values(w, k, zero, init, seed)
    return codebook, indices, zero


def _cluster_values(w: Tensor, k: int, zero: bool, init: str, seed: int) -> tuple[Tensor, Tensor]:
    """``k`` centroids of ``w``'s non-zeros (of all its values without a zero code) and each value's code."""
    nz = w != 0 if zero else torch.ones_like(w, dtype=torch.bool)
    indices = torch.zeros(w.shape, dtype=torch.int64)
    if not bool(nz.any()):  # all zeros: unused centroids
        return torch.zeros(max(k, 1)), indices
    centroids, assign = kmeans_1d(w[nz], k, init=init, seed=seed)
    indices[nz] = assign + int(zero)
    return centroids, indices


def _base_example(accepts: type[nn.Module]) -> tuple[nn.Module, tuple[Tensor, ...]]:
    """A seeded float layer (Linear 8 → 4 or Conv2d 2 → 4, 3×3) and an input batch for it."""
    gen = torch.Generator().manual_seed(0)
    base = nn.Linear(8, 4) if accepts is nn.Linear else nn.Conv2d(2, 4, 3, padding=1)
    with torch.no_grad():
        base.weight.copy_(torch.randn(base.weight.shape, generator=gen))
        base.bias.copy_(0.1 * torch.randn(base.bias.shape, generator=gen))
    shape = (5, 8) if accepts is nn.Linear else (2, 2, 6, 6)
    return base, (torch.randn(shape, generator=gen),)


class _Clustered(PackedModule):
    """Shared body of the clustered modules; subclasses differ only in the op they accept."""

    accepts: type[nn.Module] = nn.Module
    # what `modelpress.select.targets` adds when a later step (quantize, prune) passes this layer over
    later_steps = ("its weights are the codebook values of `share`: prune before share, and for int8 weights "
                   "cluster with `share: {codebook: int8}` (an int8 codebook + one scale per layer)")

    def __init__(self, codebook: Tensor, indices: Tensor, op: dict[str, Any], bias: Tensor | None = None, *,
                 codes: int, zero_code: bool, entropy: bool = True, codebook_dtype: str = "float32",
                 per: str = "layer") -> None:
        super().__init__()
        if not 2 <= codes <= 256:
            raise BadInputError(f"`codes` of `{type(self).__name__}` must be in 2..256; got {codes!r}.")
        if per not in ("layer", "channel"):
            raise BadInputError(f"`per` of `{type(self).__name__}` must be 'layer' or 'channel'; got {per!r}.")
        self.op = dict(op)
        self.codes = int(codes)
        self.zero_code = bool(zero_code)
        self.entropy = bool(entropy)
        self.codebook_dtype = codebook_dtype
        self.per = per
        # one codebook (k,) per layer, or one row of (out, k) per output channel
        shape = (-1,) if per == "layer" else (indices.shape[0], -1)
        self.codebook = nn.Parameter(codebook.detach().clone().float().reshape(shape))
        # the int8 grid step when the codebook was put on it (`round_codebook`); None otherwise
        self.codebook_scale: Tensor | None = None
        self.register_buffer("indices", indices.detach().to(torch.int64).clone(), persistent=False)
        self.bias = nn.Parameter(bias.detach().clone().float()) if bias is not None else None
        # the stored dtype of the bias: float16 when it was put on that grid (`round_bias`) or loaded so
        self.bias_dtype = "float16" if bias is not None and bias.dtype == torch.float16 else "float32"

    @classmethod
    def from_float(cls, module: nn.Module, codes: int, *, init: str = "linear", seed: int = 0,
                   entropy: bool = True, per: str = "layer") -> _Clustered:
        """Cluster ``module`` (an ``nn.Linear`` / ``nn.Conv2d``; its effective weight, masks applied), one
        codebook for the layer or one per output channel (``per``)."""
        codebook, indices, zero = cluster_weight(module.weight, codes, init=init, seed=seed, per=per)
        return cls(codebook, indices, op_meta(module), getattr(module, "bias", None), codes=codes,
                   zero_code=zero, entropy=entropy, per=per)

    @property
    def table(self) -> Tensor:
        """The values of all codes, ``(codes_used,)`` — ``(out, codes_used)`` per channel: the codebook
        preceded by an exact ``0.0`` with a zero code."""
        if self.zero_code:
            return torch.cat([self.codebook.new_zeros(*self.codebook.shape[:-1], 1), self.codebook], dim=-1)
        return self.codebook

    @property
    def weight(self) -> Tensor:
        """The decoded weight, ``table[indices]`` (per channel: row ``o`` looks up its own table), differentiable
        with respect to the codebook: each centroid's gradient is the sum of its weights' gradients."""
        if self.per == "channel":
            flat = self.indices.reshape(self.indices.shape[0], -1)
            return self.table.gather(1, flat).reshape(self.indices.shape)
        return self.table[self.indices]

    def forward(self, x: Tensor) -> Tensor:
        return _run_op(self.op, x, self.weight, self.bias)

    def to_dense(self) -> nn.Module:
        with torch.no_grad():
            return _to_dense(self.op, self.weight.detach(), None if self.bias is None else self.bias.detach())

    def extra_repr(self) -> str:
        return (f"{self.op['kind']}, shape={list(self.indices.shape)}, codes={self.codes}, "
                f"zero_code={self.zero_code}, codebook={self.codebook_dtype}, per={self.per}")

    @torch.no_grad()
    def round_codebook(self, dtype: str) -> None:
        """Put the codebook on the grid of ``dtype``: ``float16``, or ``int8`` (symmetric, one scale per
        layer: ``scale = max|c| / 127``). Later training moves it off again; ``pack`` then stores float32."""
        c = self.codebook.detach()
        if dtype == "float16":
            self.codebook.copy_(c.half().float())
        elif dtype == "int8":
            scale = (c.abs().max() / 127).clamp_min(torch.finfo(torch.float32).tiny).reshape(1)
            self.codebook.copy_(torch.round(c / scale).clamp(-127, 127) * scale)
            self.codebook_scale = scale
        elif dtype != "float32":
            raise BadInputError(f"`dtype` of `round_codebook` must be float32, float16 or int8; got {dtype!r}.")
        self.codebook_dtype = dtype

    @torch.no_grad()
    def round_bias(self, dtype: str) -> None:
        """Put the bias on the grid of ``dtype`` (``float32``: unchanged, or ``float16``), so that it is stored
        in 2 bytes a value; later training moves it off again, and ``pack`` then stores float32."""
        if dtype not in ("float32", "float16"):
            raise BadInputError(f"`dtype` of `round_bias` must be float32 or float16; got {dtype!r}.")
        if self.bias is not None and dtype == "float16":
            self.bias.copy_(self.bias.half().float())
        self.bias_dtype = dtype

    def _stored_bias(self) -> Tensor:
        """The bias in ``bias_dtype`` when that reproduces it bit-exactly, else float32."""
        b = self.bias.detach().clone()
        if self.bias_dtype == "float16" and torch.equal(b.half().float(), b):
            return b.half()
        return b

    # ---- artifact ---------------------------------------------------------------------------------

    def _stored_codebook(self) -> tuple[dict[str, Tensor], str]:
        """The codebook in ``codebook_dtype`` when that reproduces it bit-exactly, else float32."""
        c = self.codebook.detach().clone()
        if self.codebook_dtype == "float16" and torch.equal(c.half().float(), c):
            return {"codebook": c.half()}, "float16"
        scale = self.codebook_scale
        if self.codebook_dtype == "int8" and scale is not None:
            q = torch.round(c / scale).clamp(-127, 127)
            if torch.equal(q * scale, c):
                return {"codebook": q.to(torch.int8), "codebook_scale": scale}, "int8"
        return {"codebook": c}, "float32"

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The codebook, the indices as one uint8 blob of entropy-coded streams, the bias (float32, or
        float16 after ``round_bias("float16")``; its stored dtype says which)."""
        tensors, stored = self._stored_codebook()
        blob, coding = encode_indices(self.indices, self.codes, zero_code=self.zero_code, entropy=self.entropy)
        tensors["indices"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else \
            torch.zeros(0, dtype=torch.uint8)
        if self.bias is not None:
            tensors["bias"] = self._stored_bias()
        meta = {"op": self.op, "shape": list(self.indices.shape), "codes": self.codes, "zero": self.zero_code,
                "cb": stored, "idx": coding}
        if not self.entropy:
            meta["fixed"] = True
        if self.per != "layer":  # absent: one codebook per layer (artifacts from before per-channel load so)
            meta["per"] = self.per
        return tensors, meta

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> _Clustered:
        cb = tensors["codebook"]
        int8 = meta["cb"] == "int8"
        codebook = cb.float() * tensors["codebook_scale"] if int8 else cb.float()
        shape = [int(s) for s in meta["shape"]]
        indices = decode_indices(tensors["indices"].numpy().tobytes(), meta["idx"], shape, int(meta["codes"]))
        module = cls(codebook, indices, meta["op"], tensors.get("bias"), codes=int(meta["codes"]),
                     zero_code=bool(meta["zero"]), entropy=not meta.get("fixed", False), codebook_dtype=meta["cb"],
                     per=meta.get("per", "layer"))
        if int8:
            module.codebook_scale = tensors["codebook_scale"].float().clone()
        return module

    @classmethod
    def example(cls) -> tuple[_Clustered, tuple[Tensor, ...]]:
        """A small instance (4 codes, a zero code, a bias) and an input batch, for contract tests."""
        base, x = _base_example(cls.accepts)
        with torch.no_grad():
            base.weight[base.weight.abs() < 0.5] = 0.0
        return cls.from_float(base, 4), x


class ClusteredLinear(_Clustered):
    """``nn.Linear`` whose weight ``(out, in)`` is a codebook lookup; input ``(..., in)``."""

    accepts = nn.Linear


class ClusteredConv2d(_Clustered):
    """``nn.Conv2d`` whose weight ``(out, in / groups, kh, kw)`` is a codebook lookup."""

    accepts = nn.Conv2d


class _Hashed(PackedModule):
    """Shared body of the hashed modules (HashedNets)."""

    accepts: type[nn.Module] = nn.Module

    def __init__(self, buckets: Tensor, shape: list[int] | tuple[int, ...], op: dict[str, Any],
                 bias: Tensor | None = None, *, seed: int) -> None:
        super().__init__()
        self.op = dict(op)
        self.shape = [int(s) for s in shape]
        self.seed = int(seed)
        self.buckets = nn.Parameter(buckets.detach().clone().float().reshape(-1))
        bucket, sign = hash_positions(math.prod(self.shape), self.buckets.numel(), self.seed)
        self.register_buffer("bucket", bucket, persistent=False)
        self.register_buffer("sign", sign, persistent=False)
        self.bias = nn.Parameter(bias.detach().clone().float()) if bias is not None else None

    @classmethod
    def from_float(cls, module: nn.Module, ratio: float, *, seed: int) -> _Hashed:
        """Hash ``module``'s weight into ``max(1, round(ratio · n))`` buckets, each initialized to the
        least-squares fit of its virtual weights: the mean of ``sign · w`` over the bucket."""
        w = module.weight.detach().float().reshape(-1)
        n_buckets = max(1, round(ratio * w.numel()))
        bucket, sign = hash_positions(w.numel(), n_buckets, seed)
        sums = torch.zeros(n_buckets).index_add_(0, bucket, sign * w)
        counts = torch.bincount(bucket, minlength=n_buckets).clamp_min(1).float()
        return cls(sums / counts, list(module.weight.shape), op_meta(module), getattr(module, "bias", None),
                   seed=seed)

    @property
    def weight(self) -> Tensor:
        """The virtual weight, ``sign · buckets[bucket]`` reshaped to the layer's weight shape."""
        return (self.buckets[self.bucket] * self.sign).reshape(self.shape)

    def forward(self, x: Tensor) -> Tensor:
        return _run_op(self.op, x, self.weight, self.bias)

    def to_dense(self) -> nn.Module:
        with torch.no_grad():
            return _to_dense(self.op, self.weight.detach(), None if self.bias is None else self.bias.detach())

    def extra_repr(self) -> str:
        return f"{self.op['kind']}, shape={self.shape}, buckets={self.buckets.numel()}, seed={self.seed}"

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The buckets (float32) and the bias; the seed and the shape in the meta."""
        tensors = {"buckets": self.buckets.detach().clone()}
        if self.bias is not None:
            tensors["bias"] = self.bias.detach().clone()
        return tensors, {"op": self.op, "shape": self.shape, "seed": self.seed}

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> _Hashed:
        return cls(tensors["buckets"], meta["shape"], meta["op"], tensors.get("bias"), seed=int(meta["seed"]))

    @classmethod
    def example(cls) -> tuple[_Hashed, tuple[Tensor, ...]]:
        """A small instance (1/4 of the weights stored, a bias) and an input batch, for contract tests."""
        base, x = _base_example(cls.accepts)
        return cls.from_float(base, 0.25, seed=7), x


class HashedLinear(_Hashed):
    """``nn.Linear`` whose ``(out, in)`` virtual weights are hashed into shared buckets."""

    accepts = nn.Linear


class HashedConv2d(_Hashed):
    """``nn.Conv2d`` whose virtual weights are hashed into shared buckets."""

    accepts = nn.Conv2d


CLUSTERED_TYPES: dict[type[nn.Module], type[_Clustered]] = {c.accepts: c for c in (ClusteredLinear, ClusteredConv2d)}
HASHED_TYPES: dict[type[nn.Module], type[_Hashed]] = {c.accepts: c for c in (HashedLinear, HashedConv2d)}
