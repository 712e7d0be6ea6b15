#!/usr/bin/env python3
"""Stack frames of the functions of a Cortex-M ELF, read from its disassembly (llvm-objdump
from rustup's llvm-tools): per function, the bytes its prologue pushes (push / vpush) plus
every `sub sp` it makes. Exact for the fixed-size frames rustc emits; a function with
several `sub sp` (e.g. shrink-wrapped paths) is counted with all of them (an upper bound).

  tools/frames.py ELF                 the 25 largest frames
  tools/frames.py ELF --top N         the N largest
  tools/frames.py ELF --frame NAME    the frame of the function whose demangled name is NAME
                                      or ends with ::NAME (hash ignored); prints one number
  tools/frames.py ELF --max BYTES     exit 1 (and list them) if a frame exceeds BYTES
"""
import argparse
import glob
import re
import subprocess
import sys


def objdump():
    sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    found = glob.glob(sysroot + "/lib/rustlib/*/bin/llvm-objdump")
    if not found:
        sys.exit("llvm-objdump missing: rustup component add llvm-tools")
    return found[0]


def frames(elf):
    out = subprocess.check_output([objdump(), "-d", "--no-show-raw-insn", "-C", elf], text=True)
    sizes = {}
    fn = None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            fn = re.sub(r"::h[0-9a-f]{16}$", "", m.group(1))
            sizes.setdefault(fn, 0)
            continue
        if fn is None:
            continue
        m = re.search(r"\t(v?push)(?:\.w)?\t\{([^}]*)\}", line)
        if m:
            regs = 0
            for part in m.group(2).split(","):
                part = part.strip()
                r = re.match(r"([a-z]+)(\d+)-[a-z]+(\d+)", part)
                regs += int(r.group(3)) - int(r.group(2)) + 1 if r else 1
            sizes[fn] += regs * (8 if m.group(1) == "vpush" and "d" in m.group(2) else 4)
            continue
        m = re.search(r"\tsub(?:\.w|w)?\tsp, (?:sp, )?#(0x[0-9a-f]+|\d+)", line)
        if m:
            sizes[fn] += int(m.group(1), 0)
    return sizes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("elf")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--frame")
    ap.add_argument("--max", type=int)
    a = ap.parse_args()
    sizes = frames(a.elf)
    if a.frame:
        hits = [v for k, v in sizes.items() if k == a.frame or k.endswith("::" + a.frame)]
        if len(hits) != 1:
            sys.exit(f"{a.frame}: {len(hits)} functions match")
        print(hits[0])
        return
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])
    if a.max is not None:
        over = [(k, v) for k, v in ranked if v > a.max]
        for k, v in over:
            print(f"{v:7d} {k}")
        sys.exit(1 if over else 0)
    for k, v in ranked[: a.top]:
        print(f"{v:7d} {k}")


if __name__ == "__main__":
    main()
