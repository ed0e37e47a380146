"""Token files: where the data stages and the trainer meet, as memory-mapped Arrow IPC streams.

LM blocks: one column `tokens`, fixed_size_list<uint16|uint32>[seq_len + 1], one file per pack unit.
Labelled sets: `tokens` (fixed-size, padded), `length`, `label`.
SFT pairs: `tokens` (prompt + response + EOS, padded to seq_len + 1), `prompt_length`, `length`.
Files are Arrow IPC streams, the format `datasets.Dataset.from_file` memory-maps too. numpy and
pyarrow only: the data wing writes them without importing torch.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa


def read_fixed_tokens(path: Path | str) -> list[np.ndarray]:
    """Zero-copy views (one per record batch) of a fixed-size token column: each (rows, width)."""
    views = []
    for batch in pa.ipc.open_stream(pa.memory_map(str(path), "r")):
        column = batch.column("tokens")
        width = column.type.list_size
        flat = column.values.to_numpy(zero_copy_only=True)
        views.append(flat.reshape(-1, width))
    return views


def read_int_column(path: Path | str, name: str) -> np.ndarray:
    return pa.ipc.open_stream(pa.memory_map(str(path), "r")).read_all().column(name).to_numpy()


class TokenArrays:
    """Row access across memory-mapped Arrow token files (one path, or the shards of a split) and their record
    batches: global row i is row i - offsets[p] of part p, the record batch whose offsets hold it."""

    def __init__(self, paths: Path | str | Sequence[Path | str], extra_columns: tuple[str, ...] = ()):
        files = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not files:
            raise ValueError("TokenArrays: no token files given")
        self.parts = [view for path in files for view in read_fixed_tokens(path)]
        widths = {p.shape[1] for p in self.parts}
        if len(widths) > 1:
            raise ValueError(f"token files {[str(f) for f in files]} mix row widths {sorted(widths)}")
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.extra = {name: np.concatenate([read_int_column(path, name) for path in files]) for name in extra_columns}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows(self, indices: np.ndarray) -> np.ndarray:
        part = np.searchsorted(self.offsets, indices, side="right") - 1
        return np.stack([self.parts[p][i - self.offsets[p]] for p, i in zip(part, indices)])


def token_dtype(vocab_size: int) -> pa.DataType:
    return pa.uint16() if vocab_size <= 2**16 else pa.uint32()


class TokenRowWriter:
    """Writes fixed-width token rows (plus optional int columns) as an Arrow IPC stream, batch by batch."""

    def __init__(self, path: Path, width: int, vocab_size: int, extra_columns: tuple[str, ...] = ()):
        self.dtype = token_dtype(vocab_size)
        fields = [pa.field("tokens", pa.list_(self.dtype, width))] + [pa.field(c, pa.int64()) for c in extra_columns]
        self.schema = pa.schema(fields)
        self.width, self.num_rows = width, 0
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, self.schema)

    def write(self, rows: np.ndarray, **extra: np.ndarray) -> None:
        if len(rows) == 0:
            return
        flat = pa.array(rows.reshape(-1).astype(self.dtype.to_pandas_dtype()), type=self.dtype)
        columns = [pa.FixedSizeListArray.from_arrays(flat, self.width)]
        columns += [pa.array(extra[f.name], pa.int64()) for f in list(self.schema)[1:]]
        self.writer.write_batch(pa.record_batch(columns, schema=self.schema))
        self.num_rows += len(rows)

    def close(self) -> None:
        self.writer.close()
        self.sink.close()

