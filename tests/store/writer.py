"""A worklist writer for the kill -9 test: `python -m tests.store.writer URL PREFIX`.

Stores studies of FILMS_PER_STUDY films each, in an endless loop, and prints
"<entry id> <study UID>" for each only after add_films has returned (committed).
"""

from __future__ import annotations

import sys
from itertools import count

from app.store import WorklistStore
from tests.store.factories import film

FILMS_PER_STUDY = 3


def main(url: str, prefix: str) -> None:
    store = WorklistStore(url)
    for index in count():
        study = f"{prefix}.{index}"
        [entry] = store.add_films([film(study, f"{study}.{n}", 0.1 + 0.2 * n, minutes=index)
                                   for n in range(FILMS_PER_STUDY)])
        print(entry.id, study, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
