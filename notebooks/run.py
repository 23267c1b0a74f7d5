"""Execute the notebooks headless (nbclient), as CI does, or on the full data.

    python notebooks/run.py                         # every notebook, on all the data
    NEUROCODEC_NB_IMAGES=3 python notebooks/run.py rd_images.ipynb
    python notebooks/run.py rd_audio.ipynb rd_video.ipynb   # all music; 30 frames of each video

Each notebook runs with ``notebooks/`` as its working directory and the environment of this
command (``NEUROCODEC_KODAK``, ``NEUROCODEC_MUSIC``, ``NEUROCODEC_VIDEO``, ``NEUROCODEC_NB_IMAGES``,
``NEUROCODEC_NB_FILES``, ``NEUROCODEC_NB_FRAMES``, ``NEUROCODEC_NB_SETTINGS``, ``NEUROCODEC_NB_OUT``:
see the notebooks' first cells). The executed copies, with their outputs,
go to ``--out`` (default ``eval/results/notebooks/``); the committed notebooks stay stripped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = (
    "quickstart.ipynb",
    "rd_images.ipynb",
    "rd_audio.ipynb",
    "rd_video.ipynb",
    "compressed_learning.ipynb",
)


def execute(name: str, out_dir: Path | None = None, timeout: int = 3600) -> nbformat.NotebookNode:
    """Run ``notebooks/NAME`` top to bottom; the executed notebook (written to ``out_dir`` if given).
    A failing cell raises ``nbclient.exceptions.CellExecutionError`` with its traceback."""
    notebook = nbformat.read(HERE / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    )
    client.execute()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, out_dir / name)
    return notebook


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", default=list(NOTEBOOKS))
    ap.add_argument("--out", type=Path, default=HERE.parent / "eval" / "results" / "notebooks")
    args = ap.parse_args()
    for name in args.notebooks:
        start = time.perf_counter()
        execute(Path(name).name, args.out)
        print(f"{name}: ran in {time.perf_counter() - start:.1f} s -> {args.out / Path(name).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
