"""The training data pipeline (sv/data/train_loader.py, augment.py, crop.py): determinism across epochs,
workers, ranks and resumes; crops; augmentation levels; speed-perturbed labels; normalisation; errors."""
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from sv.data import augment
from sv.data.crop import random_chunk
from sv.data.data_dir import write_data_dir
from sv.data.fbank import compute_fbank, default_config
from sv.data.table import DataError
from sv.data.train_loader import build_train_loader, epoch_batches, num_classes, steps_per_epoch

SR = 16000
NUM_SPEAKERS = 4
TONES = [1000.0, 1500.0, 2000.0, 2500.0]  # one per speaker, so that a speed change is visible in the features
SHORT_UTT = "spk1-utt0"                     # 0.5 s: shorter than any crop
SHORT_FRAMES = 50


def write_wave(path: Path, wave: np.ndarray, sr: int = SR) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, sr, subtype="PCM_16")
    return str(path)


def tone(freq: float, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, str]:
    """13 utterances of 4 speakers (one 0.5 s, one at 8 kHz), synthetic feats whose column 0 is the
    utterance index and column 1 the frame index, and tiny MUSAN and RIR dirs."""
    root = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(0)
    wav, utt2spk, utt2dur = {}, {}, {}
    for spk in range(NUM_SPEAKERS):
        for j in range(4 if spk == 0 else 3):
            utt = f"spk{spk}-utt{j}"
            seconds = 0.5 if utt == SHORT_UTT else float(rng.uniform(1.0, 3.0))
            sr = 8000 if utt == "spk2-utt1" else SR
            wav[utt] = write_wave(root / "wav" / f"{utt}.wav", tone(TONES[spk], seconds, sr, rng), sr)
            utt2spk[utt] = f"spk{spk}"
            utt2dur[utt] = seconds
    train = root / "train"
    write_data_dir(train, wav, utt2spk, utt2dur)
    num_frames = []
    with kaldiio.WriteHelper(f"ark,scp:{train / 'feats.ark'},{train / 'feats.scp'}") as writer:
        for i, utt in enumerate(sorted(utt2spk)):
            frames = SHORT_FRAMES if utt == SHORT_UTT else int(utt2dur[utt] * 100)
            num_frames.append(frames)
            feats = rng.normal(5.0, 2.0, (frames, 8)).astype(np.float32)
            feats[:, 0], feats[:, 1] = i, np.arange(frames)
            writer(utt, feats)
    (train / "conf").mkdir()
    (train / "conf" / "fbank.yaml").write_text("frame_shift: 10\n")

    musan_wav, musan_type, musan_dur = {}, {}, {}
    for kind, count, seconds in (("noise", 2, 3.0), ("music", 2, 4.0), ("speech", 3, 2.5)):
        for j in range(count):
            key = f"{kind}-{j}"
            x = (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32) if kind == "noise" \
                else tone(float(rng.uniform(200, 3000)), seconds, SR, rng)
            musan_wav[key] = write_wave(root / "musan" / f"{key}.wav", x)
            musan_type[key], musan_dur[key] = kind, seconds
    write_data_dir(root / "musan_dir", musan_wav, musan_type, musan_dur)
    rir_wav, rir_room = {}, {}
    for j, room in enumerate(("mediumroom", "smallroom")):
        rir = np.zeros(int(0.3 * SR), dtype=np.float32)
        delay = 40 + j * 10                 # direct path, then an exponentially decaying tail
        tail = len(rir) - delay
        rir[delay:] = 0.5 * rng.standard_normal(tail) * np.exp(-np.arange(tail) / 800)
        rir[delay] = 1.0
        rir_wav[f"{room}-{j}"] = write_wave(root / "rirs" / f"{room}-{j}.wav", 0.5 * rir)
        rir_room[f"{room}-{j}"] = room
    write_data_dir(root / "rir_dir", rir_wav, rir_room)
    return {"train": str(train), "musan": str(root / "musan_dir"), "rirs": str(root / "rir_dir"),
            "order": sorted(utt2spk), "num_frames": num_frames}


