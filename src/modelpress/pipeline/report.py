"""report.json (DESIGN §3 schema; fields are added, never renamed) and report.html with its plots."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from modelpress import __version__
from modelpress.measure.stats import Stats
from modelpress.pipeline.recipe import Recipe
from modelpress.tasks.task import Task

__all__ = ["REPORT_FIELDS", "STATS_FIELDS", "build_report", "render_sensitivity_html", "write_report"]

REPORT_FIELDS = ("task", "metric_name", "recipe", "baseline", "steps", "compressed", "deployed")
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
        rows.append(("deployed (onnxruntime)", report["deployed"]))
    return rows


def _plot_png(report: dict[str, Any]) -> str:
    """Size vs metric after each step, as a base64 PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = stage_rows(report)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, s in rows:
        ax1.scatter(s["size_bytes"] / 1024, s["metric"], s=40)
        ax1.annotate(label, (s["size_bytes"] / 1024, s["metric"]), fontsize=8, xytext=(4, 4),
                     textcoords="offset points")
    ax1.set_xlabel("size on disk (KB)")
    ax1.set_ylabel(report["metric_name"])
    ax1.set_title("size vs metric")
    ax1.grid(alpha=0.3)
    lat = report.get("latency_interleaved", {}).get("ratio_vs_baseline", {})
    runtime = {"baseline": "baseline\n(torch)", "compressed": "compressed\n(torch)", "deployed": "deployed\n(onnxruntime)"}
    ax2.bar([runtime.get(k, k) for k in lat], list(lat.values()), color=["#888", "#2a7", "#27a"][: len(lat)])
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_ylabel("latency / baseline latency")
    ax2.set_title("latency, timed interleaved")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
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
    details = "".join(
        f"<h3>{e(st['name'])}</h3><pre>{e(json.dumps(st.get('details', {}), indent=1)[:4000])}</pre>"
        for st in report["steps"]
    )
    extra_imgs = "".join(
        f"<h3>{e(name)}</h3><img src='data:image/png;base64,{png}'/>"
        for name, png in report.get("plots", {}).items()
    )
    lat = report.get("latency_interleaved", {})
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>modelpress report: {e(report['task'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head><body>
<h1>modelpress report — task <code>{e(report['task'])}</code></h1>
<p>Size is bytes on disk; latency is the median of timed runs at batch {lat.get('batch_size', '?')} with
{lat.get('threads', '?')} thread(s): "latency ms" timed each stage alone, "× baseline" timed all of them
interleaved in one process (the figure to compare). The metric is measured on the held-out test split.</p>
<table><tr>{head}</tr>{body}</table>
<p>Latency ratios to the baseline, timed interleaved in one process: {e(json.dumps(lat.get('ratio_vs_baseline', {})))}</p>
<img src="data:image/png;base64,{_plot_png(report)}"/>
{extra_imgs}
{steps_html(report)}
<h2>Skipped modules</h2><ul>{skipped}</ul>
<h2>Step details</h2>{details}
<h2>Deployment</h2><pre>{e(json.dumps(report.get('deploy', {}), indent=1))}</pre>
<h2>Recipe</h2><pre>{e(json.dumps(report['recipe'], indent=1))}</pre>
</body></html>"""


def render_sensitivity_html(table: str, png: Path, title: str) -> str:
    """A self-contained HTML page for a sensitivity scan: its table and its plot (``png`` embedded)."""
    image = base64.b64encode(Path(png).read_bytes()).decode()
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;max-width:1000px;margin:2em auto'><h1>{html.escape(title)}</h1>"
        f"<pre>{html.escape(table)}</pre><img src='data:image/png;base64,{image}'/></body></html>"
    )
