"""The DICOM node: studies in from the PACS (C-STORE, DICOMweb STOW-RS), each film through
the one film pipeline, results back to the PACS (a Comprehensive SR and a secondary capture).

Free of any web framework, like the services: the app's lifespan and the console command
start the SCP, the web layer's STOW-RS route calls the same ingest.
"""
