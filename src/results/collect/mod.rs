//! `kvsweep collect`: cell artifact directories (or their zips) → `summary.csv`, `skipped.csv`
//! and `pareto.csv`, returned as data for `report` to draw the panel plots and `report.html`.
//!
//! Inputs are found the way `actions/download-artifact` leaves them (a folder of artifact
//! folders), as downloaded zips (one per artifact), or as a sweep's `cells/` folder.

pub mod agentx_result;
pub mod aiperf_cells;
pub mod aiperf_server_metrics;
pub mod cells;
pub mod compare;
pub mod cost;
pub mod inferencex;
pub mod modelled_time;
pub mod panels;
pub mod prediction_error;
pub mod repeats;
pub mod result;
pub mod significance;
pub mod summary;
pub mod tiers;
pub mod validity;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::base::runner::RunnerSet;
use crate::data::artifact::schema::FormatError;
use crate::results::pareto;
use cells::{CellResult, Skipped};
use panels::{PANELS, Panel};

/// Aggregate cell artifacts into tables, Pareto frontiers, plots and an HTML report.
#[derive(Debug, Clone, clap::Args)]
pub struct CollectArgs {
    /// Cell directories, zips, AIPerf artifact directories, or folders holding them (searched a
    /// few levels deep).
    #[arg(required_unless_present = "aiperf_cells")]
    pub paths: Vec<PathBuf>,
    /// Where the tables, plots and report go.
    #[arg(long)]
    pub out: PathBuf,
    /// A price per GPU-hour in place of every runner's, as KIND=USD (KIND: hyperscaler,
    /// neocloud, rental_3y); repeatable.
    #[arg(long = "gpu-price", value_name = "KIND=USD", value_parser = crate::base::economics::parse_price)]
    gpu_prices: Vec<(crate::base::economics::PriceKind, f64)>,
    /// Power per GPU all-in, kW, in place of every runner's (used where no GPU power was
    /// measured).
    #[arg(long = "gpu-power-kw", value_name = "KW", value_parser = crate::base::economics::parse_power_kw)]
    gpu_power_kw: Option<f64>,
    /// An AIPerf run (a folder holding profile_export.jsonl and profile_export_aiperf.json, or
    /// a folder above it) to collect as a cell, with where it ran, which AIPerf does not record:
    /// DIR:runner=R,tp=N,offload=on|off|noprefix,engine=vllm|sglang|llama-server|sim, optionally
    /// ep=N, precision=P, name=CELL, and speed=X for a simulator run with --speed X (its figures
    /// are then put into the modelled hardware's time). Users are AIPerf's concurrency.
    /// Repeatable; DIR is searched like the PATHs.
    #[arg(long = "aiperf-cell", value_name = "DIR:KEY=VALUE,...")]
    pub aiperf_cells: Vec<aiperf_cells::Placement>,
}

impl CollectArgs {
    /// The price and power figures given on the command line.
    pub(crate) fn economics_override(&self) -> crate::base::economics::Override {
        crate::base::economics::Override {
            power_kw_per_gpu: self.gpu_power_kw,
            prices: self.gpu_prices.clone(),
            source: "kvsweep collect command line".into(),
        }
    }
}

/// One row of `pareto.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct ParetoRow {
    pub panel: &'static str,
    pub group: String,
    pub cell: String,
    pub x: f64,
    pub y: f64,
    pub on_frontier: bool,
}

/// A panel's (x, y) for a cell; `None` where the cell lacks the measurement.
fn panel_point(panel: &Panel, c: &CellResult) -> Option<(f64, f64)> {
    Some((panel.x.of(c)?, panel.y.of(c)?)).filter(|(x, y)| x.is_finite() && y.is_finite())
}

/// Frontiers of every panel, per (runner, offload mode) and pooled per runner (`RUNNER/all`).
fn pareto_rows(cells: &[CellResult]) -> Vec<ParetoRow> {
    let mut groups: Vec<(String, Vec<&CellResult>)> = Vec::new();
    for c in cells {
        for key in [
            format!("{}/{}", c.config.runner, c.mode()),
            format!("{}/all", c.config.runner),
        ] {
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(c),
                None => groups.push((key, vec![c])),
            }
        }
    }
    let mut rows = Vec::new();
    for panel in &PANELS {
        for (group, members) in &groups {
            let placed: Vec<(&CellResult, (f64, f64))> = members
                .iter()
                .filter_map(|c| Some((*c, panel_point(panel, c)?)))
                .collect();
            let mut on = validity_frontier(&placed, panel.better);
            let group_cells: Vec<&CellResult> = placed.iter().map(|(c, _)| *c).collect();
            inferencex::north_star(panel, &group_cells, &mut on);
            rows.extend(placed.iter().zip(on).map(|((c, (x, y)), on)| ParetoRow {
                panel: panel.id,
                group: group.clone(),
                cell: c.name.clone(),
                x: *x,
                y: *y,
                on_frontier: on,
            }));
        }
    }
    rows
}

/// The frontier of the valid points only: an invalid point is drawn but never on it.
fn validity_frontier(placed: &[(&CellResult, (f64, f64))], better: pareto::Better) -> Vec<bool> {
    let valid: Vec<(f64, f64)> = placed
        .iter()
        .filter(|(c, _)| c.valid)
        .map(|(_, p)| *p)
        .collect();
    let mut on_valid = pareto::frontier(&valid, better).into_iter();
    placed
        .iter()
        .map(|(c, _)| c.valid && on_valid.next().unwrap_or(false))
        .collect()
}

