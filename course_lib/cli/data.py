"""``course-lib data``: download and verify the datasets (MNIST, Fashion-MNIST).

course-lib data download [--dataset mnist|fashion-mnist|all] [--data-dir DIR]
course-lib data verify   [--dataset mnist|fashion-mnist|all] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_lib.datasets import (
    DATASETS,
    DEFAULT_TIMEOUT,
    ENV_VAR,
    DatasetError,
    dataset_directory,
    download_dataset,
    get_data_dir,
    verify_dataset,
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data`` with its actions ``download`` and ``verify``."""
    parser = subparsers.add_parser(
        "data",
        help="download or verify the datasets (MNIST, Fashion-MNIST)",
        description=(
            "Download or verify the datasets. The data directory is --data-dir, else the "
            f"environment variable {ENV_VAR}, else the per-user cache; each dataset lives "
            "in a subdirectory (mnist/, fashion-mnist/)."
        ),
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION")
    names = [*DATASETS, "all"]

    download = actions.add_parser(
        "download",
        help="download missing or corrupt files and verify them",
        description=(
            "Download the dataset files that are missing or fail verification, trying each "
            "mirror in turn, and check every file's SHA-256."
        ),
    )
    download.add_argument("--dataset", choices=names, default="all", help="default: all")
    _add_data_dir(download)
    download.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="base URL to download from instead of the built-in mirrors (repeatable)",
    )
    download.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"network timeout per connect or read (default: {DEFAULT_TIMEOUT:g})",
    )
    download.add_argument("--quiet", action="store_true", help="no progress bars")
    download.set_defaults(func=_download)

    verify = actions.add_parser(
        "verify",
        help="check the files in place (nothing is downloaded or changed)",
        description="Check that each file is present, has the right SHA-256 and is valid IDX.",
    )
    verify.add_argument("--dataset", choices=names, default="all", help="default: all")
    _add_data_dir(verify)
    verify.set_defaults(func=_verify)

    parser.set_defaults(func=lambda args: _usage(parser))
    return parser


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"data directory (default: ${ENV_VAR}, else the per-user cache)",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _selected(name: str) -> list[str]:
    return list(DATASETS) if name == "all" else [name]


def _download(args: argparse.Namespace) -> int:
    print(f"Data directory: {get_data_dir(args.data_dir)}")
    for name in _selected(args.dataset):
        title = DATASETS[name].title
        try:
            paths = download_dataset(
                name,
                args.data_dir,
                mirrors=args.mirror,
                timeout=args.timeout,
                progress=not args.quiet,
            )
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{title}: {len(paths)} files verified in {dataset_directory(name, args.data_dir)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    print(f"Data directory: {get_data_dir(args.data_dir)}")
    failed = 0
    for name in _selected(args.dataset):
        for check in verify_dataset(name, args.data_dir):
            where = check.path if check.path is not None else dataset_directory(name, args.data_dir)
            print(f"{check.status.upper():8} {name}/{check.file.name}  ({where})")
            for problem in check.problems:
                print(f"         {problem}")
            failed += not check.ok
    if failed:
        print(
            f"{failed} file(s) missing or corrupt; run `course-lib data download` "
            "(add --data-dir DIR if you use one) or see docs/datasets.md",
            file=sys.stderr,
        )
        return 1
    print("All files OK.")
    return 0
