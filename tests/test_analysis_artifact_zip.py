"""Artifact zips: wanted members found by basename, bombs and hostile names refused (RELIABILITY AR)."""

from __future__ import annotations

import io
import os
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from quantumreview.analysis.artifact_zip import ZipLimits, ZipRejected, normalise_name, read_members
from quantumreview.errors import PermanentError

REPORT = "autoqa-test-report.xml"


def is_report(basename: str) -> bool:
    return basename == REPORT


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@dataclass
class RawEntry:
    """One hand-built member: lets a test lie about sizes, offsets, flags and method."""

    name: bytes
    payload: bytes  # already compressed for method 8
    file_size: int
    crc: int
    method: int = 8
    flags: int = 0
    offset_override: int | None = None


def deflate(data: bytes, level: int = 9) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def raw_entry(name: str, data: bytes, **overrides: int) -> RawEntry:
    entry = RawEntry(name.encode(), deflate(data), len(data), zlib.crc32(data))
    for key, value in overrides.items():
        setattr(entry, key, value)
    return entry


def build_raw_zip(entries: list[RawEntry]) -> bytes:
    """Write local headers, central directory and end record by hand."""
    out = bytearray()
    central = bytearray()
    for entry in entries:
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, entry.flags, entry.method, 0, 0,
            entry.crc, len(entry.payload), entry.file_size, len(entry.name), 0,
        )
        out += entry.name + entry.payload
        header_offset = offset if entry.offset_override is None else entry.offset_override
        central += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, entry.flags, entry.method, 0, 0,
            entry.crc, len(entry.payload), entry.file_size, len(entry.name), 0, 0, 0, 0, 0, header_offset,
        )
        central += entry.name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + end)


def test_report_is_found_in_any_folder_by_basename() -> None:
    data = make_zip({"reports/nested/autoqa-test-report.xml": b"<testsuite/>", "other.xml": b"<x/>"})

    members = read_members(data, wanted=is_report)

    assert members == {"reports/nested/autoqa-test-report.xml": b"<testsuite/>"}


def test_zip_on_disk_reads_like_bytes(tmp_path: Path) -> None:
    path = tmp_path / "artifact.zip"
    path.write_bytes(make_zip({REPORT: b"<testsuites/>", "code_health.json": b"[]"}))

    members = read_members(path, wanted=lambda name: name in (REPORT, "code_health.json"))

    assert members == {REPORT: b"<testsuites/>", "code_health.json": b"[]"}


@pytest.mark.parametrize(
    "body",
    [b"", b"<html><body>502 Bad Gateway</body></html>", b"PK\x03\x04garbage", b"\x00" * 100],
    ids=["empty", "html-error-page", "bad-magic", "zeros"],
)
def test_non_zip_bodies_are_rejected_as_not_a_zip(body: bytes) -> None:
    with pytest.raises(ZipRejected, match="not a zip archive"):
        read_members(body, wanted=is_report)


