"""utils/ data-dir tools on hand-made dirs, including each kind of bad input."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_tool
from sv.data.table import read_scp, read_spk2utt

UTTS = {"spkA-u1": "spkA", "spkA-u2": "spkA", "spkB-u1": "spkB", "spkB-u2": "spkB", "spkC-u1": "spkC"}


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def make_dir(root: Path, name: str = "d", utts: dict[str, str] = UTTS, audio: bool = True) -> Path:
    d = root / name
    d.mkdir(parents=True)
    wavs = root / f"{name}_wav"
    wavs.mkdir()
    for utt in utts:
        if audio:
            sf.write(wavs / f"{utt}.wav", np.zeros(1600, dtype=np.float32), 16000)
    write(d / "wav.scp", [f"{u} {wavs / u}.wav" for u in sorted(utts)])
    write(d / "utt2spk", [f"{u} {utts[u]}" for u in sorted(utts)])
    spks = sorted(set(utts.values()))
    write(d / "spk2utt", [f"{s} {' '.join(u for u in sorted(utts) if utts[u] == s)}" for s in spks])
    write(d / "utt2dur", [f"{u} 0.100" for u in sorted(utts)])
    return d


def validate(d: Path, *extra: str):
    return run_tool("utils/validate_data_dir.py", *extra, str(d), check=False)


def assert_fails(proc, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stderr
    for frag in fragments:
        assert frag in proc.stderr, f"{frag!r} not in:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def test_valid_dir_passes(tmp_path):
    d = make_dir(tmp_path)
    assert validate(d, "--check-audio").returncode == 0


def test_unsorted(tmp_path):
    d = make_dir(tmp_path)
    lines = (d / "utt2spk").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    write(d / "utt2spk", lines)
    assert_fails(validate(d), f"{d}/utt2spk:3: not sorted", "'spkA-u2' comes after 'spkB-u1'")


def test_duplicate_key(tmp_path):
    d = make_dir(tmp_path)
    lines = (d / "wav.scp").read_text().splitlines()
    write(d / "wav.scp", lines[:3] + [lines[2]] + lines[3:])
    assert_fails(validate(d), f"{d}/wav.scp:4: duplicate key 'spkB-u1' (first on line 3)")


def test_utt2spk_wav_scp_mismatch(tmp_path):
    d = make_dir(tmp_path)
    lines = (d / "wav.scp").read_text().splitlines()
    write(d / "wav.scp", [line.replace("spkB-u2", "spkB-u9", 1) if line.startswith("spkB-u2") else line
                          for line in lines])
    assert_fails(validate(d), f"{d}/wav.scp:4: key 'spkB-u9' is not in {d}/utt2spk",
                 f"{d}/wav.scp: missing keys present in {d}/utt2spk: spkB-u2")


def test_missing_audio_file(tmp_path):
    d = make_dir(tmp_path)
    (tmp_path / "d_wav" / "spkA-u2.wav").unlink()
    assert validate(d).returncode == 0  # audio is only opened on request
    assert_fails(validate(d, "--check-audio"), f"{d}/wav.scp:2: spkA-u2: audio file not found")


def test_missing_table_and_bad_spk2utt(tmp_path):
    d = make_dir(tmp_path)
    (d / "spk2utt").unlink()
    assert_fails(validate(d), f"{d}/spk2utt: no such file")
    write(d / "spk2utt", ["spkA spkA-u1", "spkB spkB-u1 spkB-u2", "spkC spkC-u1"])
    assert_fails(validate(d), f"{d}/spk2utt:1: utterances of 'spkA' disagree with utt2spk")


def test_bad_number_and_segments(tmp_path):
    d = make_dir(tmp_path)
    write(d / "utt2dur", [f"{u} {'x' if u == 'spkC-u1' else '0.1'}" for u in sorted(UTTS)])
    assert_fails(validate(d), f"{d}/utt2dur:5: value must be a number")
    d2 = make_dir(tmp_path, "seg", audio=False)
    write(d2 / "wav.scp", ["rec1 /x/rec1.wav"])
    (d2 / "utt2dur").unlink()
    write(d2 / "segments", [f"{u} {'rec2' if u == 'spkB-u1' else 'rec1'} 0.0 1.0" for u in sorted(UTTS)])
    assert_fails(validate(d2), f"{d2}/segments:3: recording 'rec2' is not in {d2}/wav.scp")


def test_fix_data_dir(tmp_path):
    d = make_dir(tmp_path)
    wav = (d / "wav.scp").read_text().splitlines()
    write(d / "wav.scp", list(reversed(wav[1:])) + ["zzz-extra /nowhere.wav"])  # unsorted, one missing, one extra
    assert validate(d).returncode != 0
    run_tool("utils/fix_data_dir.py", str(d))
    assert validate(d).returncode == 0
    assert sorted(read_scp(d / "utt2spk")) == sorted(set(UTTS) - {"spkA-u1"})
    assert read_spk2utt(d / "spk2utt")["spkA"] == ["spkA-u2"]
    assert (d / ".backup" / "wav.scp").read_text().endswith("zzz-extra /nowhere.wav\n")


@pytest.mark.parametrize("args,expected", [
    (["--per-spk", "1"], {"spkA-u1", "spkB-u1", "spkC-u1"}),
    (["--first", "2"], {"spkA-u1", "spkA-u2"}),
    (["--spk-list", "SPK"], {"spkB-u1", "spkB-u2"}),
    (["--utt-list", "UTT", "--per-spk", "1"], {"spkA-u2", "spkC-u1"}),
])
def test_subset(tmp_path, args, expected):
    d = make_dir(tmp_path)
    write(tmp_path / "SPK", ["spkB"])
    write(tmp_path / "UTT", ["spkA-u2", "spkC-u1", "nobody"])
    args = [str(tmp_path / a) if a in ("SPK", "UTT") else a for a in args]
    run_tool("utils/subset_data_dir.py", *args, str(d), str(tmp_path / "sub"))
    assert set(read_scp(tmp_path / "sub" / "wav.scp")) == expected
    assert set(read_scp(tmp_path / "sub" / "utt2dur")) == expected
    assert validate(tmp_path / "sub").returncode == 0


def test_combine(tmp_path):
    a = make_dir(tmp_path, "a", {"s1-u1": "s1", "s1-u2": "s1"})
    b = make_dir(tmp_path, "b", {"s0-u1": "s0", "s2-u1": "s2"})
    run_tool("utils/combine_data.py", str(tmp_path / "ab"), str(a), str(b))
    assert list(read_scp(tmp_path / "ab" / "utt2spk")) == ["s0-u1", "s1-u1", "s1-u2", "s2-u1"]
    assert validate(tmp_path / "ab").returncode == 0
    dup = make_dir(tmp_path, "dup", {"s1-u2": "s1"})
    assert_fails(run_tool("utils/combine_data.py", str(tmp_path / "x"), str(a), str(dup), check=False),
                 f"key 's1-u2' of {dup}/utt2spk is also in {a}/utt2spk")


def test_split_scp(tmp_path):
    scp = tmp_path / "in.scp"
    write(scp, [f"u{i:02d} v{i}" for i in range(10)])
    outs = [str(tmp_path / f"out.{j}") for j in (1, 2, 3)]
    run_tool("utils/split_scp.py", str(scp), *outs)
    parts = [Path(o).read_text().split("\n")[:-1] for o in outs]
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sum(parts, []) == scp.read_text().split("\n")[:-1]
    utt2spk = tmp_path / "utt2spk"
    write(utt2spk, [f"u{i:02d} s{min(i // 3, 2)}" for i in range(10)])  # s0:3 s1:3 s2:4
    run_tool("utils/split_scp.py", "--utt2spk", str(utt2spk), str(scp), *outs)
    parts = [Path(o).read_text().split("\n")[:-1] for o in outs]
    assert [len(p) for p in parts] == [3, 3, 4]
    many = [str(tmp_path / f"m.{j}") for j in range(11)]
    assert_fails(run_tool("utils/split_scp.py", str(scp), *many, check=False), "10 lines cannot be split into 11")


def test_filter_scp(tmp_path):
    write(tmp_path / "ids", ["b", "d"])
    write(tmp_path / "t", ["a 1", "b 2", "c b", "d 4"])
    keep = run_tool("utils/filter_scp.py", str(tmp_path / "ids"), str(tmp_path / "t")).stdout
    assert keep == "b 2\nd 4\n"
    drop = run_tool("utils/filter_scp.py", "--exclude", str(tmp_path / "ids"), str(tmp_path / "t")).stdout
    assert drop == "a 1\nc b\n"
    by_field2 = run_tool("utils/filter_scp.py", "-f", "2", str(tmp_path / "ids"), str(tmp_path / "t")).stdout
    assert by_field2 == "c b\n"


def test_utt2spk_spk2utt_roundtrip(tmp_path):
    d = make_dir(tmp_path)
    utt2spk = (d / "utt2spk").read_text()
    spk2utt = run_tool("utils/utt2spk_to_spk2utt.py", input=utt2spk).stdout
    assert spk2utt == (d / "spk2utt").read_text()
    assert run_tool("utils/spk2utt_to_utt2spk.py", input=spk2utt).stdout == utt2spk
