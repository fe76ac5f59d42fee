# Serves the committed model on port 8000. GPU-capable TensorFlow base: with
# `docker run --gpus all` inference runs on the GPU; without a GPU TensorFlow uses the CPU.
# The documentation site served at /guide (docs/, mkdocs.yml), built in a stage of its own so
# that MkDocs and its theme stay out of the served image.
FROM python:3.11-slim AS guide
WORKDIR /build
COPY mkdocs.yml ./
COPY docs/ docs/
RUN python3 -m pip install --no-cache-dir "mkdocs==1.6.*" "mkdocs-material==9.*" \
    && NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir /site

FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PNEUMONIA_HOST=0.0.0.0 \
    PNEUMONIA_PORT=8000 \
    PNEUMONIA_STATE_DIR=/var/lib/triage

WORKDIR /srv/triage

# Serving dependencies only (no training extra), in their own layer from pyproject.toml
# alone, so code changes reuse it.
COPY pyproject.toml setup.py README.md ./
RUN mkdir app \
    && touch app/__init__.py \
    && python3 -m pip install --no-cache-dir . \
    && python3 -m pip uninstall --yes pneumonia-triage \
    && rm -rf app build ./*.egg-info

# The app itself, installed as a package (not editable), its pages and static files shipped
# inside it as app.web's resources (setup.py), and the sources removed: the image serves from
# site-packages. The training code is not copied: serving needs only app/ (its contract
# package included).
COPY app/ app/
COPY templates/ templates/
COPY static/ static/
RUN python3 -m pip install --no-cache-dir --no-deps . \
    && rm -rf app templates static build ./*.egg-info

# The model and its report (PNEUMONIA_MODEL_DIR defaults to models/ in the working folder).
COPY models/ models/
# The built documentation site (PNEUMONIA_GUIDE_DIR defaults to site/ in the working folder).
COPY --from=guide /site site/

# The embedded worklist database lives in the state folder: mount a volume there to keep it
# (or set PNEUMONIA_DATABASE_URL to a PostgreSQL for several replicas).
RUN useradd --create-home --uid 10001 triage \
    && mkdir -p /var/lib/triage && chown 10001 /var/lib/triage
VOLUME /var/lib/triage
USER 10001

# 8000: the web app and API; 11112: the DICOM node (Storage SCP, C-ECHO).
EXPOSE 8000 11112
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["python3", "-m", "app"]
