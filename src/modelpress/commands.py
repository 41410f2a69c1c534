"""The command-line subcommands (part of the CLI layer): call the library, format its results."""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from modelpress.errors import BadInputError

__all__ = ["cmd_compress", "cmd_demo", "cmd_evaluate", "cmd_recipes", "cmd_sensitivity", "cmd_tasks"]

DEMO_TASK, DEMO_MODEL = "mnist-5k", "lenet-300-100"
DEMO_RECIPES = ("prune-weight", "prune-neuron", "int8-static", "int4-weight", "prune-int8")


def _settings(args: argparse.Namespace):
    from modelpress.pipeline import MeasureSettings

    return MeasureSettings(threads=args.threads, batch_size=args.batch_size, runs=args.runs)


def cmd_tasks(args: argparse.Namespace) -> int:
    from modelpress import tasks

    rows = tasks.describe()
    cols = list(rows[0]) if rows else []
    print(_table([[str(r[c]) for c in cols] for r in rows], cols))
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from modelpress.pipeline import Recipe, builtin_recipes

    rows = []
    for name, path in sorted(builtin_recipes().items()):
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        try:
            steps = " → ".join(s.key for s in Recipe.from_yaml(path).steps)
        except BadInputError as e:
            steps = f"(invalid: {e})"
        rows.append([name, steps, first])
    print(_table(rows, ["recipe", "steps", "what it does"]))
    print("\nUse one with: modelpress compress --task TASK --recipe NAME --out DIR")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from modelpress.measure import format_stats, measure, measure_onnx
    from modelpress.pipeline.resolve import check_fits, resolve_model, resolve_task

    task = resolve_task(args.task)
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise BadInputError(f"`--json` folder `{Path(args.json).parent}` does not exist. Fix: create it first.")
    kw = {"threads": args.threads, "batch_size": args.batch_size, "runs": args.runs}
    if args.model and args.model.endswith(".onnx"):
        if not Path(args.model).is_file():
            raise BadInputError(f"ONNX file `{args.model}` does not exist. Fix: check the path.")
        stats = measure_onnx(args.model, task, **kw)
    else:
        model = resolve_model(args.model, task)
        check_fits(model, task)
        if args.runtime == "torch":
            stats = measure(model, task, **kw)
        else:
            stats = _measure_deployed(model, args.model, task, kw)
    print(f"task {task.name}, model {args.model or task.default_model}, runtime {stats.runtime}")
    print(format_stats(stats))
    if args.json:
        Path(args.json).write_text(json.dumps(stats.to_dict(), indent=2))
        print(f"wrote {args.json}")
    return 0


def _measure_deployed(model, spec, task, kw):
    """Export to ONNX, re-apply the deploy hooks of the artifact's recorded steps, measure in onnxruntime."""
    from modelpress.measure import count_macs, measure_onnx
    from modelpress.pipeline import Recipe
    from modelpress.pipeline.deploy import export_deployed

    steps = []
    manifest = Path(spec or "") / "manifest.json"
    if spec and manifest.is_file():
        recorded = json.loads(manifest.read_text()).get("steps") or []
        steps = list(Recipe.from_list(recorded).steps) if recorded else []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_deployed(model, steps, task, path)
        return measure_onnx(path, task, macs=count_macs(model, task.example_inputs), **kw)


def cmd_compress(args: argparse.Namespace) -> int:
    from modelpress.pipeline import Recipe, run
    from modelpress.pipeline.resolve import resolve_model, resolve_task

    task = resolve_task(args.task)
    recipe = Recipe.resolve(args.recipe)
    model = resolve_model(args.model, task)
    result = run(recipe, task, model=model, out=args.out, settings=_settings(args), seed=args.seed,
                 deploy=not args.no_deploy)
    print()
    print(summarize(result.report))
    written = ["model/"] + (["model.onnx"] if result.deployed else []) + ["report.json", "report.html"]
    print(f"\nwrote {', '.join(f'{args.out}/{w}' for w in written)}")
    return 0


