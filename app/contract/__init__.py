"""The contract between training and serving, with no heavy dependencies.

Training writes models that honour it; the app reads and checks it. It needs only NumPy,
Pillow and pydantic, so importing it pulls in neither FastAPI nor TensorFlow, Keras,
scikit-learn or matplotlib (a test checks `sys.modules`):

- `preprocessing`: image bytes -> upright 8-bit pixels -> model input, and its version;
- `card`: the typed model card written beside every SavedModel, the class names and the
  serving signature's names;
- `report`: the typed evaluation report (MODEL_DIR/report.json) the training protocols write
  through `write_report_sections` and the report page reads.
"""
