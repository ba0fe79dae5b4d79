//! Synthetic cell artifact directories, shaped like `kvsweep run-cell` leaves them.

use std::path::{Path, PathBuf};

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
        let put = |name: &str, value: serde_json::Value| {
            std::fs::write(dir.join(name), value.to_string()).expect("write");
        };
        put(
            "cell.json",
            serde_json::json!({
                "cell": {"name": self.name, "runner": self.runner, "tp": self.tp, "ep": 0,
                         "users": self.users, "offload": self.offload},
                "runner": self.runner, "engine": "sim", "model": "llama-3.1-8b", "precision": null,
            }),
        );
        put(
            "status.json",
            serde_json::json!({"status": self.status, "reason": "synthetic"}),
        );
        let total = self.ok + self.failed;
        let pcts = |p50: f64| serde_json::json!({"count": self.ok, "p50": p50, "p90": p50 * 1.5, "p99": p50 * 2.0});
        put(
            "summary.json",
            serde_json::json!({
                "engine": "sim", "simulated": true, "completed": true, "duration_s": 60.0,
                "requests": {"total": total, "ok": self.ok, "failed": self.failed,
                             "error_rate": self.failed as f64 / total.max(1) as f64},
                "throughput": {"requests_per_s": 1.0, "input_tokens_per_s": self.total_tps * 0.9,
                               "output_tokens_per_s": self.total_tps * 0.1, "total_tokens_per_s": self.total_tps},
                "ttft_ms": pcts(self.ttft_p50_ms), "tpot_ms": pcts(self.tpot_p50_ms),
                "itl_ms": pcts(self.tpot_p50_ms), "e2e_ms": pcts(self.ttft_p50_ms * 10.0),
                "cache": {"prompt_tokens": 1000, "cached_tokens": 600, "hit_rate": 0.6},
            }),
        );
        let mut metrics = String::from(
            "time,rel_s,running,kv_cache_usage,prefix_queries,prefix_hits,interval_hit_rate,prompt_tokens_per_s,generation_tokens_per_s,offload_bytes_to_cpu,offload_bytes_to_gpu,offload_to_cpu_gb_s,offload_to_gpu_gb_s\n",
        );
        for i in 0..10 {
            let q = 1000 * (i + 1);
            metrics.push_str(&format!(
                "{},{i},{},{},{q},{},0.5,1000,100,{},{},0.1,0.05\n",
                1000 + i,
                self.users,
                0.1 * i as f64,
                q / 2,
                i * 1_000_000,
                i * 500_000
            ));
        }
        std::fs::write(dir.join("metrics.csv"), metrics).expect("write metrics");
        dir
    }
}
