"""Temporal client construction: every client uses the pydantic data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from vigil.settings import TemporalSettings


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(
        settings.address, namespace=settings.namespace, data_converter=pydantic_data_converter
    )