def features_cfg(dirs, **kw) -> dict:
    return {"train_dir": dirs["train"], "mode": "features", "batch_size": 2, "num_workers": 0,
            "crop": [1.0, 2.0], "normalize": "none", "seed": 3, **kw}


def raw_cfg(dirs, **kw) -> dict:
    return {"train_dir": dirs["train"], "mode": "raw", "batch_size": 3, "num_workers": 0, "crop": 1.0, "seed": 5,
            "speed_perturb": {"prob": 0.7},
            "musan": {"data_dir": dirs["musan"], "prob": 0.7},
            "rir": {"data_dir": dirs["rirs"], "prob": 0.5},
            "specaug": {"prob": 0.5}, **kw}


def epoch(cfg: dict, rank: int = 0, world_size: int = 1, ep: int = 0, start: int = 0) -> list:
    return list(build_train_loader(cfg, rank, world_size, ep, start))


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def utt_ids(batches: list) -> list[int]:
    """The utterance of each item, from the feats' column 0."""
    return [int(x[i, 0, 0]) for x, _ in batches for i in range(len(x))]


def test_features_determinism_and_workers(dirs):
    cfg = features_cfg(dirs, specaug={"prob": 0.5})
    first = epoch(cfg)
    assert len(first) == steps_per_epoch(cfg, 1) == 13 // 2
    assert first[0][0].dtype == torch.float32 and first[0][1].dtype == torch.int64
    assert_same(first, epoch(cfg))
    assert_same(first, epoch({**cfg, "num_workers": 2}))
    assert utt_ids(first) != utt_ids(epoch(cfg, ep=1))
    assert len(set(utt_ids(first))) == 12


def test_raw_all_augmentations_workers_and_resume(dirs):
    cfg = raw_cfg(dirs)
    full = epoch(cfg)
    assert len(full) == 4 and all(x.shape == (3, 100, 80) for x, _ in full)
    assert all(torch.isfinite(x).all() for x, _ in full)
    assert_same(full, epoch({**cfg, "num_workers": 2}))
    assert_same(full[2:], epoch({**cfg, "num_workers": 2}, start=2))
    assert_same(full[1:], epoch(cfg, start=1))
    assert epoch(cfg, start=4) == []


def test_features_resume(dirs):
    cfg = features_cfg(dirs, specaug={"prob": 1.0})
    full = epoch(cfg)
    for k in (1, 4):
        assert_same(full[k:], epoch({**cfg, "num_workers": 2}, start=k))


def test_rank_sharding(dirs):
    cfg = features_cfg(dirs, batch_size=3)
    single = epoch(cfg)                        # 13 // 3 = 4 batches, one utterance dropped
    ranks = [epoch(cfg, rank=r, world_size=2) for r in range(2)]
    assert [len(b) for b in ranks] == [steps_per_epoch(cfg, 2)] * 2 == [2, 2]
    assert not set(utt_ids(ranks[0])) & set(utt_ids(ranks[1]))
    assert set(utt_ids(ranks[0])) | set(utt_ids(ranks[1])) == set(utt_ids(single))
    for r in range(2):  # global batch g goes to rank g % world_size, with the same crops
        assert_same(ranks[r], single[r::2])
    four = [epoch({**cfg, "batch_size": 2}, rank=r, world_size=4) for r in range(4)]
    assert [len(b) for b in four] == [1] * 4   # 13 // 8: every rank the same, five dropped
    assert sorted(epoch_batches(13, 2, 4, 3, 0).ravel().tolist()) == sorted(set(epoch_batches(13, 2, 4, 3, 0).ravel()))


