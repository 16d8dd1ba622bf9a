"""A digest of the engine's sources (workbench/ and kernels/), recorded with every benchmark: the
GPU machine gets a copy of the working tree whose git metadata may not match it, so this, not
`git rev-parse`, says which code was measured. `python bench/source_digest.py` prints it for this tree."""
from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_digest(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    files = sorted(p for folder in ("workbench", "kernels") for p in (root / folder).rglob("*")
                   if p.is_file() and p.suffix in (".py", ".cu", ".cuh") and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    print(source_digest())
