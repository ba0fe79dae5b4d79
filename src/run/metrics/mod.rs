//! `kvsweep metrics`: records a server's Prometheus metrics beside the replay.
//!
//! Every `--interval` it scrapes `/metrics`, maps the engine's names onto one schema
//! ([`schema`]) and appends a row of cumulative values to `metrics_raw.csv` and a row of interval
//! values (rates, the interval's hit rate, mean latencies from histogram deltas) to `metrics.csv`,
//! whose counters count from the recorder's first scrape (so a server that served before, one
//! engine serving several cells in turn, gives each recording only its own traffic);
//! where a GPU telemetry tool exists, [`gpu`] samples the GPUs into `gpu.csv` on the same beat.
//! Rows before the server's first activity are kept out of `metrics.csv`, whose relative time
//! starts at the first active sample. An unreachable endpoint is retried with backoff and shows as
//! a gap; the scraper never fails the cell.

pub mod gpu;
pub mod parse;
pub mod plot;
pub mod schema;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::runtime::Handle;

use crate::base::shutdown::Shutdown;
use crate::data::artifact::CsvLog;
use crate::data::artifact::schema::{MetricsRawRow, MetricsRow};

use schema::{Engine, Snapshot};

/// `kvsweep metrics`: scrape (the default) or `plot` what a scrape recorded.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct MetricsCommand {
    #[command(subcommand)]
    pub action: Option<MetricsAction>,
    #[command(flatten)]
    pub scrape: Option<MetricsArgs>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum MetricsAction {
    /// Draw a cell's server metrics over time as PNGs.
    Plot(plot::PlotArgs),
}

