"""The site profile on disk (app/services/site.py) and the one rule that applies it
(app/contract/site.py, ModelCatalog and catalog.model_terms)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date

import pytest

from app import cli
from app.config import get_settings
from app.contract.site import OperatingPoint, operating_point
from app.services import site
from app.services.catalog import model_point, model_terms
from app.store import AuditAction, WorklistStore
from tests.builders.site import VALIDATED_AT, site_validation, validation_folder
from tests.servers import REPO, settings_for_tests


@pytest.fixture
def validated(tmp_path):
    """A validation folder of pneumonia v3 (card 0.5) whose site operating point is 0.3."""
    return validation_folder(tmp_path / "validation",
                             site_validation("pneumonia", 3, 0.5, 0.3))


@pytest.fixture
def commands(tmp_path, monkeypatch):
    """The CLI's settings pointed at STATE (tmp_path/state) and an audit trail in a migrated
    SQLite database; the settings' cache cleared before and after."""
    from app.store import upgrade

    monkeypatch.setenv("PNEUMONIA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PNEUMONIA_DATABASE_URL", f"sqlite:///{tmp_path / 'audit.db'}")
    monkeypatch.setenv("PNEUMONIA_MODEL_DIR", str(REPO / "models"))
    upgrade(f"sqlite:///{tmp_path / 'audit.db'}")
    get_settings.cache_clear()
    yield tmp_path / "state"
    get_settings.cache_clear()


def test_adopt_writes_the_profile_and_keeps_the_validation_by_its_hash(tmp_path, validated):
    state = tmp_path / "state"
    profile = site.adopt(state, validated, "dr ward")
    data = (validated / "validation.json").read_bytes()
    assert profile.validation_sha256 == hashlib.sha256(data).hexdigest()
    assert (profile.model_name, profile.model_version, profile.threshold,
            profile.card_threshold, profile.films_used, profile.adopted_by) == (
        "pneumonia", 3, 0.3, 0.5, 624, "dr ward")
    assert profile.validated_at == VALIDATED_AT and profile.summary.auc == 0.93
    kept = state / "validations" / profile.validation_id
    assert (kept / "validation.json").read_bytes() == data
    assert (kept / "report.html").read_text() == (validated / "report.html").read_text()
    assert site.load(state) == profile
    assert not list(state.glob(".*"))  # no temporary file left by the atomic write


def test_revert_removes_the_profile_and_keeps_the_copies(tmp_path, validated):
    state = tmp_path / "state"
    adopted = site.adopt(state, validated, "dr ward")
    assert site.revert(state) == adopted
    assert site.load(state) is None and site.revert(state) is None
    [kept] = site.kept_validations(state, None)
    assert (kept.id, kept.adopted, kept.validation is not None) == (
        adopted.validation_id, False, True)


def test_a_damaged_profile_is_a_clear_error_that_revert_clears(tmp_path, validated):
    state = tmp_path / "state"
    site.adopt(state, validated, "dr ward")
    path = state / "site_profile.json"
    damaged = json.loads(path.read_text())
    damaged["threshold"] = 1.5
    path.write_text(json.dumps(damaged))
    with pytest.raises(site.SiteProfileError, match=r"damaged \(field 'threshold'.*site revert"):
        site.load(state)
    path.write_text("{not json")
    with pytest.raises(site.SiteProfileError, match="site_profile.json is damaged"):
        site.load(state)
    assert site.revert(state) is None and not path.exists()


@pytest.mark.parametrize("missing", ["validation.json", "report.html"])
def test_adopting_a_folder_without_its_files_names_the_file(tmp_path, validated, missing):
    (validated / missing).unlink()
    with pytest.raises(site.SiteProfileError, match=missing):
        site.adopt(tmp_path / "state", validated, "dr ward")
    assert site.load(tmp_path / "state") is None


def test_an_invalid_validation_is_refused_naming_its_field(tmp_path, validated):
    data = json.loads((validated / "validation.json").read_text())
    data["site_operating_point"]["threshold"] = "high"
    (validated / "validation.json").write_text(json.dumps(data))
    with pytest.raises(site.SiteProfileError, match="site_operating_point.threshold"):
        site.adopt(tmp_path / "state", validated, "dr ward")


def test_the_rule_setting_then_site_for_its_version_then_card(tmp_path, validated):
    profile = site.adopt(tmp_path / "state", validated, "dr ward")
    assert operating_point("pneumonia", 3, 0.5, setting=None, site=profile) == \
        OperatingPoint(0.3, "site", 624, date(2026, 12, 6))
    assert operating_point("pneumonia", 3, 0.5, setting=0.4, site=profile) == \
        OperatingPoint(0.4, "setting")
    for name, version in (("pneumonia", 2), ("pneumonia_compact", 3)):
        assert operating_point(name, version, 0.5, setting=None, site=profile) == \
            OperatingPoint(0.5, "card")
    assert operating_point("pneumonia", 3, 0.5, setting=None, site=profile).text == (
        "site operating point, validated on 624 films on 2026-12-06")


