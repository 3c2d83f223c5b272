#!/usr/bin/env python3
"""Reads the memcheck logs of `make valgrind` and fails on any leak or memory error that
involves the module after its load. One-off allocations made while the module loads (the
setting registrations the server owns until it unloads the module) are reported apart.

usage: valgrind-report.py LOG_DIR
"""
import glob
import re
import sys

LOAD_FRAMES = ("crm_meetings::module::init", "RedisModule_OnLoad", "moduleLoad")
ERRORS = ("Invalid read", "Invalid write", "Invalid free", "uninitialised", "Conditional jump",
          "Mismatched free", "overlap")


def main(log_dir):
    logs = sorted(glob.glob(f"{log_dir}/valgrind-*.log"))
    runs = load_bytes = 0
    bad = []
    for log in logs:
        text = open(log, encoding="utf-8", errors="replace").read()
        if "LEAK SUMMARY" not in text and "All heap blocks were freed" not in text:
            continue  # a server killed on purpose (crash tests): no report
        runs += 1
        for record in re.split(r"\n==\d+== \n", text):
            if "crm_meetings" not in record or "Command:" in record:
                continue
            headline = record.strip().splitlines()[0]
            is_leak = "definitely lost" in headline
            is_error = any(word in headline for word in ERRORS)
            if is_leak and any(frame in record for frame in LOAD_FRAMES):
                match = re.search(r"([\d,]+) (?:\(|bytes)", headline)
                load_bytes += int(match.group(1).replace(",", "")) if match else 0
            elif is_leak or is_error:
                bad.append(f"{log}:\n{record}")
    for record in bad:
        print(record, "\n")
    print(f"valgrind: {runs} server runs with a leak report; {len(bad)} leaks or memory errors "
          f"from the module's commands; {load_bytes} bytes kept from module load (one-off)")
    return 1 if bad or runs == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