/// Record a server's Prometheus metrics while a cell runs.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// The metrics endpoint (http://host:port/metrics; a bare http://host:port means its /metrics).
    #[arg(long)]
    pub url: String,
    /// Results directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Time between scrapes: `1s`, `500ms`, or seconds.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop when this process has exited.
    #[arg(long)]
    pub(crate) until_pid: Option<u32>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1.0)
    } else {
        (s, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(|v| Duration::from_secs_f64(v * scale))
        .ok_or_else(|| format!("`{s}` is not an interval: use e.g. 1s, 500ms or 2"))
}

/// The increase of a counter, treating a drop as a restart from zero.
fn delta(cur: Option<f64>, prev: Option<f64>) -> Option<f64> {
    match (cur, prev) {
        (Some(c), Some(p)) if c >= p => Some(c - p),
        (Some(c), Some(_)) => Some(c),
        _ => None,
    }
}

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// The `metrics.csv` row at unix time `t` (`rel_s` from the first busy scrape) for the interval
/// from `prev` to `cur`, `dt` seconds long.
pub fn derive(t: f64, rel_s: f64, cur: &Snapshot, prev: &Snapshot, dt: f64) -> MetricsRow {
    let per_s = |c, p| delta(c, p).map(|d| d / dt.max(1e-9));
    let gb_s = |c, p| per_s(c, p).map(|v| v / 1e9);
    let mean_ms =
        |sum_c, sum_p, n_c, n_p| ratio(delta(sum_c, sum_p), delta(n_c, n_p)).map(|v| v * 1000.0);
    MetricsRow {
        time: t,
        rel_s,
        running: cur.running,
        waiting: cur.waiting,
        kv_cache_usage: cur.kv_usage,
        preemptions: cur.preemptions,
        prefix_queries: cur.prefix_queries,
        prefix_hits: cur.prefix_hits,
        prefix_hits_device: cur.prefix_hits_device,
        prefix_hits_host: cur.prefix_hits_host,
        prefix_hits_other: cur.prefix_hits_other,
        interval_hit_rate: ratio(
            delta(cur.prefix_hits, prev.prefix_hits),
            delta(cur.prefix_queries, prev.prefix_queries),
        ),
        prompt_tokens: cur.prompt_tokens,
        generation_tokens: cur.generation_tokens,
        prompt_tokens_per_s: per_s(cur.prompt_tokens, prev.prompt_tokens),
        generation_tokens_per_s: per_s(cur.generation_tokens, prev.generation_tokens),
        prompt_compute: cur.prompt_compute,
        prompt_cache_hit: cur.prompt_cache_hit,
        prompt_external: cur.prompt_external,
        offload_bytes_to_cpu: cur.offload_bytes_to_cpu,
        offload_bytes_to_gpu: cur.offload_bytes_to_gpu,
        offload_to_cpu_gb_s: gb_s(cur.offload_bytes_to_cpu, prev.offload_bytes_to_cpu),
        offload_to_gpu_gb_s: gb_s(cur.offload_bytes_to_gpu, prev.offload_bytes_to_gpu),
        offload_seconds_to_cpu: cur.offload_seconds_to_cpu,
        offload_seconds_to_gpu: cur.offload_seconds_to_gpu,
        ttft_mean_ms: mean_ms(cur.ttft_sum, prev.ttft_sum, cur.ttft_count, prev.ttft_count),
        itl_mean_ms: mean_ms(cur.itl_sum, prev.itl_sum, cur.itl_count, prev.itl_count),
        queue_mean_ms: mean_ms(
            cur.queue_sum,
            prev.queue_sum,
            cur.queue_count,
            prev.queue_count,
        ),
        format_version: MetricsRow::VERSION,
    }
}

fn raw_row(t: f64, s: &Snapshot) -> MetricsRawRow {
    MetricsRawRow {
        time: t,
        ok: true,
        error: String::new(),
        running: s.running,
        waiting: s.waiting,
        kv_cache_usage: s.kv_usage,
        preemptions: s.preemptions,
        prefix_queries: s.prefix_queries,
        prefix_hits: s.prefix_hits,
        prefix_hits_device: s.prefix_hits_device,
        prefix_hits_host: s.prefix_hits_host,
        prefix_hits_other: s.prefix_hits_other,
        prompt_tokens: s.prompt_tokens,
        generation_tokens: s.generation_tokens,
        prompt_compute: s.prompt_compute,
        prompt_cache_hit: s.prompt_cache_hit,
        prompt_external: s.prompt_external,
        offload_bytes_to_cpu: s.offload_bytes_to_cpu,
        offload_bytes_to_gpu: s.offload_bytes_to_gpu,
        offload_seconds_to_cpu: s.offload_seconds_to_cpu,
        offload_seconds_to_gpu: s.offload_seconds_to_gpu,
        ttft_sum: s.ttft_sum,
        ttft_count: s.ttft_count,
        itl_sum: s.itl_sum,
        itl_count: s.itl_count,
        queue_sum: s.queue_sum,
        queue_count: s.queue_count,
        format_version: MetricsRawRow::VERSION,
    }
}

/// A counter's increase since `base`, the recorder's first scrape; a drop below it is a
/// restarted server, counted from zero.
fn since(cur: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (cur, base) {
        (Some(c), Some(b)) if c >= b => Some(c - b),
        (c, _) => c,
    }
}

/// Puts `row`'s cumulative counters (from `cur`) on the recorder's start: their increases since
/// `base`. Rates and interval figures are differences already and stay as they are.
fn count_from(row: &mut MetricsRow, cur: &Snapshot, base: &Snapshot) {
    row.preemptions = since(cur.preemptions, base.preemptions);
    row.prefix_queries = since(cur.prefix_queries, base.prefix_queries);
    row.prefix_hits = since(cur.prefix_hits, base.prefix_hits);
    row.prefix_hits_device = since(cur.prefix_hits_device, base.prefix_hits_device);
    row.prefix_hits_host = since(cur.prefix_hits_host, base.prefix_hits_host);
    row.prefix_hits_other = since(cur.prefix_hits_other, base.prefix_hits_other);
    row.prompt_tokens = since(cur.prompt_tokens, base.prompt_tokens);
    row.generation_tokens = since(cur.generation_tokens, base.generation_tokens);
    row.prompt_compute = since(cur.prompt_compute, base.prompt_compute);
    row.prompt_cache_hit = since(cur.prompt_cache_hit, base.prompt_cache_hit);
    row.prompt_external = since(cur.prompt_external, base.prompt_external);
    row.offload_bytes_to_cpu = since(cur.offload_bytes_to_cpu, base.offload_bytes_to_cpu);
    row.offload_bytes_to_gpu = since(cur.offload_bytes_to_gpu, base.offload_bytes_to_gpu);
    row.offload_seconds_to_cpu = since(cur.offload_seconds_to_cpu, base.offload_seconds_to_cpu);
    row.offload_seconds_to_gpu = since(cur.offload_seconds_to_gpu, base.offload_seconds_to_gpu);
}

/// Whether the server did anything in the interval: the end of the idle prefix.
fn active(cur: &Snapshot, prev: &Snapshot) -> bool {
    cur.running.unwrap_or(0.0) > 0.0
        || cur.waiting.unwrap_or(0.0) > 0.0
        || delta(cur.prompt_tokens, prev.prompt_tokens).unwrap_or(0.0) > 0.0
        || delta(cur.generation_tokens, prev.generation_tokens).unwrap_or(0.0) > 0.0
}

/// Writes the three files as scrapes come in.
pub struct Recorder {
    raw: CsvLog,
    rows: CsvLog,
    engine: Option<Engine>,
    /// The engine's cache configuration, from the first scrape that states it.
    cache_config: Option<serde_json::Value>,
    prev: Option<(f64, Snapshot)>,
    /// The first scrape: `metrics.csv`'s counters count from it.
    base: Option<Snapshot>,
    /// Time of the first active sample; `None` while the server is still idle.
    first_active: Option<f64>,
    names: BTreeSet<String>,
    scrapes_ok: u64,
    scrapes_failed: u64,
    malformed_lines: u64,
}

impl Recorder {
    pub fn create(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self {
            raw: CsvLog::create(&dir.join(MetricsRawRow::FILE), MetricsRawRow::COLUMNS)?,
            rows: CsvLog::create(&dir.join(MetricsRow::FILE), MetricsRow::COLUMNS)?,
            engine: None,
            cache_config: None,
            prev: None,
            base: None,
            first_active: None,
            names: BTreeSet::new(),
            scrapes_ok: 0,
            scrapes_failed: 0,
            malformed_lines: 0,
        })
    }

    /// Records one scrape's text taken at unix time `t`.
    pub fn scrape(&mut self, t: f64, text: &str) -> Result<()> {
        let e = parse::parse(text);
        self.malformed_lines += e.malformed as u64;
        if self.engine.is_none() {
            self.engine = schema::detect(&e);
        }
        let Some(engine) = self.engine else {
            return self.failure(t, "no vllm:, sglang: or llamacpp: metric in the scrape");
        };
        self.scrapes_ok += 1;
        self.names.extend(
            e.samples
                .iter()
                .filter(|s| s.name.starts_with(engine.prefix()))
                .map(|s| s.name.to_owned()),
        );
        if self.cache_config.is_none() {
            self.cache_config = schema::cache_config(engine, &e);
        }
        let cur = schema::snapshot(engine, &e);
        self.raw.append_row(&raw_row(t, &cur))?;
        let base = *self.base.get_or_insert(cur);
        if let Some((pt, prev)) = self.prev {
            if self.first_active.is_none() && active(&cur, &prev) {
                self.first_active = Some(t);
            }
            if let Some(t0) = self.first_active {
                let mut row = derive(t, t - t0, &cur, &prev, t - pt);
                count_from(&mut row, &cur, &base);
                self.rows.append_row(&row)?;
            }
        }
        self.prev = Some((t, cur));
        self.raw.flush()?;
        self.rows.flush()?;
        Ok(())
    }

    /// Records a failed scrape as a gap.
    pub fn failure(&mut self, t: f64, error: &str) -> Result<()> {
        self.scrapes_failed += 1;
        self.raw.append_row(&MetricsRawRow {
            time: t,
            error: error.replace(['\n', '\r'], " "),
            format_version: MetricsRawRow::VERSION,
            ..MetricsRawRow::default()
        })?;
        self.raw.flush()?;
        Ok(())
    }

    /// `metrics_meta.json`: the engine, its cache configuration where it states one, the names
    /// found and the expected ones that were absent.
    pub fn meta(&self, gpu: serde_json::Value) -> serde_json::Value {
        let absent: Vec<&str> = self
            .engine
            .map(|e| {
                e.expected()
                    .iter()
                    .copied()
                    .filter(|n| !self.names.contains(*n))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "engine": self.engine,
            "cache_config": self.cache_config,
            "names_found": self.names,
            "expected_absent": absent,
            "scrapes_ok": self.scrapes_ok,
            "scrapes_failed": self.scrapes_failed,
            "malformed_lines": self.malformed_lines,
            "idle_rows_trimmed": true,
            "gpu_telemetry": gpu,
        })
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Runs `kvsweep metrics` or `kvsweep metrics plot`.
pub fn command(cmd: &MetricsCommand, runtime: &Handle, shutdown: &Shutdown) -> Result<()> {
    match (&cmd.action, &cmd.scrape) {
        (Some(MetricsAction::Plot(args)), _) => {
            for path in plot::run(args)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        (None, Some(args)) => run(args, runtime, shutdown),
        (None, None) => bail!("give --url and --out to scrape, or `plot DIR` to draw"),
    }
}

/// Scrapes on `runtime` until done or `shutdown`.
pub fn run(args: &MetricsArgs, runtime: &Handle, shutdown: &Shutdown) -> Result<()> {
    let args = &MetricsArgs {
        url: endpoint(&args.url)?,
        ..args.clone()
    };
    runtime.block_on(async {
        let stop = shutdown.stop()?;
        record(args.clone(), async move {
            stop.await;
        })
        .await
    })
}

/// The endpoint to scrape: `--url` as given, or its `/metrics` when it names only the server
/// (http://host:port), which is where every engine kvsweep starts serves them.
fn endpoint(url: &str) -> Result<String> {
    let mut parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .with_context(|| {
            format!("--url must be an http(s) URL of a /metrics endpoint, got `{url}`")
        })?;
    if parsed.path() == "/" {
        parsed.set_path("/metrics");
    }
    Ok(parsed.into())
}

/// Scrapes into `args.out` until the duration ends, `--until-pid` exits or `stop` resolves.
pub async fn record(args: MetricsArgs, stop: impl std::future::Future<Output = ()>) -> Result<()> {
    tokio::pin!(stop);
    let client = reqwest::Client::builder()
        .timeout(args.interval.max(Duration::from_secs(2)))
        .build()?;
    let mut rec = Recorder::create(&args.out)?;
    let mut gpu = gpu::GpuRecorder::create(&args.out)?;
    let gpu_meta =
        |g: &Option<gpu::GpuRecorder>| g.as_ref().map_or_else(gpu::unavailable_meta, |g| g.meta());
    let meta_path = args.out.join("metrics_meta.json");
    crate::data::artifact::write_json_atomic(&meta_path, &rec.meta(gpu_meta(&gpu)))?;
    let start = Instant::now();
    let mut failures = 0u32;
    let mut stopping = false;
    loop {
        let t = unix_now();
        let result = async {
            client
                .get(&args.url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        }
        .await;
        let wait = match result {
            Ok(text) => {
                failures = 0;
                rec.scrape(t, &text)?;
                args.interval
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    // Said once per outage: the scraper keeps trying and never fails a cell.
                    eprintln!("metrics: cannot scrape {}: {e}; retrying", args.url);
                }
                rec.failure(t, &e.to_string())?;
                // Back off up to ten intervals while the endpoint is away.
                args.interval * 2u32.pow(failures.min(4)).min(10)
            }
        };
        if let Some(g) = gpu.as_mut() {
            g.sample(t, args.interval.max(Duration::from_secs(2)))
                .await?;
        }
        crate::data::artifact::write_json_atomic(&meta_path, &rec.meta(gpu_meta(&gpu)))?;
        if stopping
            || args
                .duration
                .is_some_and(|d| start.elapsed().as_secs_f64() >= d)
            || args.until_pid.is_some_and(|p| !pid_alive(p))
        {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // One last scrape, so that the final interval is recorded.
            _ = &mut stop => stopping = true,
        }
    }
}
