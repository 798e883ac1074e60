"""local/prepare_*.py on small trees in the real corpus layouts, run through their CLIs."""
from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_tool
from sv.data.data_dir import validate_data_dir
from sv.data.table import DataError, iter_lines, read_scp, read_spk2utt

SR = 16000
LOCAL = Path(__file__).resolve().parents[1] / "local"


def write_audio(path: Path, seconds: float, fmt: str = "WAV") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(int(round(seconds * SR)), 0.1, dtype=np.float32), SR, format=fmt, subtype="PCM_16")


def write_text(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def check_dir(d: Path, utt2spk: dict[str, str], durations: dict[str, float] | None = None) -> dict[str, str]:
    """Assert d is a valid, sorted data dir with exactly these utterances; return its wav.scp."""
    validate_data_dir(d)
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        if (d / name).is_file():
            keys = [line.split()[0] for _, line in iter_lines(d / name)]
            assert keys == sorted(keys), f"{d / name} is not sorted"
    assert read_scp(d / "utt2spk") == utt2spk
    wav_scp = read_scp(d / "wav.scp")
    for entry in wav_scp.values():
        if not entry.endswith("|"):
            assert Path(entry).is_absolute() and Path(entry).is_file(), entry
    if durations is None:
        assert not (d / "utt2dur").exists()
    else:
        got = {k: float(v) for k, v in read_scp(d / "utt2dur").items()}
        assert got == pytest.approx(durations, abs=1e-3)
    return wav_scp


def assert_fails(proc, *fragments: str) -> None:
    """The CLI exited 1 with a one-message error (no traceback) holding every fragment."""
    assert proc.returncode == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, f"{fragment!r} not in:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def assert_main_fails(script: str, args: list[str], *fragments: str) -> None:
    """Like assert_fails, calling the script's main() in this process: the many bad-input cases need not
    each start an interpreter; every script also has a bad-input case run through its CLI."""
    if str(LOCAL) not in sys.path:
        sys.path.insert(0, str(LOCAL))
    with pytest.raises(DataError) as error:
        importlib.import_module(script).main(args)
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} not in:\n{error.value}"


# ---------------------------------------------------------------- VoxCeleb1 and trial lists

VOX1 = {  # key -> seconds; id10270..id10309 are the test speakers
    "id10270/x6uYqmx31kE/00001.wav": 0.10,
    "id10270/8jEAjG6SegY/00008.wav": 0.20,
    "id10309/Zq2Vb0JkLsE/00003.wav": 0.15,
    "id10269/aaaaaaaaaaa/00001.wav": 0.25,
    "id10310/bbbbbbbbbbb/00002.wav": 0.30,
}
VOX1_TEST = [k for k in VOX1 if k.split("/")[0] in ("id10270", "id10309")]
O_LIST = [
    "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav",
    "0 id10270/x6uYqmx31kE/00001.wav id10309/Zq2Vb0JkLsE/00003.wav",
    "0 id10309/Zq2Vb0JkLsE/00003.wav id10270/8jEAjG6SegY/00008.wav",
]
E_LIST = [
    "1 id10269/aaaaaaaaaaa/00001.wav id10269/aaaaaaaaaaa/00001.wav",
    "0 id10310/bbbbbbbbbbb/00002.wav id10270/x6uYqmx31kE/00001.wav",
]


def make_vox1(root: Path) -> Path:
    for key, seconds in VOX1.items():
        write_audio(root / "wav" / key, seconds)
    write_text(root / "veri_test2.txt", O_LIST)
    write_text(root / "list_test_all2.txt", E_LIST)
    return root


def kaldi_trials(lines: list[str]) -> list[str]:
    return [f"{e} {t} {'target' if label == '1' else 'nontarget'}" for label, e, t in (x.split() for x in lines)]


