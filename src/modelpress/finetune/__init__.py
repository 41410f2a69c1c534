"""Fine-tuning: win accuracy back after a compression step."""

from modelpress.finetune.config import FineTune
from modelpress.finetune.step import apply_finetune

__all__ = ["FineTune", "apply_finetune"]
