"""Open an artifact zip the way zipfile reads it, after checking its central directory first.

zipfile builds an object for every directory record before anyone can count them, and one name flagged
UTF-8 that is not makes it refuse the whole archive; so the end record and the directory are walked here,
as zipfile will walk them, before zipfile.ZipFile parses anything.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from quantumreview.errors import ArtifactError

LOCAL_HEADER = 30  # fixed part of a zip local file header, before the name and extra field
# The zip records read before zipfile sees the archive, laid out as zipfile reads them.
_END = struct.Struct("<4s4H2LH")  # end of central directory
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory, as zipfile finds it: just before the locator
_CENTRAL_HEADER = 46  # fixed part of a central directory record
_COMMENT_SEARCH = 1 << 16  # how far back zipfile looks for an end record followed by a comment
_UTF8_NAME = 0x800  # general purpose flag: the name is UTF-8
_CENTRAL_FLAGS, _LOCAL_FLAGS = 8, 6  # where the flags are in a central and in a local header


class ZipRejected(ArtifactError):
    """The artifact zip is unusable or looks hostile; `reason` says why."""

    code = "zip_rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def open_archive(raw: BinaryIO, max_entries: int, max_directory_size: int) -> zipfile.ZipFile:
    """Walk the central directory first: zipfile builds an object for every record in it, and one
    name flagged UTF-8 that is not would make it refuse the whole archive."""
    records = _directory_records(raw, _central_directory(raw), max_entries, max_directory_size)
    undecodable = {index: record for index, record in enumerate(records) if not _decodes(record)}
    patched = _PatchedFile(raw)
    for record in undecodable.values():  # read as cp437 instead, which cannot fail
        patched.clear_flag(record.at + _CENTRAL_FLAGS, _UTF8_NAME)
    try:
        archive = zipfile.ZipFile(patched if undecodable else raw)
    except zipfile.BadZipFile:
        raise ZipRejected("not a zip archive") from None
    except (UnicodeDecodeError, ValueError, EOFError, NotImplementedError) as exc:
        raise ZipRejected(f"not a zip archive ({type(exc).__name__})") from None
    infos = archive.infolist()
    if undecodable and len(infos) == len(records):
        for index, record in undecodable.items():
            _relabel(infos[index], record.name, patched)
    return archive


@dataclass(frozen=True)
class _Record:
    """A central directory record as found before zipfile reads it: where, its flags, its raw name."""

    at: int
    flags: int
    name: bytes


def _decodes(record: _Record) -> bool:
    if not record.flags & _UTF8_NAME:
        return True
    try:
        record.name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _relabel(info: zipfile.ZipInfo, raw_name: bytes, patched: _PatchedFile) -> None:
    """Name a member whose UTF-8 name is not UTF-8 with replacement characters, and let it be opened.

    zipfile checks the local header's name against orig_filename (the cp437 reading, kept), and
    decodes it as the local header's flag says: that flag is cleared too.
    """
    info.filename = raw_name.decode("utf-8", errors="replace").partition("\0")[0]  # zipfile cuts at NUL too
    patched.seek(info.header_offset)
    local = patched.read(LOCAL_HEADER)
    if len(local) == LOCAL_HEADER and local[:4] == b"PK\x03\x04":
        patched.clear_flag(info.header_offset + _LOCAL_FLAGS, _UTF8_NAME)


class _PatchedFile:
    """The archive as zipfile reads it, with a few flag bytes changed in what it reads; nothing is written."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._patches: dict[int, int] = {}  # file offset -> byte value

    def clear_flag(self, at: int, mask: int) -> None:
        """Clear `mask` in the little-endian 16-bit flags at `at`."""
        self._raw.seek(at)
        low, high = self._raw.read(2).ljust(2, b"\0")
        self._patches[at], self._patches[at + 1] = low & ~mask & 0xFF, high & ~(mask >> 8) & 0xFF

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        start = self._raw.tell()
        data = self._raw.read(n)
        hits = [at for at in self._patches if start <= at < start + len(data)]
        if not hits:
            return data
        patched = bytearray(data)
        for at in hits:
            patched[at - start] = self._patches[at]
        return bytes(patched)


