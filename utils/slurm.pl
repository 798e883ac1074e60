#!/usr/bin/env python3
"""Kaldi-style SLURM job runner: the interface and log format of utils/run.pl, run as one job array.

  utils/slurm.pl [--mem 4G] [--gpu N] [--num-threads N] [--time T] [--nodes N] [--max-jobs-run N]
                 [--config conf/slurm.conf] [JOB=1:N] log/name.JOB.log command args...

Submits ONE `sbatch` job array (--array=1-N, with %M for --max-jobs-run M). Task J runs the command
with every `JOB` in the log path and arguments replaced by J (exactly as run.pl does) and writes its
own log: `# <command>`, `# Started at`, the output, `# Accounting: ...`, `# Ended (code C) at`.
The generated batch script and sbatch's own output go to <logdir>/q/ (name.sh, name-<J>.out).
slurm.pl waits for the array (polling squeue, so no accounting database is needed), reads each
task's exit code from its log footer (a task with no footer was killed or never ran: it counts as
failed) and exits 1 listing the failed tasks and their logs. Ctrl-C / SIGTERM cancels the array
(scancel). Standard library only. The environment is exported to the tasks (sbatch --export=ALL),
and tasks run in the current directory, so the cluster must share it.

Options are mapped to sbatch flags by a config (--config FILE; built-in default below). Lines:
  command <sbatch command and fixed flags>   e.g. command sbatch --export=ALL -p cpu
  option <name>=* <flags>        flags for --<name> V, with $0 replaced by V
  option <name>=<value> <flags>  flags for exactly that value (wins over =*; no flags: add nothing)
  default <name>=<value>         value used when --<name> is not given
Option names use `_` where the command line uses `-` (--num-threads -> num_threads). Any name a
config defines becomes an accepted option (e.g. `option partition=* -p $0`); others are errors.
# comments and blank lines are ignored. The built-in config:
  command sbatch --export=ALL
  option mem=* --mem=$0
  option mem=0
  option gpu=* --gres=gpu:$0
  option gpu=0
  option num_threads=* --cpus-per-task=$0
  option time=* --time=$0
  option nodes=* --nodes=$0
"""
import os
import re
import shlex
import signal
import subprocess
import sys
import time

USAGE = __doc__.split("\n\n")[1]
DEFAULT_CONFIG = __doc__.split("The built-in config:\n")[1]
FOOTER = re.compile(r"# Ended \(code (-?\d+)\)")


def die(msg):
    sys.exit(f"slurm.pl: {msg}")


def read_config(text, source):
    """-> (command words, {name: {value or '*': [flag templates]}}, {name: default value})."""
    command, options, defaults = ["sbatch", "--export=ALL"], {}, {}
    for n, line in enumerate(text.splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        kind, rest = words[0], words[1:]
        if kind == "command" and rest:
            command = rest
        elif kind in ("option", "default") and rest and "=" in rest[0]:
            name, value = rest[0].split("=", 1)
            if kind == "default":
                defaults[name] = value
            else:
                options.setdefault(name, {})[value] = rest[1:]
        else:
            die(f"{source}:{n}: cannot parse config line: {line.strip()}")
    return command, options, defaults


def parse_args(argv):
    opts, config = {}, None
    max_jobs = 0
    while argv and argv[0].startswith("--"):
        opt, _, val = argv[0].partition("=")
        if not val:
            if len(argv) < 2:
                die(f"option {opt} needs a value\n{USAGE}")
            val, argv = argv[1], argv[2:]
        else:
            argv = argv[1:]
        if opt == "--max-jobs-run":
            max_jobs = int(val)
        elif opt == "--config":
            config = val
        else:
            opts[opt[2:].replace("-", "_")] = val
    var, first, last = None, 1, 1
    if argv:
        m = re.fullmatch(r"([A-Za-z_]\w*)=(\d+)(?::(\d+))?", argv[0])
        if m:
            var, first = m.group(1), int(m.group(2))
            last = int(m.group(3)) if m.group(3) else first
            argv = argv[1:]
            if last < first:
                die(f"empty job range {first}:{last}")
    if len(argv) < 2:
        die(f"need a log file and a command\n{USAGE}")
    return opts, config, max_jobs, var, first, last, argv[0], argv[1:]


def sbatch_flags(opts, options, defaults):
    flags = []
    for name in opts:
        if name not in options:
            die(f"unknown option --{name.replace('_', '-')} (not in the config)\n{USAGE}")
    for name, table in options.items():
        value = opts.get(name, defaults.get(name))
        if value is None:
            continue
        if value in table:
            flags += table[value]
        elif "*" in table:
            flags += [f.replace("$0", value) for f in table["*"]]
        else:
            die(f"--{name.replace('_', '-')} {value}: no matching line in the config")
    return flags


def quote(arg):
    # As run.pl (and Kaldi): a word without whitespace goes in raw, anything else is quoted.
    return arg if re.fullmatch(r"\S+", arg) else shlex.quote(arg)


def substitute(text, var, job):
    return text if var is None else re.sub(rf"\b{var}\b", str(job), text)


BATCH_SCRIPT = """#!/usr/bin/env bash
# Generated by utils/slurm.pl: task $SLURM_ARRAY_TASK_ID of the array runs one job and writes its log.
cd {cwd}
case "$SLURM_ARRAY_TASK_ID" in
{cases}
  *) echo "slurm.pl: no job $SLURM_ARRAY_TASK_ID in this array" >&2; exit 1 ;;
esac
stamp() {{ date '+%a %b %e %H:%M:%S %Y'; }}
mkdir -p "$(dirname "$log")"
printf '# %s\\n# Started at %s\\n#\\n' "$cmd" "$(stamp)" > "$log"
echo "# Running on $(hostname) as SLURM job ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}" >> "$log"
t0=$SECONDS
bash -c "$cmd" >> "$log" 2>&1 < /dev/null
rc=$?
echo "# Accounting: time=$((SECONDS - t0)) threads=${{SLURM_CPUS_PER_TASK:-1}}" >> "$log"
echo "# Ended (code $rc) at $(stamp)" >> "$log"
exit $rc
"""


def write_script(path, cmd_tmpl, log_tmpl, var, first, last):
    cases = []
    for job in range(first, last + 1):
        log = os.path.abspath(substitute(log_tmpl, var, job))
        cmd = substitute(cmd_tmpl, var, job)
        cases.append(f"  {job}) log={shlex.quote(log)}\n     cmd={shlex.quote(cmd)} ;;")
    with open(path, "w") as f:
        f.write(BATCH_SCRIPT.format(cwd=shlex.quote(os.getcwd()), cases="\n".join(cases)))
    os.chmod(path, 0o755)


def job_active(job_id):
    """True while squeue lists any task of the array as not yet finished."""
    for attempt in range(10):
        proc = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "PD,R,CG,CF,S,RQ,RS,SO,ST",
                               "-o", "%i"], capture_output=True, text=True)
        if proc.returncode == 0:
            return bool(proc.stdout.strip())
        if "Invalid job id" in proc.stderr:  # finished and already purged
            return False
        time.sleep(min(2 ** attempt, 30))  # controller busy or restarting: retry
    die(f"squeue keeps failing for job {job_id}: {proc.stderr.strip()}")


