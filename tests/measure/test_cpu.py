"""CPU capability detection from /proc/cpuinfo: planted files, and the running machine's own."""

from __future__ import annotations

from pathlib import Path

from modelpress.measure.cpu import KNOWN_FLAGS, cpu_info

_AMX_XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma f16c avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 amx_bf16

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2
"""

_AVX2_ONLY = """processor\t: 0
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx2 fma f16c
"""


def test_amx_machine(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(_AMX_XEON)
    info = cpu_info.__wrapped__(str(f))  # uncached: a planted file
    assert info.model_name == "Intel(R) Xeon(R) Platinum 8480+"
    # the first core's flags; unknown ones (fpu, sse2) are dropped
    assert info.flags == {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                          "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"}
    assert info.int8_dot and info.bf16_compute and info.fp16_compute
    assert "amx_bf16 yes" in info.describe() and "amx_fp16 no" in info.describe()


def test_avx2_machine_has_no_fast_int8_or_16_bit(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(_AVX2_ONLY)
    info = cpu_info.__wrapped__(str(f))
    assert info.flags == {"avx2", "fma", "f16c"}
    assert not info.int8_dot and not info.bf16_compute and not info.fp16_compute  # f16c converts only
    assert info.to_dict()["flags"] == ["avx2", "f16c", "fma"]


def test_unreadable_file_assumes_nothing(tmp_path):
    info = cpu_info.__wrapped__(str(tmp_path / "missing"))
    assert info.flags == frozenset() and info.model_name


def test_this_machine():
    info = cpu_info()
    assert info.flags <= set(KNOWN_FLAGS)
    words = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    assert info.flags == set(KNOWN_FLAGS) & words  # every core lists the same flags