@pytest.mark.parametrize("suffix", ["", "/wav/"])
def test_voxceleb1(tmp_path, suffix):
    root = make_vox1(tmp_path / "voxceleb1")
    data = tmp_path / "data"
    proc = run_tool("local/prepare_voxceleb1.py", f"{root}{suffix}", str(data))
    assert "skipping vox1_H_cleaned" in proc.stderr

    utt2spk = {k: k.split("/")[0] for k in VOX1}
    wav_scp = check_dir(data / "vox1", utt2spk, VOX1)
    assert wav_scp["id10270/x6uYqmx31kE/00001.wav"] == str(root / "wav/id10270/x6uYqmx31kE/00001.wav")
    check_dir(data / "vox1_test", {k: utt2spk[k] for k in VOX1_TEST}, {k: VOX1[k] for k in VOX1_TEST})
    dev = [k for k in VOX1 if k not in VOX1_TEST]
    check_dir(data / "vox1_dev", {k: utt2spk[k] for k in dev}, {k: VOX1[k] for k in dev})

    assert sorted(p.name for p in (data / "vox1/trials").iterdir()) == ["vox1_E_cleaned.kaldi", "vox1_O_cleaned.kaldi"]
    assert (data / "vox1/trials/vox1_O_cleaned.kaldi").read_text().splitlines() == kaldi_trials(O_LIST)
    assert (data / "vox1/trials/vox1_E_cleaned.kaldi").read_text().splitlines() == kaldi_trials(E_LIST)
    assert [p.name for p in (data / "vox1_test/trials").iterdir()] == ["vox1_O_cleaned.kaldi"]
    assert (data / "vox1_test/trials/vox1_O_cleaned.kaldi").read_text().splitlines() == kaldi_trials(O_LIST)


def test_voxceleb1_trials_option(tmp_path):
    root = make_vox1(tmp_path / "voxceleb1")
    lists = tmp_path / "lists"
    write_text(lists / "veri_test.txt", O_LIST[:1])
    write_text(lists / "my_list.txt", E_LIST)
    data = tmp_path / "data"
    run_tool("local/prepare_voxceleb1.py", "--trials", str(lists / "veri_test.txt"), str(lists / "my_list.txt"),
             "--", str(root), str(data))
    assert sorted(p.name for p in (data / "vox1/trials").iterdir()) == ["my_list.kaldi", "vox1_O.kaldi"]
    assert [p.name for p in (data / "vox1_test/trials").iterdir()] == ["vox1_O.kaldi"]


@pytest.mark.parametrize("bad_line, fragment", [
    ("1 id10270/x6uYqmx31kE/00001.wav", "expected 'label enroll test'"),
    ("yes id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav", "label must be 1 (target) or 0"),
    ("1 id10270/x6uYqmx31kE/00001.wav id10270/nope/00009.wav", "test key 'id10270/nope/00009.wav' is not in"),
    # An O list may only name test speakers.
    ("0 id10269/aaaaaaaaaaa/00001.wav id10270/8jEAjG6SegY/00008.wav", "enroll key 'id10269/aaaaaaaaaaa/00001.wav'"),
])
def test_voxceleb1_bad_trial_line(tmp_path, bad_line, fragment):
    root = make_vox1(tmp_path / "voxceleb1")
    write_text(root / "veri_test2.txt", O_LIST[:2] + [bad_line])
    data = tmp_path / "data"
    assert_main_fails("prepare_voxceleb1", [str(root), str(data)], f"{root / 'veri_test2.txt'}:3:", fragment)
    assert not data.exists()


def test_voxceleb1_missing_or_empty_root(tmp_path):
    assert_fails(run_tool("local/prepare_voxceleb1.py", str(tmp_path / "nowhere"), str(tmp_path / "data"),
                          check=False), f"{tmp_path / 'nowhere'}: no such directory")
    (tmp_path / "vox1" / "wav").mkdir(parents=True)
    assert_main_fails("prepare_voxceleb1", [str(tmp_path / "vox1"), str(tmp_path / "data")],
                      f"{tmp_path / 'vox1' / 'wav'}: no audio files found")
    assert not (tmp_path / "data").exists()


