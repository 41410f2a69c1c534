"""The command-line subcommands (part of the CLI layer): call the library, format its results."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from modelpress.errors import BadInputError

__all__ = ["cmd_compress", "cmd_demo", "cmd_evaluate", "cmd_recipes", "cmd_sensitivity", "cmd_tasks"]

DEMO_TASK, DEMO_MODEL = "mnist-5k", "lenet-300-100"
DEMO_RECIPES = ("prune-weight", "prune-neuron", "int8-static", "int4-weight", "prune-int8")
# The embedded default deployed for a phone too: this recipe again with --runtime executorch (a .pte).
DEMO_PHONE = "int8-static"


def _settings(args: argparse.Namespace):
    from modelpress.pipeline import MeasureSettings

    return MeasureSettings(threads=args.threads, batch_size=args.batch_size, runs=args.runs, runtime=args.runtime)


def cmd_tasks(args: argparse.Namespace) -> int:
    from modelpress import tasks

    rows = tasks.describe()
    cols = [c for c in ("name", "description", "input_shape", "train", "calibration", "test", "num_classes",
                        "models", "default_model", "available") if any(c in r for r in rows)]
    print(_table([[_cell(r.get(c, "")) for c in cols] for r in rows], cols))
    missing = [f"{r['name']}: {r['error']}" for r in rows if r.get("error")]
    if missing:
        print("\nnot installed here:\n  " + "\n  ".join(missing))
    print("\nUse one with: modelpress evaluate --task NAME ; modelpress compress --task NAME --recipe R --out DIR")
    return 0


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value and isinstance(value[0], str) else "×".join(map(str, value))
    return str(value)


def _recipe_text(path: Path) -> tuple[str, str]:
    """A built-in recipe file's description (all its leading comment lines, joined) and its steps."""
    from modelpress.pipeline import Recipe

    lines = path.read_text(encoding="utf-8").splitlines()
    words = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    try:
        steps = " → ".join(s.key for s in Recipe.from_yaml(path).steps)
    except BadInputError as e:
        steps = f"(invalid: {e})"
    return " ".join(words), steps


def cmd_recipes(args: argparse.Namespace) -> int:
    import textwrap

    from modelpress.pipeline import Recipe, builtin_recipes

    recipes = builtin_recipes()
    if args.name:
        Recipe.resolve(args.name)  # an unknown name is the same clear error as for compress
        if args.name not in recipes:
            raise BadInputError(f"`{args.name}` is a file, not a built-in recipe. Fix: give a name from "
                                "`modelpress recipes`.")
        print(recipes[args.name].read_text(encoding="utf-8"), end="")
        return 0
    rows = [[name, *reversed(_recipe_text(path))] for name, path in sorted(recipes.items())]
    width = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'recipe'.ljust(width[0])}  {'steps'.ljust(width[1])}  what it does")
    print(f"{'-' * width[0]}  {'-' * width[1]}  {'-' * 12}")
    indent = " " * (width[0] + width[1] + 4)
    for name, steps, text in rows:  # the whole description, wrapped, never cut
        body = textwrap.fill(text, width=max(len(indent) + 40, 116), initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)
        print(f"{name.ljust(width[0])}  {steps.ljust(width[1])}  {body[len(indent):]}")
    print("\nShow one (YAML, to copy and edit): modelpress recipes NAME")
    print("Use one with: modelpress compress --task TASK --recipe NAME --out DIR")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from modelpress.pipeline.resolve import check_model_spec, resolve_task

    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise BadInputError(f"`--json` folder `{Path(args.json).parent}` does not exist. Fix: create it first.")
    check_model_spec(args.model)  # before the data loads
    if args.runtime == "openvino" or _is_ir(args.model):
        from modelpress.measure.openvino_runtime import require_openvino

        require_openvino("--runtime openvino" if args.runtime == "openvino" else f"--model {args.model}")
    if args.runtime == "executorch" or _is_pte(args.model):
        from modelpress.measure.executorch_runtime import require_executorch

        require_executorch("--runtime executorch" if args.runtime == "executorch" else f"--model {args.model}")
    task = resolve_task(args.task)
    stats = _evaluate(args, task)
    print(f"task {task.name}, model {args.model or task.default_model}, runtime {stats.runtime}")
    print(_format(stats, task, onnx_file=_is_onnx(args.model) or _is_ir(args.model) or _is_pte(args.model)))
    if _is_pte(args.model):
        from modelpress.measure.executorch_runtime import pte_ops

        print(f"ops: {pte_ops(args.model).describe()}")
    if args.json:
        Path(args.json).write_text(json.dumps(stats.to_dict(), indent=2))
        print(f"wrote {args.json}")
    return 0


