"""``course-lib data download`` and ``course-lib data verify``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from datasets_support import FILE_KEYS, LocalServer, make_synthetic, refused_url

from course_lib.cli import main
from course_lib.datasets import DATASETS

# Network tests must never hang CI, whatever goes wrong.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def tiny(monkeypatch):
    """A synthetic dataset registered as ``tiny`` (its built-in mirror refuses connections)."""
    data = make_synthetic("tiny", n_train=40, n_test=10, seed=9)
    with refused_url() as url:
        monkeypatch.setitem(DATASETS, "tiny", data.spec(mirrors=(url,)))
        yield data


def test_download_then_verify(tmp_path, tiny, capsys):
    with LocalServer(tiny.served("/m")) as server:
        argv = ["data", "download", "--dataset", "tiny", "--data-dir", str(tmp_path)]
        assert main([*argv, "--mirror", server.url("/m"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"Synthetic tiny: 4 files verified in {tmp_path / 'tiny'}" in out
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == sorted(
        tiny.file_name(k) for k in FILE_KEYS
    )
    assert main(["data", "verify", "--dataset", "tiny", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("OK ") == 4 and "All files OK." in out


def test_download_failure_exits_1_with_the_error(tmp_path, tiny, capsys):
    argv = ["data", "download", "--dataset", "tiny", "--data-dir", str(tmp_path), "--quiet"]
    assert main([*argv, "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Synthetic tiny: could not download train-images-idx3-ubyte.gz")
    assert "Connection refused" in err and "COURSE_LIB_DATA" in err


def test_verify_reports_missing_and_corrupt_files(tmp_path, tiny, capsys):
    directory = tiny.place(tmp_path, keys=("train_images", "train_labels", "test_images"))
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really")
    assert main(["data", "verify", "--dataset", "tiny", "--data-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"Data directory: {tmp_path}"
    assert [line.split()[0] for line in lines[1:] if line[:1] != " "] == [
        "OK",
        "OK",
        "CORRUPT",
        "MISSING",
    ]
    assert "corrupt or truncated gzip data" in captured.out
    assert "2 file(s) missing or corrupt" in captured.err


def test_environment_variable_is_the_default_data_dir(tmp_path, tiny, capsys, monkeypatch):
    tiny.place(tmp_path)
    monkeypatch.setenv("COURSE_LIB_DATA", str(tmp_path))
    assert main(["data", "verify", "--dataset", "tiny"]) == 0
    assert f"Data directory: {tmp_path}" in capsys.readouterr().out


def test_data_without_action_prints_usage(capsys):
    assert main(["data"]) == 2
    assert "download" in capsys.readouterr().err


def test_unknown_dataset_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "verify", "--dataset", "cifar10"])
    assert info.value.code == 2
    assert "invalid choice: 'cifar10'" in capsys.readouterr().err


def test_the_installed_command_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "course_lib.cli", "data", "verify", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "MISSING  mnist/train-images-idx3-ubyte" in result.stdout
    assert "MISSING  fashion-mnist/t10k-labels-idx1-ubyte" in result.stdout


@pytest.mark.slow
def test_verify_the_shared_data(data_dir):
    if not all((data_dir / n).is_dir() for n in ("mnist", "fashion-mnist")):
        pytest.skip(f"{data_dir} lacks mnist/ or fashion-mnist/")
    assert main(["data", "verify", "--data-dir", str(data_dir)]) == 0