def test_crop_lengths_and_repeat(dirs):
    fixed = epoch(features_cfg(dirs, crop=2.0, batch_size=1))
    assert {x.shape[1] for x, _ in fixed} == {200}
    ranged = epoch(features_cfg(dirs, crop=[1.0, 2.0], batch_size=1))
    lengths = [x.shape[1] for x, _ in ranged]
    assert all(100 <= n <= 200 for n in lengths) and len(set(lengths)) > 3
    short = dirs["order"].index(SHORT_UTT)
    assert short in utt_ids(fixed)
    for x, _ in fixed:  # consecutive frames, wrapping round where an utterance under 2 s is tiled
        for item in x:
            frames, length = item[:, 1].numpy(), dirs["num_frames"][int(item[0, 0])]
            assert np.array_equal(np.diff(frames) % length, np.ones(199))
            assert (np.diff(frames) < 0).any() == (length < 200)
    raw = epoch({**raw_cfg(dirs), "crop": 1.37})
    assert {x.shape[1] for x, _ in raw} == {137}


def test_frame_shift_from_train_dir(dirs, tmp_path):
    import shutil
    train = tmp_path / "train"
    shutil.copytree(dirs["train"], train)
    (train / "conf" / "fbank.yaml").write_text("frame_shift: 20\n")
    assert epoch(features_cfg(dirs, train_dir=str(train), crop=2.0))[0][0].shape[1] == 100


def test_random_chunk():
    rng = np.random.default_rng(0)
    x = np.arange(10)
    y = random_chunk(x, 25, rng)
    assert len(y) == 25 and np.array_equal(np.diff(y) % 10, np.ones(24))
    z = random_chunk(x, 4, rng)
    assert np.array_equal(np.diff(z), np.ones(3)) and z.base is None


def test_add_noise_snr():
    rng = np.random.default_rng(1)
    speech = tone(440, 2.0, SR, rng)
    noise = (0.7 * rng.standard_normal(len(speech))).astype(np.float32)
    for snr in (5.0, -3.0, 20.0):
        added = augment.add_noise(speech, noise, snr).astype(np.float64) - speech
        measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added ** 2))
        assert abs(measured - snr) < 0.1
    assert np.array_equal(augment.add_noise(speech, np.zeros_like(speech), 0.0), speech)
    parts = [rng.standard_normal(100).astype(np.float32) for _ in range(3)]
    assert np.allclose(augment.babble(parts), parts[0] + parts[1] + parts[2], atol=1e-6)


def test_musan_types_babble_and_snr(dirs, monkeypatch):
    mixes = []
    babble, add_noise = augment.babble, augment.add_noise
    monkeypatch.setattr(augment, "babble", lambda parts: mixes.append(len(parts)) or babble(parts))
    monkeypatch.setattr(augment, "add_noise", lambda w, n, snr: mixes.append(snr) or add_noise(w, n, snr))
    cfg = raw_cfg(dirs, batch_size=4, speed_perturb={"prob": 0.0}, rir={"prob": 0.0},
                  musan={"data_dir": dirs["musan"], "prob": 1.0, "babble_speakers": [2, 3],
                         "snr": {"noise": [0, 1], "music": [5, 6], "speech": [13, 14]}})
    epoch(cfg, ep=0) + epoch(cfg, ep=1)
    pairs = list(zip(mixes[::2], mixes[1::2]))  # (files mixed, SNR) for each of the 24 items
    assert len(pairs) == 24
    babbles = [snr for count, snr in pairs if count > 1]
    singles = [snr for count, snr in pairs if count == 1]
    assert babbles and all(13 <= snr <= 14 for snr in babbles)
    assert all(count <= 3 for count, _ in pairs)
    assert any(snr <= 1 for snr in singles) and any(5 <= snr <= 6 for snr in singles)
    assert all(snr <= 1 or 5 <= snr <= 6 for snr in singles)


