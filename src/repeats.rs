//! Repeated runs of a cell (`repeats: N` in a spec, `--repeats N` on `sweep` and `run-cell`):
//! where each run's artifacts go. Each repeat starts its own engine, so each starts with an
//! empty cache: the repeats are independent samples of the same cell, which collect turns into
//! a mean, a standard deviation and a 95 % interval per metric.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

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
        assert_eq!(cell_of(&cell.join("repeat-2")), cell);
        assert_eq!(cell_of(cell), cell);
        assert_eq!(cell_of(&cell.join("repeat-x")), cell.join("repeat-x"));
        assert_eq!(resolve(None, 3).expect("spec"), 3);
        assert_eq!(resolve(Some(2), 3).expect("flag"), 2);
        assert!(resolve(Some(0), 3).is_err());
    }
}
