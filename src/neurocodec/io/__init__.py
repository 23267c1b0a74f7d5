"""Media readers and writers: images (:mod:`.image`), audio (:mod:`.audio`), video (:mod:`.video`),
and atomic file writes (:mod:`.atomic`). Tensors are float32: images (C, H, W) and video
(C, T, H, W) in [0, 1], audio (C, T) in [-1, 1]."""
