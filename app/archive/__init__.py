"""Archive scoring on Ray Data (`pneumonia-triage archive`): a whole PACS export, folder tree
or bucket scored through the app's own film pipeline, on Ray embedded on this machine or on a
cluster, one Parquet row per file, resumable, then optionally put on the worklist.

- sources.py: SRC arguments -> files (path or URI, size); a file's bytes read back;
- rows.py: the results' schema, a file's identity (its key), a row of the app's outcome;
- stages.py: the two Ray Data steps, decode (tasks) and score (actors, one model each);
- engine.py: Ray started or joined, the streaming plan;
- output.py: shards committed with markers, run.json;
- run.py: `archive score` (progress, commits, resume); status.py: `archive status`;
- worklist.py: `archive import`.

The one package that imports Ray and pyarrow (the `archive` extra): serving never imports
it (tests/test_architecture.py).
"""