def test_truncated_zip_is_rejected_as_not_a_zip() -> None:
    data = make_zip({REPORT: os.urandom(5000)})

    with pytest.raises(ZipRejected, match="not a zip archive"):
        read_members(data[: len(data) // 2], wanted=is_report)


def test_rejection_is_a_permanent_artifact_error_with_a_stable_code() -> None:
    with pytest.raises(PermanentError) as caught:
        read_members(b"nope", wanted=is_report)

    assert caught.value.code == "zip_rejected"


def test_one_megabyte_claiming_one_gib_is_rejected_before_inflating() -> None:
    payload = os.urandom(1 << 20)  # 1 MB of real compressed-looking data
    bomb = build_raw_zip([RawEntry(REPORT.encode(), payload, 1 << 30, 0)])
    started = time.perf_counter()

    with pytest.raises(ZipRejected, match="too large"):
        read_members(bomb, wanted=is_report)

    assert time.perf_counter() - started < 2


def test_high_ratio_member_is_rejected_even_under_the_size_caps() -> None:
    zeros = b"\0" * (8 << 20)  # 8 MiB of zeros deflate to ~8 KB: ratio ~1000
    bomb = build_raw_zip([raw_entry(REPORT, zeros)])

    with pytest.raises(ZipRejected, match="compression ratio"):
        read_members(bomb, wanted=is_report)


def test_thousand_one_megabyte_members_exceed_the_total_cap() -> None:
    one_mb = b"\0" * 1_000_000
    payload, crc = deflate(one_mb), zlib.crc32(one_mb)
    entries = [RawEntry(f"r{i}.xml".encode(), payload, len(one_mb), crc) for i in range(1000)]
    started = time.perf_counter()

    with pytest.raises(ZipRejected, match="archive too large"):
        read_members(build_raw_zip(entries), wanted=lambda name: name.endswith(".xml"))

    assert time.perf_counter() - started < 2


def spread_bomb(count: int = 255) -> bytes:
    """The audit's archive-wide bomb: `count` members of exactly 1 MiB of zeros (each just under the
    per-member ratio check), about 1 KB each compressed."""
    one_mib = b"\0" * (1 << 20)
    payload, crc = deflate(one_mib), zlib.crc32(one_mib)
    return build_raw_zip([RawEntry(f"d{i}/{REPORT}".encode(), payload, len(one_mib), crc) for i in range(count)])


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the members zipfile was asked to decompress."""
    names: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, member: str | zipfile.ZipInfo, mode: str = "r", *args: Any, **kwargs: Any
            ) -> IO[bytes]:
        if mode == "r":  # building a test zip opens members for writing
            names.append(member.filename if isinstance(member, zipfile.ZipInfo) else member)
        return real_open(self, member, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return names


def test_a_bomb_spread_over_many_small_members_is_rejected_before_any_is_decompressed(opened: list[str]) -> None:
    bomb = spread_bomb()
    assert len(bomb) < 300_000
    started = time.perf_counter()

    with pytest.raises(ZipRejected, match="compression ratio too high over the 255 members"):
        read_members(bomb, wanted=is_report)

    assert opened == []
    assert time.perf_counter() - started < 1


def test_one_small_high_ratio_member_under_the_floor_is_still_read() -> None:
    """Tiny reports compress absurdly well (an empty suite, a run of zeros) and are harmless."""
    zeros = b"\0" * (200 << 10)

    assert read_members(build_raw_zip([raw_entry(REPORT, zeros)]), wanted=is_report) == {REPORT: zeros}


def test_only_the_first_member_per_key_is_decompressed(opened: list[str]) -> None:
    data = make_zip({f"a/{REPORT}": b"<first/>", f"b/{REPORT}": b"<second/>", "c/other.xml": b"<x/>"})

    members = read_members(data, wanted=is_report, key=lambda name: name.rpartition("/")[2])

    assert members == {f"a/{REPORT}": b"<first/>"}
    assert opened == [f"a/{REPORT}"]


def test_more_entries_than_the_cap_are_rejected_before_reading() -> None:
    entries = [raw_entry(f"f{i}.txt", b"x") for i in range(1001)]

    with pytest.raises(ZipRejected, match="too many entries"):
        read_members(build_raw_zip(entries), wanted=is_report)


def many_records(count: int, *, declared: int | None = None, zip64: bool = False) -> bytes:
    """One real local header and `count` central records all pointing at it (47 bytes each), built
    cheaply; the end record declares `declared` entries (default: count, capped as a 16-bit field)."""
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    central = record * count
    declared = count if declared is None else declared
    end64 = b""
    if zip64:
        end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, declared, declared, len(central),
                            len(local))
        end64 += struct.pack("<4sLQL", b"PK\x06\x07", 0, len(local) + len(central), 1)
    short = 0xFFFF if zip64 else min(declared, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, short, short, len(central), len(local), 0)
    return local + central + end64 + end


@pytest.fixture
def directories_parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the central directories zipfile parses (the costly part: an object per record)."""
    calls: list[int] = []
    real = zipfile.ZipFile._RealGetContents  # type: ignore[attr-defined]

    def spy(self: zipfile.ZipFile) -> None:
        calls.append(1)
        real(self)

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", spy)
    return calls


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (many_records(200_000), "too many entries (65535 > 1000)"),
        (many_records(200_000, declared=1), "too many entries (more than 1000)"),
        (many_records(200_000, zip64=True), "too many entries (200000 > 1000)"),
        (many_records(1001, declared=1, zip64=True), "too many entries (more than 1000)"),
    ],
    ids=["declared", "declared-one-but-present", "zip64-declared", "zip64-declared-one-but-present"],
)
def test_too_many_entries_are_refused_before_zipfile_parses_the_directory(
    data: bytes, reason: str, directories_parsed: list[int]
) -> None:
    """zipfile walks the directory by its size whatever the count says, so both are checked first."""
    started = time.perf_counter()

    with pytest.raises(ZipRejected) as caught:
        read_members(data, wanted=is_report)

    assert caught.value.reason == reason
    assert directories_parsed == []
    assert time.perf_counter() - started < 1


