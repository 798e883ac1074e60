"""egs/mini/run.sh stages 0-2 end to end on a reduced corpus: corpus, data dirs, fbank."""
import kaldiio
import numpy as np

from conftest import REPO, run_tool
from sv.data.data_dir import validate_data_dir
from sv.data.table import iter_table, read_scp


def test_mini_recipe_stages_0_to_2(tmp_path):
    corpus, data, fbank = tmp_path / "corpus", tmp_path / "data", tmp_path / "fbank"

    def run_stages(first: int, last: int) -> None:
        run_tool("bash", str(REPO / "egs/mini/run.sh"), "--stage", str(first), "--stop-stage", str(last),
                 "--num-speakers", "14", "--num-test-speakers", "4", "--utts-per-video", "2",
                 "--corpus", str(corpus), "--data", str(data), "--fbank-dir", str(fbank))

    run_stages(0, 2)

    for name in ("vox1", "vox1_dev", "vox1_test", "musan", "rirs"):
        validate_data_dir(data / name)
    test_spks = set(read_scp(data / "vox1_test" / "utt2spk").values())
    assert len(test_spks) == 4 and all("id10270" <= s <= "id10309" for s in test_spks)
    assert len(set(read_scp(data / "vox1_dev" / "utt2spk").values())) == 10
    assert set(read_scp(data / "musan" / "utt2spk").values()) == {"noise", "music", "speech"}

    trials = data / "vox1_test" / "trials" / "vox1_O_cleaned.kaldi"
    test_utts = set(read_scp(data / "vox1_test" / "utt2spk"))
    labels = set()
    for _, (enroll, test, label) in iter_table(trials, nfields=3):
        assert enroll in test_utts and test in test_utts
        labels.add(label)
    assert labels == {"target", "nontarget"}

    for name in ("vox1_dev", "vox1_test"):
        feats = read_scp(data / name / "feats.scp")
        assert set(feats) == set(read_scp(data / name / "utt2spk"))
        frames = read_scp(data / name / "utt2num_frames")
        for utt, mat in kaldiio.load_scp(str(data / name / "feats.scp")).items():
            assert mat.shape == (int(frames[utt]), 80)

    # A finished stage reruns safely and leaves the same features.
    before = {k: np.array(v) for k, v in kaldiio.load_scp(str(data / "vox1_test" / "feats.scp")).items()}
    run_stages(2, 2)
    after = kaldiio.load_scp(str(data / "vox1_test" / "feats.scp"))
    assert set(after) == set(before)
    assert all(np.array_equal(after[k], before[k]) for k in before)
