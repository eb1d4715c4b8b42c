"""`study export` / `study summary` commands.

Wired into `python -m cbam_viz` through `add_study_commands`; runs alone as
`python -m cbam_viz.study.cli study summary --db URL --study NAME`.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .export import FORMATS


def add_study_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `study` command group; each leaf sets `func(args) -> int` (the exit status)."""
    study = subparsers.add_parser("study", help="user-study results: export votes, print a summary")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="{export,summary}")

    export = commands.add_parser("export", help="write every vote, unblinded, as CSV or JSON")
    _add_store_args(export)
    export.add_argument("--format", choices=FORMATS, default="csv")
    export.add_argument("--out", required=True, help="output file ('-' for stdout)")
    export.set_defaults(func=_reporting_errors(_export))

    summary = commands.add_parser("summary", help="print the statistics as Markdown (those of the Results tab)")
    _add_store_args(summary)
    objective = summary.add_mutually_exclusive_group()
    objective.add_argument("--objective", type=Path,
                           help='JSON file {stimulus_id: {"baseline": score, "cbam": score, ...}} '
                                "to measure agreement with an objective score")
    objective.add_argument("--config", type=Path, metavar="CONFIG.toml",
                           help="the study's config: computes the energy pointing game of every compared model on "
                                "every stimulus with ground truth (loads the pair) and reports agreement")
    summary.add_argument("--everyone", action="store_true",
                         help="count the participants who failed an attention check in, in every figure and table")
    summary.add_argument("--target", type=_share, default=0.60, metavar="SHARE",
                         help="the preference share the power line plans for (default 0.60)")
    summary.add_argument("--models-dir", type=Path, help="models folder with the manifest (default: models/)")
    summary.add_argument("--models", type=Path, metavar="MODELS.toml", help="your own models and sets, if the study uses them")
    summary.set_defaults(func=_reporting_errors(_summary))
    return study


def _add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="SQLAlchemy URL, e.g. postgresql://user@host/db "
                                     "(default: SQLite file in --data-dir)")
    parser.add_argument("--data-dir", default="data", help="folder of the default SQLite file")
    parser.add_argument("--study", required=True, help="study name")


def _share(text: str) -> float:
    """A preference share strictly between 0.5 and 1 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.5 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0.5 and 1, got {text!r}")
    return value


def _reporting_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (OSError, ValueError) as exc:  # StudyError is a ValueError
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run


def _export(args: argparse.Namespace) -> int:
    from .export import write_votes
    from .storage import open_store

    with open_store(args.db, args.data_dir) as store:
        votes = store.votes(args.study)
    if args.out == "-":
        count = write_votes(votes, sys.stdout, args.format)
    else:
        from ..fileio import atomic_write_text

        atomic_write_text(Path(args.out), lambda fh: write_votes(votes, fh, args.format))
        count = len(votes)  # one row per vote
    print(f"wrote {count} votes to {args.out}", file=sys.stderr)
    return 0


def _summary(args: argparse.Namespace) -> int:
    from .report import build_report
    from .storage import open_store

    objective = json.loads(args.objective.read_text(encoding="utf-8")) if args.objective else None
    if args.config:
        objective = objective_scores(args.config, args.models_dir, args.models)
    with open_store(args.db, args.data_dir) as store:
        report = build_report(store, args.study, objective, everyone=args.everyone, target=args.target)
    print(report.text, end="")
    return 0


def objective_scores(config_path: Path, models_dir: Path | None = None,
                     user_models: Path | None = None) -> dict[str, dict[str, float]]:
    """Energy pointing game of every compared model for each stimulus of the study that has ground truth."""
    from ..service import AppContext
    from .config import load_config
    from .runtime import build_cache

    config = load_config(config_path)
    ctx = AppContext(sets=[config.pair], user_models=user_models, **({"models_dir": models_dir} if models_dir else {}))
    return build_cache(ctx, config).objective()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cbam_viz.study.cli")
    add_study_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
