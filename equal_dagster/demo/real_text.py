"""A real crawl for the demo: the long descriptions (READMEs) of the Python packages installed beside this one.

Text that no one here wrote, already on the machine after ``make setup``: it shows how the pipeline behaves on
real pages (most carry no Q&A of their own; a few have a FAQ section), beside the generated crawls.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

REAL_CRAWL = "real-readmes"
MIN_README_CHARS = 200


def package_readmes() -> list[dict]:
    """One row per installed distribution with a long description: id, url, text and the licence it declares."""
    rows: dict[str, dict] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        body = dist.metadata.get_payload() if hasattr(dist.metadata, "get_payload") else None
        if not name or not isinstance(body, str) or len(body.strip()) < MIN_README_CHARS:
            continue
        key = name.lower().replace("_", "-")
        urls = dist.metadata.get_all("Project-URL") or []
        home = dist.metadata.get("Home-page") or next((u.split(",", 1)[1].strip() for u in urls if "," in u), None)
        rows[key] = {"id": f"pypi:{key}", "url": home or f"https://pypi.org/project/{key}/", "text": body,
                     "licence": dist.metadata.get("License-Expression") or (dist.metadata.get("License") or "")[:80]}
    return [rows[k] for k in sorted(rows)]


def write_real_crawl(crawl_dir: Path) -> int:
    """Write the READMEs crawl under ``crawl_dir``; returns its number of rows."""
    folder = Path(crawl_dir) / REAL_CRAWL
    folder.mkdir(parents=True, exist_ok=True)
    rows = package_readmes()
    with open(folder / "readmes.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return len(rows)