def test_reverberate_alignment_and_level():
    rng = np.random.default_rng(2)
    wave = tone(700, 1.0, SR, rng)
    delayed = np.zeros(800, dtype=np.float32)
    delayed[120] = 0.25                      # a pure delay: the output must be the input itself
    assert np.allclose(augment.reverberate(wave, delayed), wave, atol=1e-5)
    rir = np.zeros(4000, dtype=np.float32)
    rir[60] = 1.0
    rir[61:] = 0.3 * rng.standard_normal(3939) * np.exp(-np.arange(3939) / 600)
    out = augment.reverberate(wave, rir)
    assert out.shape == wave.shape and out.dtype == np.float32
    assert np.mean(out.astype(np.float64) ** 2) == pytest.approx(np.mean(wave.astype(np.float64) ** 2), rel=1e-4)
    assert np.corrcoef(out[:2000], wave[:2000])[0, 1] > 0.5    # direct path aligned, not delayed by 60 samples


def test_speed_perturb_length_and_pitch():
    rng = np.random.default_rng(3)
    wave = tone(1000, 2.0, SR, rng)
    for speed in (1.1, 0.9):
        out = augment.speed_perturb(wave, SR, speed)
        assert abs(len(out) - len(wave) / speed) <= 1
        spectrum = np.abs(np.fft.rfft(out))
        assert np.argmax(spectrum) * SR / len(out) == pytest.approx(1000 * speed, abs=5)
    assert augment.speed_perturb(wave, SR, 1.0) is wave


def test_spec_augment_masks():
    rng = np.random.default_rng(4)
    feats = np.ones((100, 40), dtype=np.float32)
    out = augment.spec_augment(feats, rng, time_masks=2, time_width=10, freq_masks=1, freq_width=8)
    assert feats.min() == 1.0                # input untouched
    zero_rows = int((out == 0).all(axis=1).sum())
    zero_cols = int((out == 0).all(axis=0).sum())
    assert zero_rows <= 20 and zero_cols <= 8
    assert np.array_equal(out, augment.spec_augment(feats, np.random.default_rng(4), 2, 10, 1, 8))


def peak_bin(freq: float) -> int:
    """The fbank bin where a tone at freq peaks (as the pipeline computes features)."""
    t = np.arange(SR) / SR
    return int(np.argmax(compute_fbank(0.3 * np.sin(2 * np.pi * freq * t), SR, default_config()).mean(axis=0)))


