"""The application's client: ``tritonkit.connect(url).predict(images)`` (sync) and
``await tritonkit.connect_async(url)`` (asyncio). See :mod:`tritonkit.predict.model`."""

from tritonkit.predict.aio import AsyncModel, connect_async
from tritonkit.predict.model import Model, connect

__all__ = ["AsyncModel", "Model", "connect", "connect_async"]
