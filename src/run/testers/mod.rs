//! `kvsweep test`: the synthetic cache testers (kv-cache-tester's single-prompt, cache-rate and
//! working-set), on the replay's client: token-exact prompts whose sharing is set by
//! construction, so a hit rate is a setting, not an accident.

pub mod cache_rate;
pub mod load;
pub mod output;
pub mod single_prompt;
pub mod working_set;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::runtime::Handle;

use self::load::Stats;
use crate::base::plot::{Chart, PALETTE, Series};
use crate::base::workload::tester::{CombineArgs, TestArgs, Tester, TtftMetric};

impl TtftMetric {
    pub fn of(self, st: &Stats) -> f64 {
        match self {
            TtftMetric::Max => st.ttft_max_ms,
            TtftMetric::Avg => st.ttft_avg_ms,
            TtftMetric::P95 => st.ttft_p95_ms,
        }
    }
}

/// `kvsweep test`, on `runtime`.
pub fn run(args: &TestArgs, runtime: &Handle) -> Result<()> {
    runtime.block_on(run_async(args))
}

/// The tester, in the caller's runtime (run-cell runs it as a cell's workload).
pub(crate) async fn run_async(args: &TestArgs) -> Result<()> {
    match &args.tester {
        Tester::SinglePrompt(a) => single_prompt::run(a).await,
        Tester::CacheRate(a) => cache_rate::run(a).await,
        Tester::WorkingSet(a) => working_set::run(a).await,
        Tester::Report(a) => report(&a.dir),
        Tester::Combine(a) => combine(a),
    }
}

/// A line chart of named series, saved as PNG (nothing is drawn for no points).
pub(crate) fn plot_lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: Vec<(&str, Vec<(f64, f64)>)>,
) -> Result<()> {
    let series: Vec<Series> = series
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .enumerate()
        .map(|(i, (label, points))| {
            let mut s = Series::line(label, points, PALETTE[i % PALETTE.len()]);
            s.mark = crate::base::plot::Mark::LineAndPoints;
            s
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    Chart {
        title: title.to_owned(),
        x_label: x_label.to_owned(),
        y_label: y_label.to_owned(),
        series,
    }
    .save(path)
}

fn settings(dir: &Path) -> Result<Value> {
    let path = dir.join("progress.json");
    serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))
}

fn contexts(v: &Value) -> Vec<u32> {
    v["settings"]["context_sizes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_u64().map(|c| c as u32))
                .collect()
        })
        .unwrap_or_default()
}

/// `kvsweep test report DIR`: every run under DIR redrawn from its CSVs, then the index.
pub fn report(dir: &Path) -> Result<()> {
    let mut runs = Vec::new();
    for entry in walk(dir, 4) {
        if entry.join("progress.json").is_file() {
            runs.push(entry);
        }
    }
    if runs.is_empty() {
        bail!(
            "no tester runs (directories with progress.json) under {}",
            dir.display()
        );
    }
    for run in &runs {
        let v = settings(run)?;
        match v["tester"].as_str() {
            Some("single-prompt") => single_prompt::summarize(run)?,
            Some("cache-rate") => cache_rate::summarize(run, &contexts(&v))?,
            Some("working-set") => {
                working_set::summarize(run, &contexts(&v), None)?;
            }
            Some("combine") => {}
            other => bail!("{}: unknown tester {other:?}", run.display()),
        }
    }
    println!("{}", output::write_index(dir)?.display());
    Ok(())
}

fn walk(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if depth == 0 {
        return out;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            out.extend(walk(&entry.path(), depth - 1));
        }
    }
    out
}

/// Labelled curves of one chart.
type Curves = Vec<(String, Vec<(f64, f64)>)>;

/// `kvsweep test combine`: each context size's throughput and TTFT curves of several cache-rate
/// runs on one chart, and their summaries in one table.
pub fn combine(args: &CombineArgs) -> Result<()> {
    if !args.labels.is_empty() && args.labels.len() != args.output_dirs.len() {
        bail!("--labels: give one label per --output-dirs entry");
    }
    let labels: Vec<String> = args
        .output_dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            args.labels.get(i).cloned().unwrap_or_else(|| {
                d.file_name().map_or(d.display().to_string(), |n| {
                    n.to_string_lossy().into_owned()
                })
            })
        })
        .collect();
    // Starts the output afresh, and lets `report` and the index find it.
    let mut progress = output::Progress::open(
        &args.output,
        "combine",
        serde_json::json!({"output_dirs": args.output_dirs, "labels": labels}),
        true,
    )?;
    let mut all_contexts: Vec<u32> = Vec::new();
    for d in &args.output_dirs {
        let v = settings(d)?;
        if v["tester"] != "cache-rate" {
            bail!(
                "{}: combine reads cache-rate runs; this is {}",
                d.display(),
                v["tester"]
            );
        }
        all_contexts.extend(contexts(&v));
    }
    all_contexts.sort_unstable();
    all_contexts.dedup();
    let mut table = Vec::new();
    for &ctx in &all_contexts {
        let mut by_metric: Vec<(&str, &str, Curves)> = vec![
            ("input_throughput", "input tokens/s", Vec::new()),
            ("output_throughput", "output tokens/s", Vec::new()),
            ("ttft_comparison", "TTFT p95 (ms)", Vec::new()),
        ];
        for (d, label) in args.output_dirs.iter().zip(&labels) {
            let rows = output::read_rows(&d.join(format!("summary_ctx{ctx}.csv")))?;
            for (key, (_, _, series)) in ["input_tps", "output_tps", "ttft_p95_ms"]
                .iter()
                .zip(by_metric.iter_mut())
            {
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter_map(|r| {
                        Some((r["cache_hit_rate"].parse().ok()?, r[*key].parse().ok()?))
                    })
                    .collect();
                series.push((label.clone(), pts));
            }
            for r in &rows {
                table.push(vec![
                    label.clone(),
                    ctx.to_string(),
                    r["cache_hit_rate"].clone(),
                    r["peak_concurrency"].clone(),
                    r["input_tps"].clone(),
                    r["output_tps"].clone(),
                    r["ttft_p95_ms"].clone(),
                ]);
            }
        }
        for (name, y, series) in &by_metric {
            plot_lines(
                &args.output.join(format!("{name}_ctx{ctx}.png")),
                &format!("{y}, {ctx}-token context"),
                "target hit rate (%)",
                y,
                series
                    .iter()
                    .map(|(l, p)| (l.as_str(), p.clone()))
                    .collect(),
            )?;
        }
    }
    let path = args.output.join("summary_comparison.csv");
    std::fs::remove_file(&path).ok();
    output::append(
        &path,
        &[
            "label",
            "context_tokens",
            "cache_hit_rate",
            "peak_concurrency",
            "input_tps",
            "output_tps",
            "ttft_p95_ms",
        ],
        &table,
    )?;
    progress.finish("combined")?;
    println!("{}", output::write_index(&args.output)?.display());
    Ok(())
}