def _is_onnx(spec: str | None) -> bool:
    return bool(spec) and Path(spec).suffix.lower() == ".onnx"


def _is_pte(spec: str | None) -> bool:
    """An ExecuTorch program."""
    return bool(spec) and Path(spec).suffix.lower() == ".pte"


def _is_ir(spec: str | None) -> bool:
    """An OpenVINO IR (model.xml beside model.bin)."""
    return bool(spec) and Path(spec).suffix.lower() == ".xml"


def _evaluate(args: argparse.Namespace, task):
    from modelpress.measure import measure, measure_onnx
    from modelpress.pipeline.resolve import check_fits, resolve_model

    kw = {"threads": args.threads, "batch_size": args.batch_size, "runs": args.runs}
    if _is_ir(args.model) or (_is_onnx(args.model) and args.runtime == "openvino"):
        from modelpress.measure import measure_openvino

        return measure_openvino(args.model, task, **kw)
    if _is_pte(args.model):
        from modelpress.measure import measure_executorch

        return measure_executorch(args.model, task, **kw)  # params / MACs: not counted (0 → n/a)
    if _is_onnx(args.model):
        return measure_onnx(args.model, task, **kw)
    model = resolve_model(args.model, task, trust_source=args.trust_source)
    check_fits(model, task)
    if args.runtime == "torch":
        return measure(model, task, **kw)
    return _measure_deployed(model, args.model, task, kw, args.runtime)


def _format(stats, task, *, onnx_file: bool) -> str:
    from modelpress.measure import format_stats

    text = format_stats(stats, metric_name=task.metric.name)
    if onnx_file:  # an ONNX file alone has no MAC counter (MACs are counted on the torch model), so 0 means unknown
        text = "\n".join(
            ln.replace(" 0", " n/a (not counted for an ONNX file; evaluate the artifact folder for MACs)", 1)
            if ln.startswith("MACs") and ln.rstrip().endswith(" 0") else
            ln.replace(" 0", " n/a (not counted for a .pte file)", 1)
            if ln.startswith(("params", "nonzero params")) and ln.rstrip().endswith(" 0") else ln
            for ln in text.splitlines()
        )
    return text


