"""The `modelpress` command line: parses, calls the library, formats. Nothing else.

Exit codes: 0 ok, 2 bad input (one clear message, no traceback), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
import traceback
from collections.abc import Callable

from modelpress import __version__

__all__ = ["build_parser", "main"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _positive_int(text: str) -> int:
    """argparse type: an int ≥ 1 (so `--runs 0` is refused by its flag name, before any data loads)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1; got {value}")
    return value


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (a pruning ratio)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1); got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), e.g. 0.5 for half; got {value:g}")
    return value


def _add_measure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive_int, default=1, help="intra-op threads for latency (default 1)")
    p.add_argument("--batch-size", type=_positive_int, default=1, help="examples per timed forward pass (default 1)")
    p.add_argument("--runs", type=_positive_int, default=30, help="timed runs after warm-up (default 30)")


def _debug_flag() -> argparse.ArgumentParser:
    """`--debug` for every subcommand too (SUPPRESS: a subcommand without it keeps the top-level value)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, print the full traceback too")
    parent.add_argument("--trust-source", action="store_true", default=argparse.SUPPRESS,
                        help="let a --model artifact whose source is a package.module:function run that "
                        "function (only for artifacts you made or trust)")
    return parent


def _add_run_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """The subcommands that measure and compress: demo, compress, evaluate."""
    p = add("demo", help="the embedded default, end to end (MNIST-5k, LeNet-300-100)",
            epilog="examples:\n  modelpress demo\n  modelpress demo --out out/demo --recipes prune-weight")
    p.add_argument("--out", default="out/demo", help="folder for the runs' artifacts and reports (default out/demo)")
    p.add_argument("--recipes", nargs="*", default=None, help="built-in recipes to run (default: the demo set)")

    p = add("compress", help="apply a recipe, measure each step, export and deploy",
            epilog="examples:\n  modelpress compress --task mnist-5k --recipe finetune --out out/ft\n"
            "  modelpress compress --task fashion-mnist --model resnet-s --recipe prune-channel --out out/pc\n"
            "  modelpress compress --task bbc-news --recipe int8-static --out out/q8 --runtime openvino\n"
            "  modelpress compress --task mnist-5k --recipe int8-static --out out/phone --runtime executorch\n"
            "  modelpress compress --task mypkg.tasks:my_task --model mypkg.nets:build --recipe my.yaml --out out/x")
    p.add_argument("--task", required=True, help="built-in task name or package.module:function")
    p.add_argument("--model", default=None, help="built-in model name, artifact folder, HF folder, weights "
                   "file or package.module:function (default: the task's default model)")
    p.add_argument("--recipe", required=True, help="built-in recipe name (`modelpress recipes`) or a YAML file")
    p.add_argument("--out", required=True, help="output folder: model/, model.onnx, report.json, report.html")
    p.add_argument("--no-deploy", action="store_true", help="skip the ONNX export and onnxruntime measurement")
    p.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino", "executorch"), default="auto",
                   help="where the deployed model runs: auto (default) measures the candidates of onnxruntime, "
                   "OpenVINO and ExecuTorch (where installed) and keeps the best; the others only that "
                   "runtime's (executorch: a phone / embedded .pte with the XNNPACK delegate)")
    p.add_argument("--seed", type=int, default=0, help="random seed for training steps (default 0)")
    _add_measure_args(p)

    p = add("evaluate", help="measure one model: size, params, MACs, latency, memory, metric",
            epilog="examples:\n  modelpress evaluate --task mnist-5k --model lenet-300-100\n"
            "  modelpress evaluate --task mnist-5k --model out/pw/model --json stats.json\n"
            "  modelpress evaluate --task mnist-5k --model out/pw/model.onnx\n"
            "  modelpress evaluate --task mnist-5k --model out/pw/model --runtime onnxruntime\n"
            "  modelpress evaluate --task mnist-5k --model out/pw/model.xml\n"
            "  modelpress evaluate --task mnist-5k --model out/phone/model.pte")
    p.add_argument("--task", required=True, help="built-in task name or package.module:function")
    p.add_argument("--model", default=None, help="as for compress; a .onnx file is measured in onnxruntime "
                   "(or OpenVINO with --runtime openvino), an OpenVINO IR .xml (with its .bin) in OpenVINO, an "
                   "ExecuTorch .pte in ExecuTorch")
    p.add_argument("--runtime", choices=("torch", "onnxruntime", "openvino", "executorch"), default="torch",
                   help="where to run it (default torch); the others export the model first")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the Stats as JSON to FILE")
    _add_measure_args(p)


def build_parser() -> argparse.ArgumentParser:
    """The `modelpress` argument parser; every subcommand's help ends with examples."""
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
    parser.add_argument("--version", action="version", version=f"modelpress {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print the full traceback too")
    parser.add_argument("--trust-source", action="store_true",
                        help="let an artifact whose source is a package.module:function run that function")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(sub.add_parser, formatter_class=_formatter, parents=[_debug_flag()])

    _add_run_commands(add)

    p = add("sensitivity", help="apply a step to one layer at a time; the metric per layer",
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
    p.add_argument("--ratios", type=_fraction, nargs="+", default=None,
                   help="prune: fractions removed (default 0.25 0.5 0.75 0.9)")
    p.add_argument("--limit", type=int, default=None, help="measure on at most this many held-out examples")
    p.add_argument("--out", default=None, help="folder for sensitivity.json, sensitivity.png, sensitivity.html")

    add("tasks", help="list the built-in tasks", epilog="examples:\n  modelpress tasks")
    p = add("recipes", help="list the built-in recipes, or print one as YAML",
            epilog="examples:\n  modelpress recipes\n  modelpress recipes prune-int8\n"
            "  modelpress recipes prune-int8 > my.yaml   # then edit it and run --recipe my.yaml")
    p.add_argument("name", nargs="?", default=None, help="a built-in recipe to print as YAML")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 1 failure, 130 interrupted)."""
    from modelpress.errors import BadInputError, ModelpressError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["modelpress", *argv])  # recorded in reports and output markers
    try:
        from modelpress import commands

        return getattr(commands, f"cmd_{args.command}")(args)
    except BadInputError as e:
        return _fail(args, e, "error", 2)
    except ModelpressError as e:
        return _fail(args, e, "failed", 1)
    except KeyboardInterrupt:
        print("modelpress: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `modelpress recipes | head`: the reader left; not an error worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - a bug in modelpress or a library: one line, the traceback with --debug
        return _fail(args, e, f"failed with an unexpected {type(e).__name__}", 1)


def _fail(args: argparse.Namespace, e: BaseException, what: str, code: int) -> int:
    if getattr(args, "debug", False):
        traceback.print_exception(e, file=sys.stderr)
    hint = "" if getattr(args, "debug", False) or code == 2 else " (run with --debug for the traceback)"
    print(f"modelpress: {what}: {e}{hint}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
