"""What the store can hold: never a patient's name, ID or birth date, a file name, or the
film. Checked on the migrated schema of both engines and on every stored value."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, time

from sqlalchemy import inspect, select, text

from app.store import FilmRecord, WorklistStore
from app.store.models import Base
from tests.store.factories import film

FORBIDDEN = re.compile(r"name|patient_?id|birth|file|pixel|image|path", re.IGNORECASE)
ALLOWED = {"model_name"}  # the scoring model's name, not a person's


def test_schema_has_no_column_for_patient_identity(store: WorklistStore) -> None:
    columns = {column["name"] for table in inspect(store.engine).get_table_names()
               for column in inspect(store.engine).get_columns(table)}
    assert columns  # the migrated tables, not the models
    assert {name for name in columns if FORBIDDEN.search(name)} == ALLOWED


def test_film_record_has_no_field_for_patient_identity() -> None:
    fields = {field.name for field in dataclasses.fields(FilmRecord)}
    assert {name for name in fields if FORBIDDEN.search(name)} == ALLOWED


def test_stored_values_are_only_what_was_given(store: WorklistStore) -> None:
    given = film("1.2.840.99.1", "1.2.840.99.1.1", 0.8, series_instance_uid="1.2.840.99.1.0",
                 accession_number="ACC42", patient_age="006Y", patient_sex="M",
                 modality="DX", view_position="PA", body_part="CHEST",
                 study_date=date(2025, 2, 28), study_time=time(9, 30), source="dicom:CR01",
                 reasons=("rotated",), warnings=("low contrast",))
    store.add_films([given])
    texts = set()
    with store.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                texts |= {value for value in row if isinstance(value, str)}
        texts.discard(connection.execute(text("SELECT version_num FROM alembic_version"))
                      .scalar())
    strings = {value for value in dataclasses.asdict(given).values() if isinstance(value, str)}
    # JSON lists come back as their text; "new" is the status the store sets
    assert texts - strings - {"new"} <= {'["rotated"]', '["low contrast"]'}
