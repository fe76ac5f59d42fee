"""The one worklist order and CSV (app/services/batch.py): judged films by probability,
then those that need a human look in upload order, then files not scored; and the page
script's copy of the rule (static/upload.js) is the same rule."""

import csv
import io
import re

import pytest

from app.contract.errors import CorruptImageError
from app.services.batch import worklist_csv, worklist_order, worklist_summary
from app.services.display import csv_cell
from app.services.film import ImageFacts
from app.services.pipeline import FileResult, Prediction
from tests.servers import REPO

FACTS = ImageFacts(224, 224, "JPEG", "L", None)


def _result(index: int, probability: float | None, reasons: tuple[str, ...] = ()):
    if probability is None:
        return FileResult(index, f"f{index}", None, CorruptImageError("x"))
    label = None if reasons else ("PNEUMONIA" if probability >= 0.5 else "NORMAL")
    prediction = Prediction(probability, label, label == "PNEUMONIA", 0.5, "m", 1, FACTS, 1.0,
                            reasons=reasons)
    return FileResult(index, f"f{index}", prediction, None)


RESULTS = [_result(0, 0.2), _result(1, 0.999, ("inverted",)), _result(2, None),
           _result(3, 0.7), _result(4, 0.01, ("not_frontal",)), _result(5, 0.7)]


def test_films_that_need_a_human_look_come_after_the_judged_never_ranked():
    order = [r.index for r in worklist_order(RESULTS)]
    assert order == [3, 5, 0, 1, 4, 2]


def test_the_csv_gives_them_no_rank_probability_or_label():
    rows = list(csv.DictReader(io.StringIO(worklist_csv(RESULTS))))
    assert [r["file"] for r in rows] == ["f3", "f5", "f0", "f1", "f4", "f2"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "", "", ""]
    look = rows[3]
    assert look["group"] == "needs a human look" and look["reasons"] == "inverted"
    assert look["probability"] == look["triage_score"] == "" and look["flagged"] == "no"
    assert look["decision"] == "needs a human look"
    assert rows[5]["group"] == "not scored" and rows[5]["error"]
    assert rows[5]["decision"] == "not scored"


def test_the_csv_says_the_decision_in_triage_words_with_the_score_that_agrees():
    rows = list(csv.DictReader(io.StringIO(worklist_csv(RESULTS))))
    assert [(r["decision"], r["triage_score"]) for r in rows[:3]] == [
        ("flagged for priority read", "70"), ("flagged for priority read", "70"),
        ("not flagged", "20")]
    assert "label" not in rows[0] and "NORMAL" not in worklist_csv(RESULTS)


def test_the_summary_counts_files_scored_flagged_and_not_scored():
    assert worklist_summary(RESULTS) == ("6 files: 3 scored, 2 flagged; 2 need a human look; "
                                         "1 not scored.")
    assert worklist_summary(RESULTS[:1]) == "1 file: 1 scored, 0 flagged."


def test_a_film_that_is_not_assessable_is_never_flagged():
    assert not RESULTS[1].prediction.flagged and RESULTS[1].prediction.label is None


def test_the_page_script_keeps_the_same_groups_and_columns():
    script = (REPO / "static" / "upload.js").read_text()
    columns = re.search(r'\["rank", "file".*?\]', script, re.S).group(0)
    assert [c.strip().strip('"') for c in columns.strip("[]").replace("\n", "").split(",")] \
        == list(csv.DictReader(io.StringIO(worklist_csv(RESULTS))).fieldnames)
    order = re.search(r"function worklistOrder\(entries\) \{(.*?)\n  \}", script, re.S).group(1)
    assert order.index('"scored"') < order.index('"look"') < order.index('"error"')


@pytest.mark.parametrize(("text", "cell"), [
    ("plain.jpeg", "plain.jpeg"),
    ("=SUM(A1).jpeg", "'=SUM(A1).jpeg"),
    ("x;=1+1;y.jpg", "\"'x;=1+1;y.jpg\""),  # the middle part would run in a ';' locale
    ("a,b.jpeg", '"a,b.jpeg"'),
    ("a;b.jpeg", '"a;b.jpeg"'),
    ("tab\there", '"tab\there"'),
    ("x\t@cmd", "\"'x\t@cmd\""),
    ('quote"d', '"quote""d"'),
    ("-minus", "'-minus"),
    ("+plus", "'+plus"),
    ("@at", "'@at"),
    ("", ""),
])
def test_csv_cells_are_quoted_at_any_separator_and_never_start_a_formula(text, cell):
    assert csv_cell(text) == cell
    for delimiter in (",", ";", "\t"):  # read back in any locale, no part starts a formula
        if delimiter != "," and delimiter in text:
            continue  # a ','-quoted cell is not quoted for other delimiters by design
        (parsed,) = list(csv.reader(io.StringIO(csv_cell(text) + "\n")))
        assert all(part[:1] not in "=+-@" for part in parsed)


def test_the_api_csv_neutralises_a_formula_hidden_behind_a_semicolon(client):
    from tests.builders.images import jpeg_bytes

    files = [("files", ("x;=1+1;y.jpg", jpeg_bytes()))]
    text = client.post("/predict/batch?format=csv", files=files).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][1] == "'x;=1+1;y.jpg"
    assert "\"'x;=1+1;y.jpg\"" in text
