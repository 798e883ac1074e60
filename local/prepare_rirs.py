#!/usr/bin/env python3
"""Prepare the RIRS_NOISES room impulse responses (OpenSLR 28) as one data dir for reverberation.

RIRS_ROOT is the RIRS_NOISES/ folder (as rirs_noises.zip extracts) or the folder holding it:
  RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,largeroom}/RoomNNN/RoomNNN-NNNNN.wav, with a rir_list
  RIRS_NOISES/real_rirs_isotropic_noises/*.wav, with a rir_list (the folder also holds the isotropic noises)
By default the simulated small and medium rooms are taken, as in Kaldi's VoxCeleb recipe; --large adds
the large rooms and --real the real RIRs.

Writes DATA_DIR/rirs: wav.scp (absolute paths) utt2spk spk2utt utt2dur.
Keys: a simulated RIR is <room type>-<room>-<number> (smallroom-Room001-00001), a real one its --rir-id.
The "speaker" is the set (smallroom, mediumroom, largeroom or real), so that spk2utt lists each set.

Which files make a set comes from its rir_list, one RIR a line:
  --rir-id ID --room-id ROOM [--receiver-position-id X] [--source-position-id X] [--rt-60 X] [--drr X] LOCATION
with LOCATION relative to the folder holding RIRS_NOISES/; a malformed line or a missing file is an error
naming rir_list:line. A simulated set without rir_list is scanned instead (RoomNNN/*.wav); the real set
needs its rir_list, since a scan would take the noises too.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sv.cli import run_main
from sv.data.table import DataError, iter_lines, where

from corpus_utils import (add_nj_argument, find_dir, read_durations, require_files, scan_files, unique_table,
                          write_corpus_dir)

logger = logging.getLogger("prepare_rirs")

LAYOUT = "RIRS_ROOT/simulated_rirs/{smallroom,mediumroom,largeroom}/RoomNNN/*.wav"
RIR_LIST_OPTIONS = {"--rir-id", "--room-id", "--receiver-position-id", "--source-position-id", "--rt-60", "--drr"}


def resolve_location(location: str, rirs_dir: Path) -> Path:
    """The lists name files RIRS_NOISES/...: resolving that against rirs_dir works whatever the folder is called."""
    parts = Path(location).parts
    return rirs_dir.joinpath(*parts[1:]) if parts[:1] == ("RIRS_NOISES",) else rirs_dir.parent / location


def read_rir_list(path: Path, rirs_dir: Path) -> list[tuple[str, Path]]:
    """(rir id, absolute file) of each line of a Kaldi rir_list."""
    rirs: list[tuple[str, Path]] = []
    for lineno, line in iter_lines(path):
        fields = line.split()
        options: dict[str, str] = {}
        while len(fields) > 1 and fields[0].startswith("--"):
            if fields[0] not in RIR_LIST_OPTIONS:
                raise DataError(f"{where(path, lineno)}: unknown option {fields[0]!r}")
            options[fields[0]] = fields[1]
            fields = fields[2:]
        if "--rir-id" not in options or "--room-id" not in options or len(fields) != 1:
            raise DataError(f"{where(path, lineno)}: expected '--rir-id ID --room-id ROOM [options] LOCATION', "
                            f"got {line!r}")
        location = resolve_location(fields[0], rirs_dir)
        if not location.is_file():
            raise DataError(f"{where(path, lineno)}: {location}: no such file")
        rirs.append((options["--rir-id"], location.absolute()))
    return rirs


def simulated_set(rirs_dir: Path, room: str) -> dict[str, str]:
    """key -> file of one simulated room type, from its rir_list when there is one."""
    room_dir = rirs_dir / "simulated_rirs" / room
    rir_list = room_dir / "rir_list"
    if rir_list.is_file():
        files = [f for _, f in read_rir_list(rir_list, rirs_dir)]
    else:
        logger.info("%s not found: scanning %s", rir_list, room_dir)
        files = scan_files(room_dir, 2, [".wav"], f"scanning {room}")
    require_files(files, room_dir, LAYOUT)
    return unique_table(((f"{room}-{f.stem}", str(f)) for f in files), f"{room} RIR")


def real_set(rirs_dir: Path) -> dict[str, str]:
    rir_list = rirs_dir / "real_rirs_isotropic_noises" / "rir_list"
    return unique_table(((rir_id, str(f)) for rir_id, f in read_rir_list(rir_list, rirs_dir)), "real RIR id")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, metavar="RIRS_ROOT",
                        help="the RIRS_NOISES/ folder, or the folder holding it")
    parser.add_argument("data", type=Path, metavar="DATA_DIR", help="rirs is written here")
    parser.add_argument("--large", action="store_true", help="add the simulated large rooms")
    parser.add_argument("--real", action="store_true", help="add the real RIRs of real_rirs_isotropic_noises/")
    add_nj_argument(parser)
    args = parser.parse_args(argv)

    rirs_dir = find_dir(args.root, ["RIRS_NOISES"], LAYOUT)
    sets = {room: simulated_set(rirs_dir, room)
            for room in ["smallroom", "mediumroom"] + (["largeroom"] if args.large else [])}
    if args.real:
        sets["real"] = real_set(rirs_dir)
    wav_scp = unique_table(((k, v) for table in sets.values() for k, v in table.items()), "RIR key")
    utt2spk = {key: name for name, table in sets.items() for key in table}
    write_corpus_dir(args.data / "rirs", wav_scp, utt2spk, read_durations(wav_scp, args.nj))


if __name__ == "__main__":
    run_main(main)
