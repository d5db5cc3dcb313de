"""A JSON-lines file that grows one whole record at a time and survives a kill mid-write.

append() cuts a torn last line (a process killed mid-write) before it writes, and syncs each
record to disk, so a record read back is one that was written completely; read() skips a
torn last line and refuses damage anywhere else.
"""
import json
import os


def read(path: str) -> list:
    """The records of `path` (none when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)  # bytes: invalid UTF-8 is a ValueError too
        except ValueError:
            if number == len(lines):  # no newline after it: the write a kill cut short
                continue
            raise ValueError(f"{path}: line {number} is not JSON (a hand edit or a damaged file?); expected one "
                             "record per line") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number} is a JSON {type(record).__name__}, not a record (a hand edit "
                             "or a damaged file?)")
        records.append(record)
    return records


def append(path: str, *records: dict) -> None:
    """Append records, one line each, in one write synced to disk."""
    _cut_torn_tail(path)
    with open(path, "a") as f:
        f.write("".join(json.dumps(record) + "\n" for record in records))
        f.flush()
        os.fsync(f.fileno())


def _cut_torn_tail(path: str) -> None:
    """Truncate whatever follows the last newline (a record cut short): appended to, it would join
    the next record's line and damage both."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)