def exit_code(log):
    try:
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    m = FOOTER.match(lines[-1]) if lines else None
    return int(m.group(1)) if m else None


def main(argv):
    opts, config, max_jobs, var, first, last, log_tmpl, cmd_words = parse_args(argv)
    if config:
        try:
            with open(config) as f:
                command, options, defaults = read_config(f.read(), config)
        except OSError as e:
            die(f"cannot read config: {e}")
    else:
        command, options, defaults = read_config(DEFAULT_CONFIG, "built-in config")
    flags = sbatch_flags(opts, options, defaults)

    cmd_tmpl = " ".join(quote(w) for w in cmd_words)
    log_dir = os.path.dirname(log_tmpl) or "."
    name = os.path.basename(log_tmpl)
    name = re.sub(r"\.log$", "", re.sub(rf"\.?\b{var}\b", "", name) if var else name) or "job"
    q_dir = os.path.join(log_dir, "q")
    os.makedirs(q_dir, exist_ok=True)
    script = os.path.join(q_dir, f"{name}.sh")
    write_script(script, cmd_tmpl, log_tmpl, var, first, last)
    logs = {job: substitute(log_tmpl, var, job) for job in range(first, last + 1)}
    for log in logs.values():  # a stale footer from an earlier run must not count as a result
        if os.path.exists(log):
            os.remove(log)

    array = f"{first}-{last}" + (f"%{max_jobs}" if max_jobs > 0 else "")
    sbatch = [*command, *flags, "--parsable", f"--array={array}", f"--job-name={name}",
              f"--output={os.path.abspath(q_dir)}/{name}-%a.out", script]
    proc = subprocess.run(sbatch, capture_output=True, text=True)
    if proc.returncode != 0:
        die(f"sbatch failed ({proc.returncode}): {shlex.join(sbatch)}\n{proc.stderr.strip()}")
    job_id = proc.stdout.strip().split(";")[0]

    def cancel(signum, _frame):
        subprocess.run(["scancel", job_id])
        die(f"interrupted (signal {signum}); cancelled SLURM job array {job_id}")

    signal.signal(signal.SIGINT, cancel)
    signal.signal(signal.SIGTERM, cancel)
    t0 = time.time()
    while job_active(job_id):
        time.sleep(min(1 + (time.time() - t0) / 30, 10))
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    failed = []
    deadline = time.time() + 10  # a shared filesystem may show the last footers a little late
    for job, log in logs.items():
        code = exit_code(log)
        while code is None and time.time() < deadline:
            time.sleep(0.5)
            code = exit_code(log)
        if code != 0:
            failed.append((job, log, "no footer: killed or never ran, see "
                           f"{q_dir}/{name}-{job}.out" if code is None else code))
    if failed:
        lines = [f"slurm.pl: {len(failed)} / {len(logs)} job(s) failed (SLURM job {job_id}):"]
        lines += [f"  job {job} (exit {code}): see {log}" for job, log, code in failed]
        sys.exit("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
