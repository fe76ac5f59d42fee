"""Test films and inputs, made in memory (the dataset never enters the repo): one place for
every builder. `images`: small generated PNG/JPEG films; `dicom`: DICOM films and studies;
`films`: DICOM and JPEG edge cases of the display pipeline; `corpus`: the bad-input corpus and
multipart bodies."""
