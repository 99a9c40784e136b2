"""Read wanted members of an Actions artifact zip into memory, refusing bombs and hostile names."""

from __future__ import annotations

import io
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from quantumreview.errors import ArtifactError

CHUNK = 1 << 16
_LOCAL_HEADER = 30  # fixed part of a zip local file header, before the name and extra field
_DRIVE = re.compile(r"^[A-Za-z]:")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
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


@dataclass(frozen=True)
class ZipLimits:
    """Caps checked from the central directory before anything is decompressed."""

    max_entries: int = 1000
    max_entry_size: int = 64 << 20
    max_total_size: int = 256 << 20
    max_ratio: int = 100
    ratio_applies_above: int = 1 << 20  # tiny members compress absurdly well and are harmless
    # The members actually read may total this much whatever their ratio; beyond it, max_ratio
    # holds over them together, so that many small bombs are no better than one big one.
    read_ratio_floor: int = 256 << 10
    max_name_length: int = 1024


def normalise_name(raw: str) -> str:
    """Turn a member name into a safe relative display label (never used as a filesystem path)."""
    name = _UNPRINTABLE.sub("\ufffd", raw.replace("\\", "/"))
    name = _DRIVE.sub("", name)
    parts = [part for part in name.split("/") if part not in ("", ".", "..")]
    return "/".join(parts)


def _whole_name(name: str) -> str:
    return name


def read_members(
    source: Path | bytes,
    *,
    wanted: Callable[[str], bool],
    limits: ZipLimits = ZipLimits(),
    key: Callable[[str], str] = _whole_name,
) -> dict[str, bytes]:
    """Return normalised name → bytes for every file member whose basename `wanted` accepts.

    The whole archive is judged first (entry count, declared sizes, compression ratio,
    overlapping entries); then the members to read are chosen: of wanted members with the same
    `key` (of the normalised name; default: the name itself) only the first. Those are judged
    together (declared total against their compressed size) before any is read, each capped at
    its declared size. Nested archives and symlink members are plain bytes, never opened or
    followed; nothing is written to disk.
    """
    try:
        with _open_source(source) as raw, _open_zip(raw, limits) as archive:
            infos = archive.infolist()
            _check_directory(infos, limits)
            _check_no_overlap(archive)
            chosen = _choose(infos, wanted, key, limits)
            _check_chosen(chosen, limits)
            return _read_chosen(archive, chosen, limits)
    except ZipRejected:
        raise
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise ZipRejected(f"corrupt zip archive: {str(exc)[:200]}") from None
    except OSError as exc:
        raise ZipRejected(f"cannot read zip archive: {exc.strerror or type(exc).__name__}") from None


def _open_source(source: Path | bytes) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")


def _open_zip(raw: BinaryIO, limits: ZipLimits) -> zipfile.ZipFile:
    """Walk the central directory first: zipfile builds an object for every record in it, and one
    name flagged UTF-8 that is not would make it refuse the whole archive."""
    records = _directory_records(raw, _central_directory(raw), limits)
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
    local = patched.read(_LOCAL_HEADER)
    if len(local) == _LOCAL_HEADER and local[:4] == b"PK\x03\x04":
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


def _directory_records(raw: BinaryIO, central: _Central, limits: ZipLimits) -> list[_Record]:
    """The central directory's records, walked as zipfile will walk them; refuse more than the limit.

    zipfile walks the directory by its size, not by the declared count, so both are checked
    (walking stops one past the limit); a malformed record ends the walk, for zipfile to refuse.
    """
    if central.declared > limits.max_entries:
        raise ZipRejected(f"too many entries ({central.declared} > {limits.max_entries})")
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
        if len(records) == limits.max_entries:
            raise ZipRejected(f"too many entries (more than {limits.max_entries})")
        (flags,) = struct.unpack_from("<H", header, _CENTRAL_FLAGS)
        name_length, extra_length, comment_length = struct.unpack_from("<3H", header, 28)
        records.append(_Record(at, flags, raw.read(name_length)))
        raw.seek(extra_length + comment_length, io.SEEK_CUR)
        walked += _CENTRAL_HEADER + name_length + extra_length + comment_length
    return records


