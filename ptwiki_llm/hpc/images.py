"""Apptainer images: the content digest that goes into every MLflow run a job writes."""

from __future__ import annotations

from pathlib import Path

from ptwiki_llm.provenance import sha256_file

SIDECAR_SUFFIX = ".sha256"


def image_digest(image: Path, cache_dir: Path | None = None) -> str:
    """``sha256:<hex>`` of a .sif, cached in ``<image>.sha256`` (or ``cache_dir``) while the image is unchanged.

    Hashing a multi-GB image takes a while, so the digest is computed once per image file (on the login
    node, at submit time) rather than in every job. A cache older than the image is ignored.
    """
    image = Path(image)
    if not image.is_file():
        raise FileNotFoundError(
            f"Apptainer image {image} not found: build it (apptainer/README in the repository) or fix hpc.slurm.image"
        )
    candidates = [image.with_name(image.name + SIDECAR_SUFFIX)]
    if cache_dir is not None:
        candidates.append(cache_dir / (image.name + SIDECAR_SUFFIX))
    mtime = image.stat().st_mtime
    for sidecar in candidates:
        if sidecar.is_file() and sidecar.stat().st_mtime >= mtime:
            text = sidecar.read_text(encoding="utf-8").split()
            if text and len(text[0]) == 64:
                return f"sha256:{text[0]}"
    digest = sha256_file(image)
    for sidecar in candidates:
        try:
            sidecar.parent.mkdir(parents=True, exist_ok=True)
            sidecar.write_text(f"{digest}  {image.name}\n", encoding="utf-8")
            break
        except OSError:
            continue  # the image folder may be read-only; try the next place
    return f"sha256:{digest}"
