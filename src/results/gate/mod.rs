//! `kvsweep gate CANDIDATE --baseline (DIR | db:LABEL | db:latest)`: fails (exit 1) when a
//! configuration of the candidate sweep regressed against the baseline, naming it; reports
//! improvements and insignificant changes without failing. Writes a Markdown table (appended to
//! `$GITHUB_STEP_SUMMARY` when set), a PR-comment body and `gate.csv`.
//!
//! Unlike InferenceX's `compare_results.py` (colored deltas, no threshold) or a fixed ±20 %
//! band, the gate knows each configuration's noise: from the repeats of both sides, or, for a
//! side run once, from the configuration's stored history (`verdict`).

pub mod markdown;
pub mod verdict;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::results::history::DbArg;
use crate::results::history::store::{History, Pick};
use crate::results::history::sweep::{self, CellRecord};
use verdict::{Outcome, Rules, Side, Verdict};

/// The metrics gated unless `--metrics` names others: throughput and the median latencies.
pub const DEFAULT_METRICS: &[&str] = &[
    "total_tps_per_gpu",
    "output_tps_per_gpu",
    "ttft_p50_ms",
    "tpot_p50_ms",
    "e2e_p50_ms",
];

/// How many of a configuration's newest stored runs measure its noise for a single run.
const HISTORY_RUNS: i64 = 30;

/// Fail when a collected sweep regressed against a baseline, beyond a margin and the noise.
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// The candidate: a directory `kvsweep collect` wrote.
    pub candidate: PathBuf,
    /// The baseline: a collected directory, `db:LABEL` (the newest stored run with that label)
    /// or `db:latest` (the newest stored run).
    #[arg(long)]
    pub baseline: String,
    /// A change worse than this share is a regression when it is also significant.
    #[arg(long, default_value_t = 0.05)]
    pub margin: f64,
    /// Significance level of the test.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// The spread of a metric is never taken below this share of its mean: repeats that agree
    /// exactly would otherwise make any change significant.
    #[arg(long, default_value_t = 0.01)]
    pub noise_floor: f64,
    /// The summary.csv metrics to gate, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_METRICS.iter().map(|m| m.to_string()))]
    pub metrics: Vec<String>,
    /// Where gate.csv, summary.md (the step-summary table) and pr-comment.md go.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub db: DbArg,
}

/// One gated metric of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub config: String,
    pub cell: String,
    pub metric: String,
    pub baseline: f64,
    pub(crate) baseline_n: usize,
    pub candidate: f64,
    pub(crate) candidate_n: usize,
    pub verdict: Verdict,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Report {
    pub candidate: String,
    pub baseline: String,
    pub rules: Rules,
    pub rows: Vec<Row>,
    /// Candidate configurations the baseline does not have.
    pub(crate) new_configs: Vec<String>,
}

impl Report {
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict.outcome == Outcome::Regression)
    }
}

