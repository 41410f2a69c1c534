"""What each step changed, for report.json, the printed summary and report.html: its module swaps, the
modules it skipped and why, and whether it changed anything at all."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["mark_changed", "step_lines", "steps_html"]

# what a step must leave equal to the stage before it to count as having changed nothing
_SAME_STATS = ("size_bytes", "params", "nonzero_params", "macs", "metric")


def mark_changed(steps: list[dict[str, Any]], baseline: dict[str, Any]) -> None:
    """Set ``row["changed"]`` on every step row (in place): False when the step says so itself
    (``details.changed``), was rolled back, or swapped nothing and left size, params, non-zeros, MACs and
    the metric exactly as the stage before it; else True."""
    before = baseline
    for row in steps:
        stats = row.get("stats", {})
        same = bool(stats) and all(stats.get(k) == before.get(k) for k in _SAME_STATS)
        said = row.get("details", {}).get("changed")
        row["changed"] = not (said is False or row.get("error") or (not row.get("swapped") and same))
        before = stats or before


def step_lines(report: dict[str, Any]) -> list[str]:
    """Plain-text lines on what each step did to the model's modules: its swaps by type, the modules it
    skipped and why, and a step that changed nothing, said as such (for the printed summary)."""
    lines = []
    for i, st in enumerate(report["steps"]):
        label = f"{i + 1}. {st['name']}"
        if st.get("changed") is False:
            note = st.get("details", {}).get("note") or st.get("error") or "the model is as before"
            lines.append(f"{label}: changed nothing ({note})")
        counts: dict[str, int] = {}
        for sw in st.get("swapped", []):
            key = f"{sw['from']} -> {sw['to']}"
            counts[key] = counts.get(key, 0) + 1
        if counts:
            lines.append(f"{label}: swapped {sum(counts.values())} module(s): "
                         + ", ".join(f"{k} x{n}" for k, n in counts.items()))
        lines += [f"{label}: skipped {k['module']} ({k['why']})" for k in st.get("skipped", [])]
    return lines


def steps_html(report: dict[str, Any]) -> str:
    """HTML sections: the steps that changed nothing (when any) and the table of swapped modules."""
    e = html.escape
    swapped = "".join(
        f"<tr><td>{i + 1}. {e(st['name'])}</td><td><code>{e(sw['module'])}</code></td><td>{e(sw['from'])}</td>"
        f"<td>{e(sw['to'])}</td></tr>"
        for i, st in enumerate(report["steps"]) for sw in st.get("swapped", [])
    )
    swapped = (f"<table><tr><th>step</th><th>module</th><th>from</th><th>to</th></tr>{swapped}</table>"
               if swapped else "<p>none</p>")
    unchanged = "".join(f"<li>{e(line)}</li>" for line in step_lines(report) if ": changed nothing" in line)
    unchanged = f"<h2>Steps that changed nothing</h2><ul>{unchanged}</ul>" if unchanged else ""
    return f"{unchanged}<h2>Swapped modules</h2>{swapped}"