def fat_records(count: int) -> bytes:
    """`count` central records with a 64 KiB name, extra field and comment each, all at one local header."""
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"a"
    name, extra, comment = b"n" * 0xFFFF, struct.pack("<HH", 0xCAFE, 0xFFFB) + b"e" * 0xFFFB, b"c" * 0xFFFF
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), len(extra),
                         len(comment), 0, 0, 0, 0) + name + extra + comment
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(record) * count, len(local), 0)
    return local + record * count + end


def junk_directory(size: int) -> bytes:
    """One real record, then junk, in a directory the end record declares `size` bytes long."""
    honest = build_raw_zip([raw_entry(REPORT, b"<testsuite/>")])
    end_at = honest.rfind(b"PK\x05\x06")
    (cd_size, cd_offset) = struct.unpack_from("<2L", honest, end_at + 12)
    end = honest[end_at:end_at + 12] + struct.pack("<2L", size, cd_offset) + honest[end_at + 20:]
    return honest[:end_at] + b"\0" * (size - cd_size) + end


@pytest.mark.parametrize(("data", "size"), [
    pytest.param(fat_records(40), 40 * (46 + 3 * 0xFFFF), id="fat-records"),
    pytest.param(junk_directory(5 << 20), 5 << 20, id="declared-size"),
])
def test_a_central_directory_too_large_is_refused_before_zipfile_reads_it(
        directories_parsed: list[int], data: bytes, size: int) -> None:
    """zipfile reads the directory whole and keeps every field: 1000 records of 64 KiB fields (187 MB, under
    the download cap) peaked at 450 MB on a 512 MB machine."""
    with pytest.raises(ZipRejected) as caught:
        read_members(data, wanted=is_report)

    assert caught.value.reason == f"central directory too large ({size} bytes > {4 << 20})"
    assert directories_parsed == []


@pytest.mark.parametrize("zip64", [False, True])
def test_the_largest_allowed_directory_gets_past_the_count(directories_parsed: list[int], zip64: bool) -> None:
    """Past the count, zipfile parses it; then its records, all at one offset, overlap."""
    with pytest.raises(ZipRejected, match="overlapping"):
        read_members(many_records(1000, zip64=zip64), wanted=is_report)

    assert directories_parsed == [1]


def test_an_archive_comment_does_not_hide_the_end_record() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(REPORT, b"<testsuite/>")
        archive.comment = b"c" * 60_000  # the end record is then searched for, not read at a fixed place

    assert read_members(buffer.getvalue(), wanted=is_report) == {REPORT: b"<testsuite/>"}


