"""app/services/worklist.py: the one worklist order and CSV."""

from __future__ import annotations

import csv
import io

import pytest

from app.services.worklist import csv_cell


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
    from tests.helpers import jpeg_bytes

    files = [("files", ("x;=1+1;y.jpg", jpeg_bytes()))]
    text = client.post("/predict/batch?format=csv", files=files).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][1] == "'x;=1+1;y.jpg"
    assert "\"'x;=1+1;y.jpg\"" in text
