"""What this CPU can compute fast, read from ``/proc/cpuinfo`` (architecture §8: the machine decides).

The instruction sets below decide which deployment formats can pay here: VNNI / AMX-int8 make int8
matrix products fast; AVX512-BF16 / AMX-bf16 make bf16 compute fast and AVX512-FP16 / AMX-fp16 fp16
compute. These flags are *recorded* (in reports, in benchmark docs) and tell which 16-bit candidates
are worth building; the choice itself is always made by timing the candidates.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["KNOWN_FLAGS", "CpuInfo", "cpu_info"]

# The flags (as Linux spells them in /proc/cpuinfo) that matter to a kernel or format choice.
KNOWN_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and which of `KNOWN_FLAGS` it reports (``flags``: the ones it has)."""

    model_name: str
    flags: frozenset[str]

    @property
    def int8_dot(self) -> bool:
        """An int8 dot-product instruction (VNNI or AMX-int8): int8 products accumulate without
        saturating 16-bit intermediates."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    @property
    def bf16_compute(self) -> bool:
        """bf16 arithmetic in hardware (AVX512-BF16 or AMX-bf16)."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def fp16_compute(self) -> bool:
        """fp16 arithmetic in hardware (AVX512-FP16 or AMX-fp16); F16C converts only."""
        return bool(self.flags & {"avx512_fp16", "amx_fp16"})

    def describe(self) -> str:
        """One line for reports: the model name and every known flag with yes / no."""
        listed = ", ".join(f"{f} {'yes' if f in self.flags else 'no'}" for f in KNOWN_FLAGS)
        return f"{self.model_name} ({listed})"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for report.json."""
        return {"model_name": self.model_name, "flags": sorted(self.flags),
                "int8_dot": self.int8_dot, "bf16_compute": self.bf16_compute, "fp16_compute": self.fp16_compute}


def _parse(text: str) -> CpuInfo:
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:  # every core lists the same flags: the first is enough
            flags = set(value.split())
    return CpuInfo(model_name=name or platform.processor() or "unknown CPU",
                   flags=frozenset(flags & set(KNOWN_FLAGS)))


@lru_cache(maxsize=1)
def cpu_info(path: str = "/proc/cpuinfo") -> CpuInfo:
    """The CPU of this machine, from ``path`` (Linux's ``/proc/cpuinfo``). Where the file cannot be
    read (another OS), the name comes from `platform.processor` and no flag is reported: nothing is
    assumed, the candidates are still timed."""
    try:
        text = Path(path).read_text()
    except OSError:
        text = ""
    return _parse(text)
