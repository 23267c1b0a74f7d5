"""``recombiner-audio``: round trip from a file, the decoder regenerating exactly the samples the
encoder chose, determinism across threads, damaged files, the CLI, media it refuses."""

from __future__ import annotations

import pytest
import torch

from neurocodec import container
from neurocodec.codecs import recombiner
from neurocodec.errors import BitstreamError, ConfigError, NeurocodecError, UnsupportedMediaError
from neurocodec.models.recombiner import Recombiner, from_signals, to_signals

EFFORT = 20
TINY = {
    "patch": 256,
    "hidden": 16,
    "layers": 2,
    "fourier": 4,
    "lpe_channels": 4,
    "lpe_width": 8,
    "lpe_out": 8,
}


def clip(channels: int = 2, samples: int = 1000) -> torch.Tensor:
    """A short test signal in [-1, 1]: two tones, a little noise, the channels a little apart."""
    g = torch.Generator().manual_seed(channels)
    t = torch.arange(samples) / 16000
    tones = [
        0.4 * torch.sin(2 * torch.pi * 220 * t + c) + 0.2 * torch.sin(2 * torch.pi * 50 * t)
        for c in range(channels)
    ]
    return (torch.stack(tones) + 0.02 * torch.randn(channels, samples, generator=g)).clamp(-1, 1)


def codec() -> recombiner.RecombinerAudioCodec:
    """A codec of a tiny architecture with an untrained prior (N(0, 1)) and the same random
    upsampler each time: no weight file needed."""
    torch.manual_seed(0)
    c = recombiner.RecombinerAudioCodec(**TINY)
    c.block_bits = 8
    return c


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> tuple[torch.Tensor, bytes, dict]:
    x = clip()
    c = codec()
    path = tmp_path_factory.mktemp("rca") / "clip.ncd"
    path.write_bytes(c.encode(x, sample_rate=16000, effort=EFFORT))
    return x, path.read_bytes(), dict(c.last_fit)


def test_roundtrip_from_a_file_regenerates_the_chosen_parameters(coded) -> None:
    x, data, fit = coded
    header, sections = container.unpack(data)
    assert header.codec == "recombiner-audio" and set(sections) == {"patches", "indexes"}
    g = header.geometry
    assert (g.sample_rate, g.channels, g.samples) == (16000, 2, 1000)
    c = codec()
    bits, seed, shares = recombiner.unpack_patches(sections["patches"], 256, 2 * 4)  # 2 signals x 4 patches
    count = sum(len(recombiner.Layout(c.model).blocks(s)) for s in shares)
    assert count == fit["blocks"]
    indexes = recombiner.unpack_indexes(sections["indexes"], bits, count)
    theta = c.parameters_of(shares, indexes, bits, seed).numpy()
    assert theta.tobytes() == fit["parameters"].tobytes()
    x_hat = c.decode(data)
    assert x_hat.shape == x.shape and x_hat.dtype == torch.float32
    assert torch.equal(torch.round(x_hat * 32768) / 32768, x_hat)  # on the 16-bit grid
    assert torch.equal(x_hat, c.decode(data))


def test_a_mono_clip_codes_one_signal() -> None:
    x = clip(1, 300)
    c = codec()
    data = c.encode(x, effort=5)
    header, sections = container.unpack(data)
    assert header.geometry.sample_rate == 44100 and header.geometry.channels == 1
    recombiner.unpack_patches(sections["patches"], 256, 2)  # one signal, 2 patches: no error
    assert c.decode(data).shape == (1, 300)


def test_mid_side_inverts_exactly_on_the_grid() -> None:
    x = torch.round(clip(2, 500) * 32768) / 32768
    assert torch.equal(from_signals(to_signals(x.double())), x.double())
    assert torch.equal(to_signals(x[:1]), x[:1])


def test_decoding_is_identical_on_1_and_2_threads(coded) -> None:
    _, data, _ = coded
    previous = torch.get_num_threads()
    try:
        outputs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outputs.append(codec().decode(data))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(outputs[0], outputs[1])


