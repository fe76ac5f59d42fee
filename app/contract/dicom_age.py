"""The patient's age in years from a DICOM header, for the intended-use gate
(app/contract/intended_use.py).

Patient's Age (0010,1010) when it holds an age string; else the time from Patient's Birth
Date (0010,0030) to the day the film was taken. The dates are read, used and dropped inside
`patient_age`: only the ages in years and the names of the tags they came from leave it, so no
birth date is ever kept, returned or logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pydicom

# Patient's Age (0010,1010), VR AS (PS3.5 Table 6.2-1): nnnD, nnnW, nnnM or nnnY. Archives
# also write it without the zero padding ("45Y", "3M"), with more of it ("0030Y"), or in
# lower case ("030y"): read too. Anything else ("0.5Y", "-3Y", "30 years") is malformed:
# the age is taken from the dates instead, and the film says it could not be read.
_AGE_STRING = re.compile(r"\s*0*(\d{1,3})\s*([DWMY])\s*", re.IGNORECASE | re.ASCII)
_DAYS_PER_YEAR = 365.25
_YEARS_PER_UNIT = {"D": 1 / _DAYS_PER_YEAR, "W": 7 / _DAYS_PER_YEAR, "M": 1 / 12, "Y": 1.0}
# The date the film was taken, in the order tried (each a DA, 0008,002x): the study's, the
# acquisition's, the image content's.
_FILM_DATES = (("StudyDate", "Study Date"), ("AcquisitionDate", "Acquisition Date"),
               ("ContentDate", "Content Date"))


@dataclass(frozen=True)
class Age:
    """What a header says of the patient's age: `years` and what it came from (`source`,
    tag names, never the dates; None both: unknown); `other`, the age by the other source
    when the two disagree (Patient's Age and the dates: beyond the age string's own
    rounding), with its source; `unread`, a Patient's Age present that is no age string."""

    years: float | None = None
    source: str | None = None
    other: tuple[float, str] | None = None
    unread: str | None = None


def patient_age(ds: pydicom.Dataset) -> Age:
    """The patient's age: Patient's Age (0010,1010) when it is an age string, else the time
    from Patient's Birth Date (0010,0030) to the first of the Study, Acquisition and Content
    Dates that is not before it (a day is 1/365.25 year, a week 7 days, a month 1/12 year);
    with the dates' age too when it disagrees with Patient's Age, and a Patient's Age that
    cannot be read. The intended-use gate holds a film to both ages
    (app/contract/intended_use.py)."""
    text = (_text(ds, "PatientAge") or "").strip()
    parsed = _age_string(text)
    dated = _dated(ds)
    if parsed is None:
        return Age(*(dated or (None, None)), unread=text or None)
    stated, unit = parsed
    source = f"Patient's Age (0010,1010) {text}"
    # An age string is truncated to its unit ("4Y": from 4 to under 5 years); a day's slack
    # for the day it was written.
    if dated is not None and not stated - 1 / _DAYS_PER_YEAR <= dated[0] < \
            stated + unit + 1 / _DAYS_PER_YEAR:
        return Age(stated, source, other=dated)
    return Age(stated, source)


def _dated(ds: pydicom.Dataset) -> tuple[float, str] | None:
    birth = _date(ds, "PatientBirthDate")
    for keyword, name in _FILM_DATES:
        taken = _date(ds, keyword)
        if birth is not None and taken is not None and taken >= birth:
            return (years_between(birth, taken),
                    f"Patient's Birth Date (0010,0030) and {name}")
    return None


def age_string_years(text: str | None) -> float | None:
    """A Patient's Age (0010,1010) age string ("007Y", "3M", "0030y") in years; None for
    anything else (empty, malformed)."""
    parsed = _age_string(text)
    return None if parsed is None else parsed[0]


def _age_string(text: str | None) -> tuple[float, float] | None:
    """(years, the years of its unit) of an age string; None when it is none."""
    match = _AGE_STRING.fullmatch(text) if text else None
    if match is None:
        return None
    unit = _YEARS_PER_UNIT[match[2].upper()]
    return int(match[1]) * unit, unit


def years_between(birth: date, day: date) -> float:
    """Age in years on `day` of someone born on `birth` (day >= birth): completed years
    plus the share of the current year of life, so that it is exactly n on the n-th
    birthday (of a 29 February birth, on 28 February in a common year)."""
    years = day.year - birth.year
    if _birthday(birth, birth.year + years) > day:
        years -= 1
    last = _birthday(birth, birth.year + years)
    following = _birthday(birth, birth.year + years + 1)
    return years + (day - last).days / (following - last).days


def _birthday(birth: date, year: int) -> date:
    try:
        return birth.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28)


def _date(ds: pydicom.Dataset, keyword: str) -> date | None:
    """A DA element (YYYYMMDD; the ACR-NEMA form YYYY.MM.DD too) as a date; None when it is
    absent, a range, or no valid day."""
    text = (_text(ds, keyword) or "").replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None
