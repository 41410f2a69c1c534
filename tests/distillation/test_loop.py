"""The teacher's logits are remembered per (weights, inputs), never served stale; the technique imports
no layer above it."""

import ast
from pathlib import Path

import torch
from torch import nn

from modelpress import distillation
from modelpress.distillation.loop import teacher_logits
from modelpress.tasks.task import Split


class _Counting(nn.Module):
    """A linear teacher that counts the examples it has seen."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 3)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.fc(x)


def test_teacher_logits_are_computed_once_per_weights_and_inputs():
    teacher = _Counting()
    split = Split((torch.randn(40, 6),), torch.zeros(40, dtype=torch.int64), "train")
    first = teacher_logits(teacher, split, batch_size=16)
    assert teacher.seen == 40 and first.shape == (40, 3)
    # batches of 16 against one call of 40: the matmul kernel may block (and round) differently per batch
    # size (an AVX-512 Xeon gave unequal bits), so equal within float32 rounding, in order
    torch.testing.assert_close(first, teacher.fc(split.inputs[0]).detach(), rtol=1e-6, atol=1e-6)
    again = teacher_logits(teacher, Split((split.inputs[0].clone(),), split.targets, "copy"))  # equal inputs
    assert again is first and teacher.seen == 40
    other = teacher_logits(teacher, Split((split.inputs[0][:20] + 1,), split.targets[:20]))  # other inputs
    assert teacher.seen == 60
    torch.testing.assert_close(other, teacher.fc(split.inputs[0][:20] + 1).detach(), rtol=1e-6, atol=1e-6)


def test_a_teacher_changed_in_place_gets_fresh_logits():
    teacher = _Counting()
    split = Split((torch.randn(8, 6),), torch.zeros(8, dtype=torch.int64))
    before = teacher_logits(teacher, split)
    with torch.no_grad():
        teacher.fc.bias += 1.0  # e.g. trained in between
    after = teacher_logits(teacher, split)
    assert teacher.seen == 16
    assert torch.allclose(after, before + 1.0, atol=1e-6)


def test_distillation_and_finetune_import_only_lower_layers():
    # Imports point down: a technique may use artifact/, measure/, tasks/ and the bottom modules (and
    # other techniques), never pipeline/, search/ or the command line.
    above = ("modelpress.pipeline", "modelpress.search", "modelpress.cli", "modelpress.commands")
    root = Path(distillation.__file__).parent
    bad = []
    for path in sorted([*root.glob("*.py"), *(root.parent / "finetune").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            bad += [f"{path.name}: {n}" for n in names if n.startswith(above)]
    assert bad == []
