"""python -m app: serve on the host and port from the settings."""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up noise out

import uvicorn  # noqa: E402

from app.config import get_settings  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    settings = get_settings()
    uvicorn.run("app.main:create_app", factory=True, host=settings.host, port=settings.port,
                limit_concurrency=settings.max_connections,
                timeout_keep_alive=settings.keep_alive_seconds,
                h11_max_incomplete_event_size=16 * 1024)  # request line and headers
