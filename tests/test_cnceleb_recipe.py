"""egs/cnceleb/run.sh stages 1-7 end to end on a synthetic corpus in the CN-Celeb_flac / CN-Celeb2_flac
layouts (local/make_synthetic_corpus.py --cnceleb), with the recipe's own training config shrunk.

The CN-Celeb scoring path differs from VoxCeleb's: a trial's enroll side is a model of enroll.map,
scored through the mean of its utterances' embeddings (and AS-norm'd and QMF-calibrated as such)."""
import kaldiio
import numpy as np

from conftest import REPO, run_tool
from sv.data.data_dir import validate_data_dir
from sv.data.table import iter_table, read_scp, read_spk2utt

CORPUS_SIZE = ["--num-speakers", "3", "--num-test-speakers", "2", "--utts-per-video", "1",  # VoxCeleb1 part: unused
               "--cnceleb1-speakers", "12", "--cnceleb-eval-speakers", "4", "--cnceleb2-speakers", "4",
               "--genres-per-speaker", "3", "--utts-per-genre", "2", "--min-dur", "2", "--max-dur", "3.5"]
# conf/ecapa_tdnn_c512.yaml (raw audio, speed perturbation, MUSAN and RIR augmentation) made tiny
TINY_TRAINING = ("epochs=2 scheduler.warmup_epochs=1 model.channels=32 model.embed_dim=32 data.batch_size=8 "
                 "data.num_workers=0 amp=none")
TOP_N = 10


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cnceleb_recipe_end_to_end(tmp_path):
    corpus, data, fbank, exp = tmp_path / "corpus", tmp_path / "data", tmp_path / "fbank", tmp_path / "exp"
    run_tool("local/make_synthetic_corpus.py", "--cnceleb", *CORPUS_SIZE, "--nj", "2", str(corpus))
    run_tool("bash", str(REPO / "egs/cnceleb/run.sh"), "--stage", "1", "--stop-stage", "7",
             "--cnceleb1-root", str(corpus / "CN-Celeb_flac"), "--cnceleb2-root", str(corpus / "CN-Celeb2_flac"),
             "--musan-root", str(corpus / "musan"), "--rirs-root", str(corpus / "RIRS_NOISES"),
             "--data", str(data), "--fbank-dir", str(fbank), "--exp", str(exp), "--nj", "2", "--nproc", "1",
             "--train-opts", TINY_TRAINING, "--num-avg", "1", "--top-n", str(TOP_N),
             "--qmf-utts", "30", "--qmf-trials", "300")

    for name in ("cnceleb_train", "cnceleb1_eval", "musan", "rirs"):
        validate_data_dir(data / name)
    train, evl = data / "cnceleb_train", data / "cnceleb1_eval"
    # training: the 8 CN-Celeb1 dev speakers and the 4 CN-Celeb2 speakers, none of the evaluation speakers
    train_spks = set(read_scp(train / "utt2spk").values())
    assert train_spks == {f"id{i:05d}" for i in [*range(8), *range(10000, 10004)]}

    # enroll.map: each model, its speaker's enrollment segments (first genre session, 2 utterances), which are
    # the model's utterances in the eval dir; the test utterances belong to their speakers
    models = read_spk2utt(evl / "enroll.map")
    spk2utt = read_spk2utt(evl / "spk2utt")
    assert list(models) == [f"id{800 + i:05d}-enroll" for i in range(4)]
    for model, utts in models.items():
        spk = model.removesuffix("-enroll")
        assert len(utts) == 2 and all(u.startswith(f"{spk}/") for u in utts)
        assert len({u.rsplit("-", 1)[0] for u in utts}) == 1  # one genre session
        assert sorted(spk2utt[model]) == sorted(utts)
    utt2spk = read_scp(evl / "utt2spk")
    tests = [u for u in utt2spk if u.startswith("test/")]
    assert len(tests) == 16 and all(utt2spk[u] == u.split("/")[1].split("-")[0] for u in tests)
    trials = [fields for _, fields in iter_table(evl / "trials" / "CNC-Eval-Core.kaldi", nfields=3)]
    assert len(trials) == len(models) * len(tests)
    assert all(t in tests and m in models and label == ("target" if m.startswith(utt2spk[t]) else "nontarget")
               for m, t, label in trials)

    # one score line per trial, in trial order, for each system
    scores = {}
    for suffix in ("score", "asnorm.score", "qmf.score"):
        lines = [fields for _, fields in iter_table(exp / "scores" / f"CNC-Eval-Core.{suffix}")]
        assert [f[:2] for f in lines] == [t[:2] for t in trials]
        scores[suffix] = lines
    results = (exp / "results.md").read_text()
    assert "## CNC-Eval-Core" in results
    assert all(f"| {system} |" in results for system in ("cosine", "asnorm", "qmf"))

    # A model's score is the cosine between the mean of its utterances' raw embeddings and the test embedding,
    # both with the training mean subtracted (steps/score.sh: sv.bin.speaker_mean without --length-norm, then
    # sv.bin.score --mean-scp); AS-norm scores the model's mean against the training speakers' means.
    def embeddings(name: str) -> dict[str, np.ndarray]:
        scp = exp / "embeddings" / name / "xvector.scp"
        return {k: np.asarray(v, np.float64) for k, v in kaldiio.load_scp(str(scp)).items()}

    emb, train_emb = embeddings("cnceleb1_eval"), embeddings("cnceleb_train")
    assert set(emb) == set(utt2spk) and set(train_emb) == set(read_scp(train / "utt2spk"))
    mean = np.mean(list(train_emb.values()), axis=0)
    enroll = {m: unit(np.mean([emb[u] for u in utts], axis=0) - mean) for m, utts in models.items()}
    cohort = unit(np.stack([np.mean([train_emb[u] for u in utts], axis=0) - mean
                            for utts in read_spk2utt(train / "spk2utt").values()]))

    def top_stats(x: np.ndarray) -> tuple[float, float]:
        top = np.sort(cohort @ x)[-TOP_N:]
        return top.mean(), top.std()

    for (model, test, _), cos_line, as_line in zip(trials, scores["score"], scores["asnorm.score"]):
        t = unit(emb[test] - mean)
        s = enroll[model] @ t
        assert abs(float(cos_line[2]) - s) < 1e-5, (model, test)
        (mu_e, sd_e), (mu_t, sd_t) = top_stats(enroll[model]), top_stats(t)
        assert abs(float(as_line[2]) - 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)) < 1e-3, (model, test)
        assert abs(float(as_line[4]) - mu_e) < 1e-5
    # the check tells the model's mean apart from its first utterance alone and from a mean of length-normalised
    # utterances (sv.bin.speaker_mean --length-norm)
    cos = np.array([float(line[2]) for line in scores["score"]])
    first = np.array([unit(emb[models[m][0]] - mean) @ unit(emb[t] - mean) for m, t, _ in trials])
    normed = np.array([unit(np.mean([unit(emb[u] - mean) for u in models[m]], axis=0)) @ unit(emb[t] - mean)
                       for m, t, _ in trials])
    assert np.max(np.abs(cos - first)) > 1e-3 and np.max(np.abs(cos - normed)) > 1e-4

    # QMF's durations of a model: the sum of its utterances'
    utt2dur = {k: float(v) for k, v in read_scp(evl / "utt2dur").items()}
    model_dur = {k: float(v) for k, v in read_scp(exp / "embeddings/cnceleb1_eval/enroll/utt2dur").items()}
    assert model_dur.keys() == models.keys()
    assert all(abs(model_dur[m] - sum(utt2dur[u] for u in utts)) < 1e-3 for m, utts in models.items())
