"""The `keras-bottleneck` command: what a user runs besides `dvc repro`.

    keras-bottleneck predict PATH...     classify images with the exported classifier
    keras-bottleneck audit [--top N]     the likeliest label errors and duplicates found
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
    audit_help = "the likeliest label errors and duplicates the audit stage found"
    audit_parser = commands.add_parser("audit", help=audit_help, description=audit_help)
    audit_parser.add_argument("--top", type=int, default=20, help="rows shown of each list")
    audit_parser.add_argument("--dir", default="metrics/audit",
                              help="where the audit stage wrote its lists")
    args = parser.parse_args(argv)
    if args.command == "predict":
        predict.check_arguments(predict_parser, args)
        run_stage(lambda: predict.run(args))
    else:
        from . import audit  # scikit-learn and cleanlab load only when needed
        run_stage(lambda: print(audit.show(args.dir, args.top)))


if __name__ == "__main__":
    main()