@pytest.mark.parametrize("comment", [b"", b"only a comment"])
def test_an_empty_archive_has_no_members_and_is_not_an_error(comment: bytes) -> None:
    """The overlap check zipped its spans with one bound too many and raised ValueError on no entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.comment = comment

    assert read_members(buffer.getvalue(), wanted=is_report) == {}


def test_member_longer_than_it_declares_is_rejected_without_reading_past_the_claim() -> None:
    real = b"<testsuite>" + b"a" * 100_000 + b"</testsuite>"
    liar = build_raw_zip([RawEntry(REPORT.encode(), deflate(real), 100, zlib.crc32(real))])

    with pytest.raises(ZipRejected, match=r"corrupt member .*CRC"):
        read_members(liar, wanted=is_report)


def test_overlapping_entries_are_rejected() -> None:
    first = raw_entry("a.xml", b"<a/>" * 100)
    second = raw_entry(REPORT, b"<b/>" * 100, offset_override=0)  # points into the first entry

    with pytest.raises(ZipRejected, match="overlapping"):
        read_members(build_raw_zip([first, second]), wanted=is_report)


def local_header(name: bytes, data: bytes, extra: bytes = b"") -> bytes:
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                       len(name), len(extra)) + name + extra


def central_record(name: bytes, data: bytes, offset: int) -> bytes:
    return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, zlib.crc32(data), len(data), len(data),
                       len(name), 0, 0, 0, 0, 0, offset) + name


def stored_zip(members: list[tuple[bytes, bytes, bytes, int]], size: int) -> bytes:
    """Stored members (name, data, local extra field, offset) placed by hand in `size` bytes; later
    ones overwrite earlier ones where they overlap, as a quoted-overlap bomb is built."""
    body = bytearray(size)
    for name, data, extra, offset in members:
        header = local_header(name, data, extra)
        body[offset : offset + len(header) + len(data)] = header + data
    central = b"".join(central_record(name, data, offset) for name, data, _, offset in members)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0)
    return bytes(body) + central + end


def test_quoted_overlap_hidden_by_a_local_extra_field_is_rejected() -> None:
    """The audit's probe: A's local header has a 100-byte extra field, so its 1000 bytes of data run
    over B's header at 1080, though 0 + 30 + 1000 (a fixed-size header) would not reach it.
    Python 3.11.7's zipfile reads both; A's data then quote B's header."""
    extra = b"\xff\xff" + struct.pack("<H", 96) + b"\0" * 96
    a_name, b_name = b"a/code_health.json", b"b/code_health.json"
    b_data, b_at = b"B" * 100, 1080
    body = bytearray(1300)
    body[b_at : b_at + 48 + 100] = local_header(b_name, b_data) + b_data
    a_start = 30 + len(a_name) + len(extra)
    a_data = bytes(body[a_start : a_start + 1000])  # quotes B's header: 148..1148 spans 1080
    data = stored_zip([(a_name, a_data, extra, 0), (b_name, b_data, b"", b_at)], 1300)
    assert b"PK\x03\x04" in a_data

    with pytest.raises(ZipRejected, match="overlapping"):
        read_members(data, wanted=lambda name: name == "code_health.json")


def test_local_extra_fields_that_do_not_overlap_are_fine() -> None:
    extra = b"\xff\xff" + struct.pack("<H", 96) + b"\0" * 96
    first = (b"a/" + REPORT.encode(), b"<a/>", extra, 0)
    second = (REPORT.encode(), b"<b/>", extra, 30 + len(first[0]) + 100 + 4)  # right after the first's data
    data = stored_zip([first, second], second[3] + 30 + len(second[0]) + 100 + 4)

    assert read_members(data, wanted=is_report) == {f"a/{REPORT}": b"<a/>", REPORT: b"<b/>"}


def test_data_running_into_the_central_directory_is_rejected() -> None:
    data = b"<testsuite/>"
    honest = stored_zip([(REPORT.encode(), data, b"", 0)], 30 + len(REPORT) + len(data))
    record = central_record(REPORT.encode(), data, 0)
    liar = record[:20] + struct.pack("<2L", len(data) + 40, len(data) + 40) + record[28:]  # sizes reach into it
    tampered = honest.replace(record, liar)

    with pytest.raises(ZipRejected, match="overlapping"):
        read_members(tampered, wanted=lambda _: False)


def _zip64_offset_entry(header_offset: int) -> bytes:
    """One member whose central record puts its local header at `header_offset`, by a zip64 extra field."""
    name, data = REPORT.encode(), b"<testsuite/>"
    payload, crc = deflate(data), zlib.crc32(data)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, 8, 0, 0, crc, len(payload), len(data), len(name), 0)
    extra = struct.pack("<HHQ", 1, 8, header_offset)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 8, 0, 0, crc, len(payload), len(data),
                          len(name), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + name + extra
    first = local + name + payload
    return first + central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(first), 0)


def _directory_offset_past_its_place(by: int) -> bytes:
    """An end record whose directory offset is `by` bytes too large: zipfile's correction for data in front
    of the archive (concat) turns every member's offset negative."""
    honest = build_raw_zip([raw_entry(REPORT, b"<testsuite/>")])
    at = honest.rfind(b"PK\x05\x06") + 16
    (offset,) = struct.unpack_from("<L", honest, at)
    return honest[:at] + struct.pack("<L", offset + by) + honest[at + 4:]


