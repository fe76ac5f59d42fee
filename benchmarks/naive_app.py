"""The naive baseline of benchmarks/load.py: what a first FastAPI endpoint around this model
would be. Starlette's form parsing, a full Pillow decode, a resize, one model call per request.
Not part of the product; run only by the load harness.

    PNEUMONIA_MODEL_PATH=models/pneumonia/2 uvicorn benchmarks.naive_app:app --port 8601
"""

from __future__ import annotations

import io
import os

import numpy as np
import tensorflow as tf
from fastapi import FastAPI, UploadFile
from PIL import Image

app = FastAPI()
_serve = tf.saved_model.load(os.environ["PNEUMONIA_MODEL_PATH"]).signatures["serving_default"]


@app.post("/predict")
def predict(file: UploadFile) -> dict:
    image = Image.open(io.BytesIO(file.file.read())).convert("RGB").resize((64, 64))
    batch = tf.constant(np.asarray(image, dtype=np.float32)[None])
    return {"probability": float(_serve(images=batch)["probability"].numpy()[0])}


@app.get("/readyz")
def readyz() -> dict:
    return {"status": "ready"}
