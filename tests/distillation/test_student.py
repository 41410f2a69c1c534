"""Students: a `{layers: ...}` student is the teacher's forward through those layers; projections; sizes."""

import copy
import math

import pytest
import torch

import modelpress as mp
from modelpress.distillation import Distill, train_student
from modelpress.distillation.features import make_projections, project
from modelpress.distillation.layers import transformer_layers
from modelpress.distillation.student import layer_student, width_student
from modelpress.errors import BadInputError
from modelpress.source import get_source
from modelpress.tasks.minilm import mean_pool

from .conftest import tiny_bert


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def test_layer_student_computes_the_teachers_forward_through_those_layers():
    teacher = tiny_bert(layers=4)
    snapshot = copy.deepcopy(teacher.state_dict())
    student = layer_student(teacher, (0, 2)).eval()
    ids = torch.randint(1, 50, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        h = teacher.encoder.embeddings(input_ids=ids)
        for i in (0, 2):
            h = _first(teacher.encoder.encoder.layer[i](h))
        expected = teacher.head(mean_pool(h, mask))
        got = student(ids, mask)
    assert torch.equal(got, expected)
    assert len(student.encoder.encoder.layer) == 2 and student.encoder.config.num_hidden_layers == 2
    # the teacher is untouched: all its layers, its config, its weights
    assert len(teacher.encoder.encoder.layer) == 4 and teacher.encoder.config.num_hidden_layers == 4
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in snapshot.items())
    assert get_source(student)["config"]["num_hidden_layers"] == 2


def test_layer_student_saves_and_loads(tmp_path):
    student = layer_student(tiny_bert(layers=4), (1, 3)).eval()
    mp.save(student, tmp_path / "m")
    loaded = mp.load(tmp_path / "m").eval()
    ids = torch.randint(1, 50, (2, 8), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask), student(ids, mask))
    assert len(loaded.encoder.encoder.layer) == 2


def test_layer_student_errors():
    with pytest.raises(BadInputError, match="`student.layers` of `Distill`"):
        layer_student(tiny_bert(layers=4), (0, 4))
    with pytest.raises(BadInputError, match="`student.layers` of `Distill`"):
        layer_student(mp.tasks.models.build("lenet-300-100"), (0,))


def test_transformer_layers_found():
    name, blocks = transformer_layers(tiny_bert(layers=3))
    assert name == "encoder.encoder.layer" and len(blocks) == 3
    assert transformer_layers(mp.tasks.models.build("resnet-s")) is None


def test_projections_have_the_right_shapes(text_task):
    teacher = tiny_bert(hidden=32, layers=4)
    student = tiny_bert(hidden=16, layers=2, seed=1)
    result = train_student(student, teacher, text_task, Distill(hidden=1.0, attention=1.0, epochs=1),
                           progress=False)
    assert result.pairs == [("encoder.encoder.layer.0", "encoder.encoder.layer.1"),
                            ("encoder.encoder.layer.1", "encoder.encoder.layer.3")]
    assert result.projections == {"0": [16, 32], "1": [16, 32]}
    assert result.teacher_outputs == "every batch" and all(math.isfinite(x) for x in result.epoch_losses)
    # no hooks are left behind on either model
    assert not any(m._forward_hooks for m in list(student.modules()) + list(teacher.modules()))


def test_conv_feature_projection_maps_channels():
    s, t = {"a": torch.randn(2, 8, 4, 4)}, {"b": torch.randn(2, 16, 4, 4)}
    proj = make_projections([("a", "b")], s, t)
    assert proj["0"].weight.shape == (16, 8)
    assert project(proj["0"], s["a"]).shape == (2, 16, 4, 4)
    assert len(make_projections([("a", "a")], s, s)) == 0  # equal widths: no projection
    with pytest.raises(BadInputError, match="differ in more than their width"):
        make_projections([("a", "b")], s, {"b": torch.randn(2, 16, 2, 2)})


def test_width_student_halves_hidden_widths():
    task = mp.tasks.get("digits")
    teacher = task.model()
    student, info = width_student(teacher, 0.5, 1, task)
    assert info["structure"] == "neuron"
    assert (student.fc1.out_features, student.fc2.out_features, student.fc3.out_features) == (150, 50, 10)
    assert teacher.fc1.out_features == 300  # the teacher is left as it was


def test_tapped_attention_maps_equal_the_models_own():
    # Hugging Face returns attention weights from its eager path; the tap rebuilds them from q and k.
    from modelpress.distillation.features import Tap
    from modelpress.distillation.losses import attention_probs

    model = tiny_bert(layers=2)
    model.encoder.config._attn_implementation = "eager"
    ids = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    tap = Tap(model, ["encoder.encoder.layer.0", "encoder.encoder.layer.1"], attention=True)
    with torch.no_grad():
        ref = model.encoder(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    tap.close()
    for i, name in enumerate(["encoder.encoder.layer.0", "encoder.encoder.layer.1"]):
        q, k, heads = tap.qk[name]
        assert heads == 2
        assert torch.allclose(attention_probs(q, k, heads, mask), ref[i], atol=1e-6)


def test_width_student_of_a_cnn_halves_its_channels():
    task = mp.tasks.get("digits")
    teacher = mp.tasks.models.build("resnet-s", input_shape=(1, 8, 8), num_classes=10).eval()
    student, info = width_student(teacher, 0.5, 16, task)
    assert info["structure"] == "channel"
    assert [student.layer1[0].conv1.out_channels, student.layer2[0].conv1.out_channels,
            student.layer3[0].conv1.out_channels] == [16, 32, 64]
    assert student.fc.out_features == 10
