#!/usr/bin/env python3
"""Reference for the InferenceX agentic workflow's matrix generator, for kvsweep's tests.

Written from the InferenceX workflow's documented behaviour (its sweep pipeline notes): pick the
entry (by key, else the only entry, else the file itself when every key starts with "tp"), then
for each tpN key in order, for each user count, for each offload mode (default ["on", "off"]),
emit {"tp", "users", "offload"} plus "ep" when > 0. kvsweep adds "name" (and "runner" when given).

Usage: inferencex_matrix.py SPEC [KEY]   prints {"include": [...]} as JSON, or exits 1 on error.
"""
import json
import sys
import time

import yaml


def select(config, key):
    if key:
        if key not in config:
            raise SystemExit(f"config_key '{key}' not found. Available: {list(config)}")
        return config[key]
    if len(config) == 1:
        return next(iter(config.values()))
    if all(k.startswith("tp") for k in config):
        return config
    raise SystemExit(f"Multiple entries, specify a key. Available: {list(config)}")


def expand(entry):
    cells = []
    for tp_key, settings in entry.items():
        tp = int(tp_key.replace("tp", ""))
        ep = settings.get("ep", 0)
        for users in settings.get("users", []):
            for offload in settings.get("offload", ["on", "off"]):
                cell = {"tp": tp, "users": users, "offload": offload}
                if ep > 0:
                    cell["ep"] = ep
                cell["name"] = f"multiturn_tp{tp}_users{users}_offload{offload}"
                cells.append(cell)
    return cells


def main():
    path = sys.argv[1]
    key = sys.argv[2] if len(sys.argv) > 2 else ""
    start = time.perf_counter()
    with open(path) as f:
        config = yaml.safe_load(f)
    cells = expand(select(config, key))
    elapsed = time.perf_counter() - start
    print(json.dumps({"include": cells}))
    print(f"elapsed_ms={elapsed * 1000:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
