//! Repeated runs of a cell (`repeats: N` in a spec, `--repeats N` on `sweep` and `run-cell`):
//! where each run's artifacts go. Each repeat starts its own engine, so each starts with an
//! empty cache: the repeats are independent samples of the same cell, which collect turns into
//! a mean, a standard deviation and a 95 % interval per metric.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The folder of repeat `k` (1-based) of a cell of `n` repeats: the cell's own folder for a
/// single run, `repeat-K/` inside it otherwise (collect finds both, and groups repeats by the
/// cell name in their cell.json).
pub fn dir(cell_dir: &Path, k: u32, n: u32) -> PathBuf {
    if n <= 1 {
        cell_dir.to_path_buf()
    } else {
        cell_dir.join(format!("repeat-{k}"))
    }
}

/// The repeats a run asks for: `--repeats` over the spec's `repeats:`; at least 1.
pub fn resolve(flag: Option<u32>, spec: u32) -> Result<u32> {
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
        assert_eq!(resolve(None, 3).expect("spec"), 3);
        assert_eq!(resolve(Some(2), 3).expect("flag"), 2);
        assert!(resolve(Some(0), 3).is_err());
    }
}
