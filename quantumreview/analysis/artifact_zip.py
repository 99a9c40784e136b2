"""Read wanted members of an Actions artifact zip into memory, refusing bombs and hostile names."""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from quantumreview.analysis.zip_directory import LOCAL_HEADER, open_archive
from quantumreview.analysis.zip_directory import ZipRejected as ZipRejected  # re-exported: callers catch it here

CHUNK = 1 << 16
_DRIVE = re.compile(r"^[A-Za-z]:")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_ENCRYPTED = 0x1  # general purpose flag bit 0
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "deflate64", 99: "AES (99)"}


@dataclass(frozen=True)
class ZipLimits:
    """Caps checked from the central directory before anything is decompressed."""

    max_entries: int = 1000
    # zipfile reads the whole central directory and keeps every name, extra field and comment (each up to
    # 64 KiB): 1000 such records made a 187 MB artifact peak at 450 MB. Real records take ~100 bytes each.
    max_directory_size: int = 4 << 20
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
        with _open_source(source) as raw, open_archive(raw, limits.max_entries, limits.max_directory_size) as archive:
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
    for info in archive.infolist():
        # Why before any seek: a directory offset past the archive, or made negative by zipfile's correction
        # for data before the archive, makes seek raise ValueError or OverflowError (or EINVAL on a file).
        if not 0 <= info.header_offset < archive.start_dir:
            raise ZipRejected(f"corrupt zip archive: {normalise_name(info.filename)[:100]} lies outside the archive")
    spans = sorted((info.header_offset, _data_start(fp, info) + info.compress_size) for info in archive.infolist())
    if not spans:  # an empty archive (end record only) has nothing to overlap
        return
    bounds = [offset for offset, _ in spans[1:]] + [archive.start_dir]  # the next header, or the directory
    for (_, end), bound in zip(spans, bounds, strict=True):
        if end > bound:
            raise ZipRejected("overlapping entries (possible zip bomb)")


def _data_start(fp: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where a member's data start: after its local header (zipfile reads the lengths there too)."""
    fp.seek(info.header_offset)
    header = fp.read(LOCAL_HEADER)
    if len(header) != LOCAL_HEADER or header[:4] != b"PK\x03\x04":
        return info.header_offset + LOCAL_HEADER  # unreadable anyway: zipfile refuses to open it
    name_length, extra_length = struct.unpack_from("<2H", header, 26)
    return info.header_offset + LOCAL_HEADER + int(name_length) + int(extra_length)


def _choose(
    infos: list[zipfile.ZipInfo], wanted: Callable[[str], bool], key: Callable[[str], str], limits: ZipLimits
) -> dict[str, zipfile.ZipInfo]:
    """Normalised name → member for the members to read: wanted ones, the first per key."""
    chosen: dict[str, zipfile.ZipInfo] = {}
    keys: set[str] = set()
    for info in infos:
        # An empty name (or one cut to nothing at a NUL) is no file; ZipInfo.is_dir() raises IndexError on it.
        if not info.filename or info.is_dir() or len(info.filename) > limits.max_name_length:
            continue
        name = normalise_name(info.filename)
        if not name or not wanted(name.rpartition("/")[2]) or key(name) in keys:
            continue
        keys.add(key(name))
        chosen[name] = info
    return chosen


def _check_chosen(chosen: dict[str, zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Refuse a bomb spread over the members to be read, each under the per-member ratio check, and any
    member compressed other than by deflate (or stored)."""
    for name, info in chosen.items():
        if info.flag_bits & _ENCRYPTED:  # else zipfile's RuntimeError text, a ZipInfo repr, reached the check run
            raise ZipRejected(f"cannot read {name[:100]}: it is encrypted (password-protected zips are not read)")
        # Why: zipfile inflates a bzip2 or LZMA member a whole read of compressed bytes at a time, with no
        # output bound (deflate alone gets one), so 1.5 KB of bzip2 became 2 GB in memory before any cap
        # could look. upload-artifact writes deflate or stored only.
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = _METHOD_NAMES.get(info.compress_type, str(info.compress_type))
            raise ZipRejected(f"cannot read {name[:100]}: compression method {method} is not supported "
                              "(only deflate and stored)")
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
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as exc:  # zlib.error: corrupt deflate data
        raise ZipRejected(f"corrupt member {label}: {str(exc)[:120]}") from None
    return b"".join(chunks)
