//! AIPerf runs as cells: `kvsweep collect` finds AIPerf's artifact directories among its inputs
//! (a folder holding `profile_export.jsonl` and `profile_export_aiperf.json`, as AIPerf 0.13.0
//! writes them and InferenceX keeps them in `RESULT_DIR/aiperf_artifacts/`) and turns each into a
//! kvsweep cell directory, so that its summary row, validity verdict, InferenceX metrics and
//! Pareto points come from the same code as kvsweep's own cells.
//!
//! The conversion: each per-request record of `profile_export.jsonl` becomes the
//! [`RequestRecord`](crate::data::tally::RequestRecord) kvsweep's replay would have made of that
//! request, and the replay's own [`Tally`](crate::data::tally::Tally) adds them up into `requests.csv`
//! rows and `summary.json`; `cell.json` and `status.json` say what AIPerf's input config and the user's placement
//! ([`Placement`]) say about the run.
//!
//! What AIPerf's records lack, and how it is handled:
//!
//! - Where the run ran (runner, TP, offload mode, engine): AIPerf does not know; the user says
//!   it with `--aiperf-cell DIR:runner=R,tp=N,offload=MODE,engine=E`, and an AIPerf directory
//!   without one is an error naming it. Users are the profiling phase's concurrency.
//! - The output length the trace asked for (`trace_output_tokens`): not recorded; it takes the
//!   length AIPerf counted (`output_sequence_length`).
//! - The client's CPU use: AIPerf does not record it; `summary.json`'s `client_cpu` is all zero
//!   with `cores: 0` (not measured), so the client-bound CPU check cannot flag an AIPerf point.
//! - Retries: AIPerf sends each request once (`attempts` 1).
//! - The server's counters: from `server_metrics_export.json` where the run has one
//!   (`aiperf_server_metrics`: the profiling phase's increases, so `server_hit_rate`, the cache
//!   tiers and offload traffic count what kvsweep's scraper would); without it they stay empty
//!   (not measured). `client_hit_rate` comes from the records' usage
//!   (`usage_prompt_cache_read_tokens` over `usage_prompt_tokens`), as kvsweep's does.
//!
//! A record that lacks a field the summary needs is an error naming the file, the line and the
//! field, never a zero. kvsweep's own AIPerf-format exports of its cells (`exported_by: kvsweep`, a
//! previous collect's `agentx/*/aiperf_artifacts`) are no AIPerf run: they are skipped with that
//! reason, their cells being collected themselves. AIPerf's warm-up phase becomes kvsweep's warm-up
//! window (the profiling phase's first send), so both tools' figures count the profiling phase
//! only; the run's duration is its first send to its last answer (AIPerf's own throughputs divide
//! by its phase's time range, grace period included).
//!
//! The parts: `placement` (where a run ran, which the user says), `convert` (one run into one
//! cell directory); this module finds the runs to convert and converts them for a collect.

mod convert;
mod placement;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::cells::{CellResult, MeasuredBy, Skipped, dir_name};
use crate::data::aiperf::ProfileExport;
use crate::data::aiperf::schema::{PROFILE_EXPORT_FILE as AGGREGATE_FILE, RECORDS_FILE};
pub use convert::convert;
use convert::submission_verdict;
pub use placement::Placement;
use placement::placement_for;

/// The paths collect searches: the given ones, and each placement's folder not already under
/// one of them (so `--aiperf-cell DIR:...` alone collects DIR).
pub(crate) fn search_paths(paths: &[PathBuf], placements: &[Placement]) -> Vec<PathBuf> {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let given: Vec<PathBuf> = paths.iter().map(|p| canonical(p)).collect();
    let mut all = paths.to_vec();
    for p in placements {
        if !given.iter().any(|g| canonical(&p.dir).starts_with(g)) {
            all.push(p.dir.clone());
        }
    }
    all
}

/// An AIPerf run converted into a kvsweep cell directory for this collect.
#[derive(Debug)]
struct ConvertedCell {
    /// The cell directory collect reads.
    pub dir: PathBuf,
    /// AIPerf's own verdict, when it judged the run not valid for submission.
    aiperf_verdict: Option<String>,
    /// The simulator's speed its placement gave (`speed=`).
    pub sim_speed: Option<f64>,
}

/// The AIPerf runs of one collect, converted.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    cells: Vec<ConvertedCell>,
    /// AIPerf-format folders that are no AIPerf run: kvsweep's own exports of its cells (a
    /// previous collect's `agentx/*/aiperf_artifacts`), whose cells collect reads themselves.
    pub skipped: Vec<Skipped>,
}

impl Converted {
    /// The cell directories, for collect to read like any other.
    pub fn dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.cells.iter().map(|c| c.dir.clone())
    }

    /// Marks a cell made from an AIPerf run as measured by AIPerf, with AIPerf's own verdict
    /// among its invalid reasons and the simulator's speed its placement gave; any other cell
    /// is left as it is.
    pub(crate) fn mark<'c>(&self, c: &'c mut CellResult) -> &'c mut CellResult {
        let Some(run) = self.cells.iter().find(|r| r.dir == c.dir) else {
            return c;
        };
        c.measured_by = MeasuredBy::Aiperf;
        if run.sim_speed.is_some() {
            c.sim_speed = run.sim_speed;
        }
        if let Some(reason) = &run.aiperf_verdict {
            c.valid = false;
            c.invalid_reasons = [c.invalid_reasons.as_str(), reason]
                .into_iter()
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
        }
        c
    }
}

