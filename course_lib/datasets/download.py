"""Downloading one dataset file: mirrors in turn, atomic, verified, resumed within a call.

A download goes to a temporary file in the destination directory
(``.<name>.<random>.part``). Only after the whole body arrived and its
uncompressed bytes match the expected size and SHA-256 is it moved to its
final name with :func:`os.replace`; on any error (including Ctrl-C) the
temporary file is deleted. So the data directory never holds a half-written
file under a name the loader reads.

The transfer itself (requests, timeouts, the tqdm progress bar) is pooch's
``HTTPDownloader``. Kept here, because pooch does not do them (see docs/datasets.md): the
mirrors tried in turn with one error listing every attempt, the SHA-256 of the
*uncompressed* bytes (mirrors serve ``.gz`` or plain files whose compressed bytes differ),
the temporary file beside the target, and the resume: if a connection drops mid-file, the
download continues with an HTTP ``Range`` request (up to :data:`MAX_RESUMES` times per
mirror); a server that ignores ``Range`` sends the whole file again and it starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from tqdm.auto import tqdm

from .. import __version__
from ._errors import ChecksumError, DatasetError, DatasetWarning, DownloadError
from .idx import GZIP_MAGIC, maybe_gunzip
from .registry import DATASETS, DatasetFile, mirror_url

__all__ = ["DEFAULT_TIMEOUT", "MAX_RESUMES", "check_contents", "download_file"]

#: Seconds a connection attempt or a read may block before the mirror counts as failed.
DEFAULT_TIMEOUT = 30.0
#: How often one mirror's download is resumed after the connection dropped mid-file.
MAX_RESUMES = 3
#: Temporary ``.part`` files older than this were left by a killed process and are deleted.
STALE_PART_SECONDS = 24 * 3600
USER_AGENT = f"course_lib/{__version__} (Python urllib; dataset download)"
_CHUNK = 1 << 16


def check_contents(data: bytes, file: DatasetFile, source: str | os.PathLike[str]) -> None:
    """Check the uncompressed bytes of ``file`` against its size and SHA-256.

    Raises:
        ChecksumError: wrong size or digest; the message names ``source``.
    """
    name = os.fspath(source)
    if file.size is not None and len(data) != file.size:
        raise ChecksumError(
            f"{name}: {len(data)} bytes after decompression, expected {file.size} "
            f"for {file.name} (truncated or not the right file)",
            path=None if "://" in name else name,
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        known = [
            f"{spec.title} {other.name}"
            for spec in DATASETS.values()
            for other in spec.files.values()
            if other.sha256 == digest
        ]
        what = f"it is {known[0]}" if known else "corrupt or not the right file"
        raise ChecksumError(
            f"{name}: SHA-256 of the uncompressed data is {digest}, expected {file.sha256} "
            f"for {file.name} ({what})",
            path=None if "://" in name else name,
        )


class _MirrorFailed(Exception):
    """One mirror failed; the message says how."""


class _LocalWriteError(Exception):
    """Writing the temporary file failed (disk full, permissions): no mirror can help."""


def _range_start(value: str) -> int | None:
    # "Content-Range: bytes 1000-4999/5000"
    unit, _, rest = value.partition(" ")
    if unit.strip().lower() != "bytes":
        return None
    start = rest.partition("-")[0].strip()
    return int(start) if start.isdigit() else None


def _describe(exc: BaseException, timeout: float) -> str:
    """One line saying how a mirror failed (requests' and urllib's errors alike)."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP error {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}"
    if isinstance(exc, requests.ConnectTimeout):
        return f"timed out after {timeout:g} s while connecting"
    if isinstance(exc, (requests.ReadTimeout, TimeoutError)) or "Read timed out" in str(exc):
        return f"timed out: no data for {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else exc
        return f"connection failed: {getattr(reason, 'reason', reason)}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, BaseException):
            return f"{type(reason).__name__}: {reason}"
        return f"URLError: {reason}"
    if isinstance(exc, (_MirrorFailed, DatasetError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _fetch(url: str, out: BinaryIO, *, timeout: float, progress: bool, desc: str) -> None:
    """Write the body at ``url`` to ``out`` with pooch's HTTP downloader (requests, tqdm
    progress bar), resuming with an HTTP ``Range`` request when the connection drops.

    pooch does the transfer; what it does not do is kept here: the resume (a response hook
    sees the status before pooch writes the body, so a server that ignores ``Range`` makes the
    download start over), and ``file://`` mirrors (a local copy, e.g. a USB stick).
    """
    if url.startswith("file:"):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(_CHUNK):
                    _write(out, chunk)
        except OSError as exc:
            raise _MirrorFailed(_describe(exc, timeout)) from exc
        return

    import pooch
    import requests

    # total=1 until pooch sets the real size: pooch tests the bar's truth value, which tqdm
    # refuses to give for a bar without a total
    bar = tqdm(
        desc=desc, total=1, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress
    )
    resumes = 0
    try:
        while True:
            received = out.tell()
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            if received:
                headers["Range"] = f"bytes={received}-"
            attempt = _Attempt(out, bar, received)
            downloader = pooch.HTTPDownloader(
                progressbar=bar if progress else False,
                chunk_size=_CHUNK,
                timeout=timeout,
                headers=headers,
                hooks={"response": attempt.on_response},
            )
            try:
                downloader(url, _Writer(out), None)
                total = attempt.total
                if total is not None and out.tell() < total:
                    raise _MirrorFailed(f"connection closed after {out.tell()} of {total} bytes")
                return
            except requests.HTTPError:
                raise  # 404 and friends: not worth resuming
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.ConnectionError,
                _MirrorFailed,
            ) as exc:
                got, total = out.tell(), attempt.total
                refused = not attempt.answered  # no response at all (refused, unreachable)
                if isinstance(exc, requests.ConnectionError) and "Read timed out" in str(exc):
                    message = _describe(exc, timeout)
                elif isinstance(exc, _MirrorFailed) or refused:
                    message = _describe(exc, timeout)
                else:
                    message = f"connection closed after {got} of {total or '?'} bytes"
                if refused or got == 0 or resumes >= MAX_RESUMES:
                    if resumes:
                        message += f" (after {resumes} resumed attempt(s))"
                    raise _MirrorFailed(message) from exc
                resumes += 1
    finally:
        bar.close()


class _Attempt:
    """One request of a download; its response hook runs before pooch writes the body."""

    def __init__(self, out: BinaryIO, bar: tqdm, received: int) -> None:
        self.out, self.bar, self.received = out, bar, received
        self.answered = False
        self.total: int | None = None  #: bytes the whole file has, when the server says

    def on_response(self, response: Any, *args: object, **kwargs: object) -> None:
        """Continue after ``received`` (206 from there), or start over (anything else)."""
        self.answered = True
        # a body cut short ends the stream with the bytes that did arrive (urllib3 would
        # otherwise raise and drop its last partial chunk): the resume continues exactly there
        raw = getattr(response, "raw", None)
        if raw is not None and hasattr(raw, "enforce_content_length"):
            raw.enforce_content_length = False
        length = response.headers.get("Content-Length")
        body = int(length) if length and length.isdigit() else None
        resumed = bool(
            self.received
            and response.status_code == 206
            and _range_start(response.headers.get("Content-Range", "")) == self.received
        )
        if self.received and not resumed and response.ok:
            self.out.seek(0)
            self.out.truncate()
            self.bar.reset()
        start = self.received if resumed else 0
        self.total = None if body is None else start + body


class _Writer:
    """The file pooch writes to: write errors become :class:`_LocalWriteError` (no mirror
    can help with a full disk), everything else goes to the real file."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, chunk: bytes) -> int:
        return _write(self._out, chunk)

    def flush(self) -> None:
        self._out.flush()


def _write(out: BinaryIO, chunk: bytes) -> int:
    try:
        return out.write(chunk)
    except OSError as exc:
        raise _LocalWriteError(str(exc)) from exc


def _move_aside(paths: Sequence[Path], target: Path) -> None:
    for path in paths:
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if path != target:  # the target is overwritten anyway
                warnings.warn(
                    f"{path} failed verification and could not be moved aside ({exc}); "
                    "delete it by hand",
                    DatasetWarning,
                    stacklevel=4,
                )
            continue
        warnings.warn(
            f"{path} failed verification; moved it to {aside} and downloaded a fresh copy "
            f"to {target}",
            DatasetWarning,
            stacklevel=4,
        )


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def download_file(
    file: DatasetFile,
    directory: str | os.PathLike[str],
    mirrors: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    replace: Sequence[str | os.PathLike[str]] = (),
) -> tuple[Path, bytes]:
    """Download ``file`` from the first mirror that delivers the right bytes.

    Each mirror is a base URL; ``<mirror>/<file.name>.gz`` is fetched. The file is
    saved as ``<directory>/<name>.gz`` (or ``<name>`` if the mirror served it
    uncompressed) only once its uncompressed bytes match ``file.size`` and
    ``file.sha256``.

    Args:
        file: what to download.
        directory: where to put it (created if needed).
        mirrors: base URLs, tried in order.
        timeout: seconds a connect or a read may block.
        progress: show a tqdm progress bar.
        replace: existing files that failed verification; they are renamed to
            ``<name>.corrupt`` (with a :class:`DatasetWarning`) just before the new
            file is moved in, i.e. only when the download succeeded.

    Returns:
        ``(path of the saved file, its uncompressed bytes)``.

    Raises:
        DownloadError: every mirror failed; ``attempts`` holds ``(url, error)`` pairs.
        DatasetError: the directory cannot be created or written.
    """
    directory = Path(directory)
    if not mirrors:
        raise DownloadError(f"no mirrors to download {file.gz_name} from", attempts=())
    created = _missing_ancestors(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the data directory {directory}: {exc}") from exc
    try:
        return _download_from_mirrors(file, directory, mirrors, timeout, progress, replace)
    except BaseException:
        # Leave no trace of a failed download: remove the directories made for it (if empty).
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _remove_stale_parts(directory: Path, file: DatasetFile) -> None:
    """Delete temporary files of ``file`` left by a killed process (older than a day)."""
    limit = time.time() - STALE_PART_SECONDS
    for path in directory.glob(f".{file.name}.*.part"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < limit:
                path.unlink()


def _missing_ancestors(directory: Path) -> list[Path]:
    """``directory`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    path = directory.absolute()
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing


def _download_from_mirrors(
    file: DatasetFile,
    directory: Path,
    mirrors: Sequence[str],
    timeout: float,
    progress: bool,
    replace: Sequence[str | os.PathLike[str]],
) -> tuple[Path, bytes]:
    _remove_stale_parts(directory, file)
    attempts: list[tuple[str, str]] = []
    for mirror in mirrors:
        url = mirror_url(mirror, file.gz_name)
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".part", dir=directory)
        except OSError as exc:
            raise DatasetError(f"cannot write to the data directory {directory}: {exc}") from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w+b") as out:
                _fetch(url, out, timeout=timeout, progress=progress, desc=file.gz_name)
                out.flush()
                os.fsync(out.fileno())
                out.seek(0)
                raw = out.read()
            data = maybe_gunzip(raw, source=url)
            check_contents(data, file, url)
            target = directory / (file.gz_name if raw[:2] == GZIP_MAGIC else file.name)
            os.chmod(tmp, 0o644)
            _move_aside([Path(p) for p in replace], target)
            os.replace(tmp, target)
            _fsync_directory(directory)
            return target, data
        except _LocalWriteError as exc:
            raise DatasetError(f"cannot write to the data directory {directory}: {exc}") from exc
        except (
            _MirrorFailed,
            urllib.error.URLError,
            http.client.HTTPException,
            OSError,
            DatasetError,
        ) as exc:
            attempts.append((url, _describe(exc, timeout)))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    lines = "\n".join(f"  - {url}: {error}" for url, error in attempts)
    raise DownloadError(
        f"could not download {file.gz_name}; every mirror failed:\n{lines}", attempts=attempts
    )
