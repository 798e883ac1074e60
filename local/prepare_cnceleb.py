#!/usr/bin/env python3
"""Prepare CN-Celeb: the training set (CN-Celeb1 dev + CN-Celeb2) and the CN-Celeb1 evaluation set.

CNCELEB1_ROOT is CN-Celeb_flac/ (or its data/ folder), as cn-celeb_v2.tar.gz extracts:
  data/idXXXXX/<genre>-NN-NNN.flac   every CN-Celeb1 utterance
  dev/dev.lst                        the training speakers, one a line
  eval/test/idXXXXX-<genre>-NN-NNN.flac
  eval/enroll/idXXXXX-enroll.flac    each enrollment model's segments concatenated
  eval/lists/enroll.map              model id, then its segments in data/: id00800-enroll id00800/singing-01-001.wav ...
  eval/lists/enroll.lst              model id, then its concatenated file: id00800-enroll enroll/id00800-enroll.wav
  eval/lists/trials.lst              id00800-enroll test/id00800-singing-01-005.wav 1
CNCELEB2_ROOT is CN-Celeb2_flac/ (or its data/ folder), holding data/idXXXXX/*.flac. Audio may be .flac
or .wav, and the lists may name .wav files where .flac ones exist: extensions are ignored when matching.

Writes (wav.scp utt2spk spk2utt utt2dur each, wav.scp with absolute paths):
  DATA_DIR/cnceleb_train  the CN-Celeb1 speakers of dev.lst and every CN-Celeb2 speaker;
                          key idXXXXX/<file name without extension>, speaker idXXXXX
  DATA_DIR/cnceleb1_eval  the test utterances, key test/<file name without extension>, speaker idXXXXX;
                          and the enrollment utterances, whose speaker is their model id (id00800-enroll),
                          so that spk2utt gives each model's utterances apart from the test speaker's.
      enroll.map                  model id -> its utterance keys, one model a line (the same as its spk2utt line)
      trials/CNC-Eval-Core.kaldi  trials.lst as `id00800-enroll test/id00800-singing-01-005 target|nontarget`;
                                  the enroll side is a model of enroll.map, whose embeddings are averaged
Keys carry no extension because the releases disagree on it (.wav names in lists, .flac files).
--enroll picks the enrollment utterances:
  segments (default)  the segments that enroll.map lists, keys idXXXXX/<genre>-NN-NNN (as in cnceleb_train)
  concat              the concatenated file of enroll.lst, key enroll/id00800-enroll, one per model
Every input is checked before anything is written; a bad list line is an error naming LIST:line.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path, PurePosixPath

from sv.cli import run_main
from sv.data.table import DataError, iter_lines, where, write_spk2utt

from corpus_utils import (add_nj_argument, read_durations, require_files, scan_files, unique_table,
                          write_corpus_dir)
from prepare_trials import check_trial_keys, read_trial_list, write_kaldi_trials

logger = logging.getLogger("prepare_cnceleb")

LAYOUT1 = "CNCELEB1_ROOT/data/idXXXXX/*.flac with dev/dev.lst and eval/"
LAYOUT2 = "CNCELEB2_ROOT/data/idXXXXX/*.flac"
AUDIO = (".flac", ".wav")


def corpus_root(root: Path, layout: str) -> Path:
    """The folder holding data/, whether root is that folder or data/ itself."""
    base = root.parent if root.name == "data" else root
    if not (base / "data").is_dir():
        raise DataError(f"{root}: no data/ folder here (expected {layout})")
    return base.absolute()


def drop_audio_ext(name: str) -> str:
    path = PurePosixPath(name)
    return str(path.with_suffix("")) if path.suffix.lower() in AUDIO else name


def find_audio(folder: Path, key: str) -> Path | None:
    """folder/key with whichever audio extension exists."""
    return next((p for p in (folder / f"{key}{ext}" for ext in AUDIO) if p.is_file()), None)


def speaker_files(data_dir: Path, desc: str) -> dict[str, str]:
    """key idXXXXX/<name> -> file, for every data/idXXXXX/<name>.flac|wav."""
    files = scan_files(data_dir, 2, AUDIO, desc)
    return unique_table(((f"{f.parent.name}/{f.stem}", str(f)) for f in files), "utterance")


def dev_speakers(base: Path) -> set[str]:
    path = base / "dev" / "dev.lst"
    speakers: set[str] = set()
    for lineno, line in iter_lines(path):
        spk = line.split()[0]
        if not (base / "data" / spk).is_dir():
            raise DataError(f"{where(path, lineno)}: speaker {spk!r} has no folder {base / 'data' / spk}")
        speakers.add(spk)
    return speakers


def read_enrollment(base: Path, mode: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(model id -> utterance keys, utterance key -> file) of the enrollment utterances.

    segments: enroll.map lines `model seg.wav ...`, the segments under data/;
    concat: enroll.lst lines `model enroll/model.wav`, the files under eval/.
    """
    path = base / "eval" / "lists" / ("enroll.map" if mode == "segments" else "enroll.lst")
    audio_dir = base / "data" if mode == "segments" else base / "eval"
    models: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    for lineno, line in iter_lines(path):
        model, *entries = line.split()
        if not entries or (mode == "concat" and len(entries) != 1):
            raise DataError(f"{where(path, lineno)}: expected 'MODEL {'FILE...' if mode == 'segments' else 'FILE'}', "
                            f"got {line!r}")
        if model in models:
            raise DataError(f"{where(path, lineno)}: model {model!r} is listed twice")
        models[model] = [drop_audio_ext(e) for e in entries]
        for entry, key in zip(entries, models[model]):
            found = find_audio(audio_dir, key)
            if found is None:
                raise DataError(f"{where(path, lineno)}: {entry}: no {' or '.join(AUDIO)} file "
                                f"{audio_dir / key}.*")
            if key in files:
                raise DataError(f"{where(path, lineno)}: {entry} is also enrolled by another model")
            files[key] = str(found)
    if not models:
        raise DataError(f"{path}: no enrollment models")
    return models, files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cnceleb1", type=Path, metavar="CNCELEB1_ROOT", help="CN-Celeb_flac/ (or its data/)")
    parser.add_argument("cnceleb2", type=Path, metavar="CNCELEB2_ROOT", help="CN-Celeb2_flac/ (or its data/)")
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="cnceleb_train and cnceleb1_eval are written here")
    parser.add_argument("--enroll", choices=("segments", "concat"), default="segments",
                        help="enrollment utterances: the segments of enroll.map, or the concatenated files of "
                             "enroll.lst (default: %(default)s)")
    add_nj_argument(parser)
    args = parser.parse_args(argv)

    base1 = corpus_root(args.cnceleb1, LAYOUT1)
    base2 = corpus_root(args.cnceleb2, LAYOUT2)
    trials_path = base1 / "eval" / "lists" / "trials.lst"

    dev = dev_speakers(base1)
    cn1 = speaker_files(base1 / "data", "scanning CN-Celeb1 speakers")
    cn2 = speaker_files(base2 / "data", "scanning CN-Celeb2 speakers")
    cn1_dev = {key: path for key, path in cn1.items() if key.split("/")[0] in dev}
    require_files(cn1_dev, base1 / "data", LAYOUT1)
    require_files(cn2, base2 / "data", LAYOUT2)
    train_scp = unique_table([*cn1_dev.items(), *cn2.items()], "training utterance")
    train_utt2spk = {key: key.split("/")[0] for key in train_scp}

    test_files = scan_files(base1 / "eval" / "test", 1, AUDIO, "scanning CN-Celeb1 test")
    require_files(test_files, base1 / "eval" / "test", "CNCELEB1_ROOT/eval/test/idXXXXX-*.flac")
    test_scp = {f"test/{f.stem}": str(f) for f in test_files}
    models, enroll_scp = read_enrollment(base1, args.enroll)
    eval_scp = {**test_scp, **enroll_scp}
    eval_utt2spk = {**{key: key[len("test/"):].split("-")[0] for key in test_scp},
                    **{key: model for model, keys in models.items() for key in keys}}

    trials = [t._replace(test=drop_audio_ext(t.test)) for t in read_trial_list(trials_path, label_first=False)]
    check_trial_keys(trials, trials_path, models, test_scp,
                     f"the enrollment models and test utterances of {base1 / 'eval'}")

    train_dur = read_durations(train_scp, args.nj)
    eval_dur = read_durations(eval_scp, args.nj)

    write_corpus_dir(args.data / "cnceleb_train", train_scp, train_utt2spk, train_dur)
    eval_dir = args.data / "cnceleb1_eval"
    write_corpus_dir(eval_dir, eval_scp, eval_utt2spk, eval_dur)
    write_spk2utt(eval_dir / "enroll.map", models)
    logger.info("wrote %s: %d enrollment models (%s)", eval_dir / "enroll.map", len(models), args.enroll)
    write_kaldi_trials(eval_dir / "trials" / "CNC-Eval-Core.kaldi", trials)


if __name__ == "__main__":
    run_main(main)
