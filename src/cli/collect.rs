//! `kvsweep collect` and the collect step that ends `kvsweep sweep --local` and `kvsweep
//! predict`: cell artifacts collected ([`crate::results::collect`]) and then drawn
//! ([`crate::results::report`]), with what was found said on stderr and the report's path on
//! stdout.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::base::economics::Override;
use crate::base::runner::RunnerSet;
use crate::results::collect::{self, CollectArgs, Collected};
use crate::results::report;

/// Collects `paths` into `out` and draws the plots and `report.html` from what it found;
/// returns the collected cells and the report's path.
pub fn collect_into(
    paths: &[PathBuf],
    out: &Path,
    runners: &RunnerSet,
) -> Result<(Collected, PathBuf)> {
    collect_priced_into(paths, out, runners, &Override::default(), &[])
}

/// [`collect_into`] with price and power figures in place of the runners'.
fn collect_priced_into(
    paths: &[PathBuf],
    out: &Path,
    runners: &RunnerSet,
    economics: &Override,
    aiperf: &[collect::aiperf_cells::Placement],
) -> Result<(Collected, PathBuf)> {
    let c = collect::collect_priced(paths, out, runners, economics, aiperf)?;
    let report = report::write(out, &c.cells, &c.skipped, &c.pareto)?;
    Ok((c, report))
}

/// The collect step at the end of `kvsweep sweep --local`: the sweep's cells into its folder.
pub(crate) fn collect_sweep(cells_dir: &Path, out: &Path, runners: &RunnerSet) -> Result<()> {
    let (c, report) = collect_into(&[cells_dir.to_path_buf()], out, runners)?;
    print_outcome(&c, &report, out);
    Ok(())
}

fn print_outcome(c: &Collected, report: &Path, out: &Path) {
    eprintln!(
        "collect: {} cells in summary.csv, {} skipped (skipped.csv); Pareto frontiers in pareto.csv and {}/plots",
        c.cells.len(),
        c.skipped.len(),
        out.display()
    );
    for s in &c.skipped {
        eprintln!("  skipped {}: {}", s.cell, s.reason);
    }
    println!("{}", report.display());
}

/// `kvsweep collect`.
pub fn run(args: &CollectArgs, runners: &RunnerSet) -> Result<()> {
    let (c, report) = collect_priced_into(
        &args.paths,
        &args.out,
        runners,
        &args.economics_override(),
        &args.aiperf_cells,
    )?;
    print_outcome(&c, &report, &args.out);
    Ok(())
}
