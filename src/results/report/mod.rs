//! The sweep's pictures and page: the Pareto panels per runner (`plots/*.png|svg`) and
//! `report.html`, one offline page with every chart inlined as SVG, opening with the offload story
//! (`story`).

mod cost;
mod interval_bars;
mod invalid_points;
mod story;
mod tiers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use minijinja::Environment;
use plotters::style::RGBColor;
use serde::Serialize;

use crate::base::plot::{Chart, Mark, PALETTE, Series};
use crate::results::collect::ParetoRow;
use crate::results::collect::cells::{CellResult, MeasuredBy, Skipped};
use crate::results::collect::panels::{PANELS, Panel};
use crate::results::collect::prediction_error;

const TEMPLATE: &str = include_str!("../../../templates/report.html.j2");
const COST_TIERS_TEMPLATE: &str = include_str!("../../../templates/report_cost_tiers.html.j2");

/// Sweeps with more cells than this get no per-cell charts in the page: a thousand cells' charts
/// would make it unusable (and slow to write); `kvsweep metrics plot CELL_DIR` draws one cell's.
const MAX_CELLS_WITH_CHARTS: usize = 48;

/// One colour per offload mode, the same in every chart.
fn mode_color(mode: &str) -> RGBColor {
    match mode {
        "on" => PALETTE[0],
        "off" => PALETTE[1],
        "noprefix" => PALETTE[2],
        // Predictions beside the measured modes they predict.
        m if m.ends_with(" predicted") => PALETTE[3],
        _ => PALETTE[4],
    }
}

/// What the charts' titles say about the cells: model, runner, engine, and whether simulated.
fn subject(cells: &[&CellResult]) -> String {
    let join = |f: &dyn Fn(&CellResult) -> &str| {
        let mut v: Vec<&str> = cells.iter().map(|c| f(c)).collect();
        v.sort_unstable();
        v.dedup();
        v.join(", ")
    };
    let simulated = cells.iter().any(|c| c.simulated);
    format!(
        "{} on {} ({}){}",
        join(&|c| &c.config.model),
        join(&|c| &c.config.runner),
        join(&|c| c.config.engine.as_str()),
        if simulated { ", simulated" } else { "" }
    )
}

/// The panel chart of one runner: each offload mode's cells as points labelled with their
/// configuration and users (`tp 2 32u`), and that mode's frontier as a line.
fn panel_chart(panel: &Panel, runner: &str, cells: &[&CellResult], pareto: &[ParetoRow]) -> Chart {
    let mut modes: Vec<String> = cells.iter().map(|c| c.mode()).collect();
    modes.sort_unstable();
    modes.dedup();
    let mut series = Vec::new();
    let mut invalid_rows = Vec::new();
    for mode in modes {
        let group = format!("{runner}/{mode}");
        let rows: Vec<&ParetoRow> = pareto
            .iter()
            .filter(|r| r.panel == panel.id && r.group == group)
            .collect();
        let users = |cell: &str| {
            cells
                .iter()
                .find(|c| c.name == cell && c.mode() == mode)
                .map_or_else(String::new, |c| {
                    format!(
                        "  {} {}u{}",
                        cost::config_label(c),
                        c.config.users,
                        c.measured_by.point_label()
                    )
                })
        };
        let mut front: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.on_frontier)
            .map(|r| (r.x, r.y))
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.extend(interval_bars::bars(panel, &rows, cells, mode_color(&mode)));
        let (rows, invalid) = invalid_points::split(rows, cells);
        invalid_rows.extend(invalid);
        series.push(Series {
            label: format!("offload {mode}"),
            points: rows.iter().map(|r| (r.x, r.y)).collect(),
            color: mode_color(&mode),
            mark: Mark::Points,
            point_labels: rows.iter().map(|r| users(&r.cell)).collect(),
        });
        series.push(Series {
            label: String::new(),
            points: front,
            color: mode_color(&mode),
            mark: Mark::Line,
            point_labels: Vec::new(),
        });
    }
    series.extend(invalid_points::series(&invalid_rows, cells));
    Chart {
        title: format!("{}: {}", panel.title, subject(cells)),
        x_label: panel.x_label.into(),
        y_label: panel.y_label.into(),
        series,
    }
}

#[derive(Serialize)]
struct PanelView {
    title: String,
    svg: String,
    png: String,
}

#[derive(Serialize)]
struct HeadlineRow {
    runner: String,
    offload: String,
    cells: usize,
    best_total_tps_per_gpu: f64,
    best_interactivity: Option<f64>,
    best_ttft_p50_ms: Option<f64>,
    mean_client_hit_rate: Option<f64>,
}

#[derive(Serialize)]
struct CellView<'a> {
    cell: &'a CellResult,
    charts: Vec<String>,
}

#[derive(Serialize)]
struct ReportContext<'a> {
    subject: String,
    /// The opening sentences: what offload on did at the highest load, per runner.
    stories: Vec<story::OffloadStory>,
    simulated: bool,
    /// How simulated time related to real time, when the cells recorded it.
    sim_clock: Option<String>,
    /// Whether per-cell charts are in the page (see [`MAX_CELLS_WITH_CHARTS`]).
    cell_charts: bool,
    version: &'a str,
    headline: Vec<HeadlineRow>,
    panels: Vec<PanelView>,
    cells: Vec<CellView<'a>>,
    skipped: &'a [Skipped],
    cost: cost::CostSection,
    tiers: tiers::TierSection,
    /// Whether some cells are `kvsweep predict`'s, not measured.
    predicted: bool,
    /// Measured cells against their predictions, and the median |error| per metric.
    prediction_error: Vec<prediction_error::ErrorRow>,
    prediction_medians: Vec<prediction_error::MedianError>,
}

