"""The archive commands' doors in app/cli.py that need no Ray run."""

from __future__ import annotations

import importlib.util

import pytest

from app.cli import ARCHIVE_EXTRA, main


def test_without_the_archive_extra_the_commands_say_how_to_install_it(monkeypatch, capsys,
                                                                       tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        main(["archive", "status", str(tmp_path)])
    assert exit_.value.code == 2 and ARCHIVE_EXTRA in capsys.readouterr().err


def test_status_of_a_folder_without_a_run_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["archive", "status", str(tmp_path)])
    assert exit_.value.code == 2 and "holds no archive run" in capsys.readouterr().err
