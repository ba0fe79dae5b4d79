//! `kvsweep compare A B`: two collected sweeps side by side — ratios at matched cells and the
//! two frontiers of each panel overlaid. A and B may be the same sweep filtered two ways
//! (`--a-where offload=on --b-where offload=off`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::panels::{PANELS, Panel};
use super::significance::{self, Spread};
use crate::base::plot::{Chart, Mark, PALETTE, Series};
use crate::results::pareto;

/// Compare two collected sweeps: ratios at matched cells and frontier overlays.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The first collected sweep (its directory, or its summary.csv).
    pub a: PathBuf,
    /// The second collected sweep.
    pub b: PathBuf,
    /// Where compare.csv and the overlay plots go.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep only A's rows where COLUMN=VALUE (repeatable); that column is then not matched on.
    #[arg(long = "a-where", value_name = "COLUMN=VALUE")]
    a_where: Vec<String>,
    /// Keep only B's rows where COLUMN=VALUE (repeatable).
    #[arg(long = "b-where", value_name = "COLUMN=VALUE")]
    b_where: Vec<String>,
    /// Names for A and B in the table and plots.
    #[arg(long, default_value = "A")]
    a_label: String,
    #[arg(long, default_value = "B")]
    b_label: String,
}

/// The columns a cell is matched on, less those a filter fixes.
const MATCH_ON: &[&str] = &["runner", "tp", "ep", "users", "offload"];
/// The metrics compared at each matched cell.
const METRICS: &[&str] = &[
    "total_tps_per_gpu",
    "output_tps_per_gpu",
    "ttft_p50_ms",
    "tpot_p50_ms",
    "e2e_p50_ms",
    "interactivity",
    "client_hit_rate",
    "server_hit_rate",
];

type Row = HashMap<String, String>;

fn read_summary(path: &Path) -> Result<Vec<Row>> {
    let file = if path.is_dir() {
        path.join("summary.csv")
    } else {
        path.to_path_buf()
    };
    if !file.exists() {
        bail!(
            "{} does not exist: give a directory that `kvsweep collect` wrote, or its summary.csv",
            file.display()
        );
    }
    let mut r =
        csv::Reader::from_path(&file).with_context(|| format!("cannot read {}", file.display()))?;
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("{}: row {}", file.display(), i + 2)))
        .collect()
}

fn parse_filters(filters: &[String]) -> Result<Vec<(String, String)>> {
    filters
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("`{f}` is not COLUMN=VALUE"))
        })
        .collect()
}

fn keep(rows: Vec<Row>, filters: &[(String, String)], side: &str) -> Result<Vec<Row>> {
    if let (Some(first), Some((k, _))) = (
        rows.first(),
        filters.iter().find(|(k, _)| !rows[0].contains_key(k)),
    ) {
        let mut cols: Vec<&String> = first.keys().collect();
        cols.sort();
        bail!("--{side}-where: summary.csv has no column `{k}` (columns: {cols:?})");
    }
    Ok(rows
        .into_iter()
        .filter(|r| filters.iter().all(|(k, v)| r.get(k) == Some(v)))
        .collect())
}

