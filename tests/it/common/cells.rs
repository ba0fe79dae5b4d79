//! Synthetic cell artifact directories, shaped like `kvsweep run-cell` leaves them.

use std::path::{Path, PathBuf};

use kvsweep::data::artifact::schema::{
    CacheUse, CellPlan, JsonArtifact, MetricsRow, Outcome, Quantiles, RequestCounts, RequestRow,
    Status, Summary, Throughput,
};
use kvsweep::plan::engine::EngineKind;
use kvsweep::plan::spec::{Cell, OffloadBackend, TraceFormat};

/// The `cell.json` of a simulator cell on the `cpu` runner, with the default validity thresholds.
pub fn plan(cell: Cell, duration_s: u64) -> CellPlan {
    CellPlan {
        format_version: CellPlan::VERSION,
        runner: cell.runner.clone().unwrap_or_else(|| "cpu".into()),
        cell,
        spec: "synthetic.yaml".into(),
        engine: EngineKind::Sim,
        model: "llama-3.1-8b".into(),
        model_path: None,
        max_model_len: None,
        image: None,
        precision: None,
        offload_backend: OffloadBackend::default(),
        offload_gib: None,
        engine_args: Vec::new(),
        recipe: None,
        duration_s,
        traces: None,
        trace_url: None,
        trace_format: TraceFormat::default(),
        workload: kvsweep::base::workload::parse(
            &["replay", "--traces", "traces", "--out", "."].map(String::from),
        )
        .expect("a replay workload"),
        port: 8000,
        health_timeout_s: 60,
        validity: kvsweep::base::validity::ValidityThresholds::default(),
        economics: None,
    }
}

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
        let plan = plan(
            Cell {
                name: self.name.clone(),
                runner: Some(self.runner.clone()),
                tp: self.tp,
                ep: 0,
                users: self.users,
                offload: serde_json::from_value(self.offload.into()).expect("an offload mode"),
            },
            60,
        );
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
                unsent_at_deadline: 0,
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
        self.write_requests(&dir);
        dir
    }

    /// `requests.csv`: the cell's requests sent at an even pace over its 60 s, the failed ones
    /// among them, each taking the summary's E2E p50.
    fn write_requests(&self, dir: &Path) {
        let mut w = csv::Writer::from_path(dir.join(RequestRow::FILE)).expect("requests.csv");
        let total = self.ok + self.failed;
        for i in 0..total {
            let sent_s = 60.0 * i as f64 / total.max(1) as f64;
            let ok = i >= self.failed;
            w.serialize(RequestRow {
                request_id: i,
                user: (i % u64::from(self.users.max(1))) as u32,
                session: format!("s{i}"),
                request_index: 0,
                scheduled_s: sent_s,
                sent_s,
                done_s: sent_s + self.ttft_p50_ms * 10.0 / 1000.0,
                schedule_delay_ms: 0.0,
                ttft_ms: ok.then_some(self.ttft_p50_ms),
                // The summary's E2E p50, so the cell's E2E-normalized interactivity agrees.
                e2e_ms: self.ttft_p50_ms * 10.0,
                tpot_ms: ok.then_some(self.tpot_p50_ms),
                itl_mean_ms: None,
                itl_max_ms: None,
                trace_input_tokens: 1000,
                trace_output_tokens: 100,
                prompt_tokens: ok.then_some(1000),
                completion_tokens: ok.then_some(100),
                cached_tokens: ok.then_some(600),
                status: if ok { Outcome::Ok } else { Outcome::Error },
                http_status: if ok { 200 } else { 500 },
                error: if ok {
                    String::new()
                } else {
                    "synthetic".into()
                },
                endpoint: 0,
                attempts: 1,
                effective_ttft_ms: ok.then_some(self.ttft_p50_ms),
                meets_slo: ok,
                format_version: RequestRow::VERSION,
            })
            .expect("a request row");
        }
        w.flush().expect("flush requests");
    }
}