@pytest.mark.parametrize("archive", [
    pytest.param(_zip64_offset_entry(2**64 - 1), id="zip64-offset-2**64-1"),
    pytest.param(_zip64_offset_entry(2**62), id="zip64-offset-2**62"),
    pytest.param(_directory_offset_past_its_place(5), id="negative-offset"),
])
@pytest.mark.parametrize("on_disk", [False, True])
def test_a_member_offset_outside_the_archive_is_rejected_as_corrupt(
        archive: bytes, on_disk: bool, tmp_path: Path) -> None:
    """seek() raised ValueError or OverflowError out of the reader (a job retried until dead), or an
    unhelpful 'cannot read zip archive: Invalid argument'."""
    path = tmp_path / "a.zip"
    path.write_bytes(archive)

    with pytest.raises(ZipRejected, match=f"corrupt zip archive: {REPORT} lies outside the archive"):
        read_members(path if on_disk else archive, wanted=is_report)


def test_encrypted_member_is_rejected_cleanly(opened: list[str]) -> None:
    encrypted = build_raw_zip([raw_entry(REPORT, b"<testsuite/>", flags=0x1)])

    with pytest.raises(ZipRejected, match="cannot read") as caught:
        read_members(encrypted, wanted=is_report)
    # Not zipfile's "File <ZipInfo filename=... compress_size=38> is encrypted, passw" cut at 120 characters.
    assert caught.value.reason == f"cannot read {REPORT}: it is encrypted (password-protected zips are not read)"
    assert opened == []


def test_corrupt_deflate_data_is_rejected_not_raised_as_zlib_error() -> None:
    """Bit rot or a hostile stream: zlib.error is no BadZipFile, and escaped the reader (the job died retrying)."""
    entry = raw_entry(REPORT, b"<testsuite/>" * 10)
    entry.payload = b"\xff" * len(entry.payload)  # "invalid block type"

    with pytest.raises(ZipRejected, match=f"corrupt member {REPORT}: Error -3"):
        read_members(build_raw_zip([entry]), wanted=is_report)


