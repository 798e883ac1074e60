"""egs/mini/run.sh end to end on a reduced corpus and model: every stage, 0 to 8."""
import kaldiio
import numpy as np

from conftest import REPO, run_tool
from sv.data.data_dir import validate_data_dir
from sv.data.table import iter_table, read_scp
from sv.train.checkpoint import load_checkpoint

TINY_TRAINING = "epochs=2 model.channels=32 model.embed_dim=32 data.batch_size=8"


def test_mini_recipe_end_to_end(tmp_path):
    corpus, data, fbank, exp = tmp_path / "corpus", tmp_path / "data", tmp_path / "fbank", tmp_path / "exp"

    def run_stages(first: int, last: int) -> None:
        run_tool("bash", str(REPO / "egs/mini/run.sh"), "--stage", str(first), "--stop-stage", str(last),
                 "--num-speakers", "14", "--num-test-speakers", "4", "--utts-per-video", "2",
                 "--corpus", str(corpus), "--data", str(data), "--fbank-dir", str(fbank), "--exp", str(exp),
                 "--train-opts", TINY_TRAINING, "--num-avg", "2", "--qmf-utts", "30", "--qmf-trials", "300")

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

    run_stages(3, 8)
    assert (exp / "models" / "avg_model.pt").is_file() and (exp / "qmf" / "qmf.yaml").is_file()
    assert set(read_scp(exp / "embeddings" / "vox1_test" / "xvector.scp")) == test_utts
    for trial_list in ("vox1_O", "vox1_O_cleaned"):
        for suffix in ("score", "asnorm.score", "qmf.score"):
            lines = list(iter_table(exp / "scores" / f"{trial_list}.{suffix}"))
            assert len(lines) == len(list(iter_table(data / "vox1_test" / "trials" / f"{trial_list}.kaldi")))
    results = (exp / "results.md").read_text()
    assert "## vox1_O_cleaned" in results
    assert all(f"| {system} |" in results for system in ("cosine", "asnorm", "qmf"))
    assert "## vox1_O_cleaned" in (tmp_path / "exp_lm" / "results.md").read_text()


def test_mini_ssl_recipe_end_to_end(tmp_path):
    """egs/mini/run_ssl.sh: a tiny random WavLM saved and reloaded as a pre-trained model, three training stages
    (frozen + LoRA, joint fine-tuning after the merge, large margin), embeddings from audio, QMF, scoring; then
    (stages 9-11) distillation-guided pruning, further distillation of the pruned encoder, and the speaker stages
    again on it."""
    corpus, data, exp = tmp_path / "corpus", tmp_path / "data", tmp_path / "exp"
    run_tool("bash", str(REPO / "egs/mini/run_ssl.sh"), "--stop-stage", "11",
             "--num-speakers", "14", "--num-test-speakers", "4", "--utts-per-video", "2",
             "--corpus", str(corpus), "--data", str(data), "--exp", str(exp), "--pretrained", str(tmp_path / "tiny"),
             "--train-opts", "epochs=2 data.batch_size=8", "--num-avg", "1", "--qmf-utts", "30",
             "--qmf-trials", "300", "--prune-opts", "epochs=8")
    assert (tmp_path / "tiny" / "config.json").is_file()
    s1 = load_checkpoint(exp / "s1" / "models" / "avg_model.pt")
    assert "lora" not in s1["config"]["model"] and not any("lora_" in k for k in s1["model"])
    assert "lora" in load_checkpoint(exp / "s1" / "models" / "model_2.pt")["config"]["model"]
    for stage in ("s2", "s3"):
        assert (exp / stage / "models" / "avg_model.pt").is_file()
    final = exp / "s3"
    test_utts = set(read_scp(data / "vox1_test" / "utt2spk"))
    embeddings = dict(kaldiio.load_scp(str(final / "embeddings" / "vox1_test" / "xvector.scp")))
    assert set(embeddings) == test_utts and all(v.shape == (64,) for v in embeddings.values())
    assert (final / "qmf" / "qmf.yaml").is_file()
    results = (final / "results.md").read_text()
    assert "## vox1_O_cleaned" in results
    assert all(f"| {system} |" in results for system in ("cosine", "asnorm", "qmf"))

    def encoder_params(model: dict) -> int:
        return sum(v.numel() for k, v in model.items() if k.startswith("encoder.") and "log_alpha" not in k)
    unpruned = encoder_params(load_checkpoint(exp / "s2" / "models" / "avg_model.pt")["model"])
    pruned_dir = exp / "prune_distill" / "encoder"
    assert (pruned_dir / "sv_pruned_structure.json").is_file() and (pruned_dir / "model.safetensors").is_file()
    pruned = load_checkpoint(tmp_path / "exp_pruned" / "s3" / "models" / "avg_model.pt")
    assert pruned["config"]["model"]["encoder"]["pretrained"] == str(pruned_dir)
    assert encoder_params(pruned["model"]) < 0.8 * unpruned  # it visibly pruned
    embeddings = dict(kaldiio.load_scp(str(tmp_path / "exp_pruned" / "s3" / "embeddings" / "vox1_test" / "xvector.scp")))
    assert set(embeddings) == test_utts
    results = (tmp_path / "exp_pruned" / "s3" / "results.md").read_text()
    assert all(f"| {system} |" in results for system in ("cosine", "asnorm", "qmf"))


