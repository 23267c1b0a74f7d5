"""Training images: decoded once, kept in memory (or on the GPU), cropped on the device.

No input pipeline to stall: every image of the folder is decoded once into a uint8 tensor on
the training device, and each batch is a set of random crops and flips taken there, driven by
one seeded generator (so a resumed run continues the same sequence).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

__all__ = ["ImageCrops", "image_files"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".ppm"}


def image_files(root: str | Path) -> list[Path]:
    """Every image below ``root`` (recursively), sorted, so the order is the same everywhere."""
    root = Path(root)
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    return files


class ImageCrops:
    """Random ``crop`` x ``crop`` RGB crops (with horizontal flips) of images held in memory.

    Images smaller than the crop on either side are skipped (and counted in ``skipped``).
    """

    def __init__(self, root: str | Path, crop: int = 256, device: str | torch.device = "cpu"):
        self.crop = crop
        self.device = torch.device(device)
        self.images: list[torch.Tensor] = []
        self.skipped = 0
        for path in image_files(root):
            with Image.open(path) as im:
                rgb = im.convert("RGB")
            if min(rgb.size) < crop:
                self.skipped += 1
                continue
            t = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
            self.images.append(t.permute(2, 0, 1).contiguous().to(self.device))
        if not self.images:
            raise ValueError(f"no image under {root} is at least {crop} px on both sides")

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """``size`` random crops as float32 in [0, 1], shape ``(size, 3, crop, crop)``, on the device."""
        picks = torch.randint(len(self.images), (size,), generator=generator).tolist()
        out = torch.empty(size, 3, self.crop, self.crop, dtype=torch.uint8, device=self.device)
        for k, i in enumerate(picks):
            img = self.images[i]
            h, w = img.shape[1:]
            top = int(torch.randint(h - self.crop + 1, (1,), generator=generator))
            left = int(torch.randint(w - self.crop + 1, (1,), generator=generator))
            crop = img[:, top : top + self.crop, left : left + self.crop]
            if bool(torch.randint(2, (1,), generator=generator)):
                crop = crop.flip(-1)
            out[k] = crop
        return out.float().div_(255.0)