@pytest.mark.parametrize(("method", "label"), [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")])
def test_bzip2_and_lzma_members_are_refused_before_anything_is_inflated(
        method: int, label: str, opened: list[str]) -> None:
    """zipfile inflates bzip2 and LZMA without an output bound (a 1.6 KB zip declaring 150 KB took 4 GB and
    23 s here before the size check saw it); deflate is all upload-artifact writes, so the others are refused."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        archive.writestr(REPORT, b"<testsuite/>")

    with pytest.raises(ZipRejected, match=f"cannot read {REPORT}: compression method {label} is not supported"):
        read_members(buffer.getvalue(), wanted=is_report)
    assert opened == []


def test_unsupported_compression_method_is_rejected_cleanly() -> None:
    odd = build_raw_zip([raw_entry(REPORT, b"<testsuite/>", method=99)])

    with pytest.raises(ZipRejected, match="compression"):
        read_members(odd, wanted=is_report)


HOSTILE_NAMES = [
    "../autoqa-test-report.xml",
    "/abs/autoqa-test-report.xml",
    "a/../../autoqa-test-report.xml",
    "C:\\autoqa-test-report.xml",
    "dir\\..\\..\\autoqa-test-report.xml",
    "evil\x01/autoqa-test-report.xml",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_become_safe_relative_labels_and_nothing_is_written(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    members = read_members(make_zip({name: b"<testsuite/>"}), wanted=is_report)

    assert list(members.values()) == [b"<testsuite/>"]
    (label,) = members
    assert label.endswith(REPORT)
    assert not label.startswith("/") and "\\" not in label and ".." not in label.split("/")
    assert ":" not in label and all(ord(ch) >= 0x20 for ch in label)
    assert list(tmp_path.iterdir()) == []


def test_name_with_nul_is_cut_and_still_safe() -> None:
    members = read_members(make_zip({"x\x00/../../autoqa-test-report.xml": b"<t/>"}), wanted=lambda _: True)

    assert all("\x00" not in label and ".." not in label for label in members)


@pytest.mark.parametrize("name", [b"", b"\0autoqa-test-report.xml"])
def test_a_member_with_an_empty_name_is_skipped_not_fatal(name: bytes) -> None:
    """zipfile cuts a name at NUL; an empty name made ZipInfo.is_dir() raise IndexError out of the reader."""
    odd = RawEntry(name, deflate(b"x"), 1, zlib.crc32(b"x"))
    report = raw_entry(REPORT, b"<testsuite/>")
    archive = build_raw_zip([odd, report])

    assert read_members(archive, wanted=lambda _: True) == {REPORT: b"<testsuite/>"}


def test_four_kilobyte_name_is_skipped_not_fatal() -> None:
    long_name = "d/" * 2048 + REPORT
    data = make_zip({long_name: b"<long/>", f"ok/{REPORT}": b"<ok/>"})

    assert read_members(data, wanted=is_report) == {f"ok/{REPORT}": b"<ok/>"}


def test_lone_surrogate_in_a_name_is_replaced() -> None:
    assert normalise_name("bad\udc80name.xml") == "bad\ufffdname.xml"


def utf8_flagged(name: bytes, data: bytes) -> RawEntry:
    """A member whose name claims UTF-8 (flag bit 11, in both headers) whatever its bytes are."""
    entry = raw_entry("x", data, flags=0x800)
    entry.name = name
    return entry


def test_a_name_flagged_utf8_that_is_not_loses_nothing_beside_it() -> None:
    """zipfile raises UnicodeDecodeError for the whole archive; the valid report must still be read."""
    data = build_raw_zip([utf8_flagged(b"logs/\xff\xfe.txt", b"log"), raw_entry(REPORT, b"<testsuite/>")])

    assert read_members(data, wanted=is_report) == {REPORT: b"<testsuite/>"}
    assert read_members(data, wanted=lambda _: True) == {"logs/\ufffd\ufffd.txt": b"log", REPORT: b"<testsuite/>"}


def test_a_wanted_member_under_an_undecodable_folder_is_read_by_its_replacement_label(tmp_path: Path) -> None:
    """Its local header carries the same flag and name, which zipfile checks when opening it."""
    path = tmp_path / "artifact.zip"
    path.write_bytes(build_raw_zip([utf8_flagged(b"\xc3(/" + REPORT.encode(), b"<testsuite/>")]))
    before = path.read_bytes()

    assert read_members(path, wanted=is_report) == {f"\ufffd(/{REPORT}": b"<testsuite/>"}
    assert path.read_bytes() == before  # the flags are changed only in what zipfile reads


def test_an_undecodable_name_in_a_rejection_is_shown_with_replacement_characters() -> None:
    bomb = utf8_flagged(b"\xed\xa0\x80big.xml", b"x")  # an encoded surrogate: not UTF-8 either
    bomb.file_size = 1 << 30

    with pytest.raises(ZipRejected, match=r"entry too large: \ufffd+big\.xml declares"):
        read_members(build_raw_zip([bomb]), wanted=is_report)


def test_duplicate_names_keep_the_first_member() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning):
        archive.writestr(REPORT, b"first")
        archive.writestr(REPORT, b"second")

    assert read_members(buffer.getvalue(), wanted=is_report) == {REPORT: b"first"}


def test_nested_zip_is_not_opened() -> None:
    inner = make_zip({REPORT: b"<inner/>"})

    members = read_members(make_zip({"bundle.zip": inner}), wanted=is_report)

    assert members == {}


def test_symlink_member_is_plain_bytes_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("canary-7f3a")
    info = zipfile.ZipInfo(REPORT)
    info.external_attr = (0o120777 << 16)  # symlink mode bits
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, str(secret))

    members = read_members(buffer.getvalue(), wanted=is_report)

    assert members == {REPORT: str(secret).encode()}
    assert b"canary" not in members[REPORT]


def test_limits_can_be_tightened_per_call() -> None:
    data = make_zip({REPORT: b"x" * 5000})

    with pytest.raises(ZipRejected, match="entry too large"):
        read_members(data, wanted=is_report, limits=ZipLimits(max_entry_size=1000))


def test_missing_file_is_rejected_not_raised_as_oserror(tmp_path: Path) -> None:
    with pytest.raises(ZipRejected, match="cannot read"):
        read_members(tmp_path / "absent.zip", wanted=is_report)