def _sensitivity_configs(args: argparse.Namespace) -> list:
    """The step configs of a sensitivity scan from ``--step`` / ``--set`` / ``--sweep`` / prune's
    ``--structure`` and ``--ratios``, validated as a recipe step is."""
    import yaml

    from modelpress.pipeline.recipe import Recipe

    def pair(text: str, flag: str) -> tuple[str, str]:
        key, eq, value = text.partition("=")
        if not eq or not key:
            raise BadInputError(f"`{flag}` must be FIELD=VALUE; got {text!r}. Fix: e.g. {flag} mode=int4-weight.")
        return key.strip(), value

    body = {k: yaml.safe_load(v) for k, v in (pair(t, "--set") for t in args.set)}
    if args.step != "prune" and (args.structure is not None or args.ratios is not None):
        raise BadInputError(f"`--structure` / `--ratios` are prune's; got them with --step {args.step}. "
                            "Fix: use --set FIELD=VALUE and --sweep FIELD=V1,V2 for other steps.")
    if args.step == "prune" and args.structure is not None:
        body["structure"] = args.structure
    field, values = None, [None]
    if args.sweep is not None:
        field, text = pair(args.sweep, "--sweep")
        values = [yaml.safe_load(v) for v in text.split(",")]
    elif args.step == "prune":
        field, values = "sparsity", list(args.ratios or (0.25, 0.5, 0.75, 0.9))
    items = [{args.step: {**body, **({field: v} if field else {})}} for v in values]
    return [s.config for s in Recipe.from_list(items, name="sensitivity").steps]


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from modelpress.pipeline.report import render_sensitivity_html
    from modelpress.pipeline.resolve import resolve_model, resolve_task
    from modelpress.search.sensitivity import sensitivity

    configs = _sensitivity_configs(args)  # bad flags are reported before any data loads
    if args.limit is not None and args.limit < 1:
        raise BadInputError(f"`--limit` must be a positive number of examples; got {args.limit}.")
    task = resolve_task(args.task)
    model = resolve_model(args.model, task)
    result = sensitivity(model, task, configs, limit=args.limit)
    print(result.table())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sensitivity.json").write_text(json.dumps(result.to_dict(), indent=2))
        result.plot(out / "sensitivity.png")
        title = f"{args.step} sensitivity: {task.name}"
        page = render_sensitivity_html(result.table(), out / "sensitivity.png", title)
        (out / "sensitivity.html").write_text(page)
        print(f"wrote {out}/sensitivity.json, sensitivity.png and sensitivity.html")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from modelpress import tasks
    from modelpress.measure import format_stats, measure
    from modelpress.pipeline import MeasureSettings, Recipe, builtin_recipes, run

    task = tasks.get(DEMO_TASK)
    available = builtin_recipes()
    names = args.recipes if args.recipes is not None else [r for r in DEMO_RECIPES if r in available]
    recipes = {name: Recipe.resolve(name) for name in names}  # every name checked before any work
    print(f"modelpress demo — task {DEMO_TASK} ({task.description}), model {DEMO_MODEL}")
    model = task.model(DEMO_MODEL)
    settings = MeasureSettings()
    baseline = measure(model, task, **asdict(settings))  # once, shared by every recipe's report
    print("\nbaseline, measured:")
    print(format_stats(baseline))
    rows = []
    for name, recipe in recipes.items():
        print(f"\n=== recipe {name} ===")
        result = run(recipe, task, model=model, out=Path(args.out) / name, settings=settings, baseline=baseline)
        rows.append(_summary_row(name, result.report))
    if rows:
        header = ["recipe", "size", "× smaller", task.metric.name, "Δ", "deployed", "deployed ×smaller",
                  "latency (deployed/baseline)"]
        print("\nsummary (baseline vs each recipe; latency timed interleaved, batch 1, 1 thread):")
        print(_table(rows, header))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "summary.md").write_text(_markdown(rows, header))
        print(f"\nreports: {args.out}/<recipe>/report.html ; summary: {args.out}/summary.md")
    return 0


def _summary_row(name: str, report: dict) -> list[str]:
    base, comp, dep = report["baseline"], report["compressed"], report.get("deployed")
    lat = report["latency_interleaved"]["ratio_vs_baseline"]
    return [
        name,
        f"{comp['size_bytes'] / 1024:.1f} KB",
        f"{base['size_bytes'] / comp['size_bytes']:.1f}×",
        f"{comp['metric']:.4f}",
        f"{comp['metric'] - base['metric']:+.4f}",
        f"{dep['metric']:.4f}" if dep else "—",
        f"{base['size_bytes'] / dep['size_bytes']:.1f}×" if dep else "—",
        f"{lat.get('deployed', lat.get('compressed')):.2f}",
    ]


def summarize(report: dict) -> str:
    """A plain-text summary of a run: one row per stage, then the ratios."""
    from modelpress.pipeline.report import interleaved_ratios, stage_rows

    rows = stage_rows(report)
    lat = report["latency_interleaved"]
    table = [
        [label, f"{s['size_bytes']:,}", f"{s['nonzero_params']:,}", f"{s['macs']:,}", f"{s['latency_ms']:.3f}",
         f"{ratio:.2f}×", f"{s['metric']:.4f}"]
        for (label, s), ratio in zip(rows, interleaved_ratios(report), strict=True)
    ]  # fmt: skip
    text = _table(table, ["stage", "bytes", "non-zero", "MACs", "latency ms", "× baseline", report["metric_name"]])
    text += (f"\nlatency ms: each stage timed alone; × baseline: all stages timed interleaved in one process "
             f"(batch {lat['batch_size']}, {lat['threads']} thread), the figure to compare")  # fmt: skip
    skipped = [f"{s['name']}: {k['module']} ({k['why']})" for s in report["steps"] for k in s.get("skipped", [])]
    if skipped:
        text += "\nskipped: " + "; ".join(skipped)
    errors = [f"{s['name']}: {s['error']}" for s in report["steps"] if s.get("error")]
    if errors:
        text += "\n" + "\n".join(errors)
    if report.get("deploy", {}).get("error"):
        text += f"\ndeployment failed: {report['deploy']['error']}"
    return text


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _markdown(rows: list[list[str]], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"