fn num(row: &Row, col: &str) -> Option<f64> {
    row.get(col)?.parse().ok()
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let fa = parse_filters(&args.a_where)?;
    let fb = parse_filters(&args.b_where)?;
    let a = keep(read_summary(&args.a)?, &fa, "a")?;
    let b = keep(read_summary(&args.b)?, &fb, "b")?;
    let (spread_a, spread_b) = (Spread::beside(&args.a)?, Spread::beside(&args.b)?);
    let match_on: Vec<&str> = MATCH_ON
        .iter()
        .copied()
        .filter(|c| !fa.iter().chain(&fb).any(|(k, _)| k == c))
        .collect();
    let key = |r: &Row| -> String {
        match_on
            .iter()
            .map(|c| format!("{c}={}", r.get(*c).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let b_by_key: HashMap<String, &Row> = b.iter().map(|r| (key(r), r)).collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("compare.csv");
    let mut w = csv::Writer::from_path(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut header = vec![
        "match".to_owned(),
        "a_cell".into(),
        "b_cell".into(),
        "same_seeds".into(),
    ];
    for m in METRICS {
        header.extend([
            format!("{m}_a"),
            format!("{m}_b"),
            format!("{m}_ratio"),
            format!("{m}_p_value"),
            format!("{m}_significant"),
        ]);
    }
    w.write_record(&header)?;
    let mut matched = 0usize;
    let mut tput_ratios = Vec::new();
    // Per metric: matched cells with repeats on both sides, and how many differ significantly.
    let mut tested: indexmap::IndexMap<&str, (usize, usize)> = indexmap::IndexMap::new();
    let mut seeds_differ = Vec::new();
    let cell = |r: &Row| r.get("cell").cloned().unwrap_or_default();
    for ra in &a {
        let k = key(ra);
        let Some(rb) = b_by_key.get(&k) else {
            continue;
        };
        matched += 1;
        let same = significance::same_seeds(&spread_a, &cell(ra), &spread_b, &cell(rb));
        if same == Some(false) {
            seeds_differ.push(k.clone());
        }
        let mut rec = vec![
            k,
            cell(ra),
            cell(rb),
            same.map(|s| s.to_string()).unwrap_or_default(),
        ];
        for m in METRICS {
            let (va, vb) = (num(ra, m), num(rb, m));
            let ratio = match (va, vb) {
                (Some(x), Some(y)) if x != 0.0 => Some(y / x),
                _ => None,
            };
            if *m == "total_tps_per_gpu"
                && let Some(r) = ratio
            {
                tput_ratios.push(r);
            }
            for v in [va, vb, ratio] {
                rec.push(v.map(|v| format!("{v}")).unwrap_or_default());
            }
            let welch = significance::test(&spread_a, &cell(ra), &spread_b, &cell(rb), m);
            if let Some((_, significant)) = welch {
                let t = tested.entry(*m).or_insert((0, 0));
                t.0 += 1;
                t.1 += usize::from(significant);
            }
            rec.push(welch.map(|(p, _)| format!("{p}")).unwrap_or_default());
            rec.push(welch.map(|(_, s)| s.to_string()).unwrap_or_default());
        }
        w.write_record(&rec)?;
    }
    w.flush()?;
    if matched == 0 {
        bail!(
            "no cell of {} matches one of {} on {}",
            args.a.display(),
            args.b.display(),
            match_on.join(", ")
        );
    }
    let plots = args.out.join("plots");
    std::fs::create_dir_all(&plots)?;
    for panel in &PANELS {
        let chart = overlay(panel, &a, &b, &args.a_label, &args.b_label);
        chart.save(&plots.join(format!("compare_{}.png", panel.id)))?;
        chart.save(&plots.join(format!("compare_{}.svg", panel.id)))?;
    }
    let geo =
        (tput_ratios.iter().map(|r| r.ln()).sum::<f64>() / tput_ratios.len().max(1) as f64).exp();
    eprintln!(
        "compare: {matched} matched cells (on {}); total tokens/s/GPU {} / {}: geometric mean ratio {geo:.3}",
        match_on.join(", "),
        args.b_label,
        args.a_label
    );
    for (metric, (n, significant)) in &tested {
        eprintln!(
            "compare: {metric}: {significant} of {n} matched cells differ significantly (Welch's t-test, {:.0} %)",
            significance::ALPHA * 100.0
        );
    }
    if !tested.is_empty() {
        eprintln!(
            "compare: the tests use the repeats' spread: {}",
            super::repeats::COVERS
        );
    }
    if !seeds_differ.is_empty() {
        eprintln!(
            "compare: warning: {} matched cells ran different seeds on each side ({}): their repeats sampled different workloads, so a difference mixes the systems' with the samples'",
            seeds_differ.len(),
            seeds_differ.join("; ")
        );
    }
    if tested.is_empty() {
        eprintln!(
            "compare: no repeats on both sides (repeats.csv), so no difference is tested against the noise"
        );
    }
    println!("{}", path.display());
    Ok(())
}

/// Each side's cells and frontier on one panel.
fn overlay(panel: &Panel, a: &[Row], b: &[Row], a_label: &str, b_label: &str) -> Chart {
    let (x_col, y_col) = (panel.x.column(), panel.y.column());
    let mut series = Vec::new();
    for (i, (rows, label)) in [(a, a_label), (b, b_label)].into_iter().enumerate() {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((num(r, x_col)?, num(r, y_col)?)))
            .collect();
        // An invalid cell is drawn but, as in collect, never on a frontier.
        let valid: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.get("valid").is_none_or(|v| v != "false"))
            .filter_map(|r| Some((num(r, x_col)?, num(r, y_col)?)))
            .collect();
        let on = pareto::frontier(&valid, panel.better);
        let mut front: Vec<(f64, f64)> = valid
            .iter()
            .zip(&on)
            .filter(|(_, o)| **o)
            .map(|(p, _)| *p)
            .collect();
        front.sort_by(|p, q| p.0.total_cmp(&q.0));
        series.push(Series {
            label: label.to_owned(),
            points: pts,
            color: PALETTE[i],
            mark: Mark::Points,
            point_labels: Vec::new(),
        });
        series.push(Series {
            label: String::new(),
            points: front,
            color: PALETTE[i],
            mark: Mark::Line,
            point_labels: Vec::new(),
        });
    }
    Chart {
        title: format!("{}: {a_label} vs {b_label}", panel.title),
        x_label: panel.x_label.into(),
        y_label: panel.y_label.into(),
        series,
    }
}
