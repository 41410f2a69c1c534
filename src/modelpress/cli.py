"""The `modelpress` command line: parses, calls the library, formats. Nothing else.

Exit codes: 0 ok, 2 bad input (one clear message, no traceback), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["build_parser", "main"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add_measure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for latency (default 1)")
    p.add_argument("--batch-size", type=int, default=1, help="examples per timed forward pass (default 1)")
    p.add_argument("--runs", type=int, default=30, help="timed runs after warm-up (default 30)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelpress",
        formatter_class=_formatter,
        description="Compress PyTorch models for small devices; every gain measured on disk, in the "
        "runtime and on held-out data.",
        epilog="examples:\n  modelpress demo\n  modelpress tasks\n  modelpress recipes\n"
        "  modelpress evaluate --task mnist-5k --model lenet-300-100\n"
        "  modelpress compress --task mnist-5k --recipe prune-weight --out out/pw\n"
        "\nRun `modelpress COMMAND --help` for each command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the embedded default, end to end (MNIST-5k, LeNet-300-100)",
                       formatter_class=_formatter,
                       epilog="examples:\n  modelpress demo\n  modelpress demo --out out/demo --recipes prune-weight")
    p.add_argument("--out", default="out/demo", help="folder for the runs' artifacts and reports (default out/demo)")
    p.add_argument("--recipes", nargs="*", default=None, help="built-in recipes to run (default: the demo set)")

    p = sub.add_parser("compress", help="apply a recipe, measure each step, export and deploy",
                       formatter_class=_formatter,
                       epilog="examples:\n  modelpress compress --task mnist-5k --recipe finetune --out out/ft\n"
                       "  modelpress compress --task fashion-mnist --model resnet-s --recipe prune-channel --out out/pc\n"
                       "  modelpress compress --task mypkg.tasks:my_task --model mypkg.nets:build --recipe my.yaml --out out/x")
    p.add_argument("--task", required=True, help="built-in task name or package.module:function")
    p.add_argument("--model", default=None, help="built-in model name, artifact folder, HF folder, weights "
                   "file or package.module:function (default: the task's default model)")
    p.add_argument("--recipe", required=True, help="built-in recipe name (`modelpress recipes`) or a YAML file")
    p.add_argument("--out", required=True, help="output folder: model/, model.onnx, report.json, report.html")
    p.add_argument("--no-deploy", action="store_true", help="skip the ONNX export and onnxruntime measurement")
    p.add_argument("--seed", type=int, default=0, help="random seed for training steps (default 0)")
    _add_measure_args(p)

    p = sub.add_parser("evaluate", help="measure one model: size, params, MACs, latency, memory, metric",
                       formatter_class=_formatter,
                       epilog="examples:\n  modelpress evaluate --task mnist-5k --model lenet-300-100\n"
                       "  modelpress evaluate --task mnist-5k --model out/pw/model --json stats.json\n"
                       "  modelpress evaluate --task mnist-5k --model out/pw/model.onnx\n"
                       "  modelpress evaluate --task mnist-5k --model out/pw/model --runtime onnxruntime")
    p.add_argument("--task", required=True, help="built-in task name or package.module:function")
    p.add_argument("--model", default=None, help="as for compress; a .onnx file is measured in onnxruntime")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="where to run it (default torch); onnxruntime exports the model first")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the Stats as JSON to FILE")
    _add_measure_args(p)

    p = sub.add_parser("sensitivity", help="apply a step to one layer at a time; the metric per layer",
                       formatter_class=_formatter,
                       description="Apply any step (prune, quantize, ...) to one layer at a time and measure the "
                       "task metric on held-out calibration examples (never test).",
                       epilog="examples:\n  modelpress sensitivity --task mnist-5k --model lenet-300-100 --step prune\n"
                       "  modelpress sensitivity --task fashion-mnist --model resnet-s --step prune "
                       "--structure channel --ratios 0.25 0.5 --out out/sens\n"
                       "  modelpress sensitivity --task mnist-5k --model lenet-5 --step quantize --out out/qsens\n"
                       "  modelpress sensitivity --task mnist-5k --step quantize "
                       "--sweep mode=int8-static,int4-weight --set observer=mse")
    p.add_argument("--task", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--step", default="prune", help="recipe key of the step to probe: prune, quantize, ... "
                   "(default prune)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a setting of the step, as in a recipe (repeatable), e.g. --set mode=int4-weight")
    p.add_argument("--sweep", default=None, metavar="FIELD=V1,V2,...",
                   help="one setting to vary, one column per value (prune: sparsity over --ratios)")
    p.add_argument("--structure", default=None, help="prune: weight | neuron | channel | head (default weight)")
    p.add_argument("--ratios", type=float, nargs="+", default=None,
                   help="prune: fractions removed (default 0.25 0.5 0.75 0.9)")
    p.add_argument("--limit", type=int, default=None, help="measure on at most this many held-out examples")
    p.add_argument("--out", default=None, help="folder for sensitivity.json, sensitivity.png, sensitivity.html")

    sub.add_parser("tasks", help="list the built-in tasks", formatter_class=_formatter,
                   epilog="examples:\n  modelpress tasks")
    sub.add_parser("recipes", help="list the built-in recipes", formatter_class=_formatter,
                   epilog="examples:\n  modelpress recipes")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    from modelpress.errors import BadInputError, ModelpressError

    args = build_parser().parse_args(argv)
    try:
        from modelpress import commands

        return getattr(commands, f"cmd_{args.command}")(args)
    except BadInputError as e:
        print(f"modelpress: error: {e}", file=sys.stderr)
        return 2
    except ModelpressError as e:
        print(f"modelpress: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("modelpress: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

