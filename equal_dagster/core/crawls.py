"""Finding new crawls in the crawl folder (what the ``new_crawl_sensor`` asks each tick).

Rules: each entry of the folder (a subfolder, or a crawl file) is one crawl, named by the entry's name.
An entry is refused, with its reason, when its name is not a crawl name or when it resolves (through a
symlink) outside the folder. Names starting with '.' or '_' are ignored (hidden files, markers). An entry
is not yet ready while anything in it changed within the last ``settle_seconds`` (a copy in progress).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from equal_dagster.core.corpus import display_name, is_inside

CRAWL_NAME = re.compile(r"^[A-Za-z0-9][\w.\- ]{0,199}$")


@dataclass
class CrawlScan:
    new: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # name -> reason
    settling: list[str] = field(default_factory=list)


def newest_change(path: Path) -> float:
    """The newest modification time of a file, or of anything below a folder (symlinks not followed)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest


def scan_crawl_folder(root: Path, known: set[str], settle_seconds: float, now: float | None = None) -> CrawlScan:
    """The crawls in ``root`` not in ``known``: ready ones, refused ones (with why), and settling ones."""
    now = time.time() if now is None else now
    scan = CrawlScan()
    if not root.is_dir():
        return scan
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name in known or name.startswith((".", "_")):
            continue
        if not CRAWL_NAME.match(name):
            scan.refused[display_name(name)] = "not a crawl name (letters, digits, '.', '_', '-', spaces; at most 200)"
        elif not is_inside(entry, root):
            scan.refused[name] = f"resolves to {entry.resolve()}, outside the crawl folder {root}"
        elif not entry.exists():
            scan.refused[name] = "a broken symlink"
        elif now - newest_change(entry) < settle_seconds:
            scan.settling.append(name)
        else:
            scan.new.append(name)
    return scan
