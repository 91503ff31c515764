"""The `keras-bottleneck` command: what a user runs besides `dvc repro`.

    keras-bottleneck predict PATH...     classify images with the exported classifier
"""
import argparse

from . import predict
from .errors import run_stage


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-bottleneck", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict_parser = commands.add_parser("predict", help=predict.DESCRIPTION,
                                         description=predict.DESCRIPTION)
    predict.add_arguments(predict_parser)
    args = parser.parse_args(argv)
    if args.command == "predict":
        predict.check_arguments(predict_parser, args)
        run_stage(lambda: predict.run(args))


if __name__ == "__main__":
    main()
