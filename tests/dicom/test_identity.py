"""app/dicom/identity.py: the patient key's per-install secret, never in the database."""

from __future__ import annotations

import stat

import pytest

from app.dicom.identity import SECRET_FILE, install_secret
from app.errors import StartupError
from tests.servers import settings_for_tests


def test_the_secret_is_made_once_in_the_state_folder_readable_by_the_app_alone(tmp_path):
    settings = settings_for_tests(state_dir=tmp_path / "state")
    secret = install_secret(settings)
    path = tmp_path / "state" / SECRET_FILE
    assert len(secret) == 32 and path.read_bytes() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert install_secret(settings) == secret  # the same after a restart
    assert install_secret(settings_for_tests(state_dir=tmp_path / "other")) != secret


def test_the_setting_is_the_secret_for_every_replica(tmp_path):
    shared = "one secret for all the replicas"
    first = install_secret(settings_for_tests(state_dir=tmp_path / "a",
                                              identity_secret=shared))
    second = install_secret(settings_for_tests(state_dir=tmp_path / "b",
                                               identity_secret=shared))
    assert first == second == shared.encode()
    assert not (tmp_path / "a" / SECRET_FILE).exists()


def test_a_state_folder_that_cannot_hold_it_names_the_setting(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    with pytest.raises(StartupError) as raised:
        install_secret(settings_for_tests(state_dir=blocked))
    assert raised.value.setting == "PNEUMONIA_IDENTITY_SECRET"
