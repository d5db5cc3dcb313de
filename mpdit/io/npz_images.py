"""Image batches in the ADM evaluator's .npz layout (`arr_0`: uint8 N x H x W x C), read and
written in chunks: a 50,000-image 256 x 256 file is 9.8 GB, more than a process should hold.

An .npz is a zip of .npy members; a member is read through the zip stream (stored or
compressed alike), and written the same way, header first, then the rows as they come.
"""
import zipfile

import numpy as np

from mpdit.io.files import atomic_path


class ImageFileError(ValueError):
    """An .npz that is not an image batch of the expected layout (one line naming the file)."""


def _member(name: str) -> str:
    return name if name.endswith(".npy") else f"{name}.npy"


def _open_zip(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise ImageFileError(f"{path}: not an .npz file ({error})") from None


def array_keys(path: str) -> list:
    """The array names an .npz holds, without reading them."""
    with _open_zip(path) as archive:
        return [name[:-4] for name in archive.namelist() if name.endswith(".npy")]


def _read_header(stream, path: str, key: str):
    try:
        version = np.lib.format.read_magic(stream)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise ValueError(f"npy format version {version}")
        shape, fortran, dtype = read[version](stream)
    except (ValueError, OSError, EOFError) as error:
        raise ImageFileError(f"{path}: {key} is not a readable array ({error})") from None
    if fortran:
        raise ImageFileError(f"{path}: {key} is stored in Fortran order; save it with np.savez from a C-ordered array")
    return shape, dtype


class ArrayReader:
    """One array of an .npz: its shape and dtype from the header, its rows in chunks."""

    def __init__(self, path: str, key: str = "arr_0"):
        self.path, self.key = path, key
        with _open_zip(path) as archive:
            if _member(key) not in archive.namelist():
                raise ImageFileError(f"{path}: no array {key!r} (it holds {', '.join(array_keys(path)) or 'nothing'})")
            with archive.open(_member(key)) as stream:
                self.shape, self.dtype = _read_header(stream, path, key)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def chunks(self, rows: int):
        """Consecutive blocks of at most `rows` rows, in order."""
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        with _open_zip(self.path) as archive, archive.open(_member(self.key)) as stream:
            _read_header(stream, self.path, self.key)
            for start in range(0, len(self), rows):
                count = min(rows, len(self) - start)
                data = stream.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise ImageFileError(f"{self.path}: {self.key} ends after {start} of {len(self)} rows (truncated)")
                yield np.frombuffer(data, dtype=self.dtype).reshape((count,) + tuple(self.shape[1:]))


def check_images_header(path: str, channels=(1, 3)) -> ArrayReader:
    """The arr_0 reader of an image batch after the checks its header allows: 4 dimensions,
    NHWC with `channels` channels, uint8. Values (range, NaN) are checked as rows are read."""
    if not str(path).endswith(".npz"):
        raise ImageFileError(f"{path}: expected an .npz file (the ADM layout: arr_0 uint8 N x H x W x C)")
    reader = ArrayReader(path, "arr_0")
    shape, dtype = reader.shape, reader.dtype
    if len(shape) != 4:
        raise ImageFileError(f"{path}: arr_0 has shape {tuple(shape)}; expected images N x H x W x C")
    if shape[-1] not in channels and shape[1] in (1, 3):  # image channels first, whatever this evaluation takes
        raise ImageFileError(f"{path}: arr_0 has shape {tuple(shape)}: looks like NCHW (N, C, H, W); expected NHWC, "
                             f"N x H x W x {'/'.join(map(str, channels))} (x.transpose(0, 2, 3, 1))")
    if shape[-1] not in channels:
        raise ImageFileError(f"{path}: arr_0 has {shape[-1]} channels (shape {tuple(shape)}); expected "
                             f"{' or '.join(map(str, channels))}")
    if len(reader) == 0:
        raise ImageFileError(f"{path}: arr_0 holds no images")
    if dtype != np.uint8:
        raise ImageFileError(f"{path}: arr_0 holds {dtype} images{_value_problem(reader)}; expected uint8 in "
                             "[0, 255] (np.clip(127.5 * x + 128, 0, 255).astype(np.uint8) for x in [-1, 1])")
    return reader


def _value_problem(reader: ArrayReader, rows: int = 256) -> str:
    """What is wrong with the values of a non-uint8 image array, judged on its first rows."""
    try:
        first = next(reader.chunks(rows))
    except (ImageFileError, StopIteration, ValueError):
        return ""
    if first.dtype.kind == "f" and np.isnan(first).any():
        return " with NaN values"
    if first.dtype.kind in "fiu":
        low, high = first.min(), first.max()
        if low < 0 or high > 255:
            return f" with values in [{low:g}, {high:g}], out of [0, 255]"
    return ""


def write_npz(path: str, arrays: dict) -> str:
    """Writes an .npz whose arrays are given as (shape, dtype, chunks): `chunks` yields the rows
    in order, so no array has to be whole in memory. Complete or absent (atomic rename)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, (shape, dtype, chunks) in arrays.items():
            dtype = np.dtype(dtype)
            with archive.open(_member(key), "w", force_zip64=True) as stream:
                np.lib.format.write_array_header_2_0(
                    stream, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                             "shape": tuple(shape)})
                written = 0
                for chunk in chunks:
                    chunk = np.ascontiguousarray(chunk, dtype=dtype)
                    stream.write(chunk.tobytes())
                    written += len(chunk)
                if written != shape[0]:
                    raise ValueError(f"out={path!r}: {key} got {written} rows, expected {shape[0]}")
    return path
