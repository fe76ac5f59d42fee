"""FastAPI dependencies: what routes get, shown in their signatures.

The cheap ones are `async def` so that FastAPI runs them on the event loop rather than in
the worker threads, which may all be busy decoding: readiness must answer under load.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request

from app.config import Settings
from app.errors import ModelNotReadyError, ServerBusyError, UnknownModelError
from app.services.decoders import Decoder
from app.services.registry import LoadedModel
from app.upload import read_file_field, read_files


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_model(
    request: Request,
    model: Annotated[str | None, Query(
        description="Which model to ask, by name (GET /models lists them); "
                    "left out: the server's default")] = None,
) -> LoadedModel:
    """The model asked for, or the default; 503 (with Retry-After while loading) until it is
    ready, 404 for a model this server does not offer."""
    slot = request.app.state.slot
    if slot.model is None:
        raise ModelNotReadyError(failed=slot.failure is not None)
    chosen = slot.choose(model)
    if chosen is None:
        raise UnknownModelError(model, list(slot.models))
    return chosen


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]


async def get_threshold(request: Request, model: ModelDep,
                        settings: SettingsDep) -> float | None:
    """The threshold override (Settings.threshold) for the default model; None (the card's
    threshold) for any other: one number cannot suit two models."""
    return settings.threshold if model is request.app.state.slot.model else None


ThresholdDep = Annotated[float | None, Depends(get_threshold)]


async def get_decoder(request: Request) -> Decoder:
    return request.app.state.decoder


DecoderDep = Annotated[Decoder, Depends(get_decoder)]


class DecodeSlots:
    """A fixed number of decodes in flight; taking one never waits."""

    def __init__(self, count: int) -> None:
        self._free = threading.BoundedSemaphore(count)

    def try_take(self) -> bool:
        return self._free.acquire(blocking=False)

    def give_back(self) -> None:
        self._free.release()


async def decode_slot(request: Request) -> AsyncIterator[None]:
    """Route dependency of the scoring routes: a slot for the whole request, or 503 at once.
    Taken before the body is read, so a refused request costs no memory."""
    slots: DecodeSlots = request.app.state.decode_slots
    if not slots.try_take():
        raise ServerBusyError()
    try:
        yield
    finally:
        slots.give_back()


def _timeouts(settings: Settings) -> tuple[float, float, float]:
    return (settings.upload_idle_seconds, settings.upload_total_seconds,
            settings.upload_min_bytes_per_second)


async def read_upload(request: Request, settings: SettingsDep) -> bytes:
    """The bytes of the multipart field `file`, read in memory within the byte limit."""
    return await read_file_field(request, settings.max_upload_bytes,
                                 timeouts=_timeouts(settings))


UploadDep = Annotated[bytes, Depends(read_upload)]


async def read_batch(request: Request, settings: SettingsDep) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every multipart field `files`, within the worklist limits."""
    return await read_files(request, "files", settings.max_batch_files,
                            settings.max_upload_bytes, settings.max_batch_bytes,
                            timeouts=_timeouts(settings))


BatchDep = Annotated[list[tuple[str, bytes]], Depends(read_batch)]