/// Whether AIPerf-format exports were written by kvsweep (`exported_by`, as
/// `crate::data::aiperf::cell_export` marks them) rather than by an AIPerf run.
fn exported_by_kvsweep(aggregate: &ProfileExport) -> bool {
    match aggregate.entries.get("exported_by") {
        Some(crate::data::aiperf::AggregateEntry::Other(v)) => {
            v.as_str().is_some_and(|s| s.starts_with("kvsweep"))
        }
        _ => false,
    }
}

/// Converts each AIPerf directory found (once, however many paths reached it) into a cell
/// directory in a temporary folder handed to `keep`; a placement that reaches no AIPerf
/// directory or names a runner `runners` lacks is an error, as is a directory no placement
/// reaches.
pub(crate) fn convert_all(
    found: &[PathBuf],
    placements: &[Placement],
    runners: &crate::base::runner::RunnerSet,
    mut keep: impl FnMut(tempfile::TempDir),
) -> Result<Converted> {
    if let Some(p) = placements.iter().find(|p| runners.get(&p.runner).is_none()) {
        bail!(
            "--aiperf-cell {}: no runner `{}` (runners: {})",
            p.dir.display(),
            p.runner,
            runners.names().join(", ")
        );
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut used = vec![false; placements.len()];
    let mut converted = Converted::default();
    for src in found {
        let canonical = src
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", src.display()))?;
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        let aggregate = crate::data::aiperf::read_profile_export(&src.join(AGGREGATE_FILE))?;
        if exported_by_kvsweep(&aggregate) {
            converted.skipped.push(Skipped {
                // InferenceX's RESULT_DIR names the run; `aiperf_artifacts` does not.
                cell: src
                    .parent()
                    .filter(|_| src.ends_with("aiperf_artifacts"))
                    .map_or_else(|| dir_name(src), dir_name),
                reason: "kvsweep's AIPerf-format export of one of its cells, not an AIPerf run (collect the cell itself)".into(),
                path: src.display().to_string(),
            });
            continue;
        }
        let placement = placement_for(src, placements)?;
        if let Some(i) = placements.iter().position(|p| p == placement) {
            used[i] = true;
        }
        let tmp = tempfile::Builder::new()
            .prefix("kvsweep-aiperf-")
            .tempdir()
            .context("a temporary folder for an AIPerf cell")?;
        let staging = tmp.path().join("cell");
        let name = convert(src, placement, &staging)
            .with_context(|| format!("collecting the AIPerf run in {}", src.display()))?;
        let dir = tmp.path().join(&name);
        std::fs::rename(&staging, &dir)
            .with_context(|| format!("cannot name {}", dir.display()))?;
        converted.cells.push(ConvertedCell {
            dir,
            aiperf_verdict: submission_verdict(&aggregate),
            sim_speed: placement.sim_speed,
        });
        keep(tmp);
    }
    if let Some(unused) = placements.iter().zip(&used).find(|(_, u)| !**u) {
        bail!(
            "--aiperf-cell {}: no AIPerf artifacts ({RECORDS_FILE} and {AGGREGATE_FILE}) in it or under it",
            unused.0.dir.display()
        );
    }
    Ok(converted)
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::{aggregate, placement, run, write_run};
    use serde_json::json;

    #[test]
    fn an_aiperf_directory_is_placed_by_the_nearest_placement_or_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let run_dir = root.path().join("result/aiperf_artifacts");
        std::fs::create_dir_all(&run_dir).expect("mkdir");
        let outer = placement(root.path());
        let mut inner = placement(&root.path().join("result"));
        inner.runner = "b200".into();
        let both = [outer.clone(), inner];
        assert_eq!(
            placement_for(&run_dir, &both).expect("placed").runner,
            "b200"
        );
        let other = tempfile::tempdir().expect("tempdir");
        let e = placement_for(&run_dir, &[placement(other.path())]).expect_err("not placed");
        let text = format!("{e:#}");
        assert!(
            text.contains("cannot place the run") && text.contains("--aiperf-cell"),
            "{text}"
        );
        // A placement reaching no AIPerf run is refused too.
        let runners = crate::base::runner::RunnerSet::builtin().expect("runners");
        let e =
            convert_all(&[], std::slice::from_ref(&outer), &runners, |_| {}).expect_err("unused");
        assert!(format!("{e:#}").contains("no AIPerf artifacts"), "{e:#}");
        let typo = Placement {
            runner: "h2OO".into(),
            ..outer
        };
        let e = convert_all(&[], &[typo], &runners, |_| {}).expect_err("no such runner");
        assert!(format!("{e:#}").contains("no runner `h2OO`"), "{e:#}");
    }

    #[test]
    fn kvsweeps_own_aiperf_format_exports_are_skipped_not_placed() {
        let src = tempfile::tempdir().expect("tempdir");
        let mut agg = aggregate();
        agg["exported_by"] = json!("kvsweep 0.1.0");
        write_run(src.path(), &run(), &agg);
        let runners = crate::base::runner::RunnerSet::builtin().expect("runners");
        let found = [src.path().to_path_buf()];
        let c = convert_all(&found, &[], &runners, |_| {}).expect("no placement needed");
        assert_eq!(c.dirs().count(), 0);
        assert_eq!(c.skipped.len(), 1);
        assert!(
            c.skipped[0].reason.contains("not an AIPerf run"),
            "{:?}",
            c.skipped
        );
        // Without the mark, the same files are an AIPerf run that needs a placement.
        write_run(src.path(), &run(), &aggregate());
        let e = convert_all(&found, &[], &runners, |_| {}).expect_err("unplaced");
        assert!(format!("{e:#}").contains("--aiperf-cell"), "{e:#}");
    }
}
