#!/usr/bin/env python3
"""Parses the #PBS directives of PBS job scripts as PBS Pro's qsub reads them (the leading
comment block, before the first command) and checks each against the option grammar: job name,
select chunks (ncpus, mpiprocs, ompthreads, mem), walltime, join, rerunnable, array range.
Also checks that mpiprocs x ompthreads fits ncpus. usage: pbs_directives.py SCRIPT..."""
import re
import shlex
import sys

RESOURCES = {"ncpus", "mpiprocs", "ompthreads", "mem", "ngpus", "host", "vnode"}


def check(path):
    errs, seen = [], {}
    lines = open(path).read().splitlines()
    for n, line in enumerate(lines, 1):
        if n == 1 and line.startswith("#!"):
            continue
        s = line.strip()
        if s and not s.startswith("#"):
            break  # qsub stops reading directives at the first command
        if not s.startswith("#PBS"):
            continue
        words = shlex.split(s[4:])
        if len(words) != 2 or not words[0].startswith("-"):
            errs.append(f"{path}:{n}: expected '#PBS -X value', got {s!r}")
            continue
        opt, val = words
        where = f"{path}:{n}: {opt} {val}"
        if opt == "-N":
            if not re.fullmatch(r"[A-Za-z][\w.-]{0,235}", val):
                errs.append(f"{where}: job name must start with a letter, word characters only")
        elif opt == "-l":
            key, _, v = val.partition("=")
            if key == "walltime":
                if not re.fullmatch(r"\d+:[0-5]\d:[0-5]\d", v):
                    errs.append(f"{where}: walltime must be HH:MM:SS")
            elif key == "select":
                chunks = v.split("+")
                for c in chunks:
                    parts = c.split(":")
                    if not parts[0].isdigit():
                        errs.append(f"{where}: a select chunk starts with its count")
                    res = {}
                    for p in parts[1:]:
                        k, eq, x = p.partition("=")
                        if not eq or k not in RESOURCES:
                            errs.append(f"{where}: unknown chunk resource {p!r}")
                        res[k] = x
                    try:
                        ncpus = int(res.get("ncpus", "1"))
                        mpi = int(res.get("mpiprocs", "1"))
                        omp = int(res.get("ompthreads", str(max(ncpus // mpi, 1))))
                        if mpi * omp > ncpus:
                            errs.append(f"{where}: mpiprocs x ompthreads = {mpi * omp} > ncpus {ncpus}")
                    except ValueError:
                        errs.append(f"{where}: ncpus/mpiprocs/ompthreads must be integers")
                seen["select"] = True
            elif key == "nodes":
                if not re.fullmatch(r"\d+(:ppn=\d+)?", v):
                    errs.append(f"{where}: Torque nodes=N[:ppn=M]")
                seen["select"] = True
            else:
                errs.append(f"{where}: resource {key!r} not used by monosem's scripts")
        elif opt == "-j":
            if val not in ("oe", "eo", "n"):
                errs.append(f"{where}: -j takes oe, eo or n")
        elif opt == "-r":
            if val not in ("y", "n"):
                errs.append(f"{where}: -r takes y or n")
        elif opt in ("-J", "-t"):
            m = re.fullmatch(r"(\d+)-(\d+)(:\d+)?", val)
            if not m or int(m.group(1)) > int(m.group(2)):
                errs.append(f"{where}: array range must be a-b[:step] with a <= b")
        elif opt in ("-o", "-e", "-q", "-A", "-m", "-M", "-W"):
            pass
        else:
            errs.append(f"{where}: option not in PBS Pro's qsub")
        seen[opt] = True
    for need in ("-N", "select"):
        if need not in seen:
            errs.append(f"{path}: no {need} directive")
    return errs


errs = [e for p in sys.argv[1:] for e in check(p)]
for e in errs:
    print("FAIL:", e)
print(f"pbs_directives: {len(sys.argv) - 1} script(s), {len(errs)} problem(s)")
sys.exit(1 if errs else 0)
