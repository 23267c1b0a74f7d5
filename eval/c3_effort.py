"""R-D against encode time of c3's presets on one Kodak crop (the centre 256x256 of kodim03, q3).

Rows go to eval/c3_effort.jsonl as they finish (a restart skips the presets already there).

    OMP_NUM_THREADS=1 python eval/c3_effort.py [presets...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from neurocodec.codecs import c3
from neurocodec.io.image import read_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from c3_kodak import KODAK, crop, measure_c3
from common import append_row, read_rows

ROWS = Path(__file__).resolve().with_suffix(".jsonl")

torch.set_num_threads(1)
presets = sys.argv[1:] or ["fast", "medium"]
x = crop(read_image(KODAK / "kodim03.png")[0], 256)
done = {r["preset"] for r in read_rows(ROWS)}
for preset in presets:
    if preset in done:
        continue
    row = measure_c3(x, "kodim03", 3, c3.PRESETS[preset])
    row.update(preset=preset, effort=c3.PRESETS[preset], crop=256)
    append_row(ROWS, row)
    print(json.dumps({k: row[k] for k in ("preset", "bpp", "psnr", "encode_s")}), flush=True)
