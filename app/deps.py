"""FastAPI dependencies: what routes get from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.config import Settings
from app.services.registry import LoadedModel


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_model(request: Request) -> LoadedModel:
    model = getattr(request.app.state, "model", None)
    if model is None:
        raise HTTPException(status_code=503, detail="The model is still loading.")
    return model


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