@dataclass(frozen=True)
class _Central:
    """Where zipfile will look for the central directory, and the entry count the end record declares."""

    start: int
    size: int
    declared: int


def _central_directory(raw: BinaryIO) -> _Central:
    """Find the end record (zip64 too) the way zipfile does, so that both read the same directory."""
    size = raw.seek(0, io.SEEK_END)
    if size < _END.size:
        raise ZipRejected("not a zip archive")
    raw.seek(size - _END.size)
    record = raw.read(_END.size)
    at = size - _END.size
    if record[:4] != b"PK\x05\x06" or record[-2:] != b"\0\0":  # else: a comment follows it
        floor = max(size - _COMMENT_SEARCH - _END.size, 0)
        raw.seek(floor)
        tail = raw.read()
        found = tail.rfind(b"PK\x05\x06")
        record = tail[found : found + _END.size]
        if found < 0 or len(record) != _END.size:
            raise ZipRejected("not a zip archive")
        at = floor + found
    _, _, _, _, declared, cd_size, _, _ = _END.unpack(record)
    extra = 0
    zip64 = _zip64_end(raw, at)
    if zip64 is not None:
        declared, cd_size = zip64
        extra = _END64.size + _END64_LOCATOR.size
    return _Central(start=at - cd_size - extra, size=cd_size, declared=declared)


def _zip64_end(raw: BinaryIO, end_at: int) -> tuple[int, int] | None:
    """(entries, directory size) from a zip64 end record, if zipfile would use one.

    The directory's start follows from the size alone: zipfile takes it to end where these records begin.
    """
    if end_at < _END64_LOCATOR.size:
        return None
    raw.seek(end_at - _END64_LOCATOR.size)
    signature, _, _, _ = _END64_LOCATOR.unpack(raw.read(_END64_LOCATOR.size))
    if signature != b"PK\x06\x07":
        return None
    at = end_at - _END64_LOCATOR.size - _END64.size
    if at < 0:
        raise ZipRejected("not a zip archive (truncated zip64 end record)")
    raw.seek(at)
    signature, _, _, _, _, _, _, declared, cd_size, _ = _END64.unpack(raw.read(_END64.size))
    return (declared, cd_size) if signature == b"PK\x06\x06" else None


def _directory_records(raw: BinaryIO, central: _Central, max_entries: int, max_size: int) -> list[_Record]:
    """The central directory's records, walked as zipfile will walk them; refuse more than the limit,
    or a directory larger than max_size.

    zipfile walks the directory by its size, not by the declared count, so both are checked
    (walking stops one past the limit); a malformed record ends the walk, for zipfile to refuse.
    zipfile also reads the directory whole and keeps every record's name, extra field and comment
    (each up to 64 KiB), so its size is capped too: while walking, and as declared.
    """
    if central.declared > max_entries:
        raise ZipRejected(f"too many entries ({central.declared} > {max_entries})")
    too_large = ZipRejected(f"central directory too large ({central.size} bytes > {max_size})")
    records: list[_Record] = []
    if central.start < 0:
        return records  # zipfile refuses it: "Bad offset for central directory"
    raw.seek(central.start)
    walked = 0
    while walked < central.size:
        at = raw.tell()
        header = raw.read(_CENTRAL_HEADER)
        if len(header) != _CENTRAL_HEADER or header[:4] != b"PK\x01\x02":
            break
        if len(records) == max_entries:
            raise ZipRejected(f"too many entries (more than {max_entries})")
        (flags,) = struct.unpack_from("<H", header, _CENTRAL_FLAGS)
        name_length, extra_length, comment_length = struct.unpack_from("<3H", header, 28)
        records.append(_Record(at, flags, raw.read(name_length)))
        raw.seek(extra_length + comment_length, io.SEEK_CUR)
        walked += _CENTRAL_HEADER + name_length + extra_length + comment_length
        if walked > max_size:
            raise too_large
    if central.size > max_size:
        raise too_large
    return records
