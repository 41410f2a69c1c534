"""Transformer text classifiers: the built-in MiniLM classifier and a user's Hugging Face model folder.

We use ``transformers`` (the reference implementation of BERT-family models) rather than re-writing the
encoder, so that pretrained weights load exactly and torch-pruning / ONNX export see standard modules.

- :class:`MiniLMClassifier`: ``encoder`` (a Hugging Face encoder, e.g. all-MiniLM-L6-v2's BertModel) +
  mean pooling over ``attention_mask`` + ``head`` (Linear hidden→classes).
  ``forward(input_ids, attention_mask) -> logits (n, classes)``; ``embed(...) -> (n, hidden)``.
- :class:`SequenceClassifier`: wraps ``*ForSequenceClassification`` so that ``forward`` returns logits.
- :func:`from_hf_folder`: either of the two, from a folder with ``config.json`` and weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from modelpress.errors import BadInputError, bad_value
from modelpress.source import attach_source

__all__ = [
    "MiniLMClassifier",
    "SequenceClassifier",
    "build_minilm",
    "from_hf_folder",
    "from_hf_source",
    "mean_pool",
]


def _offline() -> None:
    # Nothing may be downloaded at run time (DESIGN §6).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of ``hidden`` ``(n, tokens, d)`` over the tokens where ``attention_mask`` ``(n, tokens)`` is 1."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class MiniLMClassifier(nn.Module):
    """A sentence encoder with mean pooling and a linear head.

    ``encoder``: a Hugging Face encoder whose output has ``last_hidden_state`` ``(n, tokens, hidden)``.
    Inputs ``input_ids``, ``attention_mask``: int64 ``(n, tokens)``. Output logits ``(n, num_classes)``.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, hidden_size: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        d = int(hidden_size or encoder.config.hidden_size)
        self.head = nn.Linear(d, num_classes)

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Sentence embeddings ``(n, hidden)``: the mean of the encoder's last hidden states."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.head(self.embed(input_ids, attention_mask))


class SequenceClassifier(nn.Module):
    """Wraps a Hugging Face ``*ForSequenceClassification`` model (attribute ``hf``) to return logits."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask).logits


def _minilm_dir() -> Path:
    from modelpress.tasks.data import minilm_path

    return minilm_path()


def build_minilm(num_classes: int = 5, pretrained: bool = True) -> MiniLMClassifier:
    """all-MiniLM-L6-v2 (22.7M params) + mean pooling + Linear(384, ``num_classes``), head randomly initialised.

    ``pretrained=False`` builds the same architecture from the saved config with random weights — cheap,
    for an artifact that loads its own weights. The recorded source always says ``pretrained: False``
    (weights come from the artifact, never from the source).
    """
    _offline()
    from transformers import AutoConfig, AutoModel

    if int(num_classes) != num_classes or num_classes < 2:
        raise bad_value("num_classes", "minilm-l6", "an int >= 2", num_classes)
    path = str(_minilm_dir())
    if pretrained:
        encoder = AutoModel.from_pretrained(path)
    else:
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(path))
    model = MiniLMClassifier(encoder, int(num_classes))
    kwargs = {"num_classes": int(num_classes), "pretrained": False}
    return attach_source(model, {"kind": "builtin", "name": "minilm-l6", "kwargs": kwargs})


def _config_from_dict(d: dict[str, Any]):
    from transformers import AutoConfig

    d = dict(d)
    model_type = d.pop("model_type", None)
    if not model_type:
        raise bad_value("config", "hf source", "a dict with `model_type`", sorted(d)[:5])
    return AutoConfig.for_model(model_type, **d)


def from_hf_source(source: dict[str, Any]) -> nn.Module:
    """Rebuild (random weights) the model described by an ``{"kind": "hf", ...}`` source."""
    _offline()
    from transformers import AutoModel, AutoModelForSequenceClassification

    if not isinstance(source.get("config"), dict):
        raise bad_value("config", "hf source", "a JSON object", type(source.get("config")).__name__)
    config = _config_from_dict(source["config"])
    wrapper = source.get("wrapper")
    # An artifact's source is data: never the model's own remote code (a config's `auto_map`).
    if wrapper == "sequence-classification":
        model: nn.Module = SequenceClassifier(
            AutoModelForSequenceClassification.from_config(config, trust_remote_code=False))
    elif wrapper == "encoder-mean-pool":
        model = MiniLMClassifier(AutoModel.from_config(config, trust_remote_code=False), int(source["num_classes"]))
    else:
        raise bad_value("wrapper", "hf source", "'sequence-classification' or 'encoder-mean-pool'", wrapper)
    return attach_source(model, source)


def from_hf_folder(path: str | os.PathLike[str], num_classes: int | None = None) -> nn.Module:
    """A user's Hugging Face model folder (``config.json`` + weights), ready for ``model(ids, mask)``.

    - A ``*ForSequenceClassification`` model is wrapped to return logits (its ``num_labels`` is kept;
      a different ``num_classes`` raises BadInputError).
    - A bare encoder (e.g. ``BertModel``) becomes a :class:`MiniLMClassifier`: encoder + mean pooling +
      a *fresh, untrained* head with ``num_classes`` outputs — train it (a ``finetune`` step) before use.
      ``num_classes`` is then required.

    The source ``{"kind": "hf", "config": {...}, "wrapper": ..., "num_classes": ...}`` is attached so that
    an artifact rebuilds the architecture from its config. Raises BadInputError for a folder without
    ``config.json`` or that transformers cannot load.
    """
    _offline()
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise bad_value("path", "from_hf_folder", "a Hugging Face model folder with config.json", str(path))
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as e:
        raise BadInputError(f"cannot read the Hugging Face config in {folder}: {e}") from e
    archs = list(getattr(config, "architectures", None) or [])
    is_cls = any(a.endswith("ForSequenceClassification") for a in archs)
    try:
        if is_cls:
            if num_classes is not None and int(num_classes) != config.num_labels:
                raise bad_value(
                    "num_classes",
                    "from_hf_folder",
                    f"the model's num_labels ({config.num_labels})",
                    num_classes,
                    "drop --num-classes or give a bare encoder folder to get a fresh head.",
                )
            model: nn.Module = SequenceClassifier(
                AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True)
            )
            n = int(config.num_labels)
            wrapper = "sequence-classification"
        else:
            if num_classes is None:
                raise bad_value(
                    "num_classes",
                    "from_hf_folder",
                    "given for a bare encoder (it gets a fresh head)",
                    None,
                    "pass the task's number of classes.",
                )
            n = int(num_classes)
            model = MiniLMClassifier(AutoModel.from_pretrained(str(folder), use_safetensors=True), n)
            wrapper = "encoder-mean-pool"
    except (OSError, ValueError) as e:
        if isinstance(e, BadInputError):
            raise
        raise BadInputError(f"transformers cannot load the model in {folder}: {e}") from e
    source = {"kind": "hf", "config": config.to_dict(), "wrapper": wrapper, "num_classes": n}
    return attach_source(model, source)
