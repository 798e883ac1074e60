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
    if argv and re.match(r"[A-Za-z_]\w*=", argv[0]):  # a job range, as Kaldi reads VAR=... in that place
        m = re.fullmatch(r"([A-Za-z_]\w*)=(\d+)(?::(\d+))?", argv[0])
        if not m:
            sys.exit(f"{prog}: bad job range {argv[0]!r}: expected VAR=first:last with whole numbers >= 0\n{usage}")
        var, first = m.group(1), int(m.group(2))
        last = int(m.group(3)) if m.group(3) else first
        argv = argv[1:]
        if last < first:
            sys.exit(f"{prog}: empty job range {first}:{last}")
    if len(argv) < 2:
        sys.exit(f"{prog}: need a log file and a command\n{usage}")
    if last > first and not re.search(rf"\b{var}\b", argv[0]):
        sys.exit(f"{prog}: the log file {argv[0]!r} lacks {var}, so the {last - first + 1} jobs would write one log")
    return options, var, first, last, argv[0], argv[1:]


def max_jobs_run(value, prog):
    """--max-jobs-run's value: a whole number >= 0 (0: no limit)."""
    if not re.fullmatch(r"\d+", value):
        sys.exit(f"{prog}: --max-jobs-run must be a whole number >= 0, got {value!r}")
    return int(value)


# Words that are shell syntax by themselves pass raw, as Kaldi's `\|` does, so `cmd a \| cmd b` still pipes.
SHELL_OPERATORS = {"|", "||", "&&", ";", "<", ">", ">>", "2>", "2>&1", "&>"}


def quote(arg):
    # Every other word is one argument, whatever it holds: an override like `optim.no_decay=[bias|norm]` or an
    # exp dir named `a;b` must reach the command as it is, never run as shell syntax.
    return arg if arg in SHELL_OPERATORS else shlex.quote(arg)


def substitute(text, var, job):
    return text if var is None else re.sub(rf"\b{var}\b", str(job), text)
