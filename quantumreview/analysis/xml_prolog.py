"""Check a JUnit report's prolog before libxml2 sees a byte of it: no DOCTYPE means no entity of any kind.

The prolog (XML declaration, PIs, comments, space) is read with a codec whose positions are byte offsets, which
is exact only for the encodings allowed here; any other declared encoding is refused, since libxml2 could decode
a DOCTYPE out of bytes this check read as something else (RELIABILITY XML-01..03).
"""

from __future__ import annotations

import re
from typing import IO

from lxml import etree

from quantumreview.errors import PermanentError

PROLOG_READ = 1 << 20
_SPACE = re.compile(r"[ \t\r\n]*")
# Declared encodings under which the prolog check's one-byte-per-character reading of ASCII markup is
# exact: UTF-8 and single-byte supersets of ASCII. Anything else (stateful ISO-2022-*, UTF-7, HZ,
# EBCDIC, ...) could make libxml2 see a DOCTYPE that check never saw, so it is refused. Names are
# compared lower-case with "-", "_" and "." dropped.
_ASCII_EXACT = frozenset(
    {"utf8", "usascii", "ascii", "latin1", "l1", "cp819", "ibm819", "isoir100"}
    | {f"iso8859{n}" for n in (*range(1, 12), *range(13, 17))}
    | {f"latin{n}" for n in range(1, 11)}
    | {f"{prefix}125{n}" for prefix in ("windows", "cp") for n in range(9)}
)
# With a BOM or a UTF-16/32 start libxml2 goes by those bytes; a matching declaration is fine too.
_WIDE = frozenset({"utf16", "utf16le", "utf16be", "utf32", "utf32le", "utf32be", "ucs2", "ucs4",
                   "iso10646ucs2", "iso10646ucs4"})
_ENCODING_DECL = re.compile(r"""encoding[ \t\r\n]*=[ \t\r\n]*(?:"([^"]*)"|'([^']*)')""")
_PI_TARGET = re.compile(r"<\?([^ \t\r\n?]*)")
_ROOT_START = re.compile(r"<[A-Za-z_:\u0080-\uffff]")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_BARE_STARTS = (
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
)


class ReportUnreadable(PermanentError):
    """The report is not well-formed JUnit XML, or was refused as hostile."""

    code = "report_unreadable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"report unreadable: {reason}")
        self.reason = reason


# XML-01: lxml 6.1 fixed entity handling that earlier releases leave open (pyproject pins it; a system-wide older
# lxml could still be picked up).
MIN_LXML = (6, 1, 0)


def lxml_problem(version: tuple[int, ...] | None = None) -> str | None:
    """Why the installed lxml must not parse untrusted reports, or None when it is recent enough."""
    found = tuple(etree.LXML_VERSION if version is None else version)
    if found[:3] >= MIN_LXML:
        return None
    return (f"lxml {'.'.join(map(str, found[:3]))} is installed; reading JUnit reports safely needs lxml "
            f"{'.'.join(map(str, MIN_LXML))} or later (pip install -U 'lxml>=6.1')")


def refuse_doctype(stream: IO[bytes], chunk: int) -> tuple[bytes, int | None]:
    """Check the prolog before libxml2 sees it: no DOCTYPE means no entity of any kind.

    Reads a chunk at a time only until the root element's start is seen (a DOCTYPE can only come
    before it), and returns the bytes read, so that the parser is fed them instead of re-reading,
    with the byte offset of the root element's "<" where it is exact (any ASCII-compatible
    encoding; None for UTF-16 and UTF-32).
    """
    head = stream.read(chunk)
    while True:
        found = _prolog_end(head, final=False) if len(head) < PROLOG_READ else None
        more = stream.read(chunk) if found is None and len(head) < PROLOG_READ else b""
        if not more:
            codec, skip = _prolog_codec(head)
            pos = found if found is not None else _prolog_end(head, final=True)
            return head, (skip + pos if codec == "latin-1" and pos is not None else None)
        head += more


def _prolog_end(head: bytes, *, final: bool) -> int | None:
    """Where the root element starts (in the decoded prolog) after nothing but the XML declaration,
    PIs, comments and space.

    Raise for a DOCTYPE or other declaration, text before the root, or (when final: no more bytes
    will come) a prolog that never reaches a root element. None means: read more first.
    """
    codec, skip = _prolog_codec(head)
    text = head[skip:].decode(codec, errors="replace")
    pos = 0
    while True:
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
        if not final and len(text) - pos < len("<!--"):
            return None  # a "<!" here could still become a comment: decide on more bytes
        if text.startswith(("<?", "<!--"), pos):
            closer = "?>" if text.startswith("<?", pos) else "-->"
            end = text.find(closer, pos + 2)
            if end < 0:
                break
            if closer == "?>":
                _check_declared_encoding(text[pos:end], codec)
            pos = end + len(closer)
        elif text.startswith("<!", pos):
            raise ReportUnreadable("DOCTYPE or declaration refused (DTDs and entities are never processed)")
        elif _ROOT_START.match(text, pos):
            return pos
        elif pos < len(text):
            raise ReportUnreadable("not XML (text before the first element)")
        else:
            break
    if not final:
        return None
    if len(head) >= PROLOG_READ:
        raise ReportUnreadable("prolog longer than 1 MiB")
    raise ReportUnreadable("empty or truncated document (no root element)")


def _check_declared_encoding(pi: str, codec: str) -> None:
    """Refuse an XML declaration (any PI with target xml) naming an encoding the prolog check cannot follow.

    Conservative on purpose: every "encoding" in the declaration must be a plain, allowed value,
    so that no spelling libxml2 might still accept slips past.
    """
    target = _PI_TARGET.match(pi)
    if target is None or target.group(1).lower() != "xml":
        return
    values = [double or single for double, single in _ENCODING_DECL.findall(pi)]
    if len(values) != pi.lower().count("encoding"):
        raise ReportUnreadable("XML declaration with an unreadable encoding declaration refused")
    allowed = _ASCII_EXACT if codec == "latin-1" else _ASCII_EXACT | _WIDE
    for value in values:
        if re.sub(r"[-_.]", "", value).lower() not in allowed:
            raise ReportUnreadable(
                f"encoding {value[:40]!r} refused (only UTF-8, UTF-16/32, ASCII and single-byte encodings are read)"
            )


def _prolog_codec(head: bytes) -> tuple[str, int]:
    """A codec that reads the prolog's ASCII markup, and how many BOM bytes to skip first.

    Any ASCII-compatible encoding (UTF-8 included) is read as latin-1, one character per byte,
    so that positions in the text are byte offsets; the real decoding is libxml2's job. That reading
    is exact only for the encodings _check_declared_encoding allows; it refuses any other declaration.
    """
    for prefix, codec in _BOMS:
        if head.startswith(prefix):
            return ("latin-1" if codec == "utf-8" else codec), len(prefix)
    for start, codec in _BARE_STARTS:
        if head.startswith(start):
            return codec, 0
    return "latin-1", 0