fn write_csv<T: Serialize>(path: &Path, rows: &[T], header_if_empty: &[&str]) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    if rows.is_empty() {
        w.write_record(header_if_empty)?;
    }
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// What a collect produced: the cells that made it (with their frontiers) and those that did
/// not, for the caller to draw and print (`report`).
pub struct Collected {
    pub cells: Vec<CellResult>,
    pub skipped: Vec<Skipped>,
    pub pareto: Vec<ParetoRow>,
    /// Measured cells against their predicted twins (`prediction_error.csv`); empty without.
    pub prediction_error: Vec<prediction_error::ErrorRow>,
    /// Zipped cells unpacked for this collect: their folders (`CellResult::dir`) stay readable
    /// (server metrics for the report's charts) until this is dropped.
    _extracted: cells::Extracted,
}

/// Collects `paths` into `out`: the tables (`summary.csv`, `skipped.csv`, `pareto.csv`), with
/// the cells' runners (prices, power, memory) looked up in `runners`.
pub fn collect(paths: &[PathBuf], out: &Path, runners: &RunnerSet) -> Result<Collected> {
    collect_priced(
        paths,
        out,
        runners,
        &crate::base::economics::Override::default(),
        &[],
    )
}

/// [`collect`], pricing the cells with `economics` in place of their runners' figures, and
/// placing AIPerf runs with `aiperf`.
pub(crate) fn collect_priced(
    paths: &[PathBuf],
    out: &Path,
    runners: &RunnerSet,
    economics: &crate::base::economics::Override,
    aiperf: &[aiperf_cells::Placement],
) -> Result<Collected> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut found = cells::find(&aiperf_cells::search_paths(paths, aiperf))?;
    let extracted = &mut found.extracted;
    let mut converted =
        aiperf_cells::convert_all(&found.aiperf, aiperf, runners, |t| extracted.keep(t))?;
    found.dirs.extend(converted.dirs());
    found.skipped.append(&mut converted.skipped);
    if found.dirs.is_empty() && found.skipped.is_empty() {
        bail!(
            "no cell artifacts under {}: a cell directory holds status.json and cell.json",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut results = Vec::new();
    let mut skipped = found.skipped;
    let mut traces = crate::results::oracle::replayed::TraceCache::default();
    let mut agentx_traces = agentx_result::TraceHitsCache::default();
    for dir in &found.dirs {
        match cells::load(dir) {
            Ok(mut c) => match converted.mark(&mut c).gate() {
                Ok(()) => {
                    // The figures read off the cell's files, in wall-clock time; then, once,
                    // into the modelled hardware's time, before anything derives from them.
                    tiers::fill(&mut c)?;
                    inferencex::fill(&mut c)?;
                    modelled_time::convert(&mut c);
                    cost::fill(&mut c, runners, economics)?;
                    agentx_result::write_or_warn(dir, out, &c.name, &mut agentx_traces)?;
                    match crate::results::oracle::replayed::bound(dir, &mut traces, runners) {
                        Ok(Some(b)) => {
                            c.oracle = Some(result::OracleBound {
                                hit_rate: b.strict_prefix,
                                lru_hit_rate: b.lru,
                                capacity_tokens: b.capacity_tokens,
                            });
                        }
                        Ok(None) => {}
                        Err(e) => eprintln!("warning: no oracle bound for {}: {e:#}", c.name),
                    }
                    results.push(c);
                }
                Err(reason) => skipped.push(Skipped {
                    cell: c.name.clone(),
                    reason,
                    path: dir.display().to_string(),
                }),
            },
            // A file that is there but does not fit its format is a bug to see, not a cell to
            // skip: the tables would be quietly short of it.
            Err(e) if e.downcast_ref::<FormatError>().is_some() => return Err(e),
            Err(e) => skipped.push(Skipped {
                cell: cells::dir_name(dir),
                reason: format!("{e:#}"),
                path: dir.display().to_string(),
            }),
        }
    }
    let (mut results, repeat_rows) = repeats::merge(results);
    // Offload by its name, as the table has always been ordered.
    results.sort_by(|a, b| {
        let (x, y) = (&a.config, &b.config);
        (&x.runner, x.offload.as_str(), x.tp, x.users, &a.name).cmp(&(
            &y.runner,
            y.offload.as_str(),
            y.tp,
            y.users,
            &b.name,
        ))
    });
    skipped.sort_by(|a, b| a.cell.cmp(&b.cell));
    summary::write(&out.join("summary.csv"), &results)?;
    write_csv(
        &out.join("repeats.csv"),
        &repeat_rows,
        repeats::REPEAT_COLUMNS,
    )?;
    write_csv(
        &out.join("skipped.csv"),
        &skipped,
        &["cell", "reason", "path"],
    )?;
    let pareto = pareto_rows(&results);
    write_csv(
        &out.join("pareto.csv"),
        &pareto,
        &["panel", "group", "cell", "x", "y", "on_frontier"],
    )?;
    let errors = prediction_error::rows(&results);
    if !errors.is_empty() {
        write_csv(
            &out.join("prediction_error.csv"),
            &errors,
            prediction_error::COLUMNS,
        )?;
    }
    Ok(Collected {
        cells: results,
        skipped,
        pareto,
        prediction_error: errors,
        _extracted: found.extracted,
    })
}
