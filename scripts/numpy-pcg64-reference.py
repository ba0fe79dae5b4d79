#!/usr/bin/env python3
"""Prints the numpy reference values that src/base/rng/numpy.rs's tests hold as constants.

AIPerf 0.13.0 draws each AgentX lane's sampling instant with
`np.random.default_rng(seed).uniform(lo, hi)`, the seed being the first 8 bytes (big-endian) of
sha256("{seed}:{trace_id}:{lane}") (`timing/trajectory_source.py`). kvsweep reproduces that in
Rust; this script regenerates the expected numbers (any numpy >= 1.17: PCG64 and SeedSequence
have not changed since). Run: python3 scripts/numpy-pcg64-reference.py
"""
import hashlib

import numpy as np


def lane_seed(base, trace, lane):
    return int.from_bytes(hashlib.sha256(f"{base}:{trace}:{lane}".encode()).digest()[:8], "big")


for seed in (0, 42, 2**64 - 1):
    state = np.random.SeedSequence(seed).generate_state(4, np.uint64)
    raw = np.random.PCG64(seed).random_raw(3)
    print(f"seed {seed}: state {[hex(int(w)) for w in state]} raw {[hex(int(r)) for r in raw]}")
for trace, lane in (("trace_0012", 0), ("trace_0277", 3)):
    s = lane_seed(42, trace, lane)
    u = np.random.default_rng(s).uniform(1000.0, 5000.0)
    print(f"lane seed 42:{trace}:{lane} = {s}; uniform(1000, 5000) = {u!r}")
