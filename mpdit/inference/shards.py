"""The shard folder of `mpdit sample`: each rank streams its images into small .npz shards as
they are made (no rank holds the run), a killed run continues from the shards it left, and at
the end the shards are merged, in index order, into one ADM .npz.

A shard holds `index` (the global image indices), `images` (uint8 NHWC, or float32 latents) and `labels`. Image i
depends on (seed, i) only, so shards written by any number of ranks or any batch size fit
together. `settings.json` records what the shards were sampled with; a resume under other
settings is refused, naming the first difference.
"""
import glob
import json
import os
import shutil

import numpy as np

from mpdit.io import atomic_path
from mpdit.io.npz_images import write_npz

MERGE_ROWS = 512  # images per read while merging


def shard_folder(out: str) -> str:
    """FILE.npz -> FILE.shards (beside it)."""
    return f"{out[:-4]}.shards"


class Shards:
    def __init__(self, out: str):
        self.out, self.folder = out, shard_folder(out)
        self.settings_path = os.path.join(self.folder, "settings.json")

    def files(self) -> list:
        return sorted(glob.glob(os.path.join(self.folder, "shard-*.npz")))

    def check(self, settings: dict, resume: bool) -> None:
        """ValueError when the folder holds shards and `resume` is off, or shards of other settings."""
        found = self.files()
        if found and not resume:
            raise ValueError(f"out={self.out!r}: {self.folder} holds {len(found)} shard(s) of an earlier run; pass "
                             "--resume to continue it, or remove the folder")
        if not found:
            return
        try:
            with open(self.settings_path) as f:
                recorded = json.load(f)
        except (OSError, ValueError):
            raise ValueError(f"{self.settings_path}: missing or unreadable; cannot tell what the shards in "
                             f"{self.folder} were sampled with (remove the folder to start again)") from None
        for key in sorted(set(settings) | set(recorded)):
            if recorded.get(key) != settings.get(key):
                raise ValueError(f"--resume: the shards in {self.folder} were sampled with {key}="
                                 f"{recorded.get(key)!r}, this run has {key}={settings.get(key)!r}")

    def record(self, settings: dict) -> None:
        """Writes settings.json (the main rank, after every rank has checked the folder)."""
        os.makedirs(self.folder, exist_ok=True)
        with atomic_path(self.settings_path) as tmp, open(tmp, "w") as f:
            json.dump(settings, f, indent=1, sort_keys=True)

    def covered(self, count: int) -> np.ndarray:
        """(count,) bool: the indices some complete shard holds (an unreadable shard, e.g. cut by
        a full disk, is ignored and its images are sampled again)."""
        done = np.zeros(count, dtype=bool)
        for path in self.files():
            index = self._index(path)
            if index is not None:
                done[index[index < count]] = True
        return done

    @staticmethod
    def _index(path: str):
        try:
            with np.load(path) as shard:
                return shard["index"]
        except (OSError, ValueError, KeyError, EOFError):
            return None

    def write(self, index: np.ndarray, images: np.ndarray, labels: np.ndarray) -> str:
        path = os.path.join(self.folder, f"shard-{int(index[0]):09d}-{len(index):05d}.npz")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # complete or absent
            np.savez(f, index=index, images=images, labels=labels)
        return path

    def owners(self, count: int) -> dict:
        """index -> (shard path, row) for every index below count; ValueError if one is missing."""
        owner = {}
        for path in self.files():
            index = self._index(path)
            for row, i in enumerate([] if index is None else index.tolist()):
                owner.setdefault(i, (path, row))
        missing = [i for i in range(count) if i not in owner]
        if missing:
            raise ValueError(f"{self.folder}: images {missing[:5]}{'...' if len(missing) > 5 else ''} are missing "
                             "(a shard was removed while sampling?); run again with --resume")
        return owner

    @staticmethod
    def rows(owner: dict, indices, field: str):
        """`field` of the given indices, in blocks of MERGE_ROWS, reading one shard at a time."""
        indices, cache = list(indices), {}
        for start in range(0, len(indices), MERGE_ROWS):
            block = []
            for i in indices[start:start + MERGE_ROWS]:
                path, row = owner[i]
                if path not in cache:  # shards come in order: keep only the current one, only this field
                    with np.load(path) as shard:
                        cache = {path: shard[field]}
                block.append(cache[path][row])
            yield np.stack(block)

    def merge(self, count: int, key: str = "arr_0") -> tuple:
        """Writes `out` (the images under `key`, and labels, in index order) from the shards;
        returns (labels, owners)."""
        owner = self.owners(count)
        labels = np.concatenate(list(self.rows(owner, range(count), "labels")))
        with np.load(owner[0][0]) as first:
            image_shape, dtype = first["images"].shape[1:], first["images"].dtype
        images = self.rows(owner, range(count), "images")
        write_npz(self.out, {key: ((count,) + tuple(image_shape), dtype, images),
                             "labels": (labels.shape, labels.dtype, [labels])})
        return labels, owner

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
