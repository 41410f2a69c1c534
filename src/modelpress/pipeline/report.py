"""report.json (its fields are added, never renamed: see docs/architecture.md §6) and report.html with its plots."""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from torch import nn

from modelpress import __version__
from modelpress.measure.stats import Stats
from modelpress.pipeline.recipe import Recipe
from modelpress.source import get_source
from modelpress.tasks.task import Task

__all__ = ["REPORT_FIELDS", "STATS_FIELDS", "about_run", "build_report", "machine", "render_sensitivity_html",
           "versions", "write_report"]

REPORT_FIELDS = ("task", "metric_name", "recipe", "model", "command", "seed", "created", "versions", "machine",
                 "baseline", "steps", "compressed", "deployed")
STATS_FIELDS = ("size_bytes", "params", "nonzero_params", "macs", "latency_ms", "latency_p90_ms",
                "peak_mem_bytes", "metric", "runtime", "threads")


def build_report(
    task: Task,
    recipe: Recipe,
    baseline: Stats,
    steps: list[dict[str, Any]],
    compressed: Stats,
    deployed: Stats | None,
    deploy_info: dict[str, Any],
    interleaved: dict[str, Any],
) -> dict[str, Any]:
    """The report as a JSON-able dict. Each step row gains ``changed`` (`changes.mark_changed`)."""
    from modelpress.pipeline.changes import mark_changed

    mark_changed(steps, baseline.to_dict())
    report: dict[str, Any] = {
        "task": task.name,
        "metric_name": task.metric.name,
        "recipe": recipe.to_list(),
        "baseline": baseline.to_dict(),
        "steps": steps,
        "compressed": compressed.to_dict(),
        "deployed": deployed.to_dict() if deployed else None,
        "deploy": deploy_info,
        "latency_interleaved": interleaved,
        "ratios": {
            "size": _ratio(compressed.size_bytes, baseline.size_bytes),
            "deployed_size": _ratio(deployed.size_bytes, baseline.size_bytes) if deployed else None,
            "macs": _ratio(compressed.macs, baseline.macs),
            "metric_delta": round(compressed.metric - baseline.metric, 6),
            "deployed_metric_gap": round(deployed.metric - compressed.metric, 6) if deployed else None,
        },
        "modelpress_version": __version__,
    }
    return report


# The packages whose versions decide the numbers (kernels, exporters, quantizers); those installed are recorded.
_PACKAGES = ("torch", "onnxruntime", "onnx", "onnxscript", "numpy", "safetensors", "transformers", "tokenizers",
             "torch-pruning", "tensorly", "scikit-learn", "openvino", "nncf")
# CPU features that select the kernels torch / onnxruntime / OpenVINO run (vector widths, int8 dot products,
# bf16 / fp16 arithmetic, AMX tiles; NEON / SVE on ARM).
_CPU_FLAG = re.compile(r"^(avx|amx|fma|f16c|sse4|asimd|sve|neon|bf16|fp16|i8mm|dotprod)")


def versions() -> dict[str, str]:
    """Python, modelpress and every installed package of :data:`_PACKAGES`: ``{name: version}``."""
    out = {"python": platform.python_version(), "modelpress": __version__}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict[str, Any]:
    """The CPU (model from /proc/cpuinfo, kernel-relevant flags), the threads and the OS kernel."""
    import torch

    cpu, flags = None, []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: the platform's own name, no flags
        text = ""
    for line in text.splitlines():  # x86: "model name" / "flags"; ARM: "Model name" or "Hardware" / "Features"
        key, _, value = (x.strip() for x in line.partition(":"))
        if key in ("model name", "Model name", "Hardware") and cpu is None:
            cpu = value
        elif key in ("flags", "Features") and not flags:
            flags = sorted(f for f in value.split() if _CPU_FLAG.match(f))
    cpu = cpu or platform.processor() or platform.machine()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "arch": platform.machine(), "cpu_flags": flags, "logical_cpus": os.cpu_count(),
            "usable_cpus": affinity, "torch_threads": torch.get_num_threads(),
            "os": f"{platform.system()} {platform.release()}"}


