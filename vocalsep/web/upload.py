"""Receiving an uploaded song: streamed into its job folder, refused as soon as it is too large.

The body is ``multipart/form-data`` with the song in the field ``file`` (what a browser's form
and ``curl -F file=@song.mp3`` send). It is parsed as it arrives, so nothing is held in memory
or written anywhere but the job folder. A body over the limit is refused with 413 once its
declared length (``Content-Length``) or the bytes received so far show it, before the rest is
read. The sender's file name is kept for display only: the song is stored as ``song<ext>``,
with the name's extension if it looks like one, since ffmpeg guesses some formats by it
(``song.upload`` otherwise).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from vocalsep.errors import VocalsepError
from vocalsep.web.jobs import SONG

FIELD = "file"
ENVELOPE_BYTES = 64 * 1024
"""Room in a request for everything but the song: boundaries, part headers, other fields."""
MAX_NAME_LENGTH = 200
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")
_FOLDERS = re.compile(r"[\\/]")
UNKNOWN_EXTENSION = ".upload"


class UploadError(VocalsepError):
    """The request does not carry a song as the page and the README send one."""

    status = 400


class UploadTooLargeError(UploadError):
    """The upload is over ``--max-upload-mb``."""

    status = 413


@dataclasses.dataclass(frozen=True)
class Upload:
    name: str
    """The sender's file name without folders, for display."""
    path: Path


def display_name(filename: str) -> str:
    """The last part of a sender's file name, printable characters only; never used as a path."""
    name = _FOLDERS.split(filename)[-1]
    name = "".join(character for character in name if character.isprintable()).strip()
    return name[:MAX_NAME_LENGTH] or "upload"


def stored_name(name: str) -> str:
    """``song`` plus the sender's extension if it looks like one (ffmpeg guesses by it), else
    ``.upload``: a bare ``song`` would be in the way of the ``song/`` folder its tracks go to."""
    suffix = PurePosixPath(name).suffix.lower()
    return SONG + (suffix if _EXTENSION.fullmatch(suffix) else UNKNOWN_EXTENSION)


async def receive(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    folder: Path,
    limit: int,
) -> Upload:
    """Stores the song of a multipart body in ``folder``; raises ``UploadError`` otherwise.

    On any error the partly written song is left for the caller to remove with its folder.
    """
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(
            f"send the song as multipart/form-data in the field '{FIELD}' (curl -F file=@song.mp3)"
        )
    if content_length and content_length.isdigit() and int(content_length) > limit + ENVELOPE_BYTES:
        raise UploadTooLargeError(too_large_message("the upload", limit))
    receiver = _SongReceiver(folder, limit)
    try:
        parser = MultipartParser(boundary, receiver.callbacks())
        received = 0
        async for chunk in body:
            received += len(chunk)
            if received > limit + ENVELOPE_BYTES:
                raise UploadTooLargeError(too_large_message(receiver.name, limit))
            parser.write(chunk)
        parser.finalize()
    except FormParserError as error:
        raise UploadError(f"the upload is not valid multipart/form-data ({error})") from None
    finally:
        receiver.close()
    if receiver.upload is None:
        raise UploadError(f"no file in the upload: send the song in the field '{FIELD}'")
    return receiver.upload


def too_large_message(name: str, limit: int) -> str:
    return f"{name}: too large: the limit is {limit / 2**20:g} MB"


class _SongReceiver:
    """``MultipartParser`` callbacks that write the ``file`` part, counting as it comes."""

    def __init__(self, folder: Path, limit: int) -> None:
        self._folder = folder
        self._limit = limit
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0
        self.name = "the upload"
        self.upload: Upload | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": self._on_header_name,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        }

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _on_header_name(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        _, disposition = parse_options_header(self._headers.get("content-disposition"))
        filename = disposition.get(b"filename")
        if disposition.get(b"name") != FIELD.encode() or filename is None or self._path:
            return  # other fields, and any second file, are read past
        self.name = display_name(filename.decode("utf-8", errors="replace"))
        self._path = self._folder / stored_name(self.name)
        self._file = self._path.open("xb")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            return
        self._size += end - start
        if self._size > self._limit:
            raise UploadTooLargeError(too_large_message(self.name, self._limit))
        self._file.write(data[start:end])

    def _on_part_end(self) -> None:
        if self._file is not None and self._path is not None:
            self._file.close()
            self._file = None
            self.upload = Upload(self.name, self._path)
