//! Repeated runs of a cell (`repeats: N` in a spec, `--repeats N` on `sweep` and `run-cell`):
//! where each run's artifacts go, and the seed each runs with. Each repeat starts its own engine,
//! so each starts with an empty cache, and replays its own seed (another session order, other
//! prompt content): the repeats sample the workload as reruns would, and collect turns them into
//! a mean, a standard deviation and a 95 % interval per metric that covers both the workload
//! sample and the run-to-run noise. Replaying one seed N times would measure timing jitter only.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::base::rng::mix;
use crate::base::workload::Workload;

/// The seed of repeat `k` (1-based) of a cell whose workload has seed `base`: repeat 1 keeps
/// `base` (a cell run once is its own first repeat), each later one gets a seed mixed from
/// `base` and `k`. Two sweeps with the same base seed run the same set of seeds, so that
/// `compare` sets like against like.
pub fn seed(base: u64, k: u32) -> u64 {
    if k <= 1 {
        base
    } else {
        mix(base ^ u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// `workload` as repeat `k` of `n` runs it: with its own seed when there are several.
pub fn workload(workload: &Workload, k: u32, n: u32) -> Workload {
    let mut w = workload.clone();
    if n > 1
        && let Some(s) = w.seed_mut()
    {
        *s = seed(*s, k);
    }
    w
}

/// The folder of repeat `k` (1-based) of a cell of `n` repeats: the cell's own folder for a
/// single run, `repeat-K/` inside it otherwise (collect finds both, and groups the repeats of
/// one cell folder, see [`cell_of`]).
pub fn dir(cell_dir: &Path, k: u32, n: u32) -> PathBuf {
    if n <= 1 {
        cell_dir.to_path_buf()
    } else {
        cell_dir.join(format!("repeat-{k}"))
    }
}

/// The cell folder a run's folder belongs to: the parent of a `repeat-K/` folder, else the
/// folder itself. Runs of one cell folder are repeats; two folders of the same cell name
/// elsewhere (two sweeps, or two variants of a cell collected together) are not.
pub fn cell_of(run_dir: &Path) -> &Path {
    let is_repeat = run_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("repeat-"))
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
    match (is_repeat, run_dir.parent()) {
        (true, Some(parent)) => parent,
        _ => run_dir,
    }
}

/// The repeats a run asks for: `--repeats` over the spec's `repeats:`; at least 1.
pub(crate) fn resolve(flag: Option<u32>, spec: u32) -> Result<u32> {
    let n = flag.unwrap_or(spec);
    if n == 0 {
        bail!("--repeats must be at least 1");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_keeps_the_cell_folder_and_repeats_go_beneath_it() {
        let cell = Path::new("out/cells/c");
        assert_eq!(dir(cell, 1, 1), cell);
        assert_eq!(dir(cell, 2, 3), cell.join("repeat-2"));
        assert_eq!(cell_of(&cell.join("repeat-2")), cell);
        assert_eq!(cell_of(cell), cell);
        assert_eq!(cell_of(&cell.join("repeat-x")), cell.join("repeat-x"));
        assert_eq!(resolve(None, 3).expect("spec"), 3);
        assert_eq!(resolve(Some(2), 3).expect("flag"), 2);
        assert!(resolve(Some(0), 3).is_err());
    }

    #[test]
    fn each_repeat_gets_its_own_seed_and_the_same_base_the_same_ones() {
        let seeds: Vec<u64> = (1..=5).map(|k| seed(7, k)).collect();
        assert_eq!(seeds[0], 7, "the first repeat keeps the base seed");
        let distinct: std::collections::HashSet<_> = seeds.iter().collect();
        assert_eq!(distinct.len(), 5, "{seeds:?}");
        assert_eq!(seeds, (1..=5).map(|k| seed(7, k)).collect::<Vec<_>>());
        assert_ne!(seed(8, 2), seed(7, 2), "another base, other seeds");

        let argv: Vec<String> = ["replay", "--traces", "t", "--out", "o", "--seed", "7"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut w = crate::base::workload::parse(&argv).expect("parses");
        assert_eq!(workload(&w, 2, 1), w, "a single run keeps its seed");
        let second = workload(&w, 2, 3);
        assert_eq!(second.clone().seed_mut().copied(), Some(seed(7, 2)));
        *w.seed_mut().expect("a replay has a seed") = seed(7, 2);
        assert_eq!(second, w, "only the seed changes");
    }
}