def about_run(model: nn.Module, model_name: str | None, command: str | None, seed: int) -> dict[str, Any]:
    """The report's provenance fields: ``model`` (name, source), ``command``, ``seed``, ``created`` (UTC,
    ISO 8601), ``versions`` and ``machine``."""
    source = get_source(model)
    if model_name is None and source is not None:
        model_name = source.get("name") or source.get("ref") or (source.get("config") or {}).get("model_type")
    return {
        "model": {"name": model_name, "source": source},
        "command": command,
        "seed": seed,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "machine": machine(),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """Write ``report.json`` and ``report.html`` into ``out_dir``."""
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.html").write_text(render_html(report))


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def interleaved_ratios(report: dict[str, Any]) -> list[float]:
    """Latency / baseline latency, all timed interleaved in one run, for each row of `stage_rows`: the
    baseline (1.0), the model after each step, the deployed model."""
    lat = report["latency_interleaved"]
    out = [1.0, *lat["steps_ratio_vs_baseline"][: len(report["steps"])]]
    if report.get("deployed"):
        out.append(lat["ratio_vs_baseline"]["deployed"])
    return out


def stage_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, stats) per stage of a report: the baseline, each step ("1. prune" ...), the deployed model."""
    rows = [("baseline", report["baseline"])]
    rows += [(f"{i + 1}. {s['name']}", s["stats"]) for i, s in enumerate(report["steps"])]
    if report.get("deployed"):
        rows.append((f"deployed ({report['deployed'].get('runtime', 'onnxruntime')})", report["deployed"]))
    return rows


def _plot_png(report: dict[str, Any]) -> str:
    """Size vs metric after each step, as a base64 PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = stage_rows(report)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    # Stages often sit on top of each other (a step that keeps the size, the deployed copy of the last
    # step), so points are told apart by colour and marker and named in a legend, never by text beside them;
    # each later stage is drawn smaller and on top, so points at one place show as nested marks.
    markers = "osD^v<>Pp*Xh"
    for i, (label, s) in enumerate(rows):
        ax1.scatter(s["size_bytes"] / 1024, s["metric"], s=max(300 * 0.5**i, 30), marker=markers[i % len(markers)],
                    color=plt.cm.tab10(i % 10), edgecolors="k", linewidths=0.5, label=label, zorder=3 + i)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(3, len(rows)), frameon=False)
    ax1.set_xlabel("size on disk (KB)")
    ax1.set_ylabel(report["metric_name"])
    ax1.set_title("size vs metric")
    ax1.grid(alpha=0.3)
    lat = report.get("latency_interleaved", {}).get("ratio_vs_baseline", {})
    shipped = (report.get("deployed") or {}).get("runtime", "onnxruntime")
    runtime = {"baseline": "baseline\n(torch)", "compressed": "compressed\n(torch)", "deployed": f"deployed\n({shipped})"}
    ax2.bar([runtime.get(k, k) for k in lat], list(lat.values()), color=["#888", "#2a7", "#27a"][: len(lat)])
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_ylabel("latency / baseline latency")
    ax2.set_title("latency, timed interleaved")
    ax2.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page: the stats table, the plots, swapped and skipped modules, the recipe."""
    from modelpress.pipeline.changes import steps_html

    e = html.escape
    head = "".join(f"<th>{h}</th>" for h in ("", "size", "params", "non-zero", "MACs", "latency ms",
                                             "p90 ms", "× baseline (interleaved)", "peak mem",
                                             report["metric_name"], "runtime"))  # fmt: skip
    body = ""
    for (label, s), ratio in zip(stage_rows(report), interleaved_ratios(report), strict=True):
        body += (
            f"<tr><td>{e(label)}</td><td>{_fmt_bytes(s['size_bytes'])}</td><td>{s['params']:,}</td>"
            f"<td>{s['nonzero_params']:,}</td><td>{s['macs']:,}</td><td>{s['latency_ms']:.3f}</td>"
            f"<td>{s['latency_p90_ms']:.3f}</td><td>{ratio:.2f}×</td>"
            f"<td>{_fmt_bytes(s['peak_mem_bytes'])}</td>"
            f"<td>{s['metric']:.4f}</td><td>{e(s['runtime'])}</td></tr>"
        )
    skipped = "".join(
        f"<li>{e(st['name'])}: <code>{e(k['module'])}</code> — {e(k['why'])}</li>"
        for st in report["steps"] for k in st.get("skipped", [])
    ) or "<li>none</li>"
    details = "".join(_raw(st["name"], st.get("details", {})) for st in report["steps"])
    extra_imgs = "".join(
        f"<h3>{e(name)}</h3><img src='data:image/png;base64,{png}'/>"
        for name, png in report.get("plots", {}).items()
    )
    lat = report.get("latency_interleaved", {})
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>modelpress report: {e(report['task'])}</title>
<style>{_CSS}</style></head><body>
<h1>modelpress report — task <code>{e(report['task'])}</code></h1>
{_provenance(report)}
<p>Size is bytes on disk; latency is the median of timed runs at batch {lat.get('batch_size', '?')} with
{lat.get('threads', '?')} thread(s): "latency ms" timed each stage alone, "× baseline" timed all of them
interleaved in one process (the figure to compare). The metric is measured on the held-out test split.</p>
<div class="scroll"><table><tr>{head}</tr>{body}</table></div>
{_problems(report)}
<p>Latency ratios to the baseline, timed interleaved in one process: {e(json.dumps(lat.get('ratio_vs_baseline', {})))}</p>
<img src="data:image/png;base64,{_plot_png(report)}" alt="size vs metric, and latency"/>
{extra_imgs}
{steps_html(report)}
<h2>Skipped modules</h2><ul>{skipped}</ul>
<h2>Step details</h2>{details}
<h2>Deployment</h2>{_raw("deployment candidates and choice (JSON)", report.get("deploy", {}))}
<h2>Recipe</h2>{_raw(" → ".join(next(iter(st)) for st in report["recipe"]) + " (YAML, every setting)",
                    report["recipe"], as_yaml=True)}
</body></html>"""