fn best(values: impl Iterator<Item = Option<f64>>, lower: bool) -> Option<f64> {
    values
        .flatten()
        .filter(|v| v.is_finite())
        .reduce(|a, b| if (b < a) == lower { b } else { a })
}

fn headline(cells: &[CellResult]) -> Vec<HeadlineRow> {
    let mut groups: BTreeMap<(&str, &str), Vec<&CellResult>> = BTreeMap::new();
    // An invalid point is no one's best.
    for c in cells.iter().filter(|c| c.valid) {
        groups
            .entry((c.config.runner.as_str(), c.config.offload.as_str()))
            .or_default()
            .push(c);
    }
    groups
        .into_iter()
        .map(|((runner, offload), g)| {
            let hits: Vec<f64> = g.iter().filter_map(|c| c.figures.client_hit_rate).collect();
            HeadlineRow {
                runner: runner.into(),
                offload: offload.into(),
                cells: g.len(),
                best_total_tps_per_gpu: g
                    .iter()
                    .map(|c| c.figures.total_tps_per_gpu)
                    .fold(0.0, f64::max),
                best_interactivity: best(g.iter().map(|c| c.figures.interactivity), false),
                best_ttft_p50_ms: best(g.iter().map(|c| c.figures.ttft_p50_ms), true),
                mean_client_hit_rate: (!hits.is_empty())
                    .then(|| hits.iter().sum::<f64>() / hits.len() as f64),
            }
        })
        .collect()
}

/// Draws the panels into `out/plots` and writes `out/report.html`; returns the report's path.
pub fn write(
    out: &Path,
    cells: &[CellResult],
    skipped: &[Skipped],
    pareto: &[ParetoRow],
) -> Result<PathBuf> {
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots)
        .with_context(|| format!("cannot create {}", plots.display()))?;
    let mut runners: Vec<&str> = cells.iter().map(|c| c.config.runner.as_str()).collect();
    runners.sort_unstable();
    runners.dedup();
    let mut panels = Vec::new();
    for runner in &runners {
        let members: Vec<&CellResult> = cells
            .iter()
            .filter(|c| c.config.runner == *runner)
            .collect();
        for panel in &PANELS {
            let chart = panel_chart(panel, runner, &members, pareto);
            if cost::unpriced_panel(panel, &chart) {
                continue;
            }
            let stem = format!("{}_{runner}", panel.id);
            chart.save(&plots.join(format!("{stem}.png")))?;
            let svg = chart.svg()?;
            std::fs::write(plots.join(format!("{stem}.svg")), &svg)?;
            panels.push(PanelView {
                title: chart.title.clone(),
                svg,
                png: format!("plots/{stem}.png"),
            });
        }
    }
    let mut cell_views = Vec::new();
    let with_charts = cells.len() <= MAX_CELLS_WITH_CHARTS;
    for cell in cells {
        if !with_charts {
            cell_views.push(CellView {
                cell,
                charts: Vec::new(),
            });
            continue;
        }
        // A cell without server metrics still has its row; it just has no charts.
        let mut charts: Vec<String> = crate::run::metrics::plot::cell_charts(&cell.dir)
            .map(|charts| {
                charts
                    .iter()
                    .filter_map(|(_, chart)| chart.svg().ok())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(chart) = tiers::cell_chart(cell)? {
            charts.push(chart.svg()?);
        }
        cell_views.push(CellView { cell, charts });
    }
    let refs: Vec<&CellResult> = cells.iter().collect();
    let errors = prediction_error::rows(cells);
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("report.html", TEMPLATE)
        .context("the report template does not parse")?;
    env.add_template("cost_tiers.html", COST_TIERS_TEMPLATE)
        .context("the report's cost and tier template does not parse")?;
    env.add_filter("num", |v: Option<f64>, digits: Option<usize>| -> String {
        v.filter(|v| v.is_finite())
            .map_or_else(|| "–".into(), |v| format!("{v:.*}", digits.unwrap_or(1)))
    });
    env.add_filter("pct", |v: Option<f64>| -> String {
        v.filter(|v| v.is_finite())
            .map_or_else(|| "–".into(), |v| format!("{:.1}%", v * 100.0))
    });
    let html = env
        .get_template("report.html")?
        .render(minijinja::value::Serde(ReportContext {
            subject: subject(&refs),
            stories: story::offload_stories(cells),
            simulated: cells.iter().any(|c| c.simulated),
            sim_clock: story::SimClock::read(cells)?.note(),
            cell_charts: with_charts,
            version: crate::VERSION,
            headline: headline(cells),
            panels,
            cells: cell_views,
            skipped,
            cost: cost::section(cells),
            tiers: tiers::section(cells, &plots)?,
            predicted: cells.iter().any(|c| c.measured_by == MeasuredBy::Predicted),
            prediction_medians: prediction_error::medians(&errors),
            prediction_error: errors,
        }))?;
    let path = out.join("report.html");
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