def test_prepare_trials_alone(tmp_path):
    root = make_vox1(tmp_path / "voxceleb1")
    out = tmp_path / "out" / "o.kaldi"
    run_tool("local/prepare_trials.py", str(root / "veri_test2.txt"), str(out))
    assert out.read_text().splitlines() == kaldi_trials(O_LIST)

    data = tmp_path / "data"
    assert_main_fails("prepare_voxceleb1", ["--trials-dir", str(tmp_path / "no_lists_here"), str(root), str(data)],
                      "no_lists_here: no such directory (--trials-dir)")
    (tmp_path / "no_lists_here").mkdir()
    run_tool("local/prepare_voxceleb1.py", "--trials-dir", str(tmp_path / "no_lists_here"), str(root), str(data))
    assert not (data / "vox1" / "trials").exists()
    run_tool("local/prepare_trials.py", "--data", str(data / "vox1_test"), str(root / "veri_test2.txt"), str(out))
    assert_fails(run_tool("local/prepare_trials.py", "--data", str(data / "vox1_test"),
                          str(root / "list_test_all2.txt"), str(tmp_path / "e.kaldi"), check=False),
                 f"{root / 'list_test_all2.txt'}:1: enroll key", str(data / "vox1_test" / "utt2spk"))
    assert not (tmp_path / "e.kaldi").exists()


# ---------------------------------------------------------------- VoxCeleb2

VOX2 = {"id00012/21Uxsk56VDQ/00001": 0.10, "id00012/21Uxsk56VDQ/00002": 0.20, "id00015/0fijmz4vTVU/00001": 0.15}


def make_vox2(root: Path) -> Path:
    """Fake .m4a files: WAV bytes under the m4a name, which the fake ffmpeg below passes through."""
    for key, seconds in VOX2.items():
        write_audio(root / "dev" / "aac" / f"{key}.m4a", seconds)
    return root


@pytest.fixture
def fake_ffmpeg(tmp_path, monkeypatch) -> Path:
    """An `ffmpeg` first on PATH that copies its input to its output ('-' = stdout) and logs each call."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    script = bindir / "ffmpeg"
    script.write_text(f"""#!{sys.executable}
import sys
args = sys.argv[1:]
with open({str(bindir / 'calls')!r}, "a") as log:
    log.write(" ".join(args) + "\\n")
data = open(args[args.index("-i") + 1], "rb").read()
if data.startswith(b"broken"):
    sys.exit("Invalid data found when processing input")
if args[-1] == "-":
    sys.stdout.buffer.write(data)
else:
    open(args[-1], "wb").write(data)
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return bindir


def vox2_utt2spk() -> dict[str, str]:
    return {f"{k}.wav": k.split("/")[0] for k in VOX2}


@pytest.mark.parametrize("suffix", ["", "/dev", "/dev/aac/"])
def test_voxceleb2_pipes_without_utt2dur(tmp_path, suffix):
    root = make_vox2(tmp_path / "voxceleb2")
    data = tmp_path / "data"
    run_tool("local/prepare_voxceleb2.py", "--no-utt2dur", f"{root}{suffix}", str(data))
    wav_scp = check_dir(data / "vox2_dev", vox2_utt2spk(), None)
    m4a = root / "dev/aac/id00012/21Uxsk56VDQ/00001.m4a"
    assert wav_scp["id00012/21Uxsk56VDQ/00001.wav"] == \
        f"ffmpeg -nostdin -v 8 -i {m4a} -f wav -acodec pcm_s16le -ar 16000 -ac 1 - |"


def test_voxceleb2_with_fake_ffmpeg(tmp_path, fake_ffmpeg):
    root = make_vox2(tmp_path / "voxceleb2")
    durations = {f"{k}.wav": s for k, s in VOX2.items()}
    run_tool("local/prepare_voxceleb2.py", str(root), str(tmp_path / "pipes"))
    check_dir(tmp_path / "pipes" / "vox2_dev", vox2_utt2spk(), durations)

    wavs, data = tmp_path / "wavs", tmp_path / "data"
    run_tool("local/prepare_voxceleb2.py", "--convert-to-wav", str(wavs), "--nj", "2", str(root), str(data))
    wav_scp = check_dir(data / "vox2_dev", vox2_utt2spk(), durations)
    assert wav_scp == {key: str(wavs / key) for key in vox2_utt2spk()}
    assert not list(wavs.rglob(".*"))  # no temporary file left

    calls = (fake_ffmpeg / "calls").read_text().count("\n")
    run_tool("local/prepare_voxceleb2.py", "--convert-to-wav", str(wavs), str(root), str(data))
    assert (fake_ffmpeg / "calls").read_text().count("\n") == calls, "converted files were converted again"

    (root / "dev/aac/id00015/0fijmz4vTVU/00002.m4a").write_bytes(b"broken")
    assert_fails(run_tool("local/prepare_voxceleb2.py", "--convert-to-wav", str(wavs), str(root),
                          str(tmp_path / "data2"), check=False),
                 "conversion failed for 1 of 1 files", "00002.m4a: ffmpeg failed")
    assert not (tmp_path / "data2").exists()


