"""Errors a user causes print one line naming the input and what to do, exit status 2, no traceback, in every
`klip` command (and `python -m klip_lib.train`); a bug keeps its traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from klip_lib import cli, train
from klip_lib.errors import one_line, user_errors
from klip_lib.paths import ROOT


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_missing_index_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "klip_lib.cli", "caption", "--index", "/nonexistent.parquet", "--out",
                           "/tmp/never.jsonl"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("klip caption: /nonexistent.parquet: no such index; run `klip simulate --out /` "
                                   "or import a folder first")


@pytest.mark.parametrize("argv, expected", [
    (["caption", "--index", "{tmp}/not.parquet", "--out", "{tmp}/c.jsonl"],
     "klip caption: {tmp}/not.parquet: not a readable index (ArrowInvalid"),
    (["caption", "--index", "{tmp}/missing.parquet", "--out", "{tmp}/c.jsonl"],
     "klip caption: {tmp}/missing.parquet: no such index"),
    (["simulate", "--out", "{tmp}/d", "--tiles", "2", "--cities", "Atlantis"],
     "klip simulate: unknown city 'Atlantis': choose from Shanghai"),
    (["bench", "caption", "--index", "{tmp}/missing.parquet"], "klip bench caption: {tmp}/missing.parquet: no such index"),
    (["bench", "pretrain", "--preset", "huge"], "klip bench pretrain: unknown preset 'huge': choose one of gpu, smoke, study"),
    (["run", "--preset", "huge", "--name", "never"], "klip run: unknown preset 'huge'"),
])
def test_user_errors_are_one_line_with_status_2(argv, expected, tmp_path, capsys):
    (tmp_path / "not.parquet").write_text("not a parquet file")
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert one_error_line(capsys).startswith(expected.format(tmp=tmp_path))


@pytest.mark.parametrize("argv, expected", [
    (["simulate", "--out", "x", "--tiles", "-3"], "klip simulate: argument --tiles: invalid positive_int value: '-3'"),
    (["caption", "--index", "i", "--out", "o", "--batch-size", "0"], "argument --batch-size: invalid positive_int"),
    (["caption", "--index", "i", "--out", "o", "--timeout", "0"], "argument --timeout: invalid positive_float"),
    (["bench", "pretrain", "--objective", "mae"], "argument --objective: invalid choice: 'mae'"),
    (["simulate"], "klip simulate: the following arguments are required: --out (see klip simulate --help)"),
])
def test_bad_command_lines_are_one_line(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and expected in one_error_line(capsys)


def test_caption_errors_name_the_file_or_value(tmp_path, capsys):
    from hcot_fakes import write_dataset

    index = write_dataset(tmp_path / "ds", 2)
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\nbroken\n{"b": 2}\n')
    cases = [(["--out", str(tmp_path / "broken.jsonl")], f"{tmp_path / 'broken.jsonl'}: line 2 is not valid JSON"),
             (["--out", str(tmp_path)], f"{tmp_path}: Is a directory; give a file, not a folder"),
             (["--out", str(tmp_path / "c.jsonl"), "--level", "L2"], "template backend writes the facts of L1..L4"),
             (["--out", str(tmp_path / "c.jsonl"), "--backend", "openai"], "openai backend needs --base-url"),
             (["--out", str(tmp_path / "c.jsonl"), "--backend", "transformers", "--model", "/nope"],
              "model /nope not found")]
    for extra, expected in cases:
        assert cli.main(["caption", "--index", str(index), "--no-progress", *extra]) == 2, extra
        assert expected in one_error_line(capsys)


def test_train_module_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "model.json").write_text('{"colour": "red"}')
    assert train.main(["--shards", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert one_error_line(capsys).startswith(f"klip train: {tmp_path / 'none'}: no shard manifest")
    assert train.main(["--shards", str(tmp_path), "--out", str(tmp_path / "o"), "--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in one_error_line(capsys)


def test_a_bug_keeps_its_traceback(monkeypatch):
    def bug(args):
        return {}["missing key"]

    monkeypatch.setattr("klip_lib.data.commands.main", bug)
    with pytest.raises(KeyError):
        cli.main(["simulate", "--out", "x"])


def test_os_and_rasterio_errors_are_user_errors():
    import rasterio.errors

    assert one_line(FileNotFoundError(2, "No such file or directory", "/x.tif")) == \
        "/x.tif: No such file or directory; check the path"
    assert one_line(ValueError("two\n  lines")) == "two lines"
    assert issubclass(rasterio.errors.RasterioIOError, user_errors())
    assert issubclass(rasterio.errors.CRSError, user_errors())  # a ValueError, but rasterio's
    assert not issubclass(KeyError, user_errors()) and not issubclass(ValueError, user_errors())
