"""Fbank features: agreement with kaldi-native-fbank, resampling, config checks, the compute_fbank
entry point (plain and segments), failure on missing audio, and steps/make_fbank.sh end to end."""
from pathlib import Path

import kaldi_native_fbank as knf
import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import butter, lfilter, sosfiltfilt

from conftest import REPO, run_tool
from sv.bin.compute_fbank import main as compute_fbank_main
from sv.data.audio import AudioError, load_audio
from sv.data.data_dir import write_data_dir
from sv.data.fbank import compute_fbank, default_config, load_config, make_config
from sv.data.table import DataError, read_scp

SR = 16000
CONFIG = REPO / "egs" / "mini" / "conf" / "fbank.yaml"


def speech_like(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Formant-filtered glottal pulses with a gliding pitch and syllable-rate envelope, plus a little
    noise, quantised to 16 bits as a wav file would hold it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    x = (np.diff(np.floor(np.cumsum(f0) / sr), prepend=0) > 0).astype(float)
    for fc, bw in ((700, 80), (1200, 90), (2600, 120)):
        r, theta = np.exp(-np.pi * bw / sr), 2 * np.pi * fc / sr
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    x *= (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    x += 0.01 * rng.standard_normal(len(t))
    x = 0.5 * x / np.abs(x).max()
    return (np.round(x * 32767) / 32768).astype(np.float32)


def knf_fbank(wave: np.ndarray, window_type: str, snip_edges: bool) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = window_type
    opts.frame_opts.snip_edges = snip_edges
    opts.mel_opts.num_bins = 80
    fb = knf.OnlineFbank(opts)
    # kaldi-native-fbank, like Kaldi, takes samples in the int16 range.
    fb.accept_waveform(SR, (wave * 32768).tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


@pytest.mark.parametrize("window_type,snip_edges", [("povey", True), ("hamming", False)])
def test_matches_kaldi_native_fbank(window_type, snip_edges):
    wave = speech_like(6.0)
    cfg = make_config({"window_type": window_type, "snip_edges": snip_edges})
    ours = compute_fbank(wave, SR, cfg)
    ref = knf_fbank(wave, window_type, snip_edges)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (ref.shape[0], 80)
    # Measured: 2.9e-4 (povey, snip_edges) and 5.4e-4 (hamming, no snip_edges) on log energies of 8..26.
    assert np.abs(ours - ref).max() < 5e-3


def test_8khz_input_is_resampled_to_the_config_rate():
    wide = speech_like(4.0, seed=1)
    # The 16 kHz reference holds only what an 8 kHz recording can: nothing above 4 kHz.
    narrow16 = sosfiltfilt(butter(10, 3600, fs=SR, output="sos"), wide).astype(np.float32)
    narrow8 = narrow16[::2]
    cfg = default_config()
    feats16 = compute_fbank(narrow16, SR, cfg)
    feats8 = compute_fbank(narrow8, 8000, cfg)
    assert feats8.shape == feats16.shape
    # Compare the mel bins below 3 kHz; above, both are log of almost nothing.
    # Measured: mean 0.0017, max 0.046.
    diff = np.abs(feats8[:, :50] - feats16[:, :50])
    assert diff.mean() < 0.01 and diff.max() < 0.2


def test_audio_shorter_than_a_frame_is_an_audio_error():
    with pytest.raises(AudioError, match="audio too short: 0.020 s is less than one 25.0 ms frame"):
        compute_fbank(np.zeros(320, dtype=np.float32), SR, default_config())


def test_config_typo_names_the_file_and_line(tmp_path):
    conf = tmp_path / "fbank.yaml"
    conf.write_text("num_mel_bins: 80\nnum_mel_bin: 40\n")
    with pytest.raises(DataError, match=rf"{conf}:2: unknown fbank option 'num_mel_bin' "
                                        r"\(did you mean 'num_mel_bins'\?\)"):
        load_config(conf)
    conf.write_text("num_mel_bins: '80'\n")
    with pytest.raises(DataError, match=rf"{conf}:1: fbank option 'num_mel_bins' must be a int"):
        load_config(conf)
    conf.write_text("window_type: hann\n")
    with pytest.raises(DataError, match=rf"{conf}:1: window_type 'hann' is not one of"):
        load_config(conf)
    assert load_config(CONFIG) == default_config()


def write_wavs(root: Path, durations: dict[str, float]) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, (key, seconds) in enumerate(sorted(durations.items())):
        paths[key] = str(root / f"{key}.wav")
        sf.write(paths[key], speech_like(seconds, seed=i), SR, subtype="PCM_16")
    return paths


def compute(*args: str | Path) -> None:
    """The entry point in this process (torch is already imported here), keeping the thread count it sets."""
    threads = torch.get_num_threads()
    try:
        compute_fbank_main(["--config", str(CONFIG), *map(str, args)])
    finally:
        torch.set_num_threads(threads)


def test_entry_point_writes_ark_scp_and_frame_counts(tmp_path):
    wavs = write_wavs(tmp_path / "wav", {"a": 1.0, "b": 1.37, "c": 0.5})
    # "c" is read through a pipe command, as wav.scp allows.
    (tmp_path / "wav.scp").write_text(f"a {wavs['a']}\nb {wavs['b']}\nc cat {wavs['c']} |\n")
    ark, scp, nf = tmp_path / "f.ark", tmp_path / "f.scp", tmp_path / "utt2num_frames"
    compute(tmp_path / "wav.scp", ark, scp, "--utt2num-frames", nf)

    feats = kaldiio.load_scp(str(scp))
    assert list(feats) == ["a", "b", "c"]
    assert {k: int(v) for k, v in read_scp(nf).items()} == {"a": 98, "b": 135, "c": 48}
    cfg = load_config(CONFIG)
    for key, path in wavs.items():
        np.testing.assert_array_equal(feats[key], compute_fbank(*load_audio(path), cfg))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.ark", "f.scp", "utt2num_frames", "wav", "wav.scp"]


def test_entry_point_segments(tmp_path):
    wavs = write_wavs(tmp_path / "wav", {"rec1": 3.0, "rec2": 2.0})
    (tmp_path / "wav.scp").write_text("".join(f"{k} {p}\n" for k, p in wavs.items()))
    segments = {"rec1-0000-0120": ("rec1", 0.0, 1.2), "rec1-0150-end": ("rec1", 1.5, -1),
                "rec2-0010-0110": ("rec2", 0.1, 1.1)}
    (tmp_path / "segments").write_text("".join(f"{u} {r} {s} {e}\n" for u, (r, s, e) in segments.items()))
    scp, nf = tmp_path / "f.scp", tmp_path / "utt2num_frames"
    compute("--segments", tmp_path / "segments", tmp_path / "wav.scp", tmp_path / "f.ark", scp,
            "--utt2num-frames", nf)

    feats = kaldiio.load_scp(str(scp))
    assert list(feats) == list(segments)
    frames = {k: int(v) for k, v in read_scp(nf).items()}
    for utt, (reco, start, end) in segments.items():
        seconds = (3.0 if reco == "rec1" else 2.0) - start if end < 0 else end - start
        samples = round(seconds * SR)
        assert frames[utt] == feats[utt].shape[0] == 1 + (samples - 400) // 160
    # A segment is the same audio as the recording it is cut from.
    whole = compute_fbank(*load_audio(wavs["rec1"]), load_config(CONFIG))
    np.testing.assert_allclose(feats["rec1-0150-end"][5:-5], whole[150 + 5:len(whole) - 5], atol=1e-3)


def test_missing_audio_fails_before_writing(tmp_path):
    wavs = write_wavs(tmp_path / "wav", {"a": 1.0, "c": 1.0})
    missing = tmp_path / "wav" / "b.wav"
    (tmp_path / "wav.scp").write_text(f"a {wavs['a']}\nb {missing}\nc {wavs['c']}\n")
    scp = tmp_path / "out" / "f.scp"
    scp.parent.mkdir()
    scp.write_text("stale 1\n")  # a previous run's table must not survive a failed one
    proc = run_tool("-m", "sv.bin.compute_fbank", "--config", str(CONFIG), str(tmp_path / "wav.scp"),
                    str(tmp_path / "out" / "f.ark"), str(scp), check=False)
    assert proc.returncode != 0
    assert f"{tmp_path / 'wav.scp'}:2: utterance b: audio file not found: {missing}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(scp.parent.iterdir()) == []


def test_unreadable_audio_fails_and_leaves_no_scp(tmp_path):
    wavs = write_wavs(tmp_path / "wav", {"a": 1.0})
    bad = tmp_path / "wav" / "b.wav"
    bad.write_bytes(b"not audio")
    (tmp_path / "wav.scp").write_text(f"a {wavs['a']}\nb {bad}\n")
    out = tmp_path / "out"
    with pytest.raises(AudioError, match=rf"{tmp_path / 'wav.scp'}:2: utterance b: cannot read audio '{bad}'"):
        compute(tmp_path / "wav.scp", out / "f.ark", out / "f.scp")
    assert not out.exists() or list(out.iterdir()) == []


def make_recipe(tmp_path: Path) -> Path:
    """A recipe dir like egs/X: utils and steps linked, conf/fbank.yaml, a 3-utterance data dir."""
    recipe = tmp_path / "egs"
    (recipe / "conf").mkdir(parents=True)
    (recipe / "utils").symlink_to(REPO / "utils")
    (recipe / "steps").symlink_to(REPO / "steps")
    (recipe / "conf" / "fbank.yaml").write_text(CONFIG.read_text())
    utts = {"s1-a": 1.0, "s1-b": 0.8, "s2-a": 1.2}
    wavs = write_wavs(tmp_path / "wav", utts)
    write_data_dir(recipe / "data" / "dev", wavs, {u: u.split("-")[0] for u in utts})
    return recipe


@pytest.mark.skipif(not (REPO / "utils" / "run.pl").exists(), reason="needs utils/run.pl")
def test_make_fbank_end_to_end(tmp_path):
    recipe = make_recipe(tmp_path)
    data = recipe / "data" / "dev"
    run_tool("bash", "steps/make_fbank.sh", "--nj", "2", "data/dev", cwd=recipe)

    feats = kaldiio.load_scp(str(data / "feats.scp"))
    assert list(feats) == sorted(read_scp(data / "utt2spk"))
    frames = read_scp(data / "utt2num_frames")
    assert all(feats[u].shape == (int(frames[u]), 80) for u in feats)
    assert {Path(v.rsplit(":", 1)[0]) for v in read_scp(data / "feats.scp").values()} == \
        {recipe / "fbank" / f"raw_fbank_dev.{n}.ark" for n in (1, 2)}
    assert (data / "conf" / "fbank.yaml").read_text() == CONFIG.read_text()
    assert (data / "log" / "make_fbank_dev.2.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")
    run_tool("utils/validate_data_dir.py", str(data))



def fbank_outputs(data: Path) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """The bytes of feats.scp, utt2num_frames and conf/fbank.yaml, and the matrix of every feats.scp entry."""
    files = {f: (data / f).read_bytes() for f in ("feats.scp", "utt2num_frames", "conf/fbank.yaml")}
    return files, {k: np.array(v) for k, v in kaldiio.load_scp(str(data / "feats.scp")).items()}


def new_files(recipe: Path) -> list[str]:
    return sorted(p.name for p in (recipe / "fbank").iterdir() if ".new." in p.name)


def make_fbank(recipe: Path, *opts: str, check: bool = True):
    return run_tool("bash", "steps/make_fbank.sh", *opts, "data/dev", cwd=recipe, check=check)


@pytest.mark.skipif(not (REPO / "utils" / "run.pl").exists(), reason="needs utils/run.pl")
def test_make_fbank_rerun_keeps_previous_outputs_until_it_succeeds(tmp_path):
    recipe = make_recipe(tmp_path)
    data = recipe / "data" / "dev"
    make_fbank(recipe, "--nj", "2")
    before, feats_before = fbank_outputs(data)
    # The rerun makes other features (40 bins), so an archive it replaced would show in what the
    # previous feats.scp loads.
    conf40 = recipe / "conf" / "fbank40.yaml"
    conf40.write_text(CONFIG.read_text().replace("num_mel_bins: 80", "num_mel_bins: 40"))

    # More jobs than utterances (clamped to 3) and the audio of the last job's utterance unreadable:
    # jobs 1 and 2 succeed, job 3 fails naming the utterance, the file and the log.
    wav = read_scp(data / "wav.scp")["s2-a"]
    good = Path(wav).read_bytes()
    Path(wav).write_bytes(b"not audio")
    proc = make_fbank(recipe, "--nj", "9", "--fbank-config", "conf/fbank40.yaml", check=False)
    assert proc.returncode != 0
    assert "using --nj 3" in proc.stdout
    assert "s2-a" in proc.stderr and wav in proc.stderr and "make_fbank_dev.3.log" in proc.stderr
    assert "# Ended (code 0)" in (data / "log" / "make_fbank_dev.1.log").read_text()
    after, feats_after = fbank_outputs(data)
    assert after == before  # feats.scp, utt2num_frames and conf/fbank.yaml byte-identical
    assert feats_after.keys() == feats_before.keys()
    for utt, feats in feats_before.items():
        np.testing.assert_array_equal(feats_after[utt], feats, err_msg=utt)
    assert new_files(recipe) == []
    assert not (data / ".backup").exists()
    assert sorted(p.name for p in (recipe / "fbank").iterdir()) == \
        ["raw_fbank_dev.1.ark", "raw_fbank_dev.1.scp", "raw_fbank_dev.2.ark", "raw_fbank_dev.2.scp",
         "raw_fbank_dev.owner"]

    # The same rerun with the audio back succeeds and replaces every output; a leftover of an
    # interrupted run (job 5 of a run with more jobs) goes too.
    Path(wav).write_bytes(good)
    (recipe / "fbank" / "raw_fbank_dev.5.new.ark").write_bytes(b"left by Ctrl-C")
    make_fbank(recipe, "--nj", "9", "--fbank-config", "conf/fbank40.yaml")
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    cfg = load_config(conf40)
    for utt, path in read_scp(data / "wav.scp").items():
        np.testing.assert_array_equal(feats[utt], compute_fbank(*load_audio(path), cfg), err_msg=utt)
    assert {u: int(n) for u, n in read_scp(data / "utt2num_frames").items()} == \
        {u: m.shape[0] for u, m in feats.items()}
    assert (data / "conf" / "fbank.yaml").read_text() == conf40.read_text()
    assert {Path(v.rsplit(":", 1)[0]) for v in read_scp(data / "feats.scp").values()} == \
        {recipe / "fbank" / f"raw_fbank_dev.{n}.ark" for n in (1, 2, 3)}
    assert new_files(recipe) == []
    assert not list(data.glob(".*tmp")) and not list((data / "conf").glob(".*"))
    assert not list((data / "log").glob(".validate*"))
    run_tool("utils/validate_data_dir.py", str(data))


@pytest.mark.skipif(not (REPO / "utils" / "run.pl").exists(), reason="needs utils/run.pl")
def test_make_fbank_rerun_with_fewer_jobs_removes_their_archives(tmp_path):
    recipe = make_recipe(tmp_path)
    data = recipe / "data" / "dev"
    make_fbank(recipe, "--nj", "3")
    fbank = recipe / "fbank"
    # Files like the script's own that are not: another set's archive, other suffixes.
    keep = ["raw_fbank_dev.3.ark.keep", "raw_fbank_dev.x3.ark", "raw_fbank_dev2.3.ark", "raw_fbank_dev.3.1.ark"]
    for name in keep:
        (fbank / name).write_text("not ours\n")
    make_fbank(recipe, "--nj", "2")
    assert sorted(p.name for p in fbank.iterdir()) == sorted(
        keep + [f"raw_fbank_dev.{n}.{ext}" for n in (1, 2) for ext in ("ark", "scp")] + ["raw_fbank_dev.owner"])
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    assert sorted(feats) == sorted(read_scp(data / "utt2spk"))
    assert all(m.shape[1] == 80 for m in feats.values())


@pytest.mark.skipif(not (REPO / "utils" / "run.pl").exists(), reason="needs utils/run.pl")
def test_make_fbank_rerun_after_the_data_dir_changed(tmp_path):
    """The previous feats.scp stays until replaced; one utterance more in the data dir must not make
    validation fail on it."""
    recipe = make_recipe(tmp_path)
    data = recipe / "data" / "dev"
    make_fbank(recipe, "--nj", "1")
    wavs = {**read_scp(data / "wav.scp"), **write_wavs(tmp_path / "wav2", {"s2-b": 0.7})}
    write_data_dir(tmp_path / "new", wavs, {u: u.split("-")[0] for u in wavs})
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (data / name).write_text((tmp_path / "new" / name).read_text())
    make_fbank(recipe, "--nj", "2")
    assert sorted(kaldiio.load_scp(str(data / "feats.scp"))) == sorted(wavs)
    # A broken data dir is still reported, naming the data dir's own files.
    (data / "utt2spk").write_text("s2-b s2\ns1-a s1\n")
    proc = make_fbank(recipe, check=False)
    assert proc.returncode != 0 and "data/dev/utt2spk" in proc.stderr and ".validate" not in proc.stderr
