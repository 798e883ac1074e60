"""What utils/run.pl and utils/slurm.pl share: their command line and the JOB substitution.

  [--opt value | --opt=value ...] [VAR=first[:last]] log/x.VAR.log command args...
"""
import re
import shlex
import sys


def parse(argv, prog, usage):
    """([(option, value), ...], var, first, last, log, command words); exits with a message on misuse."""
    options = []
    while argv and argv[0].startswith("--"):
        opt, _, val = argv[0].partition("=")
        if not val:
            if len(argv) < 2:
                sys.exit(f"{prog}: option {opt} needs a value\n{usage}")
            val, argv = argv[1], argv[2:]
        else:
            argv = argv[1:]
        options.append((opt, val))
    var, first, last = None, 1, 1
    if argv:
        m = re.fullmatch(r"([A-Za-z_]\w*)=(\d+)(?::(\d+))?", argv[0])
        if m:
            var, first = m.group(1), int(m.group(2))
            last = int(m.group(3)) if m.group(3) else first
            argv = argv[1:]
            if last < first:
                sys.exit(f"{prog}: empty job range {first}:{last}")
    if len(argv) < 2:
        sys.exit(f"{prog}: need a log file and a command\n{usage}")
    return options, var, first, last, argv[0], argv[1:]


def quote(arg):
    # As Kaldi: a word without whitespace goes in raw (so `\|` and `">"` act as shell syntax),
    # anything else is quoted as one argument.
    return arg if re.fullmatch(r"\S+", arg) else shlex.quote(arg)


def substitute(text, var, job):
    return text if var is None else re.sub(rf"\b{var}\b", str(job), text)
