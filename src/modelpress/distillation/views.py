"""Consistent augmented views for function matching (Beyer et al. 2022, "A good teacher is patient and
consistent"): teacher and student see the same shifted, mixed-up image, so the student learns the
teacher's function on and off the data manifold instead of its outputs on the fixed training images.

A *view* is one pass over the training split in which example ``i`` is shifted by its own
``(dy, dx)`` (integer pixels in ``[-shift, shift]``, the border filled with the image's minimum, the
background after normalization) and mixed with a partner example ``j`` (itself shifted by its own
offset) with weight ``lam ~ Beta(mixup, mixup)``: ``x = lam · x_i + (1 − lam) · x_j``, labels
``lam · y_i + (1 − lam) · y_j``. The plan of view ``v`` (offsets, partners, weights) is a pure function
of ``(seed, v)``, so the images are regenerated per batch in microseconds and never stored; only the
teacher's logits for each view are computed once and cached on disk (`view_logits`), which keeps a
distillation epoch about one student epoch while every epoch sees a different view.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from modelpress.distillation.config import Augment
from modelpress.tasks.builtin import cache_dir
from modelpress.tasks.task import Split
from modelpress.tasks.train import torch_predict

__all__ = ["ViewPlan", "mixed_labels", "plan", "view_images", "view_logits"]

_CHUNK = 2048  # images generated and passed through the teacher at a time (~6 MB at 1×28×28)


@dataclass(frozen=True)
class ViewPlan:
    """One view of ``n`` examples: per-example offsets ``dy``, ``dx`` (int64 ``(n,)``), ``partner``
    indices (int64 ``(n,)``; ``i`` itself when mixup is off) and weights ``lam`` (float32 ``(n,)``, 1 when
    mixup is off)."""

    dy: Tensor
    dx: Tensor
    partner: Tensor
    lam: Tensor


def plan(n: int, augment: Augment, view: int, seed: int = 0) -> ViewPlan:
    """The deterministic plan of view ``view`` for a split of ``n`` examples (numpy's PCG64 seeded by
    ``(seed, view)``, so it is the same on every machine and in every process)."""
    rng = np.random.default_rng([int(seed), int(view), 0x5EED])
    s = augment.shift
    dy, dx = (torch.from_numpy(rng.integers(-s, s + 1, n)) for _ in range(2))
    if augment.mixup > 0:
        partner = torch.from_numpy(rng.permutation(n))
        lam = torch.from_numpy(rng.beta(augment.mixup, augment.mixup, n).astype(np.float32))
    else:
        partner, lam = torch.arange(n), torch.ones(n)
    return ViewPlan(dy.long(), dx.long(), partner.long(), lam)


def _shifted(x: Tensor, dy: Tensor, dx: Tensor, s: int) -> Tensor:
    """``x`` ``(b, C, H, W)`` with image ``k`` moved down ``dy[k]`` and right ``dx[k]`` pixels (``|d| ≤ s``)."""
    if s == 0:
        return x
    b, c, h, w = x.shape
    bg = x.amin(dim=(1, 2, 3), keepdim=True)
    xp = bg.expand(b, c, h + 2 * s, w + 2 * s).clone()
    xp[..., s : s + h, s : s + w] = x
    rows = torch.arange(h)[None, :] - dy[:, None] + s  # out[r] = x[r - dy] = xp[r - dy + s]
    cols = torch.arange(w)[None, :] - dx[:, None] + s
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def view_images(images: Tensor, idx: Tensor, p: ViewPlan, augment: Augment) -> Tensor:
    """The view's images for examples ``idx`` (int64 ``(b,)``) of ``images`` ``(n, C, H, W)``: ``(b, C, H, W)``."""
    idx = idx.cpu()
    x = _shifted(images[idx], p.dy[idx], p.dx[idx], augment.shift)
    if augment.mixup == 0:
        return x
    j = p.partner[idx]
    xj = _shifted(images[j], p.dy[j], p.dx[j], augment.shift)
    lam = p.lam[idx].view(-1, 1, 1, 1).to(x.dtype)
    return lam * x + (1 - lam) * xj


def mixed_labels(targets: Tensor, idx: Tensor, p: ViewPlan, classes: int) -> Tensor:
    """The view's label distributions for examples ``idx``: ``lam · onehot(y_i) + (1 − lam) · onehot(y_j)``,
    ``(b, classes)`` float32 (one-hot rows when mixup is off)."""
    idx = idx.cpu()
    lam = p.lam[idx][:, None]
    one = torch.nn.functional.one_hot(targets[idx], classes).float()
    two = torch.nn.functional.one_hot(targets[p.partner[idx]], classes).float()
    return lam * one + (1 - lam) * two


def _key(fingerprint: str, augment: Augment, seed: int) -> str:
    text = f"{fingerprint}|shift={augment.shift}|mixup={augment.mixup!r}|seed={seed}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _one_view(teacher: nn.Module, images: Tensor, augment: Augment, view: int, seed: int) -> Tensor:
    p = plan(len(images), augment, view, seed)
    predict = torch_predict(teacher, 512)
    out = [predict((view_images(images, torch.arange(s, min(s + _CHUNK, len(images))), p, augment),))
           for s in range(0, len(images), _CHUNK)]  # fmt: skip
    return torch.cat(out).float()


def view_logits(teacher: nn.Module, split: Split, augment: Augment, fingerprint: str, *, seed: int = 0,
                root: Path | None = None) -> Tensor:  # fmt: skip
    """The teacher's logits on every view of ``split``: ``(augment.views, len(split), classes)`` float32.

    ``fingerprint`` identifies the teacher's weights and the split's inputs (`loop._fingerprint`); each
    view is cached as ``<root>/<key>/view-<v>.npy`` (root: ``$MODELPRESS_CACHE/distill-views``; read
    with ``allow_pickle=False``), so a later run with more views only computes the new ones. A teacher
    pass over a view costs one forward per training example (resnet-s on Fashion-MNIST: 2.3–3.3 min per
    60,000 images on this project's shared 2-core CPU), paid once per teacher, split and augmentation.
    """
    folder = (root or cache_dir() / "distill-views") / _key(fingerprint, augment, seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = split.inputs[0]
    views = []
    for v in range(augment.views):
        path = folder / f"view-{v}.npy"
        if path.is_file():
            arr = np.load(path, allow_pickle=False)
            if arr.shape[0] == len(images):
                views.append(torch.from_numpy(arr))
                continue
        logits = _one_view(teacher, images, augment, v, seed)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, logits.numpy(), allow_pickle=False)
        tmp.replace(path)  # atomic: a stopped run never leaves a half-written view behind
        views.append(logits)
    return torch.stack(views)
