"""The files of a dataset in a data directory: find, verify, download what is missing.

Every load reads each file, gunzips it and checks the SHA-256 of the
uncompressed bytes. Measured on the shared MNIST files (2-core VM): gunzip of
the 47 MB training images ~0.12 s, its SHA-256 ~0.02 s. Hashing is thus ~15 % of
reading, too little to justify a verification stamp or an ``.npz`` cache
(which would also have to live somewhere else when the data directory is
read-only); see docs/datasets.md for the figures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._errors import DatasetError, DownloadError, IDXFormatError
from .download import DEFAULT_TIMEOUT, check_contents, download_file
from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, parse_idx, read_bytes
from .paths import ENV_VAR, get_data_dir
from .registry import DatasetFile, DatasetSpec, _check_mirrors, get_dataset

__all__ = [
    "FileCheck",
    "dataset_directory",
    "download_dataset",
    "fetch_files",
    "manual_instructions",
    "verify_dataset",
]


def _has_any_file(directory: Path, spec: DatasetSpec) -> bool:
    return any(
        os.path.lexists(directory / name)
        for file in spec.files.values()
        for name in (file.name, file.gz_name)
    )


def _resolve(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """``(directory holding the files, flat)``.

    Normally ``<data dir>/<subdir>``. If that holds none of the dataset's files but
    the data directory itself does (``data_dir`` given as the ``mnist`` folder, say),
    the data directory is used as is: ``flat`` is then True, and nothing is
    downloaded or moved there (files of another dataset with the same names would
    fail verification and must not be renamed).
    """
    root = get_data_dir(data_dir)
    directory = root / spec.subdir
    if not _has_any_file(directory, spec) and _has_any_file(root, spec):
        return root, True
    return directory, False


def dataset_directory(
    dataset: str | DatasetSpec, data_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The directory holding a dataset's files: ``<data dir>/<subdir>`` (e.g. ``.../mnist``).

    If that directory has none of the files but ``<data dir>`` itself has some,
    ``<data dir>`` (a dataset folder passed directly).
    """
    return _resolve(get_dataset(dataset), data_dir)[0]


def _origin(data_dir: str | os.PathLike[str] | None) -> str:
    if data_dir is not None:
        return "the data_dir argument"
    if os.environ.get(ENV_VAR):
        return f"the environment variable {ENV_VAR}"
    return "the default per-user cache"


def manual_instructions(spec: DatasetSpec, directory: Path, files: Sequence[DatasetFile]) -> str:
    """How to put ``files`` of ``spec`` in place by hand (text for error messages)."""
    names = "\n".join(f"    {f.gz_name}" for f in files)
    where = f" or from {spec.homepage}" if spec.homepage else ""
    return (
        "If this machine is offline or the mirrors are blocked, install the files by hand: "
        f"download\n{names}\n"
        f"from one of the mirrors{where} and put them (gzipped, or uncompressed without "
        f"the .gz) in\n    {directory}\n"
        f"Or put them in DIR/{spec.subdir}/ for a directory DIR of your choice and pass "
        f"data_dir=DIR (command line: --data-dir DIR) or set the environment variable "
        f"{ENV_VAR}=DIR.\n"
        f"Then check them with: course-lib data verify --dataset {spec.name}"
    )


def _read_local(
    directory: Path, file: DatasetFile
) -> tuple[Path | None, bytes | None, list[tuple[Path, str]]]:
    """The first of ``<name>``, ``<name>.gz`` in ``directory`` that verifies.

    Returns ``(path, uncompressed bytes, problems)``; ``path`` is None when no
    candidate verifies, and ``problems`` lists ``(path, reason)`` for each
    candidate that exists but failed.
    """
    problems: list[tuple[Path, str]] = []
    for path in (directory / file.name, directory / file.gz_name):
        if not os.path.lexists(path):
            continue
        try:
            data = read_bytes(path)
            check_contents(data, file, path)
        except DatasetError as exc:
            problems.append((path, str(exc)))
            continue
        except OSError as exc:
            problems.append((path, f"{path}: cannot read: {exc}"))
            continue
        return path, data, problems
    return None, None, problems


def _problem_lines(problems: Sequence[tuple[Path, str]]) -> str:
    if not problems:
        return ""
    lines = "\n".join(f"  - {reason}" for _, reason in problems)
    return f"Present but failing verification:\n{lines}\n"


