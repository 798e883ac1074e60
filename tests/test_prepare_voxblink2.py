"""local/prepare_voxblink2.py on a small tree in the layout that VoxBlink2's cropper_audio.py writes."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_tool
from sv.data.data_dir import validate_data_dir, write_data_dir
from sv.data.table import DataError, iter_lines, read_scp

SR = 16000
LOCAL = Path(__file__).resolve().parents[1] / "local"

VB2 = {  # idNNNNNN/<video>/NNNNN -> seconds; YouTube ids may start with '-'
    "id000000/DwgYRqnQZHM/00000": 0.10,
    "id000000/DwgYRqnQZHM/00001": 0.20,
    "id000000/-x_Yz12AbCd/00000": 0.15,
    "id000001/aaaaaaaaaaa/00003": 0.25,
    "id012345/bbbbbbbbbbb/00000": 0.30,
}
SPK2VIDEOS = [
    "id000000 DwgYRqnQZHM -x_Yz12AbCd",
    "id000001 aaaaaaaaaaa",
    "id012345 bbbbbbbbbbb",
]


def write_audio(path: Path, seconds: float, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full((int(round(seconds * SR)), channels), 0.1, dtype=np.float32), SR, subtype="PCM_16")


def write_text(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def make_voxblink2(save_dir: Path) -> Path:
    """cropper_audio.py's output: SAVE_DIR/idNNNNNN/<video>/NNNNN.wav, the empty SAVE_DIR/audio it also makes,
    the 60 s download of one video (BASE_DIR = SAVE_DIR), a stereo cut and an interrupted cut's hidden file."""
    for i, (key, seconds) in enumerate(VB2.items()):
        write_audio(save_dir / f"{key}.wav", seconds, channels=2 if i == 1 else 1)
    (save_dir / "audio").mkdir()
    write_audio(save_dir / "id000000" / "DwgYRqnQZHM.wav", 0.5)
    write_audio(save_dir / "id000001" / "aaaaaaaaaaa" / ".00004.wav", 0.1)
    return save_dir


def expected(prefix: str = "vb2-", keys=VB2) -> tuple[dict[str, str], dict[str, float]]:
    utt2spk = {f"{prefix}{k}.wav": f"{prefix}{k.split('/')[0]}" for k in keys}
    return utt2spk, {f"{prefix}{k}.wav": VB2[k] for k in keys}


def check_dir(d: Path, utt2spk: dict[str, str], durations: dict[str, float] | None) -> dict[str, str]:
    """Assert d is a valid, sorted data dir with exactly these utterances; return its wav.scp."""
    validate_data_dir(d)
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        if (d / name).is_file():
            keys = [line.split()[0] for _, line in iter_lines(d / name)]
            assert keys == sorted(keys), f"{d / name} is not sorted"
    assert read_scp(d / "utt2spk") == utt2spk
    wav_scp = read_scp(d / "wav.scp")
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in wav_scp.values())
    if durations is None:
        assert not (d / "utt2dur").exists()
    else:
        assert {k: float(v) for k, v in read_scp(d / "utt2dur").items()} == pytest.approx(durations, abs=1e-3)
    return wav_scp


def assert_main_fails(args: list[str], *fragments: str) -> None:
    """main() raises a DataError holding every fragment (in process: the bad-input cases need no interpreter each)."""
    if str(LOCAL) not in sys.path:
        sys.path.insert(0, str(LOCAL))
    with pytest.raises(DataError) as error:
        importlib.import_module("prepare_voxblink2").main(args)
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} not in:\n{error.value}"


def test_voxblink2(tmp_path):
    root = make_voxblink2(tmp_path / "vb2_audio")
    data = tmp_path / "data"
    run_tool("local/prepare_voxblink2.py", "--nj", "2", str(root), str(data))
    wav_scp = check_dir(data / "voxblink2", *expected())
    assert wav_scp["vb2-id000000/-x_Yz12AbCd/00000.wav"] == str(root / "id000000/-x_Yz12AbCd/00000.wav")
    assert sorted(read_scp(data / "voxblink2" / "spk2utt")) == ["vb2-id000000", "vb2-id000001", "vb2-id012345"]


@pytest.mark.parametrize("sub", ["audio", "wav"])
def test_voxblink2_root_holding_the_audio(tmp_path, sub):
    """cropper_video.py --save_dir_audio ROOT/audio (or wav): ROOT may be given; no utt2dur on request."""
    make_voxblink2(tmp_path / "vb2" / sub)
    (tmp_path / "vb2" / "meta" / "id000000").mkdir(parents=True)  # the released annotations beside it
    data = tmp_path / "data"
    run_tool("local/prepare_voxblink2.py", "--no-utt2dur", str(tmp_path / "vb2"), str(data))
    utt2spk, _ = expected()
    check_dir(data / "voxblink2", utt2spk, None)


