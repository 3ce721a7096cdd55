"""Directory archives as plan segments: POSIX tar (ustar, pax where needed) and stored zip
(ZIP64 where needed). Pure: headers are bytes computed here, file contents are
``MemberWindow`` segments the senders move (with sendfile), so an archive is zero-copy,
has an exact length before its first byte, and answers ranges like a file.

Deterministic: the members come sorted by name, owner 0/0, modes and mtimes from the
files, no other clock: the same tree gives the same bytes, hence a stable ETag and
``curl -C -`` / ``aria2c -x4`` resuming and splitting a directory download.

tar, for each member (RFC-less, POSIX.1-2001 "pax interchange format")::

    [pax header block + records, padded to 512]   only for names over 100 bytes (or not
                                                   ASCII) and sizes of 8 GiB and more
    ustar header block (512)
    file data, padded to 512
    ... two zero blocks at the end.

zip (APPNOTE 6.3.10), stored (method 0)::

    local header (30 + name [+ ZIP64 extra 20]), data        for each member
    central directory entry (46 + name [+ ZIP64 extra])      for each member
    [ZIP64 end of central directory record + locator]        when counts or offsets need it
    end of central directory record (22)
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass

from .multipart import MemberWindow, Segment

BLOCK = 512
_USTAR_MAX_SIZE = 8**11 - 1  # 11 octal digits
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of an archive: a directory (``name`` ends in "/") or a regular file."""

    name: str  # relative path, "/"-separated
    is_dir: bool
    size: int
    mtime_ns: int
    mode: int  # permission bits
    index: int  # the file to read (MemberWindow.member); -1 for directories
    crc32: int = 0  # zip only


def snapshot_etag(kind: str, members: list[Member]) -> str:
    """A strong ETag from what the archive is made of: names, sizes, mtimes, modes."""
    h = hashlib.sha256(kind.encode())
    for m in members:
        h.update(f"{m.name}\0{m.size}\0{m.mtime_ns}\0{m.mode:o}\0{m.crc32:08x}\n".encode())
    return f'"{kind}-{h.hexdigest()[:32]}"'


# --- tar ---------------------------------------------------------------------------------


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode("ascii") + b"\0"


def _ustar_header(
    name: bytes, prefix: bytes, mode: int, size: int, mtime: int, kind: bytes
) -> bytes:
    h = bytearray(BLOCK)
    h[0 : len(name)] = name
    h[100:108] = _octal(mode & 0o7777, 8)
    h[108:116] = _octal(0, 8)  # uid
    h[116:124] = _octal(0, 8)  # gid
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(mtime, 12)
    h[148:156] = b" " * 8  # the checksum counts its own field as spaces
    h[156:157] = kind
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[329:337] = _octal(0, 8)  # devmajor
    h[337:345] = _octal(0, 8)  # devminor
    h[345 : 345 + len(prefix)] = prefix
    h[148:156] = f"{sum(h):06o}".encode("ascii") + b"\0 "
    return bytes(h)


def _pax_record(key: str, value: bytes) -> bytes:
    """``"%d %s=%s\\n"``, the length counting itself."""
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode("ascii") + body


def _pad(n: int) -> int:
    return -n % BLOCK


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """(name, prefix) fitting ustar's 100 + 155 bytes, split at a "/", or None."""
    if len(name) <= 100:
        return name, b""
    for i in range(len(name) - 1, 0, -1):
        if name[i : i + 1] == b"/" and i <= 155 and len(name) - i - 1 <= 100:
            return name[i + 1 :], name[:i]
    return None


def _tar_header(m: Member) -> bytes:
    name = m.name.encode("utf-8", "surrogateescape")
    mtime = m.mtime_ns // 1_000_000_000
    kind = b"5" if m.is_dir else b"0"
    split = _split_ustar(name) if name.isascii() else None
    records = b""
    if split is None:
        records += _pax_record("path", name)
        short = name[-100:] if name.isascii() else m.name[-99:].encode("ascii", "replace")[-100:]
        split = (short, b"")
    size = 0 if m.is_dir else m.size
    if size > _USTAR_MAX_SIZE:
        records += _pax_record("size", str(size).encode("ascii"))
    head = b""
    if records:
        pax_name = b"PaxHeader/" + split[0][-90:]
        head = _ustar_header(pax_name, b"", 0o644, len(records), mtime, b"x")
        head += records + b"\0" * _pad(len(records))
    ustar_size = size if size <= _USTAR_MAX_SIZE else 0
    return head + _ustar_header(split[0], split[1], m.mode, ustar_size, mtime, kind)


