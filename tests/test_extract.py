"""Embedding extraction: keys and shapes, padding and batching change nothing, --max-frames averages chunks,
runs are bitwise repeatable, and steps/extract_embeddings.sh yields a complete sorted xvector.scp or fails
naming the utterances that lack one."""
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from conftest import REPO, run_tool
from sv.bin import extract
from sv.data.table import DataError
from sv.models.registry import build_model
from sv.train.checkpoint import save_checkpoint

FEAT_DIM = 20
# Chosen around --max-frames 64 in test_max_frames: shorter than a chunk, remainders under and over 16.
LENGTHS = {"spk1-a": 40, "spk1-b": 300, "spk1-c": 130, "spk2-a": 100, "spk2-b": 8, "spk2-c": 257, "spk3-a": 64}


def save_model(path: Path, seed: int) -> None:
    """A tiny ECAPA-TDNN checkpoint; another seed gives other weights."""
    torch.manual_seed(seed)
    cfg = {"model": {"name": "ecapa_tdnn", "feat_dim": FEAT_DIM, "channels": 16, "embed_dim": 8},
           "data": {"normalize": "meanvar"}}
    model = build_model(cfg["model"])
    # Untrained BatchNorm statistics (0, 1) would hide a mix-up of batch items; make them distinct.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    save_checkpoint({"model": model.state_dict(), "config": cfg}, path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """(exp dir with a tiny ECAPA-TDNN at models/avg_model.pt, data dir with feats.scp and utt2spk)."""
    root = tmp_path_factory.mktemp("extract")
    save_model(root / "exp/models/avg_model.pt", seed=0)

    data = root / "data/test_set"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with kaldiio.WriteHelper(f"ark,scp:{root / 'feats.ark'},{data / 'feats.scp'}") as writer:
        for utt, n in LENGTHS.items():
            writer[utt] = (rng.standard_normal((n, FEAT_DIM)) * 3 + 5).astype(np.float32)
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in LENGTHS))
    return root / "exp", data


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """extract.main sets the thread count for its process; give the test process its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_extract(setup, out: Path, *opts: str) -> dict[str, np.ndarray]:
    exp, data = setup
    extract.main(["--model", str(exp / "models/avg_model.pt"), "--device", "cpu", *opts,
                  str(data / "feats.scp"), str(out / "x.ark"), str(out / "x.scp")])
    return dict(kaldiio.load_scp(str(out / "x.scp")))


def load_model(setup) -> torch.nn.Module:
    model = extract.load_model(str(setup[0] / "models/avg_model.pt"), None, torch.device("cpu"))
    assert model.normalize == "meanvar" and model.sample_rate is None
    return model.net


def embed_alone(model: torch.nn.Module, feats: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(feats)[None]).numpy()[0]


def meanvar(feats: np.ndarray) -> np.ndarray:
    centred = feats - feats.mean(axis=0)
    return centred / np.sqrt(centred.var(axis=0) + 1e-8)


def features(setup) -> dict[str, np.ndarray]:
    return dict(kaldiio.load_scp(str(setup[1] / "feats.scp")))


def test_keys_shapes_and_batching_invariance(setup, tmp_path):
    alone = run_extract(setup, tmp_path, "--batch-frames", "1")  # every utterance in its own batch
    packed = run_extract(setup, tmp_path, "--batch-frames", "100000")  # all in one padded batch
    assert list(alone) == list(LENGTHS) and list(packed) == list(LENGTHS)  # scp order kept
    model = load_model(setup)
    for utt, feats in features(setup).items():
        assert alone[utt].shape == (8,) and alone[utt].dtype == np.float32
        np.testing.assert_allclose(packed[utt], alone[utt], atol=1e-5)
        np.testing.assert_allclose(alone[utt], embed_alone(model, meanvar(feats)), atol=1e-5)


def test_max_frames_averages_chunks(setup, tmp_path):
    got = run_extract(setup, tmp_path, "--max-frames", "64", "--batch-frames", "150")
    model = load_model(setup)
    for utt, feats in features(setup).items():
        feats = meanvar(feats)  # the whole utterance, before chunking
        n = len(feats)
        starts = list(range(0, n, 64))
        if len(starts) > 1 and n - starts[-1] < 16:  # a remainder under a quarter chunk is dropped
            starts.pop()
        chunks = [feats[s:s + 64] for s in starts]
        expected = sum(len(c) * embed_alone(model, c) for c in chunks) / sum(len(c) for c in chunks)
        np.testing.assert_allclose(got[utt], expected, atol=1e-5, err_msg=utt)
    assert extract.chunk_spans(130, 64) == [(0, 64), (64, 128)]
    assert extract.chunk_spans(100, 64) == [(0, 64), (64, 100)]
    assert extract.chunk_spans(8, 64) == [(0, 8)]


def test_runs_are_bitwise_identical(setup, tmp_path):
    exp, data = setup
    arks = []
    for run in ("a", "b"):
        run_tool("-m", "sv.bin.extract", "--model", str(exp / "models/avg_model.pt"), "--max-frames", "100",
                 "--batch-frames", "500", str(data / "feats.scp"), str(tmp_path / f"{run}.ark"),
                 str(tmp_path / f"{run}.scp"))
        arks.append((tmp_path / f"{run}.ark").read_bytes())
    assert arks[0] == arks[1]
    assert not list(tmp_path.glob("*.tmp"))


def test_help_names_the_files(capsys):
    with pytest.raises(SystemExit):
        extract.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "FEATS_SCP" in out and "ARK" in out and "SCP" in out and "--max-frames" in out


def test_unreadable_features_name_the_utterance(setup, tmp_path):
    exp, data = setup
    scp = tmp_path / "feats.scp"
    scp.write_text((data / "feats.scp").read_text() + f"spk9-zz {tmp_path / 'gone.ark'}:10\n")
    with pytest.raises(DataError, match="spk9-zz"):
        extract.main(["--model", str(exp / "models/avg_model.pt"), "--device", "cpu", str(scp),
                      str(tmp_path / "x.ark"), str(tmp_path / "x.scp")])
    assert not list(tmp_path.glob("x.*"))  # neither the table nor the temporary files remain


def stage(exp: Path, data: Path, *opts: str, check: bool = True):
    return run_tool("bash", "steps/extract_embeddings.sh", *opts, str(exp), str(data), cwd=REPO / "egs/mini",
                    check=check)


def test_stage_script(setup, tmp_path):
    exp, data = setup
    stage(exp, data, "--nj", "2", "--batch-frames", "400")
    out = exp / "embeddings/test_set"
    lines = (out / "xvector.scp").read_text().splitlines()
    keys = [line.split()[0] for line in lines]
    assert keys == sorted(LENGTHS)
    assert {line.split()[1].rsplit(":", 1)[0] for line in lines} == {str(out / "xvector.1.ark"),
                                                                    str(out / "xvector.2.ark")}
    assert sorted(p.name for p in (out / "log").iterdir()) == ["extract.1.log", "extract.2.log"]
    single = run_extract(setup, tmp_path)
    for key, emb in kaldiio.load_scp(str(out / "xvector.scp")).items():
        np.testing.assert_allclose(emb, single[key], atol=1e-5)


def test_stage_script_fails_naming_missing_utterances(setup, tmp_path):
    exp, data = setup
    partial = tmp_path / "partial_set"
    partial.mkdir()
    (partial / "utt2spk").write_text((data / "utt2spk").read_text() + "spk9-zz spk9\n")
    (partial / "feats.scp").write_text((data / "feats.scp").read_text())
    proc = stage(exp, partial, "--nj", "2", check=False)
    assert proc.returncode != 0
    assert "1 of 8 utterances" in proc.stderr and "spk9-zz" in proc.stderr
    assert not (exp / "embeddings/partial_set/xvector.scp").exists()

    (partial / "feats.scp").unlink()
    proc = stage(exp, partial, check=False)
    assert proc.returncode != 0 and "feats.scp" in proc.stderr


def xvectors(out: Path) -> tuple[bytes, dict[str, np.ndarray]]:
    return (out / "xvector.scp").read_bytes(), {k: np.array(v) for k, v in kaldiio.load_scp(str(out / "xvector.scp")).items()}


def test_stage_script_rerun_keeps_previous_embeddings_until_it_succeeds(setup, tmp_path):
    exp0, data0 = setup
    exp, data = tmp_path / "exp", tmp_path / "test_set"
    (exp / "models").mkdir(parents=True)
    (exp / "models/avg_model.pt").symlink_to(exp0 / "models/avg_model.pt")
    # The rerun uses other weights, so an archive it replaced would show in what the previous
    # xvector.scp loads.
    save_model(exp / "models/other.pt", seed=1)
    data.mkdir()
    for name in ("feats.scp", "utt2spk"):
        (data / name).write_text((data0 / name).read_text())
    out = exp / "embeddings/test_set"
    stage(exp, data, "--nj", "3")
    scp_before, before = xvectors(out)

    # One utterance more, sorted last, whose features cannot be read: jobs 1 and 2 succeed, job 3 fails.
    (data / "feats.scp").write_text((data0 / "feats.scp").read_text() + f"spk9-zz {tmp_path / 'gone.ark'}:10\n")
    (data / "utt2spk").write_text((data0 / "utt2spk").read_text() + "spk9-zz spk9\n")
    proc = stage(exp, data, "--nj", "3", "--model-name", "other.pt", check=False)
    assert proc.returncode != 0 and "spk9-zz" in proc.stderr and "extract.3.log" in proc.stderr
    assert "# Ended (code 0)" in (out / "log/extract.1.log").read_text()
    scp_after, after = xvectors(out)
    assert scp_after == scp_before
    assert after.keys() == before.keys()
    for key, emb in before.items():
        np.testing.assert_array_equal(after[key], emb, err_msg=key)
    assert not [p.name for p in out.iterdir() if ".new." in p.name]

    # Without the bad utterance, the rerun replaces every output; then one with fewer jobs removes the
    # archives of job 3 and nothing else.
    for name in ("feats.scp", "utt2spk"):
        (data / name).write_text((data0 / name).read_text())
    stage(exp, data, "--nj", "3", "--model-name", "other.pt")
    (out / "xvector.3.ark.keep").write_text("not ours\n")
    stage(exp, data, "--nj", "2", "--model-name", "other.pt")
    assert sorted(p.name for p in out.iterdir()) == ["log", "xvector.1.ark", "xvector.1.scp", "xvector.2.ark",
                                                     "xvector.2.scp", "xvector.3.ark.keep", "xvector.scp"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    extract.main(["--model", str(exp / "models/other.pt"), "--device", "cpu", str(data / "feats.scp"),
                  str(fresh / "x.ark"), str(fresh / "x.scp")])
    single = dict(kaldiio.load_scp(str(fresh / "x.scp")))
    got = dict(kaldiio.load_scp(str(out / "xvector.scp")))
    assert list(got) == sorted(LENGTHS)
    for key, emb in got.items():
        np.testing.assert_allclose(emb, single[key], atol=1e-5)
        assert np.abs(emb - before[key]).max() > 1e-3  # the other model's, not the previous run's