pub fn run(args: &GateArgs) -> Result<()> {
    for (name, v) in [
        ("--margin", args.margin),
        ("--alpha", args.alpha),
        ("--noise-floor", args.noise_floor),
    ] {
        if !(v.is_finite() && (0.0..1.0).contains(&v)) {
            bail!("{name} {v} must be a share between 0 and 1");
        }
    }
    let rules = Rules {
        margin: args.margin,
        alpha: args.alpha,
        noise_floor: args.noise_floor,
    };
    let candidate = sweep::read(&args.candidate)?;
    let mut history = open_history(args)?;
    let (baseline_cells, baseline_name) = match args.baseline.strip_prefix("db:") {
        Some(which) => {
            let h = history
                .as_mut()
                .context("no history database to take the baseline from")?;
            let pick = if which == "latest" {
                Pick::Latest
            } else {
                Pick::Label(which.to_owned())
            };
            let run = h.pick(&pick)?;
            let name = format!(
                "{} (run {} of {}, commit {}, {})",
                args.baseline,
                run.id,
                h.place,
                run.meta
                    .git_commit
                    .as_deref()
                    .map_or("unknown", |c| &c[..c.len().min(12)]),
                run.meta.date
            );
            (h.cells(run.id)?, name)
        }
        None => (
            sweep::read(Path::new(&args.baseline))?.cells,
            args.baseline.clone(),
        ),
    };
    eprintln!(
        "gate: {} against the baseline {baseline_name}",
        args.candidate.display()
    );
    let report = compare(
        &candidate.cells,
        &baseline_cells,
        &args.metrics,
        &rules,
        history.as_mut(),
        (args.candidate.display().to_string(), baseline_name),
    )?;
    write(&report, &args.out)?;
    let regressions: Vec<&Row> = report.regressions().collect();
    for r in &regressions {
        eprintln!("REGRESSION {}", describe(r));
    }
    eprintln!(
        "gate: {} configurations, {} metrics compared: {} regressions, {} improvements, {} new configurations",
        report
            .rows
            .iter()
            .map(|r| &r.config)
            .collect::<BTreeSet<_>>()
            .len(),
        report.rows.len(),
        regressions.len(),
        report
            .rows
            .iter()
            .filter(|r| r.verdict.outcome == Outcome::Improvement)
            .count(),
        report.new_configs.len()
    );
    if !regressions.is_empty() {
        bail!(
            "gate failed: {} regression(s) beyond the {:.1} % margin: {}",
            regressions.len(),
            rules.margin * 100.0,
            regressions
                .iter()
                .map(|r| describe(r))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(())
}

/// One row in words: configuration, metric, baseline, candidate, change and p-value.
pub fn describe(r: &Row) -> String {
    format!(
        "{} ({}): {} baseline {:.4} → candidate {:.4} ({:+.1} %, p = {})",
        r.config,
        r.cell,
        r.metric,
        r.baseline,
        r.candidate,
        r.verdict.change * 100.0,
        r.verdict
            .p_value
            .map_or("n/a".into(), |p| format!("{p:.4}"))
    )
}

/// The history, where there is one: always for a `db:` baseline; for a directory baseline only
/// when the database exists (it then supplies single runs' noise).
fn open_history(args: &GateArgs) -> Result<Option<History>> {
    let location = crate::results::history::db::Location::parse(&args.db.db);
    let needed = args.baseline.starts_with("db:");
    let exists = match &location {
        crate::results::history::db::Location::Sqlite(p) => p.exists(),
        crate::results::history::db::Location::Postgres(_) => true,
    };
    if needed || exists {
        History::open(&args.db.db, false).map(Some)
    } else {
        Ok(None)
    }
}

/// Matches configurations and judges each metric.
pub fn compare(
    candidate: &[CellRecord],
    baseline: &[CellRecord],
    metrics: &[String],
    rules: &Rules,
    mut history: Option<&mut History>,
    names: (String, String),
) -> Result<Report> {
    let models = |cells: &[CellRecord]| {
        cells
            .iter()
            .map(|c| c.configuration.model.clone())
            .collect::<BTreeSet<_>>()
    };
    let (cand_models, base_models) = (models(candidate), models(baseline));
    if cand_models.is_disjoint(&base_models) {
        bail!(
            "the baseline {} measured {:?} and the candidate {} measured {:?}: a gate compares the same model",
            names.1,
            base_models,
            names.0,
            cand_models
        );
    }
    let present: Vec<String> = metrics
        .iter()
        .filter(|m| {
            let there = candidate.iter().any(|c| c.summary.contains_key(*m));
            if !there {
                eprintln!("gate: `{m}` is not a column of the candidate's summary.csv: not gated");
            }
            there
        })
        .cloned()
        .collect();
    if present.is_empty() {
        bail!("--metrics: none of {metrics:?} is a column of the candidate's summary.csv");
    }
    let metrics = &present;
    // Each configuration is judged on several metrics at once: at `alpha` each, a change just
    // under the margin would fail one of them by chance far more often than `alpha`. Bonferroni:
    // each metric at alpha / metrics, so a configuration false-alarms at most at `alpha`.
    let per_metric = Rules {
        alpha: rules.alpha / metrics.len() as f64,
        ..*rules
    };
    let mut rows = Vec::new();
    let mut new_configs = Vec::new();
    for cand in candidate {
        let Some(base) = baseline
            .iter()
            .find(|b| b.configuration == cand.configuration)
        else {
            new_configs.push(cand.config.clone());
            continue;
        };
        if base.simulated != cand.simulated {
            bail!(
                "{}: the baseline is {} and the candidate {}: a simulated run is not gated against a measured one",
                cand.config,
                kind(base.simulated),
                kind(cand.simulated)
            );
        }
        let mut noise: Option<Vec<CellRecord>> = None;
        for metric in metrics {
            let (Some(b), Some(c)) = (base.sample(metric), cand.sample(metric)) else {
                continue;
            };
            let mut side = |s: &crate::base::student_t::Sample| -> Result<Option<Side>> {
                if let Some(side) = Side::of_repeats(s, rules.noise_floor) {
                    return Ok(Some(side));
                }
                let Some(h) = history.as_deref_mut() else {
                    return Ok(None);
                };
                if noise.is_none() {
                    noise = Some(
                        h.config_runs(&cand.config, HISTORY_RUNS)?
                            .into_iter()
                            .map(|(_, c)| c)
                            .collect(),
                    );
                }
                let values: Vec<f64> = noise
                    .iter()
                    .flatten()
                    .filter_map(|c| c.sample(metric))
                    .map(|s| s.mean)
                    .collect();
                Ok(Side::of_history(s, &values, rules.noise_floor))
            };
            let (bs, cs) = (side(&b)?, side(&c)?);
            rows.push(Row {
                config: cand.config.clone(),
                cell: cand.cell.clone(),
                metric: metric.clone(),
                baseline: b.mean,
                baseline_n: b.n,
                candidate: c.mean,
                candidate_n: c.n,
                verdict: verdict::judge(metric, b.mean, c.mean, bs, cs, &per_metric),
            });
        }
    }
    if rows.is_empty() {
        let sample: Vec<&str> = baseline.iter().take(3).map(|c| c.config.as_str()).collect();
        bail!(
            "no configuration of the candidate {} matches one of the baseline {} (baseline has e.g. {:?}; candidate has e.g. {:?})",
            names.0,
            names.1,
            sample,
            new_configs.iter().take(3).collect::<Vec<_>>()
        );
    }
    Ok(Report {
        candidate: names.0,
        baseline: names.1,
        rules: *rules,
        rows,
        new_configs,
    })
}

fn kind(simulated: bool) -> &'static str {
    if simulated { "simulated" } else { "measured" }
}

/// Writes gate.csv, summary.md and pr-comment.md into `out`, and appends the summary to
/// `$GITHUB_STEP_SUMMARY` when it is set.
fn write(report: &Report, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let csv_path = out.join("gate.csv");
    let mut w = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    w.write_record([
        "config",
        "cell",
        "metric",
        "baseline",
        "baseline_n",
        "candidate",
        "candidate_n",
        "change",
        "p_value",
        "outcome",
    ])?;
    for r in &report.rows {
        w.write_record([
            r.config.clone(),
            r.cell.clone(),
            r.metric.clone(),
            r.baseline.to_string(),
            r.baseline_n.to_string(),
            r.candidate.to_string(),
            r.candidate_n.to_string(),
            r.verdict.change.to_string(),
            r.verdict.p_value.map(|p| p.to_string()).unwrap_or_default(),
            r.verdict.outcome.as_str().to_owned(),
        ])?;
    }
    w.flush()?;
    let summary = markdown::summary(report);
    let path = out.join("summary.md");
    std::fs::write(&path, &summary).with_context(|| format!("cannot write {}", path.display()))?;
    let path = out.join("pr-comment.md");
    std::fs::write(&path, markdown::pr_comment(report))
        .with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(step) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&step)
            .with_context(|| {
                format!(
                    "cannot append to $GITHUB_STEP_SUMMARY ({})",
                    step.to_string_lossy()
                )
            })?;
        f.write_all(summary.as_bytes())?;
    }
    Ok(())
}
