#!/usr/bin/env python3
"""Prepare the VoxCeleb1 data dirs and convert the official trial lists.

VOX1_ROOT is the folder that the official vox1_dev_wav.zip and vox1_test_wav.zip were both extracted
into, so that it holds wav/idXXXXX/<video>/NNNNN.wav; the wav/ folder itself may be given instead.

Writes (wav.scp utt2spk spk2utt utt2dur each, wav.scp with absolute paths):
  DATA_DIR/vox1       every utterance found (dev + test)
  DATA_DIR/vox1_test  the official test speakers id10270..id10309
  DATA_DIR/vox1_dev   every other speaker (the training set)
Utterance keys are idXXXXX/<video>/NNNNN.wav, exactly as the official trial lists spell them, so the
lists need no rewriting; the speaker is idXXXXX.

Trials: each official list found in the folder holding wav/ (or in --trials-dir, or given with --trials)
becomes DATA_DIR/vox1/trials/NAME.kaldi (`enroll test target|nontarget`):
  veri_test2.txt -> vox1_O_cleaned   list_test_all2.txt -> vox1_E_cleaned   list_test_hard2.txt -> vox1_H_cleaned
  veri_test.txt  -> vox1_O           list_test_all.txt  -> vox1_E           list_test_hard.txt  -> vox1_H
A --trials file with another name keeps its stem. Lists that are absent are skipped. vox1_O*.kaldi are
also written to DATA_DIR/vox1_test/trials/. A trial naming an utterance that was not found is an error
naming LIST:line. All inputs are checked before anything is written.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sv.cli import run_main
from sv.data.table import DataError

from corpus_utils import add_nj_argument, find_dir, read_durations, require_files, scan_files, write_corpus_dir
from prepare_trials import Trial, check_trial_keys, read_trial_list, write_kaldi_trials

logger = logging.getLogger("prepare_voxceleb1")

LAYOUT = "VOX1_ROOT/wav/idXXXXX/<video>/NNNNN.wav"
TEST_SPEAKERS = range(10270, 10310)  # the official VoxCeleb1 test split, id10270..id10309
OFFICIAL_LISTS = {
    "veri_test2.txt": "vox1_O_cleaned",
    "list_test_all2.txt": "vox1_E_cleaned",
    "list_test_hard2.txt": "vox1_H_cleaned",
    "veri_test.txt": "vox1_O",
    "list_test_all.txt": "vox1_E",
    "list_test_hard.txt": "vox1_H",
}


def is_test_speaker(spk: str) -> bool:
    return spk.startswith("id") and spk[2:].isdigit() and int(spk[2:]) in TEST_SPEAKERS


def scan_corpus(root: Path) -> tuple[dict[str, str], Path]:
    """wav.scp of every utterance, and the folder holding wav/ (where the official lists usually sit)."""
    wav_dir = find_dir(root, ["wav"], LAYOUT)
    files = scan_files(wav_dir, 3, [".wav"], "scanning VoxCeleb1 speakers")
    require_files(files, wav_dir, LAYOUT)
    return {"/".join(f.parts[-3:]): str(f) for f in files}, wav_dir.parent


def trial_sources(trials: list[Path] | None, trials_dir: Path | None, corpus_dir: Path) -> dict[str, Path]:
    """Output name -> list file, for each list to convert."""
    if trials:
        sources: dict[str, Path] = {}
        for path in trials:
            name = OFFICIAL_LISTS.get(path.name, path.stem)
            if name in sources:
                raise DataError(f"--trials: {sources[name]} and {path} would both be written as {name}.kaldi")
            sources[name] = path
        return sources
    search = trials_dir if trials_dir is not None else corpus_dir
    if not search.is_dir():
        raise DataError(f"{search}: no such directory (--trials-dir)")
    sources = {}
    for fname, name in OFFICIAL_LISTS.items():
        if (search / fname).is_file():
            sources[name] = search / fname
        else:
            logger.info("%s not found: skipping %s", search / fname, name)
    return sources


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, metavar="VOX1_ROOT", help="folder holding wav/ (or wav/ itself)")
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="where vox1, vox1_test and vox1_dev are written")
    lists_from = parser.add_mutually_exclusive_group()
    lists_from.add_argument("--trials-dir", type=Path, metavar="DIR",
                       help="look for the official lists here instead of beside wav/")
    lists_from.add_argument("--trials", type=Path, nargs="+", metavar="FILE", help="convert exactly these lists")
    add_nj_argument(parser)
    args = parser.parse_args(argv)

    wav_scp, corpus_dir = scan_corpus(args.root)
    utt2spk = {utt: utt.split("/")[0] for utt in wav_scp}
    test_utts = {utt for utt, spk in utt2spk.items() if is_test_speaker(spk)}

    lists: dict[str, tuple[Path, list[Trial]]] = {}
    for name, path in trial_sources(args.trials, args.trials_dir, corpus_dir).items():
        trials = read_trial_list(path)
        ref = "the VoxCeleb1 test speakers" if name.startswith("vox1_O") else "VoxCeleb1"
        keys = test_utts if name.startswith("vox1_O") else utt2spk
        check_trial_keys(trials, path, keys, keys, f"{ref} found under {corpus_dir}")
        lists[name] = (path, trials)

    utt2dur = read_durations(wav_scp, args.nj)

    subsets = {"vox1": set(wav_scp), "vox1_test": test_utts, "vox1_dev": set(wav_scp) - test_utts}
    for name, utts in subsets.items():
        if not utts:
            logger.warning("no %s utterances under %s: %s not written", name, corpus_dir, args.data / name)
            continue
        write_corpus_dir(args.data / name, {u: wav_scp[u] for u in utts}, {u: utt2spk[u] for u in utts},
                         {u: utt2dur[u] for u in utts})
    for name, (path, trials) in lists.items():
        logger.info("converting %s", path)
        write_kaldi_trials(args.data / "vox1" / "trials" / f"{name}.kaldi", trials)
        if name.startswith("vox1_O"):
            write_kaldi_trials(args.data / "vox1_test" / "trials" / f"{name}.kaldi", trials)


if __name__ == "__main__":
    run_main(main)
