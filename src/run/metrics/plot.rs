//! `kvsweep metrics plot DIR`: a cell's server metrics over time as PNGs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::base::plot::{Chart, PALETTE, Series};
use crate::data::artifact::schema::{JsonArtifact, Metadata};

/// Draw a cell's server metrics (from `metrics.csv`, and `gpu.csv` where present) as PNGs.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// The cell's results directory (holds metrics.csv).
    pub dir: PathBuf,
    /// Where the PNGs go [default: DIR/plots].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A CSV file's columns by name, values parsed as numbers (empty cells are `None`).
struct Table {
    columns: HashMap<String, usize>,
    rows: Vec<Vec<Option<f64>>>,
}

impl Table {
    fn read(path: &Path) -> Result<Self> {
        let mut r = csv::Reader::from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let columns = r
            .headers()
            .with_context(|| format!("{}: no header row", path.display()))?
            .iter()
            .enumerate()
            .map(|(i, h)| (h.to_owned(), i))
            .collect();
        let mut rows = Vec::new();
        for (i, rec) in r.records().enumerate() {
            let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
            rows.push(rec.iter().map(|v| v.parse::<f64>().ok()).collect());
        }
        Ok(Self { columns, rows })
    }

    /// (x, y) for every row where both columns have a value.
    fn xy(&self, x: &str, y: &str) -> Vec<(f64, f64)> {
        let (Some(&xi), Some(&yi)) = (self.columns.get(x), self.columns.get(y)) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter_map(|r| Some((*r.get(xi)?.as_ref()?, *r.get(yi)?.as_ref()?)))
            .collect()
    }
}

/// What the charts of a cell say of its server: the engine label from the replay's metadata
/// (a directory without one, metrics scraped alone, has plain "server"), and the speed of a
/// simulator that ran faster than the hardware it modelled.
struct Server {
    title: String,
    /// Modelled seconds per wall-clock second: the charts draw the modelled hardware's time
    /// and rates, as the sweep's tables do (`collect::modelled_time`). 1 for a real engine.
    speed: f64,
}

impl Server {
    fn of(dir: &Path) -> Result<Self> {
        if !dir.join(Metadata::FILE).exists() {
            return Ok(Self {
                title: "server".into(),
                speed: 1.0,
            });
        }
        let meta = Metadata::read(dir)?;
        let speed = meta
            .simulator()
            .and_then(|s| s.speed)
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(1.0);
        let title = if meta.simulated == Some(true) {
            "simulated server".into()
        } else {
            meta.engine.unwrap_or_else(|| "server".into())
        };
        Ok(Self { title, speed })
    }

    /// The time axis' label.
    fn time_label(&self) -> String {
        if self.speed == 1.0 {
            "time since first request (s)".into()
        } else {
            format!(
                "modelled time since first request (s; the simulator ran {}× faster)",
                self.speed
            )
        }
    }
}

/// The charts of one cell, each with the file name it is saved under. Rates are per second of
/// the modelled hardware's time, as the x axis.
fn charts(metrics: &Table, gpu: Option<&Table>, server: &Server) -> Vec<(&'static str, Chart)> {
    let speed = server.speed;
    let engine = &server.title;
    // `rate`: whether the column is per second (divided by the speed) or a level.
    let chart = |title: &str, y_label: &str, rate: bool, series: Vec<(&str, &str)>| Chart {
        title: format!("{title} ({engine})"),
        x_label: server.time_label(),
        y_label: y_label.into(),
        series: series
            .into_iter()
            .enumerate()
            .map(|(i, (label, col))| {
                let per = if rate { speed } else { 1.0 };
                let points = metrics
                    .xy("rel_s", col)
                    .into_iter()
                    .map(|(x, y)| (x * speed, y / per))
                    .collect();
                Series::line(label, points, PALETTE[i % PALETTE.len()])
            })
            .collect(),
    };
    let mut out = vec![
        (
            "kv_usage.png",
            chart(
                "KV cache usage",
                "fraction of GPU KV cache in use",
                false,
                vec![("KV cache usage", "kv_cache_usage")],
            ),
        ),
        (
            "hit_rate.png",
            chart(
                "Prefix-cache hit rate per interval",
                "hits / queried tokens",
                false,
                vec![("interval hit rate", "interval_hit_rate")],
            ),
        ),
        (
            "requests.png",
            chart(
                "Requests in the engine",
                "requests",
                false,
                vec![("running", "running"), ("waiting", "waiting")],
            ),
        ),
        (
            "throughput.png",
            chart(
                "Token throughput",
                "tokens/s",
                true,
                vec![
                    ("prompt tokens/s", "prompt_tokens_per_s"),
                    ("generation tokens/s", "generation_tokens_per_s"),
                ],
            ),
        ),
        (
            "offload_bandwidth.png",
            chart(
                "KV offload bandwidth",
                "GB/s",
                true,
                vec![
                    ("GPU → CPU", "offload_to_cpu_gb_s"),
                    ("CPU → GPU", "offload_to_gpu_gb_s"),
                ],
            ),
        ),
    ];
    if let Some(gpu) = gpu {
        let t0 = metrics.xy("time", "rel_s").first().map(|(t, r)| t - r);
        let mut per_gpu: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        let col = |name: &str| gpu.columns.get(name).copied();
        if let (Some(t0), Some(ti), Some(gi), Some(ui)) =
            (t0, col("time"), col("gpu"), col("util_pct"))
        {
            for r in &gpu.rows {
                let cell = |i: usize| r.get(i).copied().flatten();
                let (Some(t), Some(g), Some(u)) = (cell(ti), cell(gi), cell(ui)) else {
                    continue;
                };
                let id = format!("{g}");
                let point = ((t - t0) * speed, u);
                match per_gpu.iter_mut().find(|(known, _)| *known == id) {
                    Some((_, pts)) => pts.push(point),
                    None => per_gpu.push((id, vec![point])),
                }
            }
        }
        out.push((
            "gpu_util.png",
            Chart {
                title: "GPU utilization".into(),
                x_label: server.time_label(),
                y_label: "utilization (%)".into(),
                series: per_gpu
                    .into_iter()
                    .enumerate()
                    .map(|(i, (g, pts))| {
                        Series::line(format!("GPU {g}"), pts, PALETTE[i % PALETTE.len()])
                    })
                    .collect(),
            },
        ));
    }
    out
}

/// The charts of a cell's results directory, each with its file name.
pub(crate) fn cell_charts(dir: &Path) -> Result<Vec<(&'static str, Chart)>> {
    let metrics_path = dir.join("metrics.csv");
    if !metrics_path.exists() {
        bail!(
            "{} does not exist: is {} a cell's results directory?",
            metrics_path.display(),
            dir.display()
        );
    }
    let metrics = Table::read(&metrics_path)?;
    let gpu_path = dir.join("gpu.csv");
    let gpu = gpu_path
        .exists()
        .then(|| Table::read(&gpu_path))
        .transpose()?;
    Ok(charts(&metrics, gpu.as_ref(), &Server::of(dir)?))
}

/// Draws the PNGs and returns their paths.
pub fn run(args: &PlotArgs) -> Result<Vec<PathBuf>> {
    let charts = cell_charts(&args.dir)?;
    let out = args.out.clone().unwrap_or_else(|| args.dir.join("plots"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    for (name, chart) in charts {
        let path = out.join(name);
        chart.save(&path)?;
        written.push(path);
    }
    Ok(written)
}
