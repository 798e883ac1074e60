"""Acceptance test of local/make_synthetic_corpus.py: layouts, determinism, and a task that is neither
trivial nor chance.

The EER test runs on 4 dev + the 10 default test speakers: the test speakers' audio and veri_test2.txt
depend only on the seed, their ids and the per-speaker sizes, so the figure equals the default-size
corpus's. Measured at the default size, seed 0: the untrained mean-fbank baseline scores 25.0 % EER
on veri_test2.txt (27.7 % on list_test_all2.txt, 30.6 % on list_test_hard2.txt; 28.6 / 24.9 / 28.2 %
on veri_test2.txt with seeds 1-3), while a small TDNN x-vector trained for 10 CPU minutes on the 30
dev speakers reached 6.1 %. Generating the default corpus takes about 9 s on 2 cores.
"""
from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from sv.data.table import DataError

SCRIPT = Path(__file__).resolve().parents[1] / "local" / "make_synthetic_corpus.py"
KEY = r"id\d{5}/[A-Za-z0-9_-]{11}/\d{5}\.wav"
TRIAL_LINE = re.compile(rf"^[01] ({KEY}) ({KEY})$")
TRIAL_LISTS = ["veri_test.txt", "veri_test2.txt", "list_test_all.txt", "list_test_all2.txt",
               "list_test_hard.txt", "list_test_hard2.txt"]
TINY = ["--num-speakers", "4", "--num-test-speakers", "2", "--videos-per-speaker", "2",
        "--utts-per-video", "2", "--min-dur", "1.0", "--max-dur", "1.5"]


def generate(out: Path, *args: str) -> None:
    """The command line, with two parallel jobs."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--nj", "2", *args, str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def load_script():
    spec = importlib.util.spec_from_file_location("make_synthetic_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


generator = load_script()


def generate_here(out: Path, *args: str) -> None:
    """In this process with one job: no interpreter start-up, and the other --nj than generate()."""
    generator.main(["--nj", "1", *args, str(out)])


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_trials(path: Path) -> list[tuple[int, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = TRIAL_LINE.match(line)
        assert m, f"{path.name}: bad trial line {line!r}"
        out.append((int(line[0]), m.group(1), m.group(2)))
    return out


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate, interpolated where the miss and false-alarm curves cross."""
    order = np.argsort(scores, kind="stable")
    y = labels[order]
    miss = np.concatenate([[0.0], np.cumsum(y) / y.sum()])  # targets at or below each threshold
    fa = np.concatenate([[1.0], 1 - np.cumsum(1 - y) / (1 - y).sum()])
    i = int(np.argmax(miss >= fa))  # first point where the curves have crossed
    d0, d1 = fa[i - 1] - miss[i - 1], fa[i] - miss[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(miss[i - 1] + t * (miss[i] - miss[i - 1]))


def test_eer_helper() -> None:
    assert eer(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 0.0
    assert eer(np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0])) == 1.0
    assert abs(eer(np.array([0.1, 0.3, 0.2, 0.9]), np.array([0, 0, 1, 1])) - 0.5) < 1e-9


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, "--num-speakers", "14")
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    generate(out, *TINY)
    return out


def test_voxceleb_layout(corpus: Path) -> None:
    wav_root = corpus / "voxceleb1" / "wav"
    wavs = sorted(str(p.relative_to(wav_root)) for p in wav_root.rglob("*.wav"))
    assert len(wavs) == 14 * 3 * 5
    assert all(re.fullmatch(KEY, w) for w in wavs)
    speakers = {w.split("/")[0] for w in wavs}
    test = {s for s in speakers if 10270 <= int(s[2:]) <= 10309}
    assert len(test) == 10 and len(speakers - test) == 4
    assert not list(corpus.rglob("*.tmp"))
    for w in wavs[::7]:
        info = sf.info(wav_root / w)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 2.0 - 1e-3 <= info.duration <= 5.0 + 1e-3
    for spk in speakers:  # each speaker: 3 videos, utterances numbered on through the speaker
        assert len({w.split("/")[1] for w in wavs if w.startswith(spk)}) == 3
        assert sorted(w[-9:] for w in wavs if w.startswith(spk)) == sorted(f"{i:05d}.wav" for i in range(1, 16))


def test_trial_lists(corpus: Path) -> None:
    vox = corpus / "voxceleb1"
    gender = {row.split("\t")[0]: row.split("\t")[2] for row in (vox / "vox1_meta.csv").read_text().splitlines()[1:]}
    lists = {name: read_trials(vox / name) for name in TRIAL_LISTS}
    for name, trials in lists.items():
        assert len(set(trials)) == len(trials), name
        assert 0.45 < np.mean([t[0] for t in trials]) < 0.55, name
        for label, a, b in trials:
            assert (vox / "wav" / a).is_file() and (vox / "wav" / b).is_file()
            same_spk, same_video = a.split("/")[0] == b.split("/")[0], a.split("/")[1] == b.split("/")[1]
            assert bool(label) == same_spk and not same_video
            if "hard" in name:
                assert gender[a.split("/")[0]] == gender[b.split("/")[0]]
    for clean in ("veri_test2.txt", "list_test_all2.txt", "list_test_hard2.txt"):
        assert set(lists[clean]) < set(lists[clean.replace("2.txt", ".txt")])
    assert 2000 <= len(lists["veri_test2.txt"]) <= 4000
    for label, a, b in lists["veri_test.txt"]:
        assert all(10270 <= int(k[2:7]) <= 10309 for k in (a, b))
    assert {k[:7] for _, a, b in lists["list_test_all2.txt"] for k in (a, b)} == set(gender)