def _measure_deployed(model, spec, task, kw, runtime="onnxruntime"):
    """Export to ONNX, re-apply the deploy hooks of the artifact's recorded steps with ``runtime`` as the
    target (their candidates in that runtime only), measure what they ship."""
    from modelpress.context import DeployTarget
    from modelpress.measure import count_macs, measure_onnx
    from modelpress.pipeline import Recipe
    from modelpress.pipeline.deploy import export_deployed

    steps = []
    folder = Path(spec or "")
    manifest = folder if folder.name == "manifest.json" else folder / "manifest.json"
    if spec and manifest.is_file():
        recorded = json.loads(manifest.read_text()).get("steps") or []
        steps = list(Recipe.from_list(recorded).steps) if recorded else []
    target = DeployTarget(runtime=runtime, batch_size=kw["batch_size"], threads=kw["threads"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        info = export_deployed(model, steps, task, path, target=target)
        macs = count_macs(model, task.example_inputs)
        if info["shipped"]["runtime"] == "openvino":
            from modelpress.measure import measure_openvino

            return measure_openvino(path.with_suffix(".xml"), task, macs=macs, **kw)
        if info["shipped"]["runtime"] == "executorch":
            from modelpress.measure import measure_executorch

            return measure_executorch(path.with_suffix(".pte"), task, macs=macs, **kw)
        return measure_onnx(path, task, macs=macs, **kw)


def cmd_compress(args: argparse.Namespace) -> int:
    from modelpress.pipeline import Recipe, run
    from modelpress.pipeline.outdir import check_folder
    from modelpress.pipeline.resolve import check_model_spec, resolve_model, resolve_task
    from modelpress.pipeline.run import RUN_OUTPUTS

    # Everything that can be checked without the data first: the recipe, the output folder, the model path.
    recipe = Recipe.resolve(args.recipe)
    check_folder(args.out, RUN_OUTPUTS)
    check_model_spec(args.model)
    settings = _settings(args)  # --runtime openvino / executorch not installed: exit 2 before the data loads
    task = resolve_task(args.task)
    model = resolve_model(args.model, task, trust_source=args.trust_source)
    result = run(recipe, task, model=model, out=args.out, settings=settings, seed=args.seed,
                 deploy=not args.no_deploy, command=args.command_line, model_name=args.model or task.default_model)
    print()
    print(summarize(result.report))
    ir = ["model.xml", "model.bin"] if (Path(args.out) / "model.xml").is_file() else []  # OpenVINO won
    ir += ["model.pte"] if (Path(args.out) / "model.pte").is_file() else []  # ExecuTorch won
    written = ["model/"] + (["model.onnx", *ir] if result.deployed else []) + ["report.json", "report.html"]
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
    from modelpress.pipeline.outdir import OutputFolder, check_folder
    from modelpress.pipeline.report import render_sensitivity_html
    from modelpress.pipeline.resolve import resolve_model, resolve_task
    from modelpress.search.sensitivity import sensitivity

    configs = _sensitivity_configs(args)  # bad flags are reported before any data loads
    if args.limit is not None and args.limit < 1:
        raise BadInputError(f"`--limit` must be a positive number of examples; got {args.limit}.")
    files = ("sensitivity.json", "sensitivity.png", "sensitivity.html")
    if args.out:
        check_folder(args.out, files)  # before the scan, which takes minutes
    task = resolve_task(args.task)
    model = resolve_model(args.model, task, trust_source=args.trust_source)
    result = sensitivity(model, task, configs, limit=args.limit)
    print(result.table())
    if args.out:
        folder = OutputFolder.open(args.out, files, command=args.command_line)
        out = folder.path
        with folder.write(*files):
            (out / "sensitivity.json").write_text(json.dumps(result.to_dict(), indent=2))
            result.plot(out / "sensitivity.png")
            title = f"{args.step} sensitivity: {task.name}"
            (out / "sensitivity.html").write_text(render_sensitivity_html(result.table(), out / "sensitivity.png", title))
        folder.finish()
        print(f"wrote {out}/sensitivity.json, sensitivity.png and sensitivity.html")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from modelpress import tasks
    from modelpress.measure import format_stats, measure
    from modelpress.pipeline import MeasureSettings, Recipe, builtin_recipes, run
    from modelpress.pipeline.outdir import OutputFolder, check_folder
    from modelpress.pipeline.run import RUN_OUTPUTS

    available = builtin_recipes()
    names = args.recipes if args.recipes is not None else [r for r in DEMO_RECIPES if r in available]
    recipes = {name: Recipe.resolve(name) for name in names}  # every name checked before any work
    phone = _demo_phone(names)
    for name in [*names, *([f"{DEMO_PHONE}-phone"] if phone else [])]:  # every folder too: a refusal
        check_folder(Path(args.out) / name, RUN_OUTPUTS)               # after an hour of work helps nobody
    top = OutputFolder.open(args.out, ("summary.md",), command=args.command_line)
    if top.note:
        print(top.note)
    task = tasks.get(DEMO_TASK)
    print(f"modelpress demo — task {DEMO_TASK} ({task.description}), model {DEMO_MODEL}")
    model = task.model(DEMO_MODEL)
    settings = MeasureSettings()
    baseline = measure(model, task, **settings.timing())  # once, shared by every recipe's report
    print("\nbaseline, measured:")
    print(format_stats(baseline, metric_name=task.metric.name))
    rows = []
    for name, recipe in recipes.items():
        print(f"\n=== recipe {name} ===")
        result = run(recipe, task, model=model, out=Path(args.out) / name, settings=settings, baseline=baseline,
                     command=args.command_line, model_name=DEMO_MODEL)
        rows.append(_summary_row(name, result.report))
    if phone:
        print(f"\n=== recipe {DEMO_PHONE}, deployed for a phone (ExecuTorch, XNNPACK) ===")
        result = run(recipes[DEMO_PHONE], task, model=model, out=Path(args.out) / f"{DEMO_PHONE}-phone",
                     settings=MeasureSettings(runtime="executorch"), baseline=baseline,
                     command=args.command_line, model_name=DEMO_MODEL)
        rows.append(_summary_row(f"{DEMO_PHONE} (phone)", result.report))
    elif DEMO_PHONE in names:
        from modelpress.measure.executorch_runtime import INSTALL_HINT

        print(f"\nnote: the phone deployment (ExecuTorch) is skipped: ExecuTorch is not installed ({INSTALL_HINT})")
    if rows:
        header = ["recipe", "size", "× smaller", task.metric.name, "Δ", "deployed in", "deployed",
                  "deployed ×smaller", "latency (deployed/baseline)"]
        print("\nsummary (baseline vs each recipe; latency timed interleaved, batch 1, 1 thread):")
        print(_table(rows, header))
        with top.write("summary.md"):
            (top.path / "summary.md").write_text(_markdown(rows, header))
        print(f"\nreports: {args.out}/<recipe>/report.html ; summary: {args.out}/summary.md")
    top.finish()
    return 0


def _demo_phone(names: list[str]) -> bool:
    """Whether the demo also deploys `DEMO_PHONE` for a phone: it is among the recipes and ExecuTorch is installed."""
    from modelpress.measure.executorch_runtime import executorch_available

    return DEMO_PHONE in names and executorch_available()


def _summary_row(name: str, report: dict) -> list[str]:
    base, comp, dep = report["baseline"], report["compressed"], report.get("deployed")
    lat = report["latency_interleaved"]["ratio_vs_baseline"]
    return [
        name,
        f"{comp['size_bytes'] / 1024:.1f} KB",
        f"{base['size_bytes'] / comp['size_bytes']:.1f}×",
        f"{comp['metric']:.4f}",
        f"{comp['metric'] - base['metric']:+.4f}",
        dep["runtime"] if dep else "—",
        f"{dep['metric']:.4f}" if dep else "—",
        f"{base['size_bytes'] / dep['size_bytes']:.1f}×" if dep else "—",
        f"{lat.get('deployed', lat.get('compressed')):.2f}",
    ]


def summarize(report: dict) -> str:
    """A plain-text summary of a run: one row per stage, then the ratios."""
    from modelpress.pipeline.changes import step_lines
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
    lines = step_lines(report)
    if lines:
        text += "\n" + "\n".join(lines)
    errors = [f"{s['name']}: {s['error']}" for s in report["steps"] if s.get("error")]
    if errors:
        text += "\n" + "\n".join(errors)
    shipped = report.get("deploy", {}).get("shipped", {})
    ops = shipped.get("ops") or {}
    if shipped.get("runtime") == "executorch" and "delegated_ops" in ops:
        text += (f"\nExecuTorch {shipped['file']}: {ops['delegated_ops']} ops delegated to XNNPACK, "
                 f"{ops['portable_ops']} on portable kernels"
                 + (f" ({', '.join(f'{k} {v}' for k, v in sorted(ops['portable'].items()))})"
                    if ops["portable"] else ""))
    fid = (report.get("deployed") or {}).get("fidelity")
    if fid:
        agree = f"top-1 agreement {fid['agreement']:.4f}, " if fid.get("agreement") is not None else ""
        text += (f"\nfidelity of the deployed model to the fp32 baseline on the test split: {agree}"
                 f"output cosine {fid['cosine']:.5f}")
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