# Long JSON (step details, the deploy table) must wrap and stay folded: a page wider than the window is
# hard to read and hides the table's right columns behind a scrollbar.
_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child{text-align:left}th{background:#f4f4f4}.scroll{max-width:100%;overflow-x:auto}
img{max-width:100%;height:auto}pre{white-space:pre-wrap;word-break:break-word;background:#f8f8f8;padding:.5em;
margin:.3em 0;font-size:12px}details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;font-size:14px}dl.meta dt{color:#555}
dl.meta dd{margin:0}code{overflow-wrap:anywhere}.problems{color:#b00020}"""


def _problems(report: dict[str, Any]) -> str:
    """Steps that failed and were rolled back, and a failed deployment, in red under the table."""
    items = [f"step {i + 1}, {st['name']}: {st['error']}" for i, st in enumerate(report["steps"]) if st.get("error")]
    if (report.get("deploy") or {}).get("error"):
        items.append(f"deployment failed: {report['deploy']['error']}")
    if not items:
        return ""
    return "<ul class='problems'>" + "".join(f"<li>{html.escape(str(x))}</li>" for x in items) + "</ul>"


def _raw(title: str, value: Any, as_yaml: bool = False) -> str:
    """``value`` as indented JSON (or YAML, as a recipe file is written), folded under a ``<details>`` summary."""
    if as_yaml:
        import yaml

        text = yaml.safe_dump(value, sort_keys=False)
    else:
        text = json.dumps(value, indent=1)
    return f"<details><summary>{html.escape(str(title))}</summary><pre>{html.escape(text)}</pre></details>"


def _provenance(report: dict[str, Any]) -> str:
    """Which model, command, seed, date, versions and machine produced the report, as a definition list
    (fields an older report lacks are left out)."""
    e = html.escape
    model, mach = report.get("model") or {}, report.get("machine") or {}
    source = model.get("source") if isinstance(model.get("source"), dict) else None
    rows: list[tuple[str, str]] = []
    if model:
        rows.append(("model", f"<code>{e(str(model.get('name')))}</code>"
                     + (f" ({e(str(source.get('kind')))} source)" if source else " (no source)")))
    for key in ("command", "seed", "created"):
        if report.get(key) is not None:
            value = e(str(report[key]))
            rows.append((key, f"<code>{value}</code>" if key == "command" else value))
    if mach:
        rows.append(("machine", e(f"{mach.get('cpu')}, {mach.get('usable_cpus')} usable CPUs, "
                                  f"{mach.get('torch_threads')} torch threads, {mach.get('os')}")))
        rows.append(("CPU flags", e(" ".join(mach.get("cpu_flags") or []) or "none found")))
    if report.get("versions"):
        rows.append(("versions", e(", ".join(f"{k} {v}" for k, v in report["versions"].items()))))
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<dl class='meta'>{body}</dl>" + (_raw("model source (JSON)", source) if source else "")


def render_sensitivity_html(table: str, png: Path, title: str) -> str:
    """A self-contained HTML page for a sensitivity scan: its table and its plot (``png`` embedded)."""
    image = base64.b64encode(Path(png).read_bytes()).decode()
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:1000px;margin:2em auto'><h1>{html.escape(title)}</h1>"
        f"<pre>{html.escape(table)}</pre><img src='data:image/png;base64,{image}'/></body></html>"
    )