def test_encoding_is_deterministic(coded) -> None:
    x, data, _ = coded
    assert codec().encode(x, sample_rate=16000, effort=EFFORT) == data


@pytest.mark.parametrize("cut", [1, 10, 50])
def test_truncated_files_raise_clear_errors(coded, cut: int) -> None:
    _, data, _ = coded
    with pytest.raises(NeurocodecError):
        codec().decode(data[:-cut])


def test_damaged_sections_raise_bitstream_errors(coded) -> None:
    _, data, _ = coded
    header, sections = container.unpack(data)
    c = codec()
    for name in sections:
        for damaged in (sections[name][: len(sections[name]) // 2], sections[name] + b"\0", b""):
            with pytest.raises(BitstreamError):
                c.decode(container.pack(header, {**sections, name: damaged}))
    for offset, value in ((0, 2), (1, 0), (2, 128), (8, 5), (12, 0)):  # version, k, patch, count, shares
        forged = bytearray(sections["patches"])
        forged[offset] = value
        if offset == 12:
            forged[13] = 0
        with pytest.raises(BitstreamError):
            c.decode(container.pack(header, {**sections, "patches": bytes(forged)}))
    longer = container.Header(
        header.codec, header.quality, header.weights_hash, container.AudioGeometry(16000, 2, 5000)
    )
    with pytest.raises(BitstreamError, match="patches"):  # not the length it was coded at
        c.decode(container.pack(longer, sections))


def test_other_media_are_refused(coded) -> None:
    _, data, _ = coded
    with pytest.raises(UnsupportedMediaError):
        codec().encode(torch.rand(3, 32, 32))  # an image
    with pytest.raises(UnsupportedMediaError):
        codec().encode(clip(3, 100))  # 3 channels
    with pytest.raises(NeurocodecError):  # an audio file to the image codec
        recombiner.RecombinerImageCodec().decode(data)
    with pytest.raises(ConfigError):  # image patches in the audio codec, and the other way
        recombiner.RecombinerAudioCodec(dims=2, patch=64)
    with pytest.raises(ConfigError):
        recombiner.RecombinerImageCodec(dims=1)
    model = Recombiner(**recombiner.AUDIO_ARCH)
    assert model(torch.zeros(2, model.size)).shape == (2, 1, 1024)


@pytest.mark.usefixtures("shipped")
def test_cli_round_trip_with_the_shipped_prior(tmp_path) -> None:
    from neurocodec.cli import main
    from neurocodec.io.audio import read_audio, write_audio

    source, coded_file, decoded = tmp_path / "clip.wav", tmp_path / "clip.ncd", tmp_path / "out.wav"
    write_audio(source, clip(2, 3000), 22050)
    encode = ["encode", str(source), "-c", "recombiner-audio", "-q", "1", "--effort", "10"]
    assert main([*encode, "-o", str(coded_file)]) == 0
    assert main(["decode", str(coded_file), "-o", str(decoded)]) == 0
    y, info = read_audio(decoded)
    assert info.sample_rate == 22050 and y.shape == (2, 3000)
    import neurocodec

    expected = neurocodec.load("recombiner-audio", 1).decode(coded_file.read_bytes())
    assert torch.equal(y, expected)


def test_prior_training_on_audio_clips_runs_and_exports(tmp_path) -> None:
    import json

    from neurocodec.io.audio import write_audio
    from neurocodec.train import recombiner as train

    data = tmp_path / "clips"
    data.mkdir()
    write_audio(data / "a.wav", clip(2, 4000), 44100)
    write_audio(data / "held.wav", torch.zeros(1, 4000), 44100)
    crops = train.training_segments(data, 6, 1024, 0, ["held.wav"])
    assert crops.shape == (6, 1, 1024) and crops.abs().sum(-1).min() > 0  # never the silent held-out clip
    args = ["--medium", "audio", "--run", str(tmp_path / "run"), "--budget", "0.5", "--data", str(data)]
    args += ["--exclude", "held.wav", "--patches", "4", "--batch", "4", "--first-epochs", "1"]
    args += ["--iterations", "2", "--export", "7", "--out-dir", str(tmp_path)]
    train.main(args)
    card = json.loads((tmp_path / "recombiner-audio-q7.json").read_text())
    assert card["media"] == "audio" and card["arch"]["dims"] == 1 and card["model_card"]["em_iterations"] == 2
    assert "held out: held.wav" in card["model_card"]["training_data"]


def test_prior_training_on_speech_keeps_its_rate_and_arch(tmp_path) -> None:
    import json

    from neurocodec.io.audio import write_audio
    from neurocodec.train import recombiner as train

    data = tmp_path / "speech"
    data.mkdir()
    write_audio(data / "a.wav", clip(1, 4000), 16000)
    write_audio(data / "b.wav", torch.zeros(1, 4000), 22050)  # another rate: left out
    assert [name for name, _ in train.training_clips(data, [], 16000)] == ["a.wav"]
    resampled = dict(train.training_clips(data, [], 16000, resample=True))
    assert resampled["b.wav"].shape == (1, -(-4000 * 16000 // 22050))  # 22.05 kHz brought to 16 kHz
    args = ["--medium", "speech", "--run", str(tmp_path / "run"), "--budget", "0.5", "--data", str(data)]
    args += ["--patches", "4", "--batch", "4", "--first-epochs", "1", "--iterations", "1"]
    args += ["--arch", "patch=512", "--export", "7", "--out-dir", str(tmp_path)]
    train.main(args)
    card = json.loads((tmp_path / "recombiner-speech-q7.json").read_text())
    assert card["codec"] == "recombiner-speech" and card["media"] == "audio"
    assert card["arch"]["patch"] == 512 and "rd_speech" in card["model_card"]
    assert (
        "a.wav" in card["model_card"]["training_data"] and "b.wav" not in card["model_card"]["training_data"]
    )
    with pytest.raises(SystemExit):  # an unknown or non-integer architecture parameter
        train.arch_of(train.parse(["--run", "x", "--budget", "1", "--medium", "speech", "--arch", "dims=2"]))
    with pytest.raises(SystemExit):
        train.arch_of(train.parse(["--run", "x", "--budget", "1", "--arch", "patch=wide"]))


def test_the_speech_codec_records_16_khz_by_default() -> None:
    torch.manual_seed(0)
    c = recombiner.RecombinerSpeechCodec(**TINY)
    c.block_bits = 8
    data = c.encode(clip(1, 600), effort=5)
    header, _ = container.unpack(data)
    assert header.codec == "recombiner-speech" and header.geometry.sample_rate == 16000
    assert c.decode(data).shape == (1, 600)


def test_the_papers_fourier_frequencies_are_log_spaced() -> None:
    from neurocodec.models.recombiner import Arch, fourier_features

    ours, papers = fourier_features(1024, 8, dims=1), fourier_features(1024, 8, dims=1, top=1024)
    assert torch.equal(ours[:, 0], fourier_features(1024, 8, dims=1, top=0)[:, 0])
    c = (torch.arange(1024, dtype=torch.float64) + 0.5) / 1024 * 2 - 1
    for f, w in ((1, 2.0), (7, 128.0)):  # ours: 2^f
        assert torch.allclose(ours[:, f].double(), torch.sin(c * w * torch.pi), atol=1e-6)
    for f, w in ((0, 1.0), (7, 1024.0)):  # the paper's: 1 ... 1024, log-spaced
        assert torch.allclose(papers[:, f].double(), torch.sin(c * w * torch.pi), atol=1e-5)
    assert Recombiner(**{**recombiner.AUDIO_ARCH, "fourier_max": 1024}).fourier.shape == (1024, 16)
    with pytest.raises(ValueError, match="fourier_max"):
        Arch(fourier_max=1).check()