def test_the_archive_door_follows_the_same_rule(tmp_path, validated):
    """catalog.model_terms, which `archive score` applies (app/archive/run.py)."""
    from app.contract.card import read_card
    from tests.servers import REPO

    profile = site.adopt(tmp_path / "state", validated, "dr ward")
    card = read_card(REPO / "models" / "pneumonia" / "3")
    other = card.model_copy(update={"version": 2})
    settings = settings_for_tests()
    assert model_terms(settings, None, card=card, site=profile)[0] == 0.3
    assert model_terms(settings, "pneumonia", card=other, site=profile)[0] is None
    overridden = settings_for_tests(threshold=0.45)
    assert model_terms(overridden, None, card=card, site=profile)[0] == 0.45
    # Its operating point, as `archive score` names it in each row and in run.json.
    assert model_point(settings, card, profile) == OperatingPoint(0.3, "site", 624,
                                                                  date(2026, 12, 6))
    assert model_point(settings, other, profile) == OperatingPoint(card.threshold, "card")
    assert model_point(overridden, card, profile) == OperatingPoint(0.45, "setting")
    compact = card.model_copy(update={"name": "pneumonia_compact"})
    assert model_point(overridden, compact, None) == OperatingPoint(card.threshold, "card")


def test_the_site_commands_are_recorded_in_the_audit_trail(tmp_path, validated, commands,
                                                           capsys):
    assert cli.main(["site", "adopt", str(validated), "--by", "dr ward"]) == 0
    assert "site operating point 0.3 for pneumonia v3" in capsys.readouterr().out
    assert cli.main(["site", "show"]) == 0
    assert cli.main(["site", "revert", "--by", "dr ward"]) == 0
    assert "Reverted" in capsys.readouterr().out
    store = WorklistStore(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        records = [r for r in store.audit() if r.action == AuditAction.SITE_PROFILE]
    finally:
        store.close()
    assert [r.detail["change"] for r in records] == ["reverted", "shown", "adopted"]
    adopted = records[-1]
    assert adopted.actor == "dr ward" and adopted.detail["threshold"] == 0.3
    assert adopted.detail["validation_sha256"] == hashlib.sha256(
        (validated / "validation.json").read_bytes()).hexdigest()
    assert records[1].actor == site.who_runs_this()  # no --by: the OS user


def test_nothing_is_adopted_when_the_audit_trail_cannot_record_it(tmp_path, validated,
                                                                   monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("PNEUMONIA_STATE_DIR", str(state))
    # A database `db upgrade` has not migrated: the store opens, its schema is not the code's.
    monkeypatch.setenv("PNEUMONIA_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.main(["site", "adopt", str(validated)])
    finally:
        get_settings.cache_clear()
    assert stopped.value.code == 2 and site.load(state) is None


@pytest.mark.realdata
def test_the_folder_command_judges_at_the_site_operating_point(tmp_path, data_dir):
    """`pneumonia-triage score`'s door (cli.score_folder): the profile of the model it
    loads applies, and its CSV says so in every scored row."""
    from app.services.batch import worklist_csv
    from app.services.saved_model import available_models

    folder = tmp_path / "films"
    folder.mkdir()
    for path in sorted((data_dir / "test" / "NORMAL").glob("*.jpeg"))[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    settings = settings_for_tests(state_dir=tmp_path / "state", offered_models=[])
    version = max(available_models(settings.model_dir)[settings.model_name])
    site.adopt(settings.state_dir, validation_folder(tmp_path / "validation", site_validation(
        settings.model_name, version, 0.5, 0.0)), "dr ward")  # 0: every judged film flagged
    results, card = cli.score_folder(folder, 1, progress=False, settings=settings)
    judged = [r.prediction for r in results if r.prediction and r.prediction.assessable]
    assert card.version == version and judged
    assert all(p.threshold == 0.0 and p.flagged and p.point.source == "site" for p in judged)
    rows = list(csv.DictReader(io.StringIO(worklist_csv(results))))
    assert {row["operating_point"] for row in rows if row["rank"]} == {"site"}


# Red team (issue 30): files a hand or a tool may have damaged or crafted.

def test_a_profile_or_validation_not_in_utf8_is_a_clear_error_not_a_crash(tmp_path, validated):
    state = tmp_path / "state"
    site.adopt(state, validated, "dr ward")
    path = state / "site_profile.json"
    path.write_bytes(b"\xff\xfe" + path.read_bytes())  # saved as UTF-16 by an editor
    with pytest.raises(site.SiteProfileError, match="site_profile.json is damaged"):
        site.load(state)
    (validated / "validation.json").write_bytes(b"\xff" + (validated / "validation.json")
                                                .read_bytes())
    with pytest.raises(site.SiteProfileError, match="validation.json"):
        site.adopt(tmp_path / "other", validated, "dr ward")


def test_a_validation_with_a_number_that_is_not_finite_is_refused(tmp_path, validated):
    # NaN passes json and no bound here; adopted, it would write a profile (NaN -> null)
    # that the server then refuses to start on.
    path = validated / "validation.json"
    data = json.loads(path.read_text())
    data["auc"]["value"] = float("nan")
    path.write_text(json.dumps(data))
    with pytest.raises(site.SiteProfileError, match="auc.value"):
        site.adopt(tmp_path / "state", validated, "dr ward")
    assert site.load(tmp_path / "state") is None


def test_a_report_that_is_a_link_or_too_large_is_not_adopted(tmp_path, validated,
                                                              monkeypatch):
    # The kept report is served at /validation/<id>/report.html: a link to another file
    # (/etc/passwd, a key) must not be copied there.
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    (validated / "report.html").unlink()
    (validated / "report.html").symlink_to(secret)
    with pytest.raises(site.SiteProfileError, match="report.html.*not a file of its own"):
        site.adopt(tmp_path / "state", validated, "dr ward")
    assert not (tmp_path / "state" / "validations").exists()
    (validated / "report.html").unlink()
    limit = (validated / "validation.json").stat().st_size
    (validated / "report.html").write_text("<!doctype html>" + "x" * limit)
    monkeypatch.setattr(site, "MAX_FILE_BYTES", limit)
    with pytest.raises(site.SiteProfileError, match="report.html.*larger than"):
        site.adopt(tmp_path / "state", validated, "dr ward")


def test_a_profile_revert_cannot_remove_is_a_clear_error(tmp_path):
    # What load's message sends the operator to must not end in a traceback.
    (tmp_path / "site_profile.json").mkdir()
    with pytest.raises(site.SiteProfileError, match="site_profile.json cannot be removed"):
        site.revert(tmp_path)


def test_a_kept_report_that_is_a_link_is_not_served(tmp_path, validated):
    # Whoever can write the state folder could point a kept report elsewhere; the route
    # serves what report_file names, so a link is none of the site's reports.
    profile = site.adopt(tmp_path, validated, "dr ward")
    kept = tmp_path / "validations" / profile.validation_id / "report.html"
    assert site.report_file(tmp_path, profile.validation_id) == kept
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    kept.unlink()
    kept.symlink_to(secret)
    assert site.report_file(tmp_path, profile.validation_id) is None


@pytest.mark.parametrize("by, says", [(" ", "--by names no one"),
                                      ("x" * 129, "--by is longer than 128")])
def test_a_by_the_trail_cannot_record_changes_nothing(validated, commands, capsys, by,
                                                      says):
    # A blank --by passed the profile and stopped the audit record: the profile changed
    # with nothing in the trail, and a traceback.
    with pytest.raises(SystemExit) as stopped:
        cli.main(["site", "adopt", str(validated), "--by", by])
    assert stopped.value.code == 2 and says in capsys.readouterr().err
    assert site.load(commands) is None


def test_a_change_and_its_audit_record_are_made_under_one_lock(validated, commands,
                                                               monkeypatch, capsys):
    # Two operators at once (adopt and revert, or two adopts): without one lock around the
    # change and its record, the trail's last record can name another profile than the one
    # in force, or a revert can remove a profile it does not record.
    import fcntl

    state = commands
    held = []

    def locked() -> bool:
        with open(state / site.LOCK_FILE, "a") as other:  # another open file: flock's unit
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(other, fcntl.LOCK_UN)
            return False

    adopt, record = site.adopt, site.record
    monkeypatch.setattr(site, "adopt", lambda *a, **k: (held.append(locked()), adopt(*a, **k))[1])
    monkeypatch.setattr(site, "record", lambda *a, **k: (held.append(locked()),
                                                         record(*a, **k))[1])
    assert cli.main(["site", "adopt", str(validated), "--by", "dr ward"]) == 0
    assert held == [True, True] and not locked()


@pytest.mark.parametrize(("version", "warned"), [
    (3, None),
    (2, "the profile applies only to requests that ask ?model=pneumonia/2"),
    (9, "holds no pneumonia v9: the server ignores this profile")])
def test_adopt_warns_when_the_server_would_not_apply_the_profile(tmp_path, commands, capsys,
                                                                  version, warned):
    """The served default is pneumonia v3 (the committed models): a profile of another
    version is adopted, but the command says at once that the films scored by default will
    not use it, as /readyz will."""
    validated = validation_folder(tmp_path / "validation",
                                  site_validation("pneumonia", version, 0.5, 0.3))
    assert cli.main(["site", "adopt", str(validated), "--by", "dr ward"]) == 0
    printed = capsys.readouterr()
    assert "Adopted" in printed.out
    if warned is None:
        assert "Warning" not in printed.err
    else:
        assert printed.err.startswith("Warning: ") and warned in printed.err


def test_the_site_lock_is_optional_only_where_asked(tmp_path):
    """A server starts on a state folder it cannot write (no command can change the profile
    there either); a `site` command refuses to change anything without the lock."""
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with site.changing(blocked, required=False):
        pass
    with pytest.raises(site.SiteProfileError, match="cannot be written"), \
            site.changing(blocked):
        pass
    with site.changing(tmp_path / "state", required=False):
        assert (tmp_path / "state" / site.LOCK_FILE).exists()