def test_speed_perturbation_labels(dirs):
    speeds = [0.9, 1.1]
    cfg = {"train_dir": dirs["train"], "mode": "raw", "batch_size": 4, "num_workers": 0, "crop": 1.0,
           "normalize": "none", "speed_perturb": {"prob": 0.8, "speeds": speeds}}
    assert num_classes(cfg) == 3 * NUM_SPEAKERS
    batches = epoch(cfg)
    labels = torch.cat([y for _, y in batches])
    assert labels.min() >= 0 and labels.max() < 3 * NUM_SPEAKERS
    assert len(set((labels // NUM_SPEAKERS).tolist())) == 3   # every speed index occurs
    for x, y in batches:                     # the speed the label names is the one the audio got
        for feats, label in zip(x, y.tolist()):
            spk, k = label % NUM_SPEAKERS, label // NUM_SPEAKERS
            expected = peak_bin(TONES[spk] * ([1.0] + speeds)[k])
            assert abs(int(feats.mean(dim=0).argmax()) - expected) <= 1
    kept = epoch({**cfg, "speed_perturb": {"prob": 0.8, "as_new_speakers": False}})
    assert num_classes({**cfg, "speed_perturb": {"prob": 0.8, "as_new_speakers": False}}) == NUM_SPEAKERS
    assert torch.equal(torch.cat([y for _, y in kept]), labels % NUM_SPEAKERS)
    assert torch.equal(kept[0][0], batches[0][0])
    assert num_classes({**cfg, "speed_perturb": {"prob": 0.0}}) == NUM_SPEAKERS


def test_normalization(dirs):
    for cfg in (features_cfg(dirs, normalize="mean"), raw_cfg(dirs, normalize="mean", specaug={"prob": 0.0})):
        x = epoch(cfg)[0][0]
        assert x.mean(dim=1).abs().max() < 1e-4
    x = epoch(features_cfg(dirs, normalize="meanvar"))[0][0]
    assert x[:, :, 2:].mean(dim=1).abs().max() < 1e-4
    assert (x[:, :, 2:].std(dim=1, unbiased=False) - 1).abs().max() < 1e-3


def test_errors(dirs, tmp_path):
    with pytest.raises(DataError, match=r"data\.batchsize: unknown key \(did you mean 'batch_size'\?\)"):
        build_train_loader(features_cfg(dirs, batchsize=4), 0, 1, 0)
    with pytest.raises(DataError, match=r"data\.musan\.prb: unknown key"):
        build_train_loader(raw_cfg(dirs, musan={"prb": 0.5}), 0, 1, 0)
    with pytest.raises(DataError, match=r"data\.crop: must be"):
        build_train_loader(features_cfg(dirs, crop=[2.0, 1.0]), 0, 1, 0)
    with pytest.raises(DataError, match=r"data\.musan\.prob: .* needs data\.mode: raw"):
        build_train_loader(features_cfg(dirs, musan={"prob": 0.2}), 0, 1, 0)
    no_feats = tmp_path / "no_feats"
    no_feats.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (no_feats / name).write_text(Path(dirs["train"], name).read_text())
    with pytest.raises(DataError, match=f"{no_feats / 'feats.scp'}: no such file"):
        build_train_loader(features_cfg(dirs, train_dir=str(no_feats)), 0, 1, 0)
    assert len(epoch(raw_cfg(dirs, train_dir=str(no_feats), musan={"prob": 0.0}))) == 4
    missing = tmp_path / "no_musan"
    with pytest.raises(DataError, match=f"{missing}: no such data directory"):
        build_train_loader(raw_cfg(dirs, musan={"data_dir": str(missing), "prob": 0.3}), 0, 1, 0)
    with pytest.raises(DataError, match="do not fill one batch"):
        build_train_loader(features_cfg(dirs, batch_size=7), 0, 2, 0)


def waveform_cfg(dirs, **kw) -> dict:
    return {"train_dir": dirs["train"], "mode": "waveform", "batch_size": 3, "num_workers": 0, "crop": [0.5, 1.5],
            "seed": 5, "speed_perturb": {"prob": 0.7},
            "musan": {"data_dir": dirs["musan"], "prob": 0.7},
            "rir": {"data_dir": dirs["rirs"], "prob": 0.5}, **kw}


def test_waveform_mode_batches(dirs):
    cfg = waveform_cfg(dirs)
    batches = epoch(cfg)
    assert len(batches) == 13 // 3
    lengths = set()
    for waves, labels in batches:
        assert waves.dtype == torch.float32 and waves.ndim == 2 and waves.shape[0] == 3
        assert 8000 <= waves.shape[1] <= 24000  # [0.5, 1.5] s at 16 kHz, in samples
        assert waves.abs().max() > 0 and torch.isfinite(waves).all()
        assert labels.max() < NUM_SPEAKERS * 3  # speeds as new speakers
        lengths.add(waves.shape[1])
    assert len(lengths) > 1  # the crop length is drawn per batch
    assert_same(batches, epoch(cfg))
    assert_same(batches, epoch({**cfg, "num_workers": 2}))
    assert_same(batches[1:], epoch(cfg, start=1))

    # Without augmentation a crop is a stretch of the utterance's samples, at the configured rate.
    plain = epoch(waveform_cfg(dirs, crop=1.0, speed_perturb={"prob": 0.0}, musan={"prob": 0.0}, rir={"prob": 0.0},
                               sample_rate=8000))
    assert all(w.shape == (3, 8000) for w, _ in plain)


def test_waveform_mode_errors(dirs):
    with pytest.raises(DataError, match="data.specaug.prob.*waveform"):
        epoch(waveform_cfg(dirs, specaug={"prob": 0.5}))
    with pytest.raises(DataError, match="data.sample_rate"):
        epoch(waveform_cfg(dirs, sample_rate=0))