def test_musan_and_rirs_layout(corpus: Path) -> None:
    musan = corpus / "musan"
    assert (musan / "README").is_file()
    for kind, sources in {"noise": ("free-sound", "sound-bible"), "music": ("fma", "jamendo"),
                          "speech": ("librivox", "us-gov")}.items():
        for source in sources:
            folder = musan / kind / source
            assert (folder / "ANNOTATIONS").is_file()
            wavs = sorted(folder.glob("*.wav"))
            assert wavs and all(re.fullmatch(rf"{kind}-{source}-\d{{4}}\.wav", w.name) for w in wavs)
            info = sf.info(wavs[0])
            assert info.samplerate == 16000 and 5.0 <= info.duration <= 10.0
    for line in (musan / "music" / "fma" / "ANNOTATIONS").read_text().splitlines():
        name, _genre, vocals, _artist = line.split()[:4]
        assert (musan / "music" / "fma" / f"{name}.wav").is_file() and vocals in "YN"

    rirs = corpus / "RIRS_NOISES"
    lists = [rirs / "simulated_rirs" / r / "rir_list" for r in ("smallroom", "mediumroom", "largeroom")]
    lists += [rirs / "real_rirs_isotropic_noises" / "rir_list", rirs / "real_rirs_isotropic_noises" / "noise_list",
              rirs / "pointsource_noises" / "noise_list"]
    for path in lists:
        lines = path.read_text().splitlines()
        assert lines
        for line in lines:
            assert line.startswith(("--rir-id ", "--noise-id ")) and (corpus / line.split()[-1]).is_file()
    first = lists[0].read_text().splitlines()[0]
    assert first == ("--rir-id smallroom-Room001-00001 --room-id smallroom-Room001 "
                     "RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav")
    rir, sr = sf.read(corpus / first.split()[-1])
    assert sr == 16000 and 0.3 <= len(rir) / sr <= 1.0 and np.argmax(np.abs(rir)) < 0.02 * sr


def test_deterministic_for_any_nj_and_seed_dependent(tiny: Path, tmp_path: Path) -> None:
    b, c = tmp_path / "b", tmp_path / "c"
    generate_here(b, *TINY)
    generate_here(c, *TINY, "--seed", "1")
    files_a, files_c = all_files(tiny), all_files(c)
    assert files_a == all_files(b)
    wavs_a = {k: v for k, v in files_a.items() if k.startswith("voxceleb1/wav/")}
    wavs_c = {k: v for k, v in files_c.items() if k.startswith("voxceleb1/wav/")}
    assert len(wavs_a) == len(wavs_c) == 16 and set(wavs_a.values()).isdisjoint(wavs_c.values())
    assert files_a["musan/speech/librivox/speech-librivox-0000.wav"] != files_c["musan/speech/librivox/speech-librivox-0000.wav"]


def test_rerun_is_a_no_op_and_new_parameters_replace_the_corpus(
        tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}
    with caplog.at_level(logging.INFO):
        generate_here(tiny, *TINY)
    assert "nothing to do" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before
    out = tmp_path / "corpus"
    shutil.copytree(tiny, out)
    generate_here(out, *TINY[:-6], "--utts-per-video", "1", "--min-dur", "1.0", "--max-dur", "1.5")
    assert len(list((out / "voxceleb1" / "wav").rglob("*.wav"))) == 4 * 2 * 1


def test_refuses_folders_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "voxceleb1").mkdir()
    with pytest.raises(DataError, match="did not write"):
        generate_here(tmp_path, *TINY)


def mean_fbank(path: Path) -> np.ndarray:
    wav, sr = sf.read(path, dtype="float32")
    feats = torchaudio.compliance.kaldi.fbank(torch.from_numpy(wav)[None] * 32768, num_mel_bins=80,
                                              sample_frequency=sr, dither=0.0)
    return feats.mean(0).numpy()


def test_baseline_is_neither_trivial_nor_chance(corpus: Path) -> None:
    """Untrained baseline: utterance-mean log-mel, mean-subtracted over the set, length-normalised, cosine."""
    trials = read_trials(corpus / "voxceleb1" / "veri_test2.txt")
    keys = sorted({k for _, a, b in trials for k in (a, b)})
    emb = np.stack([mean_fbank(corpus / "voxceleb1" / "wav" / k) for k in keys])
    emb -= emb.mean(0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    row = {k: i for i, k in enumerate(keys)}
    scores = np.array([emb[row[a]] @ emb[row[b]] for _, a, b in trials])
    labels = np.array([t[0] for t in trials])
    rate = eer(scores, labels)
    assert 0.08 < rate < 0.40, f"mean-fbank baseline EER {rate:.1%}"
