"""lowrank → quantize int8 → save → load: the nested swap (QuantLinear factors inside FactoredLinear)."""

import torch

import modelpress as mp
from modelpress.artifact import folder_bytes
from modelpress.lowrank import FactoredLinear
from modelpress.quantization.modules import QuantLinear
from modelpress.tasks.models import build


def test_lowrank_then_int8_saves_and_loads_bit_exact_at_a_quarter_of_the_fp32_artifact(tmp_path):
    torch.manual_seed(0)
    model = build("lenet-300-100").eval()  # 784 inputs: weights dominate the artifact, as in real models
    mp.compress_(model, mp.LowRank(ratio=0.25, objective="size", runs=5), select=mp.select.by_name("fc[12]"),
                 progress=False)
    assert isinstance(model.fc1, FactoredLinear) and isinstance(model.fc2, FactoredLinear)
    fp32_dir = mp.save(model, tmp_path / "lowrank")
    mp.compress_(model, mp.Quantize(mode="int8-weight"), progress=False)
    assert isinstance(model.fc1.first, QuantLinear) and isinstance(model.fc1.second, QuantLinear)
    int8_dir = mp.save(model, tmp_path / "lowrank-int8")

    loaded = mp.load(int8_dir)
    assert isinstance(loaded.fc1, FactoredLinear) and isinstance(loaded.fc1.first, QuantLinear)
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    ratio = folder_bytes(int8_dir) / folder_bytes(fp32_dir)
    assert 0.2 <= ratio <= 0.35, ratio  # int8 codes are a quarter of fp32; scales, biases and the manifest add a little
