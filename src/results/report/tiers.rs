//! The report's cache-tier views: per cell, prompt tokens served from HBM, from the host tier
//! and computed, over time; across cells, the share of each by users, per offload mode and tp;
//! and a table with the offload bandwidth to and from the host (collect::tiers).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::base::plot::{Chart, Mark, PALETTE, Series};
use crate::results::collect::cells::CellResult;
use crate::results::collect::tiers::{TierTokens, metrics_rows};

/// One cell's row of the tier table: shares of its prompt tokens.
#[derive(Debug, Serialize)]
pub(crate) struct TierRow {
    pub cell: String,
    pub config: String,
    pub users: u32,
    pub offload: String,
    pub hbm: Option<f64>,
    pub host: Option<f64>,
    pub computed: Option<f64>,
    pub(crate) to_host_gb_s: Option<f64>,
    pub(crate) from_host_gb_s: Option<f64>,
}

/// The tier section: the summary charts (SVG) and the table.
#[derive(Debug, Serialize)]
pub(crate) struct TierSection {
    pub charts: Vec<String>,
    pub rows: Vec<TierRow>,
}

/// Shares of a cell's prompt tokens by tier; `None` where it has no split.
fn shares(c: &CellResult) -> Option<[Option<f64>; 3]> {
    let t = &c.tiers.as_ref()?.tokens;
    let parts = [t.hbm, t.host, t.computed];
    let total: f64 = parts.iter().flatten().sum();
    (total > 0.0).then(|| parts.map(|p| p.map(|v| v / total)))
}

/// The chart of one cell: prompt tokens per second from each tier, per scrape interval, in
/// the modelled hardware's time for a simulator that ran faster (as the cell's row).
pub(crate) fn cell_chart(cell: &CellResult) -> Result<Option<Chart>> {
    let rows = metrics_rows(&cell.dir)?;
    let speed = cell.sim_speed.unwrap_or(1.0);
    let mut hbm = Vec::new();
    let mut host = Vec::new();
    let mut computed = Vec::new();
    for pair in rows.windows(2) {
        let dt = (pair[1].time - pair[0].time) * speed;
        if dt <= 0.0 {
            continue;
        }
        let r = TierTokens::at(&pair[1]).rate_since(&TierTokens::at(&pair[0]), dt);
        let x = pair[1].rel_s * speed;
        hbm.extend(r.hbm.map(|v| (x, v)));
        host.extend(r.host.map(|v| (x, v)));
        computed.extend(r.computed.map(|v| (x, v)));
    }
    if hbm.is_empty() && host.is_empty() && computed.is_empty() {
        return Ok(None);
    }
    Ok(Some(Chart {
        title: format!("Prompt tokens by cache tier: {}", cell.name),
        x_label: if speed == 1.0 {
            "time since first request (s)".into()
        } else {
            "modelled time since first request (s)".into()
        },
        y_label: "prompt tokens/s".into(),
        series: vec![
            Series::line("from HBM", hbm, PALETTE[0]),
            Series::line("from the host tier", host, PALETTE[1]),
            Series::line("computed", computed, PALETTE[3]),
        ],
    }))
}

/// Share of prompt tokens from tier `i` (0 HBM, 1 host, 2 computed) by users, a series per
/// (runner, offload mode, tp, ep); the runner is named when there are several.
fn share_chart(cells: &[CellResult], i: usize, what: &str) -> Chart {
    let mut keys: Vec<(&str, &str, u32, u32)> = cells
        .iter()
        .map(|c| {
            (
                c.config.runner.as_str(),
                c.config.offload.as_str(),
                c.config.tp,
                c.config.ep,
            )
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let several_runners = keys.iter().any(|k| k.0 != keys[0].0);
    let series = keys
        .iter()
        .enumerate()
        .map(|(k, &(runner, mode, tp, ep))| {
            let mut points: Vec<(f64, f64)> = cells
                .iter()
                .filter(|c| {
                    (
                        c.config.runner.as_str(),
                        c.config.offload.as_str(),
                        c.config.tp,
                        c.config.ep,
                    ) == (runner, mode, tp, ep)
                })
                .filter_map(|c| Some((f64::from(c.config.users), shares(c)?[i]? * 100.0)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let config = match ep {
                0 => format!("tp {tp}"),
                ep => format!("tp {tp} ep {ep}"),
            };
            let on = if several_runners {
                format!("{runner}, ")
            } else {
                String::new()
            };
            Series {
                label: format!("{on}offload {mode}, {config}"),
                points,
                color: PALETTE[k % PALETTE.len()],
                mark: Mark::LineAndPoints,
                point_labels: Vec::new(),
            }
        })
        .collect();
    Chart {
        title: format!("Prompt tokens {what}, by users"),
        x_label: "users".into(),
        y_label: format!("% of prompt tokens {what}"),
        series,
    }
}

/// The section for `cells`: charts only when some cell has a tier split, also saved as
/// `plots/tiers_{hbm,host,computed}.png|svg`.
pub(crate) fn section(cells: &[CellResult], plots: &Path) -> Result<TierSection> {
    let rows: Vec<TierRow> = cells
        .iter()
        .map(|c| {
            let [hbm, host, computed] = shares(c).unwrap_or([None; 3]);
            TierRow {
                cell: c.name.clone(),
                config: super::cost::config_label(c),
                users: c.config.users,
                offload: c.config.offload.to_string(),
                hbm,
                host,
                computed,
                to_host_gb_s: c.tiers.as_ref().and_then(|t| t.to_host_gb_s),
                from_host_gb_s: c.tiers.as_ref().and_then(|t| t.from_host_gb_s),
            }
        })
        .collect();
    let mut charts = Vec::new();
    if cells.iter().any(|c| shares(c).is_some()) {
        let tiers = [
            ("hbm", "from HBM"),
            ("host", "from the host tier"),
            ("computed", "computed"),
        ];
        for (i, (stem, what)) in tiers.into_iter().enumerate() {
            let chart = share_chart(cells, i, what);
            chart.save(&plots.join(format!("tiers_{stem}.png")))?;
            let svg = chart.svg()?;
            std::fs::write(plots.join(format!("tiers_{stem}.svg")), &svg)
                .with_context(|| format!("cannot write the {stem} tier chart"))?;
            charts.push(svg);
        }
    }
    Ok(TierSection { charts, rows })
}
