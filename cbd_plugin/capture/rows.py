"""Token residuals on disk: rows appended batch by batch, read back by row range, memory flat in tokens."""

from __future__ import annotations

import os
import tempfile

import torch


class TokenRows:
    """Token residuals ``[n, width]`` appended batch by batch to an anonymous temporary file and read back by row
    range (``rows[a:b]``, ``len(rows)``), so a capture's memory does not grow with the tokens it keeps.

    The file (``tempfile.TemporaryFile``: already unlinked, gone when closed or collected) sits in the OS page cache
    rather than in the process; reads copy only the rows asked for. Values come back bit for bit.
    """

    def __init__(self, width: int, dtype: torch.dtype):
        self.width, self.dtype, self.n = width, dtype, 0
        self._row_bytes = width * torch.empty(0, dtype=dtype).element_size()
        self._file = tempfile.TemporaryFile()

    def append(self, x: torch.Tensor) -> None:
        if x.shape[1:] != (self.width,) or x.dtype != self.dtype:
            raise ValueError(f"TokenRows: rows {tuple(x.shape)} {x.dtype}, expected [n, {self.width}] {self.dtype}")
        self._file.seek(0, os.SEEK_END)
        self._file.write(x.detach().cpu().contiguous().view(torch.uint8).numpy())  # the buffer, not a copy
        self.n += len(x)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: slice) -> torch.Tensor:
        start, stop, step = rows.indices(self.n)
        if step != 1:
            raise IndexError("TokenRows: only contiguous row ranges")
        if stop <= start:
            return torch.empty(0, self.width, dtype=self.dtype)
        self._file.seek(start * self._row_bytes)
        data = bytearray(self._file.read((stop - start) * self._row_bytes))  # writable: no frombuffer warning
        return torch.frombuffer(data, dtype=torch.uint8).view(self.dtype).view(stop - start, self.width)