def tar_body(members: list[Member]) -> tuple[list[Segment], int]:
    """The segments of a tar of ``members`` (sorted by the caller), and its length."""
    segments: list[Segment] = []
    total = 0
    pending = b""
    for m in members:
        pending += _tar_header(m)
        if m.is_dir or m.size == 0:
            continue
        segments.append(pending)
        total += len(pending)
        segments.append(MemberWindow(m.index, 0, m.size))
        total += m.size
        pending = b"\0" * _pad(m.size)
    pending += b"\0" * (2 * BLOCK)
    segments.append(pending)
    total += len(pending)
    return segments, total


# --- zip ---------------------------------------------------------------------------------


def _dos_time(mtime_ns: int) -> tuple[int, int]:
    t = time.gmtime(mtime_ns // 1_000_000_000)
    year = min(max(t.tm_year, 1980), 2107)
    date = ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    clock = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    return clock, date


def zip_body(members: list[Member]) -> tuple[list[Segment], int]:
    """The segments of a stored zip of ``members`` (with their CRC-32s), and its length."""
    segments: list[Segment] = []
    central: list[bytes] = []
    offset = 0
    pending = b""
    for m in members:
        name = m.name.encode("utf-8", "surrogateescape")
        size = 0 if m.is_dir else m.size
        clock, date = _dos_time(m.mtime_ns)
        big = size >= _U32 or offset >= _U32
        version = 45 if big else 20
        local_extra = struct.pack("<HHQQ", 1, 16, size, size) if size >= _U32 else b""
        small = _U32 if size >= _U32 else size
        local = struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            version,
            0x0800,  # the name is UTF-8
            0,  # stored
            clock,
            date,
            m.crc32,
            small,
            small,
            len(name),
            len(local_extra),
        )
        local += name + local_extra
        extra_fields = b""
        if size >= _U32:
            extra_fields += struct.pack("<QQ", size, size)
        if offset >= _U32:
            extra_fields += struct.pack("<Q", offset)
        central_extra = (
            struct.pack("<HH", 1, len(extra_fields)) + extra_fields if extra_fields else b""
        )
        attributes = ((m.mode | (0o040000 if m.is_dir else 0o100000)) << 16) | (
            0x10 if m.is_dir else 0
        )
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                (3 << 8) | 45,  # made by: Unix, 4.5
                version,
                0x0800,
                0,
                clock,
                date,
                m.crc32,
                small,
                small,
                len(name),
                len(central_extra),
                0,  # comment
                0,  # disk
                0,  # internal attributes
                attributes,
                min(offset, _U32),
            )
            + name
            + central_extra
        )
        pending += local
        offset += len(local)
        if size:
            segments.append(pending)
            segments.append(MemberWindow(m.index, 0, size))
            offset += size
            pending = b""
    directory = b"".join(central)
    cd_offset, cd_size, count = offset, len(directory), len(members)
    tail = directory
    if count >= _U16 or cd_offset >= _U32 or cd_size >= _U32:
        zip64_at = cd_offset + cd_size
        tail += struct.pack(
            "<IQHHIIQQQQ", 0x06064B50, 44, (3 << 8) | 45, 45, 0, 0, count, count, cd_size, cd_offset
        )
        tail += struct.pack("<IIQI", 0x07064B50, 0, zip64_at, 1)
    tail += struct.pack(
        "<IHHHHIIH",
        0x06054B50,
        0,
        0,
        min(count, _U16),
        min(count, _U16),
        min(cd_size, _U32),
        min(cd_offset, _U32),
        0,
    )
    pending += tail
    segments.append(pending)
    total = sum(len(s) if isinstance(s, bytes) else s.length for s in segments)
    return segments, total
