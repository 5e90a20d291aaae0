"""The one command line: `python -m carsketch predict|serve|mirror ...` (or `carsketch ...` once installed)."""

import argparse
import importlib
import sys

from carsketch.errors import PipelineError, run_main

# subcommand -> (module that implements it, one-line help, the pyproject extra it needs). Each module has
# add_arguments(parser) and run(args); it is imported only when its subcommand runs, so `--help` and each command
# start fast.
SUBCOMMANDS = {
    "predict": ("carsketch.inference.predict",
                "classify drawings (images, .npy bitmaps, Quick, Draw! .ndjson) as car / not car", None),
    "serve": ("carsketch.inference.serve", "a web page to draw on and a JSON API, over the trained model", "serve"),
    "mirror": ("carsketch.mirror",
               "serve a folder of <category>.npy files over HTTP with Range support, like the bucket", None),
}


def parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """The parser, with the arguments of the subcommand named in argv (only that module is imported)."""
    parser = argparse.ArgumentParser(prog="carsketch", description="Car Sketch Classifier: tell car from not car "
                                     "in sketches with the model the DVC pipeline trained.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module_name, summary, extra) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=summary, description=summary)
        if name in argv:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                install = f"pip install 'carsketch[{extra}]'" if extra else "pip install carsketch"
                raise PipelineError(f"`carsketch {name}` needs {error.name}, which is not installed: {install}") from None
            module.add_arguments(subparser)
            subparser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = run_main(lambda: parser_for(argv).parse_args(argv))
    return run_main(lambda: args.run(args)) or 0


if __name__ == "__main__":
    sys.exit(main())