def fetch_files(
    dataset: str | DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> dict[str, tuple[Path, bytes]]:
    """The verified, uncompressed bytes of a dataset's four files.

    Files present in the dataset directory are used if they verify; missing ones
    (and ones failing verification) are downloaded when ``download`` is true.

    Returns:
        ``{"train_images": (path, bytes), "train_labels": ..., "test_images": ...,
        "test_labels": ...}``.

    Raises:
        DownloadError: a file could not be downloaded from any mirror (lists each
            mirror's error and how to install the files by hand).
        DatasetError: a file is missing or corrupt and ``download`` is false, or the
            directory cannot be written.
    """
    spec = get_dataset(dataset)
    mirror_list = spec.mirrors if mirrors is None else _check_mirrors(mirrors)
    directory, flat = _resolve(spec, data_dir)
    found: dict[str, tuple[Path, bytes]] = {}
    problems: dict[str, list[tuple[Path, str]]] = {}
    for key, file in spec.files.items():
        path, data, file_problems = _read_local(directory, file)
        if path is not None and data is not None:
            found[key] = (path, data)
        problems[key] = file_problems
    missing = [key for key in spec.files if key not in found]
    if missing and (flat or not download):
        all_problems = [p for key in missing for p in problems[key]]
        why = (
            f"This folder holds {spec.title} file names directly (no {spec.subdir}/ "
            "subfolder), so it is used as is and nothing is downloaded into it: complete "
            f"it, or pass its parent directory with the files in {spec.subdir}/.\n"
            if flat
            else "Downloading is off (download=False).\n"
        )
        raise DatasetError(
            f"{spec.title}: {len(missing)} file(s) missing or unusable in {directory} "
            f"(chosen by {_origin(data_dir)}):\n"
            + "".join(f"  - {spec.files[key].gz_name}\n" for key in missing)
            + _problem_lines(all_problems)
            + why
            + manual_instructions(spec, directory, [spec.files[key] for key in missing]),
            path=directory,
        )
    for key in missing:
        file = spec.files[key]
        try:
            found[key] = download_file(
                file,
                directory,
                mirror_list,
                timeout=timeout,
                progress=progress,
                replace=[path for path, _ in problems[key]],
            )
        except DownloadError as exc:
            still_missing = [spec.files[k] for k in missing if k not in found]
            attempts = "\n".join(f"  - {url}: {error}" for url, error in exc.attempts)
            raise DownloadError(
                f"{spec.title}: could not download {file.gz_name} into {directory} "
                f"(chosen by {_origin(data_dir)}); "
                + (
                    f"every mirror failed:\n{attempts}\n"
                    if exc.attempts
                    else "no mirrors are configured.\n"
                )
                + _problem_lines(problems[key])
                + manual_instructions(spec, directory, still_missing),
                attempts=exc.attempts,
                path=directory / file.gz_name,
            ) from None
        except DatasetError as exc:
            raise DatasetError(
                f"{spec.title}: {exc}\n"
                + _problem_lines(problems[key])
                + f"Use a writable data directory (data_dir=... or {ENV_VAR}=...).\n"
                + manual_instructions(spec, directory, [file]),
                path=directory,
            ) from exc
    return found


def download_dataset(
    dataset: str | DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> dict[str, Path]:
    """Make sure a dataset's four files are in the data directory and verified.

    Files already present and verified are kept; missing or corrupt ones are
    downloaded (corrupt ones are renamed to ``*.corrupt`` once a good copy arrived).

    Args:
        dataset: ``"mnist"``, ``"fashion-mnist"`` or a :class:`DatasetSpec`.
        data_dir: the data directory (default: ``$COURSE_LIB_DATA`` or the per-user cache).
        mirrors: base URLs to use instead of the dataset's mirrors.
        timeout: seconds a connect or read may block.
        progress: show tqdm progress bars.

    Returns:
        The path of each file, keyed ``train_images``, ``train_labels``,
        ``test_images``, ``test_labels``.

    Raises:
        DownloadError: a file could not be downloaded (the message lists every mirror's
            error and how to install the files by hand).
    """
    files = fetch_files(
        dataset, data_dir, download=True, mirrors=mirrors, timeout=timeout, progress=progress
    )
    return {key: path for key, (path, _) in files.items()}


@dataclass(frozen=True)
class FileCheck:
    """The state of one dataset file, as reported by :func:`verify_dataset`."""

    dataset: str
    key: str
    file: DatasetFile
    status: Literal["ok", "missing", "corrupt"]
    path: Path | None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def verify_dataset(
    dataset: str | DatasetSpec, data_dir: str | os.PathLike[str] | None = None
) -> list[FileCheck]:
    """Check a dataset's files in place, without downloading or changing anything.

    A file is ``ok`` when ``<name>`` or ``<name>.gz`` exists, its uncompressed bytes
    have the expected size and SHA-256, and it is a well-formed IDX file with the
    right magic number.

    Returns:
        One :class:`FileCheck` per file, in the order train images, train labels,
        test images, test labels.
    """
    spec = get_dataset(dataset)
    directory, _ = _resolve(spec, data_dir)
    checks = []
    for key, file in spec.files.items():
        path, data, problems = _read_local(directory, file)
        reasons = tuple(reason for _, reason in problems)
        if path is None or data is None:
            status: Literal["ok", "missing", "corrupt"] = "corrupt" if problems else "missing"
            checks.append(FileCheck(spec.name, key, file, status, None, reasons))
            continue
        magic = IDX_IMAGES_MAGIC if key.endswith("images") else IDX_LABELS_MAGIC
        try:
            parse_idx(data, source=path, expected_magic=magic, copy=False)
        except IDXFormatError as exc:
            checks.append(FileCheck(spec.name, key, file, "corrupt", path, (*reasons, str(exc))))
            continue
        checks.append(FileCheck(spec.name, key, file, "ok", path, reasons))
    return checks