def test_voxceleb2_without_ffmpeg(tmp_path, monkeypatch):
    empty = tmp_path / "emptybin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # run_tool puts the venv's bin/ in front
    if shutil.which("ffmpeg", path=f"{Path(sys.executable).parent}:{empty}"):
        pytest.skip("ffmpeg is installed beside the test's Python")
    root = make_vox2(tmp_path / "voxceleb2")
    data = tmp_path / "data"
    assert_fails(run_tool("local/prepare_voxceleb2.py", str(root), str(data), check=False),
                 "ffmpeg is not on PATH", "--no-utt2dur")
    assert_main_fails("prepare_voxceleb2", ["--convert-to-wav", str(tmp_path / "w"), str(root), str(data)],
                      "ffmpeg is not on PATH", "--convert-to-wav")
    assert not data.exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH: cannot make or decode real m4a")
def test_voxceleb2_real_ffmpeg(tmp_path):
    root = tmp_path / "voxceleb2"
    for key, seconds in VOX2.items():
        wav = tmp_path / "src" / f"{key}.wav"
        write_audio(wav, seconds * 10)
        m4a = root / "dev" / "aac" / f"{key}.m4a"
        m4a.parent.mkdir(parents=True, exist_ok=True)
        run_tool("ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a))
    data = tmp_path / "data"
    run_tool("local/prepare_voxceleb2.py", "--convert-to-wav", str(tmp_path / "wavs"), str(root), str(data))
    wav_scp = read_scp(data / "vox2_dev" / "wav.scp")
    info = sf.info(wav_scp["id00012/21Uxsk56VDQ/00002.wav"])
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    durations = {k: float(v) for k, v in read_scp(data / "vox2_dev" / "utt2dur").items()}
    assert durations == pytest.approx({f"{k}.wav": s * 10 for k, s in VOX2.items()}, abs=0.05)


# ---------------------------------------------------------------- CN-Celeb

CN1_DATA = {  # data/<key>.flac -> seconds
    "id00000/singing-01-001": 0.10, "id00000/speech-02-002": 0.20, "id00001/vlog-01-001": 0.15,
    "id00800/singing-01-001": 0.10, "id00800/speech-01-002": 0.20, "id00800/singing-01-005": 0.25,
    "id00801/vlog-01-001": 0.10, "id00801/vlog-01-003": 0.30,
}
CN2_DATA = {"id10001/interview-01-001": 0.10, "id10002/recitation-03-007": 0.20}
TRIALS_LST = [
    "id00800-enroll test/id00800-singing-01-005.wav 1",
    "id00800-enroll test/id00801-vlog-01-003.wav 0",
    "id00801-enroll test/id00801-vlog-01-003.wav 1",
    "id00801-enroll test/id00800-singing-01-005.wav 0",
]
CNC_TRIALS = [
    "id00800-enroll test/id00800-singing-01-005 target",
    "id00800-enroll test/id00801-vlog-01-003 nontarget",
    "id00801-enroll test/id00801-vlog-01-003 target",
    "id00801-enroll test/id00800-singing-01-005 nontarget",
]


def make_cnceleb(tmp_path: Path) -> tuple[Path, Path]:
    """CN-Celeb_flac and CN-Celeb2_flac; the lists name .wav files, the audio is .flac."""
    cn1, cn2 = tmp_path / "CN-Celeb_flac", tmp_path / "CN-Celeb2_flac"
    for key, seconds in CN1_DATA.items():
        write_audio(cn1 / "data" / f"{key}.flac", seconds, "FLAC")
    for key, seconds in CN2_DATA.items():
        write_audio(cn2 / "data" / f"{key}.flac", seconds, "FLAC")
    write_text(cn1 / "dev" / "dev.lst", ["id00000", "id00001"])
    for model in ("id00800-enroll", "id00801-enroll"):
        write_audio(cn1 / "eval" / "enroll" / f"{model}.flac", 0.3, "FLAC")
    write_audio(cn1 / "eval" / "test" / "id00800-singing-01-005.flac", 0.25, "FLAC")
    write_audio(cn1 / "eval" / "test" / "id00801-vlog-01-003.flac", 0.30, "FLAC")
    lists = cn1 / "eval" / "lists"
    write_text(lists / "enroll.map", ["id00800-enroll id00800/singing-01-001.wav id00800/speech-01-002.wav",
                                      "id00801-enroll id00801/vlog-01-001.wav"])
    write_text(lists / "enroll.lst", ["id00800-enroll enroll/id00800-enroll.wav",
                                      "id00801-enroll enroll/id00801-enroll.wav"])
    write_text(lists / "trials.lst", TRIALS_LST)
    return cn1, cn2


TEST_UTTS = {"test/id00800-singing-01-005": "id00800", "test/id00801-vlog-01-003": "id00801"}


@pytest.mark.parametrize("suffix", ["", "/data"])
def test_cnceleb(tmp_path, suffix):
    cn1, cn2 = make_cnceleb(tmp_path)
    data = tmp_path / "out"
    run_tool("local/prepare_cnceleb.py", f"{cn1}{suffix}", f"{cn2}{suffix}", str(data))

    train = {k: s for k, s in {**CN1_DATA, **CN2_DATA}.items() if k.split("/")[0] in ("id00000", "id00001",
                                                                                        "id10001", "id10002")}
    wav_scp = check_dir(data / "cnceleb_train", {k: k.split("/")[0] for k in train}, train)
    assert wav_scp["id10001/interview-01-001"] == str(cn2 / "data/id10001/interview-01-001.flac")

    enroll = {"id00800/singing-01-001": "id00800-enroll", "id00800/speech-01-002": "id00800-enroll",
              "id00801/vlog-01-001": "id00801-enroll"}
    durations = {k: CN1_DATA[k] for k in enroll} | {"test/id00800-singing-01-005": 0.25,
                                                    "test/id00801-vlog-01-003": 0.30}
    wav_scp = check_dir(data / "cnceleb1_eval", {**TEST_UTTS, **enroll}, durations)
    assert wav_scp["test/id00801-vlog-01-003"] == str(cn1 / "eval/test/id00801-vlog-01-003.flac")
    assert wav_scp["id00800/speech-01-002"] == str(cn1 / "data/id00800/speech-01-002.flac")
    assert read_spk2utt(data / "cnceleb1_eval" / "enroll.map") == {
        "id00800-enroll": ["id00800/singing-01-001", "id00800/speech-01-002"],
        "id00801-enroll": ["id00801/vlog-01-001"]}
    assert (data / "cnceleb1_eval/trials/CNC-Eval-Core.kaldi").read_text().splitlines() == CNC_TRIALS


def test_cnceleb_concat_enrollment(tmp_path):
    cn1, cn2 = make_cnceleb(tmp_path)
    data = tmp_path / "out"
    run_tool("local/prepare_cnceleb.py", "--enroll", "concat", str(cn1), str(cn2), str(data))
    enroll = {"enroll/id00800-enroll": "id00800-enroll", "enroll/id00801-enroll": "id00801-enroll"}
    check_dir(data / "cnceleb1_eval", {**TEST_UTTS, **enroll},
              {"enroll/id00800-enroll": 0.3, "enroll/id00801-enroll": 0.3,
               "test/id00800-singing-01-005": 0.25, "test/id00801-vlog-01-003": 0.30})
    assert read_spk2utt(data / "cnceleb1_eval" / "enroll.map") == {
        "id00800-enroll": ["enroll/id00800-enroll"], "id00801-enroll": ["enroll/id00801-enroll"]}
    assert (data / "cnceleb1_eval/trials/CNC-Eval-Core.kaldi").read_text().splitlines() == CNC_TRIALS


@pytest.mark.parametrize("list_name, lines, fragment", [
    ("eval/lists/trials.lst", TRIALS_LST[:1] + ["id00800-enroll test/id00800-singing-01-005.wav"],
     "expected 'enroll test label'"),
    ("eval/lists/trials.lst", TRIALS_LST[:1] + ["id00802-enroll test/id00800-singing-01-005.wav 0"],
     "enroll key 'id00802-enroll' is not in"),
    ("eval/lists/trials.lst", TRIALS_LST[:1] + ["id00800-enroll test/id00800-singing-09-009.wav 0"],
     "test key 'test/id00800-singing-09-009' is not in"),
    ("dev/dev.lst", ["id00000", "id00799"], "speaker 'id00799' has no folder"),
    ("eval/lists/enroll.map", ["id00801-enroll id00801/vlog-01-001.wav", "id00800-enroll id00800/nope-01-001.wav"],
     "id00800/nope-01-001.wav: no .flac or .wav file"),
])
def test_cnceleb_bad_list_line(tmp_path, list_name, lines, fragment):
    cn1, cn2 = make_cnceleb(tmp_path)
    write_text(cn1 / list_name, lines)
    data = tmp_path / "out"
    assert_main_fails("prepare_cnceleb", [str(cn1), str(cn2), str(data)], f"{cn1 / list_name}:2:", fragment)
    assert not data.exists()


def test_cnceleb_cli_error(tmp_path):
    cn1, cn2 = make_cnceleb(tmp_path)
    shutil.rmtree(cn1 / "eval" / "test")
    assert_fails(run_tool("local/prepare_cnceleb.py", str(cn1), str(cn2), str(tmp_path / "out"), check=False),
                 f"{cn1 / 'eval' / 'test'}: no audio files found")
    assert_main_fails("prepare_cnceleb", [str(tmp_path / "nowhere"), str(cn2), str(tmp_path / "out")],
                      "nowhere: no data/ folder here")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- MUSAN

MUSAN = {"noise/free-sound/noise-free-sound-0000": 0.10, "noise/sound-bible/noise-sound-bible-0003": 0.20,
         "music/fma/music-fma-0000": 0.30, "music/hd-classical/music-hd-0001": 0.15,
         "speech/librivox/speech-librivox-0000": 0.25}


def make_musan(root: Path) -> Path:
    for rel, seconds in MUSAN.items():
        write_audio(root / "musan" / f"{rel}.wav", seconds)
        write_text(root / "musan" / Path(rel).parent / "ANNOTATIONS", ["not audio"])
    write_text(root / "musan" / "README", ["not audio"])
    return root / "musan"


@pytest.mark.parametrize("parent", [False, True])
def test_musan(tmp_path, parent):
    musan = make_musan(tmp_path)
    data = tmp_path / "data"
    run_tool("local/prepare_musan.py", str(musan.parent if parent else musan), str(data))
    utt2spk = {Path(rel).name: rel.split("/")[0] for rel in MUSAN}
    wav_scp = check_dir(data / "musan", utt2spk, {Path(rel).name: s for rel, s in MUSAN.items()})
    assert wav_scp["music-fma-0000"] == str(musan / "music/fma/music-fma-0000.wav")
    assert read_spk2utt(data / "musan" / "spk2utt") == {
        "music": ["music-fma-0000", "music-hd-0001"], "noise": ["noise-free-sound-0000", "noise-sound-bible-0003"],
        "speech": ["speech-librivox-0000"]}

    run_tool("local/prepare_musan.py", "--types", "noise", "--", str(musan), str(data))
    check_dir(data / "musan", {k: v for k, v in utt2spk.items() if v == "noise"},
              {Path(rel).name: s for rel, s in MUSAN.items() if rel.startswith("noise/")})


def test_musan_errors(tmp_path):
    musan = make_musan(tmp_path)
    shutil.rmtree(musan / "speech")
    assert_fails(run_tool("local/prepare_musan.py", str(musan), str(tmp_path / "data"), check=False),
                 f"{musan / 'speech'}: no audio files found")
    write_audio(musan / "noise" / "other" / "music-fma-0000.wav", 0.1)
    assert_main_fails("prepare_musan", ["--types", "noise", "music", "--", str(musan), str(tmp_path / "data")],
                      "duplicate MUSAN file name 'music-fma-0000'")
    assert not (tmp_path / "data").exists()


# ---------------------------------------------------------------- RIRS_NOISES

def make_rirs(root: Path, with_lists: bool = True) -> Path:
    rirs = root / "RIRS_NOISES"
    for room in ("smallroom", "mediumroom", "largeroom"):
        lines = []
        for i, seconds in ((1, 0.10), (2, 0.20)):
            rel = f"simulated_rirs/{room}/Room001/Room001-0000{i}.wav"
            write_audio(rirs / rel, seconds)
            lines.append(f"--rir-id {room}-Room001-0000{i} --room-id {room}-Room001 RIRS_NOISES/{rel}")
        # mediumroom has no list: it is scanned
        if with_lists and room != "mediumroom":
            write_text(rirs / "simulated_rirs" / room / "rir_list", lines)
    real = rirs / "real_rirs_isotropic_noises"
    write_audio(real / "air_type1_air_binaural_booth_0_1_1.wav", 0.30)
    write_audio(real / "RVB2014_type1_noise_largeroom1_1.wav", 0.40)  # a noise, not an RIR
    write_text(real / "rir_list", ["--rir-id air_type1_air_binaural_booth_0_1_1 --room-id air_type1_air_binaural_booth"
                                   " --rt-60 0.12 RIRS_NOISES/real_rirs_isotropic_noises/"
                                   "air_type1_air_binaural_booth_0_1_1.wav"])
    return rirs


def simulated(*rooms: str) -> dict[str, float]:
    return {f"{room}-Room001-0000{i}": s for room in rooms for i, s in ((1, 0.10), (2, 0.20))}


@pytest.mark.parametrize("parent", [False, True])
def test_rirs(tmp_path, parent):
    rirs = make_rirs(tmp_path)
    data = tmp_path / "data"
    run_tool("local/prepare_rirs.py", str(rirs.parent if parent else rirs), str(data))
    durations = simulated("smallroom", "mediumroom")
    wav_scp = check_dir(data / "rirs", {k: k.split("-")[0] for k in durations}, durations)
    assert wav_scp["smallroom-Room001-00002"] == str(rirs / "simulated_rirs/smallroom/Room001/Room001-00002.wav")

    run_tool("local/prepare_rirs.py", "--large", "--real", str(rirs), str(data))
    durations = simulated("smallroom", "mediumroom", "largeroom") | {"air_type1_air_binaural_booth_0_1_1": 0.30}
    utt2spk = {k: "real" if k.startswith("air") else k.split("-")[0] for k in durations}
    check_dir(data / "rirs", utt2spk, durations)


@pytest.mark.parametrize("line, fragment", [
    ("--rir-id x --room-id y", "expected '--rir-id ID --room-id ROOM [options] LOCATION'"),
    ("--rir-id x --room-id y --gain 3 RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav",
     "unknown option '--gain'"),
    ("--rir-id x --room-id y RIRS_NOISES/simulated_rirs/smallroom/Room009/Room009-00001.wav",
     "Room009-00001.wav: no such file"),
])
def test_rirs_bad_list_line(tmp_path, line, fragment):
    rirs = make_rirs(tmp_path)
    rir_list = rirs / "simulated_rirs/smallroom/rir_list"
    write_text(rir_list, rir_list.read_text().splitlines()[:1] + [line])
    assert_main_fails("prepare_rirs", [str(rirs), str(tmp_path / "data")], f"{rir_list}:2:", fragment)
    assert not (tmp_path / "data").exists()


def test_rirs_missing(tmp_path):
    assert_fails(run_tool("local/prepare_rirs.py", str(tmp_path / "nowhere"), str(tmp_path / "data"), check=False),
                 "no such directory")
    rirs = make_rirs(tmp_path, with_lists=False)
    (rirs / "real_rirs_isotropic_noises" / "rir_list").unlink()
    assert_main_fails("prepare_rirs", ["--real", str(rirs), str(tmp_path / "data")],
                      f"{rirs / 'real_rirs_isotropic_noises' / 'rir_list'}: no such file")
    shutil.rmtree(rirs / "simulated_rirs" / "mediumroom")
    assert_main_fails("prepare_rirs", [str(rirs), str(tmp_path / "data")],
                      f"{rirs / 'simulated_rirs' / 'mediumroom'}: no audio files found")
    assert not (tmp_path / "data").exists()