def test_voxblink2_spk2videos_and_prefix(tmp_path):
    root = make_voxblink2(tmp_path / "vb2_audio")
    # A subset: one video of id000000, and a video that YouTube no longer serves (no audio).
    listed = write_text(tmp_path / "spk2videos", ["id000000 DwgYRqnQZHM", "", "id000001 aaaaaaaaaaa gone1234567"])
    data = tmp_path / "data"
    proc = run_tool("local/prepare_voxblink2.py", "--spk2videos", str(listed), "--spk-prefix", "", str(root), str(data))
    keys = ["id000000/DwgYRqnQZHM/00000", "id000000/DwgYRqnQZHM/00001", "id000001/aaaaaaaaaaa/00003"]
    check_dir(data / "voxblink2", *expected("", keys))
    assert "kept 3 of 5 utterances; 2 of 3 listed videos have audio (2 of 2 speakers)" in proc.stderr


def test_voxblink2_combines_with_voxceleb2(tmp_path):
    root = make_voxblink2(tmp_path / "vb2_audio")
    data = tmp_path / "data"
    run_tool("local/prepare_voxblink2.py", str(root), str(data))
    vox2 = {"id00012/21Uxsk56VDQ/00001.wav": 0.1, "id00015/0fijmz4vTVU/00001.wav": 0.2}
    for key, seconds in vox2.items():
        write_audio(tmp_path / "vox2" / key, seconds)
    write_data_dir(data / "vox2_dev", {k: str(tmp_path / "vox2" / k) for k in vox2}, {k: k.split("/")[0] for k in vox2},
                   vox2)
    run_tool("utils/combine_data.py", str(data / "vox2_dev_voxblink2"), str(data / "vox2_dev"), str(data / "voxblink2"))
    utt2spk, durations = expected()
    check_dir(data / "vox2_dev_voxblink2", {**utt2spk, **{k: k.split("/")[0] for k in vox2}}, {**durations, **vox2})
    assert len(read_scp(data / "vox2_dev_voxblink2" / "spk2utt")) == 5


def test_voxblink2_missing_root(tmp_path):
    proc = run_tool("local/prepare_voxblink2.py", str(tmp_path / "nowhere"), str(tmp_path / "data"), check=False)
    assert proc.returncode == 1, proc.stderr
    assert f"{tmp_path / 'nowhere'}: no such directory" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()


def test_voxblink2_bad_layouts(tmp_path):
    data = tmp_path / "data"
    # VoxCeleb-style speaker folders (five digits) are not VoxBlink2's.
    write_audio(tmp_path / "vox" / "id00012" / "21Uxsk56VDQ" / "00001.wav", 0.1)
    assert_main_fails([str(tmp_path / "vox"), str(data)], f"{tmp_path / 'vox'}: no speaker folder idNNNNNN")
    # Only the 60 s downloads: cropper_audio.py has not run.
    write_audio(tmp_path / "dl" / "id000000" / "DwgYRqnQZHM.wav", 0.1)
    assert_main_fails([str(tmp_path / "dl"), str(data)], "only idNNNNNN/<video>.wav files", "cropper_audio.py")
    # An utterance outside a speaker folder, one with whitespace in its name.
    root = make_voxblink2(tmp_path / "vb2")
    write_audio(root / "extra" / "ccccccccccc" / "00000.wav", 0.1)
    write_audio(root / "id000001" / "d d" / "00000.wav", 0.1)
    assert_main_fails([str(root), str(data)], "2 audio files outside the layout",
                      f"{root / 'extra/ccccccccccc/00000.wav'}: not in a speaker folder",
                      f"{root / 'id000001/d d/00000.wav'}: whitespace in the name")
    assert not data.exists()


@pytest.mark.parametrize("bad_line, fragment", [
    ("id000001", "expected 'idNNNNNN VIDEO1 VIDEO2 ...', got 'id000001'"),
    ("id00001 aaaaaaaaaaa", "expected 'idNNNNNN VIDEO1 VIDEO2 ...'"),
    ("id000000 bbbbbbbbbbb", "speaker 'id000000' is listed twice"),
])
def test_voxblink2_bad_spk2videos_line(tmp_path, bad_line, fragment):
    root = make_voxblink2(tmp_path / "vb2")
    listed = write_text(tmp_path / "spk2videos", SPK2VIDEOS[:1] + [bad_line])
    data = tmp_path / "data"
    assert_main_fails(["--spk2videos", str(listed), str(root), str(data)], f"{listed}:2:", fragment)
    assert not data.exists()


def test_voxblink2_spk2videos_matching_nothing(tmp_path):
    root = make_voxblink2(tmp_path / "vb2")
    listed = write_text(tmp_path / "spk2videos", ["id099999 zzzzzzzzzzz"])
    proc = run_tool("local/prepare_voxblink2.py", "--spk2videos", str(listed), str(root), str(tmp_path / "data"),
                    check=False)
    assert proc.returncode == 1 and "no audio files found" in proc.stderr and str(listed) in proc.stderr
    assert not (tmp_path / "data").exists()
