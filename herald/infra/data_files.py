"""A folder of working files in the data directory (imports, exports, segment files)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self


class DataFolder:
    """Files under `<data dir>/<DIRECTORY_NAME>`."""

    DIRECTORY_NAME: ClassVar[str]

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    @property
    def directory(self) -> Path:
        return self._directory

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Self:
        return cls(data_dir / cls.DIRECTORY_NAME)
