"""``lipsync/result.json``: the one record of what a lip-sync stage (or a chunk of it) did, written by the
stage and read by the manifest."""

from __future__ import annotations

from typing import Required

from typing_extensions import TypedDict  # pydantic (VIDAX's manifest) reads only this one's on Python 3.11

from va.errors import ErrorData
from va.face import FaceSearchData
from va.lipsync.sync import SyncData


class LipsyncResult(TypedDict, total=False):
    """``lipsync/result.json`` (a chunk's own too): the provider, whether the un-synced video was passed
    through and why, the face found, the sync check's verdict; a joined stage's chunk count and the chunks
    passed through; for a picture whose model moved the lips (no provider), the template."""

    provider: Required[str | None]
    type: Required[str]
    passthrough: Required[bool]
    chunk: str
    chunks: int
    chunks_passed_through: list[str]
    #: The failure (``VaError.as_dict``): its code, name and message.
    error: ErrorData
    face: FaceSearchData
    sync: SyncData
    in_model: str