def test_mini_asr_recipe_all_three_strategies(tmp_path):
    """egs/mini/run_asr.sh: the tiny NeMo Conformer-CTC fixture imported, then transfer learning, ASR distillation
    and the speaker adaptor, each with large-margin fine-tuning derived from its own config, embeddings from
    audio, QMF with the SNR quality and AS-norm over an utterance cohort."""
    corpus, data, asr = tmp_path / "corpus", tmp_path / "data", tmp_path / "asr"
    common = ["--corpus", str(corpus), "--data", str(data), "--asr", str(asr), "--exp-root", str(tmp_path)]
    run_tool("bash", str(REPO / "egs/mini/run_asr.sh"), "--stop-stage", "1", "--num-speakers", "14",
             "--num-test-speakers", "4", "--utts-per-video", "2", *common)
    assert (asr / "model.safetensors").is_file()
    test_utts = set(read_scp(data / "vox1_test" / "utt2spk"))
    for strategy in ("transfer", "distill", "adaptor"):
        run_tool("bash", str(REPO / "egs/mini/run_asr.sh"), "--strategy", strategy, "--stage", "3", *common,
                 "--train-opts", "epochs=2 data.batch_size=8 scheduler.warmup_epochs=0", "--num-avg", "1",
                 "--qmf-utts", "30", "--qmf-trials", "300", "--cohort-size", "20", "--top-n", "10")
        trained, final = tmp_path / f"asr_{strategy}", tmp_path / f"asr_{strategy}_lm"
        assert (trained / "models" / "avg_model.pt").is_file()
        lm = load_checkpoint(final / "models" / "avg_model.pt")["config"]
        assert lm["teacher"] is None and lm["head"]["margin"] == 0.5 and lm["data"]["speed_perturb"]["prob"] == 0.0
        assert lm["model"] == load_checkpoint(trained / "models" / "avg_model.pt")["config"]["model"]
        embeddings = dict(kaldiio.load_scp(str(final / "embeddings" / "vox1_test" / "xvector.scp")))
        assert set(embeddings) == test_utts and all(v.shape == (64,) for v in embeddings.values())
        assert "snr_min" in (final / "qmf" / "qmf.yaml").read_text()
        cohort = final / "embeddings" / "vox1_dev" / "cohort_utt20_seed0" / "utt_list"
        assert len(cohort.read_text().split()) == 20
        results = (final / "results.md").read_text()
        assert all(f"| {system} |" in results for system in ("cosine", "asnorm", "qmf"))
    distill = load_checkpoint(tmp_path / "asr_distill" / "models" / "model_2.pt")
    assert "ctc_head.weight" in distill["auxiliary"] and distill["config"]["teacher"]["model"] == str(asr)
