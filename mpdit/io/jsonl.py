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
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # no newline after it: the write a kill cut short
                continue
            raise ValueError(f"{path}: line {number} is not JSON; expected one record per line") from None
    return records


def append(path: str, record: dict) -> None:
    """Append one record as one line, synced to disk."""
    _cut_torn_tail(path)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
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
