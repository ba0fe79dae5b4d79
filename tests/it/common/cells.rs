//! Synthetic cell artifact directories, shaped like `kvsweep run-cell` leaves them.

use std::path::{Path, PathBuf};

use kvsweep::artifact::schema::{
    CacheUse, CellPlan, JsonArtifact, MetricsRow, Quantiles, RequestCounts, Status, Summary,
    Throughput,
};
use kvsweep::engine::EngineKind;
use kvsweep::spec::{Cell, OffloadBackend, TraceFormat};

/// What varies between synthetic cells.
#[derive(Debug, Clone)]
pub struct SyntheticCell {
    pub name: String,
    pub runner: String,
    pub tp: u32,
    pub users: u32,
    pub offload: &'static str,
    pub status: &'static str,
    pub ok: u64,
    pub failed: u64,
    pub total_tps: f64,
    pub ttft_p50_ms: f64,
    pub tpot_p50_ms: f64,
}

impl SyntheticCell {
    pub fn new(runner: &str, tp: u32, users: u32, offload: &'static str) -> Self {
        Self {
            name: format!("s_{runner}_tp{tp}_users{users}_offload{offload}"),
            runner: runner.into(),
            tp,
            users,
            offload,
            status: "ok",
            ok: 100,
            failed: 0,
            total_tps: 1000.0 * f64::from(users),
            ttft_p50_ms: 100.0 * f64::from(users),
            tpot_p50_ms: 10.0 + f64::from(users),
        }
    }

    /// Writes the cell's files into `parent/<name>` and returns that directory.
    pub fn write(&self, parent: &Path) -> PathBuf {
        let dir = parent.join(&self.name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let plan = CellPlan {
            format_version: CellPlan::VERSION,
            cell: Cell {
                name: self.name.clone(),
                runner: Some(self.runner.clone()),
                tp: self.tp,
                ep: 0,
                users: self.users,
                offload: serde_json::from_value(self.offload.into()).expect("an offload mode"),
            },
            spec: "synthetic.yaml".into(),
            runner: self.runner.clone(),
            engine: EngineKind::Sim,
            model: "llama-3.1-8b".into(),
            model_path: None,
            max_model_len: None,
            image: None,
            precision: None,
            offload_backend: OffloadBackend::default(),
            offload_gib: None,
            engine_args: Vec::new(),
            duration_s: 60,
            traces: None,
            trace_url: None,
            trace_format: TraceFormat::default(),
            workload: kvsweep::workload::parse(
                &["replay", "--traces", "traces", "--out", "."].map(String::from),
            )
            .expect("a replay workload"),
            port: 8000,
            health_timeout_s: 60,
        };
        plan.write(&dir).expect("cell.json");
        let state = serde_json::from_value(self.status.into()).expect("a cell state");
        Status::new(state, "synthetic")
            .write(&dir)
            .expect("status.json");
        let total = self.ok + self.failed;
        let pcts = |p50: f64| Quantiles {
            count: self.ok,
            p50: Some(p50),
            p90: Some(p50 * 1.5),
            p99: Some(p50 * 2.0),
            ..Quantiles::default()
        };
        Summary {
            format_version: Summary::VERSION,
            engine: "sim".into(),
            simulated: true,
            completed: true,
            duration_s: 60.0,
            requests: RequestCounts {
                total,
                ok: self.ok,
                failed: self.failed,
                error_rate: self.failed as f64 / total.max(1) as f64,
                rate_limited_resends: 0,
            },
            throughput: Throughput {
                requests_per_s: 1.0,
                input_tokens_per_s: self.total_tps * 0.9,
                output_tokens_per_s: self.total_tps * 0.1,
                total_tokens_per_s: self.total_tps,
            },
            ttft_ms: pcts(self.ttft_p50_ms),
            tpot_ms: pcts(self.tpot_p50_ms),
            itl_ms: pcts(self.tpot_p50_ms),
            e2e_ms: pcts(self.ttft_p50_ms * 10.0),
            cache: CacheUse {
                prompt_tokens: 1000,
                cached_tokens: 600,
                hit_rate: Some(0.6),
            },
            ..Summary::default()
        }
        .write(&dir)
        .expect("summary.json");
        let mut metrics = csv::Writer::from_path(dir.join(MetricsRow::FILE)).expect("metrics.csv");
        for i in 0..10 {
            let q = 1000.0 * f64::from(i + 1);
            metrics
                .serialize(MetricsRow {
                    time: f64::from(1000 + i),
                    rel_s: f64::from(i),
                    running: Some(f64::from(self.users)),
                    kv_cache_usage: Some(0.1 * f64::from(i)),
                    prefix_queries: Some(q),
                    prefix_hits: Some(q / 2.0),
                    interval_hit_rate: Some(0.5),
                    prompt_tokens_per_s: Some(1000.0),
                    generation_tokens_per_s: Some(100.0),
                    offload_bytes_to_cpu: Some(f64::from(i) * 1e6),
                    offload_bytes_to_gpu: Some(f64::from(i) * 5e5),
                    offload_to_cpu_gb_s: Some(0.1),
                    offload_to_gpu_gb_s: Some(0.05),
                    format_version: MetricsRow::VERSION,
                    ..MetricsRow::default()
                })
                .expect("a metrics row");
        }
        metrics.flush().expect("flush metrics");
        dir
    }
}
