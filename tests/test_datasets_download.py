"""Downloads against a real HTTP server on 127.0.0.1 serving small synthetic datasets.

In every failure case the dataset directory must hold no partial file: nothing
under a final name that was not verified, and no temporary ``*.part`` file.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest
from datasets_support import (
    FILE_KEYS,
    LocalServer,
    Route,
    Synthetic,
    gzip_bytes,
    leftovers,
    make_synthetic,
    refused_url,
)

from course_lib.datasets import (
    ENV_VAR,
    DatasetError,
    DatasetWarning,
    DownloadError,
    download_dataset,
    download_file,
    load_dataset,
    verify_dataset,
)
from course_lib.datasets.download import MAX_RESUMES

IMAGES = "/train-images-idx3-ubyte.gz"

# Network tests must never hang CI, whatever goes wrong.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy configured in the environment must not intercept 127.0.0.1.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def tiny() -> Synthetic:
    return make_synthetic("tiny", n_train=200, n_test=30, seed=5)


def _assert_loaded(result, tiny: Synthetic) -> None:
    (x, t), (xt, tt) = result
    np.testing.assert_array_equal(x, tiny.arrays["train_images"].reshape(-1, 784))
    np.testing.assert_array_equal(t, tiny.arrays["train_labels"])
    np.testing.assert_array_equal(xt, tiny.arrays["test_images"].reshape(-1, 784))
    np.testing.assert_array_equal(tt, tiny.arrays["test_labels"])


def _load(spec, data_dir, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("timeout", 5)
    return load_dataset(spec, normalize=False, data_dir=data_dir, **kw)


def _final_files(directory) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("dead", ["refused", "404"])
def test_dead_first_mirror_then_a_good_one(tmp_path, tiny, dead):
    with LocalServer(tiny.served("/good")) as server, refused_url() as refused:
        first = refused if dead == "refused" else server.url("/missing")
        spec = tiny.spec(mirrors=(first, server.url("/good")))
        _assert_loaded(_load(spec, tmp_path), tiny)
        assert server.count("/good" + IMAGES) == 1
        assert server.count("/missing" + IMAGES) == (1 if dead == "404" else 0)
    directory = tmp_path / "tiny"
    assert _final_files(directory) == sorted(tiny.file_name(key) for key in FILE_KEYS)
    assert all(check.ok for check in verify_dataset(spec, tmp_path))
    # Now everything is cached: loading again needs no server at all.
    _assert_loaded(_load(spec, tmp_path, download=False), tiny)


def test_every_mirror_failing_gives_one_clear_error(tmp_path, tiny):
    with LocalServer({}) as server, refused_url() as refused:
        mirrors = (refused, server.url("/nothing-here"))
        with pytest.raises(DownloadError) as info:
            _load(tiny.spec(mirrors=mirrors), tmp_path)
    error = info.value
    message = str(error)
    image_urls = [m + "train-images-idx3-ubyte.gz" for m in mirrors]
    assert [url for url, _ in error.attempts] == image_urls
    assert "Connection refused" in error.attempts[0][1]
    assert error.attempts[1][1] == "HTTP error 404 Not Found"
    for url in image_urls:
        assert url in message
    assert "every mirror failed" in message
    assert str(tmp_path / "tiny") in message
    for key in FILE_KEYS:  # the files to place by hand
        assert tiny.file_name(key) in message
    assert ENV_VAR in message and "data_dir" in message
    assert isinstance(error, DatasetError) and isinstance(error, ValueError)
    assert _final_files(tmp_path / "tiny") == []


def test_no_server_at_all(tmp_path, tiny):
    with refused_url() as a, refused_url() as b:
        start = time.perf_counter()
        with pytest.raises(DownloadError) as info:
            _load(tiny.spec(mirrors=(a, b)), tmp_path)
        elapsed = time.perf_counter() - start
    assert len(info.value.attempts) == 2  # one error, for the first missing file
    assert all("Connection refused" in error for _, error in info.value.attempts)
    assert str(info.value).count("If this machine is offline") == 1
    assert elapsed < 5
    assert not (tmp_path / "tiny").exists()  # not even an empty directory


def test_failed_download_removes_the_directories_it_created(tmp_path, tiny):
    (tmp_path / "a").mkdir()
    with refused_url() as url, pytest.raises(DownloadError):
        _load(tiny.spec(mirrors=(url,)), tmp_path / "a" / "b" / "c")
    assert list((tmp_path / "a").iterdir()) == []


def test_checksum_mismatch_is_rejected(tmp_path, tiny):
    other = make_synthetic("tiny", n_train=200, n_test=30, seed=6)  # same sizes, other bytes
    with LocalServer(other.served()) as server:
        with pytest.raises(DownloadError) as info:
            _load(tiny.spec(mirrors=(server.url(),)), tmp_path)
    assert "SHA-256 of the uncompressed data is" in info.value.attempts[0][1]
    assert "corrupt or not the right file" in str(info.value)
    assert _final_files(tmp_path / "tiny") == []


def test_checksum_mismatch_then_a_good_mirror(tmp_path, tiny):
    other = make_synthetic("tiny", n_train=200, n_test=30, seed=6)
    with LocalServer({**other.served("/bad"), **tiny.served("/good")}) as server:
        spec = tiny.spec(mirrors=(server.url("/bad"), server.url("/good")))
        _assert_loaded(_load(spec, tmp_path), tiny)
    assert leftovers(tmp_path / "tiny") == []


def test_html_error_page_with_status_200_is_not_accepted(tmp_path, tiny):
    page = Route(body=b"<html><body>Please log in</body></html>", content_type="text/html")
    routes = {f"/portal/{tiny.file_name(k)}": page for k in FILE_KEYS}
    with LocalServer({**routes, **tiny.served("/good")}) as server:
        spec = tiny.spec(mirrors=(server.url("/portal"), server.url("/good")))
        _assert_loaded(_load(spec, tmp_path), tiny)
    assert _final_files(tmp_path / "tiny") == sorted(tiny.file_name(k) for k in FILE_KEYS)


def test_connection_cut_mid_file_leaves_nothing(tmp_path, tiny):
    body = tiny.gz("train_images")
    cut = Route(kind="cut", body=body, cut_after=len(body) // 2)  # ignores Range, always cuts
    with LocalServer({**tiny.served(), IMAGES: cut}) as server:
        with pytest.raises(DownloadError) as info:
            _load(tiny.spec(mirrors=(server.url(),)), tmp_path)
        assert server.count(IMAGES) == 1 + MAX_RESUMES
    (url, error), *_ = info.value.attempts
    assert url.endswith(IMAGES)
    assert f"connection closed after {len(body) // 2} of {len(body)} bytes" in error
    assert f"after {MAX_RESUMES} resumed attempt(s)" in error
    assert _final_files(tmp_path / "tiny") == []


def test_cut_connection_is_resumed_with_a_range_request(tmp_path, tiny):
    body = tiny.gz("train_images")
    half = len(body) // 2
    flaky = Route(kind="cut", body=body, cut_after=half, cut_times=1, ranges=True)
    with LocalServer({**tiny.served(), IMAGES: flaky}) as server:
        _assert_loaded(_load(tiny.spec(mirrors=(server.url(),)), tmp_path), tiny)
        ranges = [r.range for r in server.requests if r.path == IMAGES]
    assert ranges == [None, f"bytes={half}-"]
    assert leftovers(tmp_path / "tiny") == []


def test_server_ignoring_range_restarts_from_scratch(tmp_path, tiny):
    body = tiny.gz("train_images")
    flaky = Route(kind="cut", body=body, cut_after=len(body) // 3, cut_times=1, ranges=False)
    with LocalServer({**tiny.served(), IMAGES: flaky}) as server:
        _assert_loaded(_load(tiny.spec(mirrors=(server.url(),)), tmp_path), tiny)
        assert server.count(IMAGES) == 2


def test_stalled_server_times_out(tmp_path, tiny):
    body = tiny.gz("train_images")
    stall = Route(kind="hang", body=body, cut_after=100)
    with LocalServer({IMAGES: stall}) as server:
        start = time.perf_counter()
        with pytest.raises(DownloadError) as info:
            _load(tiny.spec(mirrors=(server.url(),)), tmp_path, timeout=0.3)
        elapsed = time.perf_counter() - start
    assert "timed out: no data for 0.3 s" in info.value.attempts[0][1]
    assert elapsed < 10
    assert _final_files(tmp_path / "tiny") == []


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGALRM")
def test_interrupt_mid_download_removes_the_temporary_file(tmp_path, tiny):
    body = tiny.gz("train_images")
    stall = Route(kind="hang", body=body, cut_after=len(body) // 2)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with LocalServer({IMAGES: stall}) as server:
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            with pytest.raises(KeyboardInterrupt):
                _load(tiny.spec(mirrors=(server.url(),)), tmp_path, timeout=10)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert _final_files(tmp_path / "tiny") == []


def test_corrupt_cached_file_is_moved_aside_and_downloaded_again(tmp_path, tiny):
    directory = tiny.place(tmp_path)
    bad = directory / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-9])  # truncated gzip
    with LocalServer(tiny.served()) as server:
        with pytest.warns(DatasetWarning, match="failed verification; moved it to"):
            _assert_loaded(_load(tiny.spec(mirrors=(server.url(),)), tmp_path), tiny)
        assert [r.path for r in server.requests] == ["/train-labels-idx1-ubyte.gz"]
    assert (directory / "train-labels-idx1-ubyte.gz.corrupt").exists()
    assert verify_dataset(tiny.spec(), tmp_path)[1].ok


def test_corrupt_uncompressed_file_is_moved_aside_too(tmp_path, tiny):
    directory = tiny.place(tmp_path, keys=("train_images", "test_images", "test_labels"))
    (directory / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01junk")
    with LocalServer(tiny.served()) as server:
        with pytest.warns(DatasetWarning):
            _assert_loaded(_load(tiny.spec(mirrors=(server.url(),)), tmp_path), tiny)
    assert _final_files(directory) == sorted(
        [tiny.file_name(k) for k in FILE_KEYS] + ["train-labels-idx1-ubyte.corrupt"]
    )


def test_corrupt_cached_file_offline_is_reported_and_kept(tmp_path, tiny):
    directory = tiny.place(tmp_path)
    bad = directory / "t10k-images-idx3-ubyte.gz"
    content = gzip_bytes(tiny.raw["test_images"][:-1])
    bad.write_bytes(content)
    with refused_url() as url, pytest.raises(DownloadError) as info:
        _load(tiny.spec(mirrors=(url,)), tmp_path)
    message = str(info.value)
    assert "Present but failing verification" in message
    assert f"{bad}: {len(tiny.raw['test_images']) - 1} bytes after decompression" in message
    assert bad.read_bytes() == content  # not deleted when no replacement could be had
    assert leftovers(directory) == []


def test_unwritable_data_directory_is_a_clear_error(tmp_path, tiny):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with LocalServer(tiny.served()) as server:
        with pytest.raises(DatasetError, match="cannot create the data directory") as info:
            _load(tiny.spec(mirrors=(server.url(),)), blocker)
    assert "Use a writable data directory" in str(info.value)


def test_download_dataset_returns_paths_and_keeps_verified_files(tmp_path, tiny):
    with LocalServer(tiny.served()) as server:
        spec = tiny.spec(mirrors=("http://127.0.0.1:9/never-used/",))
        paths = download_dataset(spec, tmp_path, mirrors=[server.url()], progress=False)
        assert server.count() == 4
        assert paths == {k: tmp_path / "tiny" / tiny.file_name(k) for k in FILE_KEYS}
        again = download_dataset(spec, tmp_path, mirrors=[server.url()], progress=False)
        assert again == paths and server.count() == 4  # nothing downloaded twice


def test_progress_bar_is_shown_on_stderr(tmp_path, tiny, capsys):
    with LocalServer(tiny.served()) as server:
        download_dataset(tiny.spec(mirrors=(server.url(),)), tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "100%" in err


def test_file_urls_work_as_mirrors(tmp_path, tiny):
    source = tiny.place(tmp_path / "usb-stick")
    spec = tiny.spec(mirrors=(source.as_uri(),))
    _assert_loaded(_load(spec, tmp_path / "data"), tiny)


def test_uncompressed_download_is_saved_under_the_plain_name(tmp_path, tiny):
    routes = {f"/{tiny.file_name(k)}": tiny.raw[k] for k in FILE_KEYS}  # no gzip on the wire
    with LocalServer(routes) as server:
        paths = download_dataset(tiny.spec(mirrors=(server.url(),)), tmp_path, progress=False)
    assert {p.name for p in paths.values()} == {
        tiny.file_name(k, compressed=False) for k in FILE_KEYS
    }


def test_download_file_needs_mirrors(tmp_path, tiny):
    with pytest.raises(DownloadError, match="no mirrors"):
        download_file(tiny.spec().train_images, tmp_path, [])


@pytest.mark.parametrize("bad", ["ftp://example.org/", "example.org/mnist/", 42])
def test_mirrors_must_be_urls(tmp_path, tiny, bad):
    with pytest.raises(ValueError, match="mirror must be"):
        _load(tiny.spec(), tmp_path, mirrors=[bad])


def test_mirrors_must_not_be_a_single_string(tmp_path, tiny):
    with pytest.raises(TypeError, match="sequence of base URLs"):
        _load(tiny.spec(), tmp_path, mirrors="http://127.0.0.1/")


def test_dataset_folder_given_directly_is_used_as_is(tmp_path, tiny):
    tiny.place(tmp_path, subdir=".")  # files directly in tmp_path, no tiny/ subfolder
    (tmp_path / "tiny").mkdir()  # a stray empty subfolder does not hide them
    with LocalServer({}) as server:
        _assert_loaded(_load(tiny.spec(mirrors=(server.url(),)), tmp_path), tiny)
        assert server.count() == 0
    assert verify_dataset(tiny.spec(), tmp_path)[0].path == tmp_path / "train-images-idx3-ubyte.gz"


def test_other_datasets_files_given_directly_are_rejected_not_renamed(tmp_path, tiny):
    other = make_synthetic("other", n_train=200, n_test=30, seed=8)  # same file names
    other.place(tmp_path, subdir=".")
    before = sorted(p.name for p in tmp_path.iterdir())
    with LocalServer(tiny.served()) as server:
        with pytest.raises(DatasetError) as info:
            _load(tiny.spec(mirrors=(server.url(),)), tmp_path)
        assert server.count() == 0  # nothing downloaded into someone else's folder
    message = str(info.value)
    assert "4 file(s) missing or unusable" in message
    assert "so it is used as is and nothing is downloaded" in message
    assert "SHA-256 of the uncompressed data is" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_stale_temporary_files_of_killed_downloads_are_removed(tmp_path, tiny):
    directory = tmp_path / "tiny"
    directory.mkdir()
    stale = directory / ".train-images-idx3-ubyte.abc123.part"
    fresh = directory / ".train-images-idx3-ubyte.def456.part"  # another download in progress
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"half a file")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    with LocalServer(tiny.served()) as server:
        _assert_loaded(_load(tiny.spec(mirrors=(server.url(),)), tmp_path), tiny)
    assert not stale.exists() and fresh.exists()
