"""Project folder: where a project's database and files live, and paths checked to stay inside it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA = Path("data")


class UnsafePath(ValueError):
    """A path built from input would leave the project folder."""


@dataclass(frozen=True)
class Project:
    """One project = one data folder: formcheck.db, videos/, poses/, clips/, runs/, work/."""

    root: Path

    @classmethod
    def open(cls, data: str | os.PathLike | None = None) -> "Project":
        """The project at `data`, else $FORMCHECK_DATA, else ./data; folders are created when missing."""
        root = Path(data or os.environ.get("FORMCHECK_DATA") or DEFAULT_DATA).expanduser().resolve()
        project = cls(root)
        for sub in (project.root, project.videos, project.poses, project.clips, project.runs, project.work):
            sub.mkdir(parents=True, exist_ok=True)
        return project

    @property
    def db_path(self) -> Path:
        return self.root / "formcheck.db"

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def poses(self) -> Path:
        return self.root / "poses"

    @property
    def clips(self) -> Path:
        """Cut H.264 clips: a cache that can be rebuilt from videos/."""
        return self.root / "clips"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def work(self) -> Path:
        """Scratch space for downloads and uploads in progress."""
        return self.root / "work"

    def path(self, relative: str | os.PathLike) -> Path:
        """Resolve a path stored relative to the project root, refusing anything that escapes it."""
        resolved = (self.root / relative).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise UnsafePath(f"path {str(relative)!r} is outside the project folder")
        return resolved

    def relative(self, path: Path) -> str:
        """The form in which a path inside the project is stored in the database."""
        return str(self.path(path).relative_to(self.root))