def _check_directory(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Reject bombs from the declared sizes alone, before a single byte is inflated."""
    if len(infos) > limits.max_entries:
        raise ZipRejected(f"too many entries ({len(infos)} > {limits.max_entries})")
    total = 0
    for info in infos:
        label = normalise_name(info.filename)[:100]
        if info.file_size > limits.max_entry_size:
            raise ZipRejected(f"entry too large: {label} declares {info.file_size} bytes")
        if info.file_size > limits.ratio_applies_above and (
            info.file_size > limits.max_ratio * max(info.compress_size, 1)
        ):
            raise ZipRejected(f"compression ratio too high for {label} (possible zip bomb)")
        total += info.file_size
    if total > limits.max_total_size:
        raise ZipRejected(f"archive too large uncompressed ({total} > {limits.max_total_size} bytes)")


def _check_no_overlap(archive: zipfile.ZipFile) -> None:
    """Refuse an entry whose data run into the next entry or the central directory: the
    quoted-overlap bomb (CVE-2024-0450), which zipfile itself refuses only from 3.11.8 on.

    An entry's data start after its local header's name and extra field, whose lengths only the
    local header gives (the central directory's may differ).
    """
    if archive.fp is None:
        raise ZipRejected("cannot read zip archive (closed)")
    fp = archive.fp
    spans = sorted((info.header_offset, _data_start(fp, info) + info.compress_size) for info in archive.infolist())
    bounds = [offset for offset, _ in spans[1:]] + [archive.start_dir]  # the next header, or the directory
    for (_, end), bound in zip(spans, bounds, strict=True):
        if end > bound:
            raise ZipRejected("overlapping entries (possible zip bomb)")


def _data_start(fp: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where a member's data start: after its local header (zipfile reads the lengths there too)."""
    fp.seek(info.header_offset)
    header = fp.read(_LOCAL_HEADER)
    if len(header) != _LOCAL_HEADER or header[:4] != b"PK\x03\x04":
        return info.header_offset + _LOCAL_HEADER  # unreadable anyway: zipfile refuses to open it
    name_length, extra_length = struct.unpack_from("<2H", header, 26)
    return info.header_offset + _LOCAL_HEADER + int(name_length) + int(extra_length)


def _choose(
    infos: list[zipfile.ZipInfo], wanted: Callable[[str], bool], key: Callable[[str], str], limits: ZipLimits
) -> dict[str, zipfile.ZipInfo]:
    """Normalised name → member for the members to read: wanted ones, the first per key."""
    chosen: dict[str, zipfile.ZipInfo] = {}
    keys: set[str] = set()
    for info in infos:
        if info.is_dir() or len(info.filename) > limits.max_name_length:
            continue
        name = normalise_name(info.filename)
        if not name or not wanted(name.rpartition("/")[2]) or key(name) in keys:
            continue
        keys.add(key(name))
        chosen[name] = info
    return chosen


def _check_chosen(chosen: dict[str, zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Refuse a bomb spread over the members to be read, each under the per-member ratio check."""
    declared = sum(info.file_size for info in chosen.values())
    compressed = sum(info.compress_size for info in chosen.values())
    if declared > max(limits.max_ratio * compressed, limits.read_ratio_floor):
        raise ZipRejected(
            f"compression ratio too high over the {len(chosen)} members to read "
            f"({declared} bytes from {compressed}; possible zip bomb)"
        )


def _read_chosen(archive: zipfile.ZipFile, chosen: dict[str, zipfile.ZipInfo], limits: ZipLimits) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    read_so_far = 0
    for name, info in chosen.items():
        data = _read_capped(archive, info, limits.max_entry_size)
        read_so_far += len(data)
        if read_so_far > limits.max_total_size:
            raise ZipRejected("archive too large uncompressed (read cap reached)")
        members[name] = data
    return members


def _read_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """Read one member in chunks, never more than its declared size or the cap."""
    limit = min(info.file_size, cap)
    label = normalise_name(info.filename)[:100]
    chunks: list[bytes] = []
    got = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                got += len(chunk)
                if got > limit:
                    raise ZipRejected(f"entry {label} is larger than it declares")
                chunks.append(chunk)
    except RuntimeError as exc:  # zipfile raises RuntimeError for encrypted members
        raise ZipRejected(f"cannot read {label}: {str(exc)[:120]}") from None
    except NotImplementedError:
        raise ZipRejected(f"cannot read {label}: unsupported compression method") from None
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ZipRejected(f"corrupt member {label}: {str(exc)[:120]}") from None
    return b"".join(chunks)
