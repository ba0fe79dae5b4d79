//! Timing shared by the benchmarks (a folder, so Cargo does not take it for a bench).

use std::time::{Duration, Instant};

/// The shortest of `n` runs of `f`: the run least disturbed by the rest of a shared machine.
pub fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
