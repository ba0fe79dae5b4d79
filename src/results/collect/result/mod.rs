//! One collected cell, typed by concern: which configuration it measured and how it stands,
//! its figures, and the optional parts later steps add (AgentX metrics, the oracle's bound, cost
//! and energy, cache tiers). `summary.csv` is this flattened, in one place
//! (`collect::summary`); the history and the gate match configurations by [`Configuration`].

use std::borrow::Cow;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;
use serde::Serialize;

pub mod metric;

pub use metric::Metric;

use crate::base::economics::EnergyBasis;
use crate::base::kinds::{EngineKind, Offload};
use crate::base::student_t::Sample;
use crate::data::artifact::schema::CellState;

/// What a cell measured: two cells (of one sweep or two) with the same configuration are the
/// same experiment, which the history keeps a trend of and the gate compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration {
    pub runner: String,
    pub model: String,
    pub engine: EngineKind,
    pub precision: Option<String>,
    pub tp: u32,
    pub ep: u32,
    pub users: u32,
    pub offload: Offload,
}

impl Configuration {
    /// Its `summary.csv` columns, in order.
    pub const COLUMNS: [&'static str; 8] = [
        "runner",
        "model",
        "engine",
        "precision",
        "tp",
        "ep",
        "users",
        "offload",
    ];

    /// Its values as `summary.csv` writes them, in [`Self::COLUMNS`] order.
    pub fn values(&self) -> [Cow<'_, str>; 8] {
        [
            Cow::Borrowed(&self.runner),
            Cow::Borrowed(&self.model),
            Cow::Borrowed(self.engine.as_str()),
            Cow::Borrowed(self.precision.as_deref().unwrap_or("")),
            Cow::Owned(self.tp.to_string()),
            Cow::Owned(self.ep.to_string()),
            Cow::Owned(self.users.to_string()),
            Cow::Borrowed(self.offload.as_str()),
        ]
    }

    /// `runner=… model=… engine=… precision=… tp=… ep=… users=… offload=…`: the key the
    /// history stores a configuration under (its text must not change, or stored trends break).
    pub fn key(&self) -> String {
        Self::COLUMNS
            .iter()
            .zip(self.values())
            .map(|(c, v)| format!("{c}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses a configuration from a `summary.csv` row; `field` gives a column's text.
    pub fn parse<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Result<Self> {
        let text = |c: &str| field(c).with_context(|| format!("no column `{c}`"));
        let count = |c: &str| -> Result<u32> {
            let v = text(c)?;
            v.parse()
                .with_context(|| format!("column `{c}`: `{v}` is not a count"))
        };
        let choice = |c: &str| -> Result<&'a str> { text(c) };
        let engine = choice("engine")?;
        let offload = choice("offload")?;
        Ok(Self {
            runner: text("runner")?.to_owned(),
            model: text("model")?.to_owned(),
            engine: <EngineKind as clap::ValueEnum>::from_str(engine, false).map_err(|_| {
                anyhow::anyhow!("column `engine`: `{engine}` is not an engine kind")
            })?,
            precision: Some(text("precision")?)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            tp: count("tp")?,
            ep: count("ep")?,
            users: count("users")?,
            offload: match offload {
                "on" => Offload::On,
                "off" => Offload::Off,
                "noprefix" => Offload::Noprefix,
                other => bail!("column `offload`: `{other}` is not on, off or noprefix"),
            },
        })
    }
}

/// One collected cell: a row of `summary.csv`.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub name: String,
    pub config: Configuration,
    /// How the run ended (`status.json`).
    pub state: CellState,
    pub simulated: bool,
    /// How many times faster than the hardware it modelled a simulated cell's server ran
    /// (`metadata.json` → `simulator.speed`). Every rate and latency of the row is already the
    /// modelled hardware's (`collect::modelled_time`); the cell's own files stay in wall-clock time.
    pub sim_speed: Option<f64>,
    /// Which tool sent the requests and timed them: kvsweep's replay, or AIPerf (an AIPerf
    /// artifact directory collected as a cell, `collect::aiperf_cells`).
    pub measured_by: MeasuredBy,
    pub figures: Figures,
    /// InferenceX's AgentX metrics (`collect::inferencex`): empty without `requests.csv`.
    pub agentx: AgentX,
    /// The oracle's hit-rate bound on the cell's replayed traces (`oracle::replayed`).
    pub oracle: Option<OracleBound>,
    /// Whether the cell is a trustworthy point (`collect::validity`): an invalid one stays in
    /// the tables and plots, marked, and is never on a frontier.
    pub valid: bool,
    /// Why it is not, `; `-separated; empty when valid.
    pub invalid_reasons: String,
    /// Requests sent in the run's first this many seconds are left out of its figures.
    pub warmup_window_s: f64,
    /// How many runs of the cell its figures are the mean of (their spread: `repeats.csv`).
    pub repeats: u32,
    /// Per metric, the repeats' count, mean and standard deviation (empty for one run).
    pub spread: IndexMap<Metric, Sample>,
    /// The seed its workload ran with (each repeat has its own; `repeats.csv` lists them).
    pub seed: Option<u64>,
    /// Cost and energy (`collect::cost`): `None` where the runner has no price or power figures.
    pub cost: Option<Priced>,
    /// Prompt tokens by cache tier and offload traffic (`collect::tiers`), from `metrics.csv`.
    pub tiers: Option<CellTiers>,
    pub dir: PathBuf,
}

/// What the replay (or AIPerf) measured, in the modelled hardware's time.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub error_rate: f64,
    pub duration_s: f64,
    pub(crate) input_tps: f64,
    pub(crate) output_tps: f64,
    pub total_tps: f64,
    pub(crate) input_tps_per_gpu: f64,
    pub output_tps_per_gpu: f64,
    pub total_tps_per_gpu: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub(crate) tpot_p90_ms: Option<f64>,
    pub(crate) tpot_p99_ms: Option<f64>,
    pub itl_p50_ms: Option<f64>,
    pub(crate) itl_p90_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p90_ms: Option<f64>,
    pub(crate) e2e_p99_ms: Option<f64>,
    /// 1000 / TPOT p50: output tokens per second one user sees.
    pub interactivity: Option<f64>,
    pub client_hit_rate: Option<f64>,
    /// Prefix-cache hits over queries, as the server counted them (`metrics.csv`).
    pub server_hit_rate: Option<f64>,
    /// Bytes moved between GPU and host cache tiers, both ways, as the server counted them.
    pub offload_bytes: Option<f64>,
}

/// InferenceX's AgentX metrics (`collect::inferencex`): E2E-normalized interactivity and
/// per-GPU throughput over the profiled requests' span.
#[derive(Debug, Clone, Default)]
pub struct AgentX {
    /// 1 / percentile(E2E latency / output tokens): output tokens/s/user, slow tail at P90.
    pub e2e_norm_intvty_p50: Option<f64>,
    pub e2e_norm_intvty_p90: Option<f64>,
    pub e2e_norm_intvty_p99: Option<f64>,
    /// Tokens of the successful requests over first start to last end, per GPU (TP × PP × PCP).
    pub(crate) input_tps_per_gpu: Option<f64>,
    pub output_tps_per_gpu: Option<f64>,
    pub total_tps_per_gpu: Option<f64>,
}

/// The best hit rate any cache of the cell's size could reach on the requests it sent
/// (`kvsweep oracle`'s exact strict-prefix bound), and what LRU reaches there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OracleBound {
    pub hit_rate: f64,
    pub(crate) lru_hit_rate: f64,
    /// The cell's KV capacity the bound assumes: HBM after weights at 0.9 utilization, plus
    /// the offload tier when on.
    pub(crate) capacity_tokens: f64,
}

/// A cell's cost and energy, and the runner whose figures priced it (a simulator cell's
/// modelled hardware).
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub cost: CellCost,
    pub priced_as: String,
}

/// A cell's cost and energy figures (`collect::cost`); `None` where a rate is zero.
#[derive(Debug, Clone, PartialEq)]
pub struct CellCost {
    /// $ per million (total, input, output) tokens, per price in
    /// [`crate::base::economics::PriceKind::ALL`] order.
    pub(crate) usd_per_mtok: [[Option<f64>; 3]; 3],
    pub tps_per_mw: Option<f64>,
    pub power_w_per_gpu: f64,
    pub joules_per_output_token: Option<f64>,
    pub joules_per_total_token: Option<f64>,
    pub(crate) basis: EnergyBasis,
}

/// Prompt tokens by where they came from (`collect::tiers`), cumulative at one scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TierTokens {
    pub hbm: Option<f64>,
    pub host: Option<f64>,
    pub computed: Option<f64>,
}

/// A cell's cache-tier figures over its run (`collect::tiers`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CellTiers {
    /// Prompt tokens over the whole run (the server's counters at the last scrape).
    pub tokens: TierTokens,
    /// Mean KV offload bandwidth over the scraped window, GB/s; `None` where the engine does
    /// not report the bytes.
    pub(crate) to_host_gb_s: Option<f64>,
    pub(crate) from_host_gb_s: Option<f64>,
}

/// The tool whose requests and timings a cell's figures are (`summary.csv` → `measured_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MeasuredBy {
    Kvsweep,
    Aiperf,
    /// Not measured: `kvsweep predict`'s calibrated simulator on a virtual clock
    /// (`prediction.json` in the cell).
    Predicted,
}

impl MeasuredBy {
    /// What a chart's point label adds, so an AIPerf point is never taken for kvsweep's.
    pub(crate) fn point_label(self) -> &'static str {
        match self {
            MeasuredBy::Kvsweep => "",
            MeasuredBy::Aiperf => " (AIPerf)",
            MeasuredBy::Predicted => " (predicted)",
        }
    }
}

impl CellResult {
    /// The offload mode a chart groups it under: a predicted cell apart from measured ones, so
    /// that both frontiers show on one panel.
    pub fn mode(&self) -> String {
        match self.measured_by {
            MeasuredBy::Predicted => format!("{} predicted", self.config.offload),
            _ => self.config.offload.to_string(),
        }
    }

    /// Whether the cell is a result: it finished (ok, or stopped early with what it recorded
    /// kept), with at most 10% failed requests. A result can still be an invalid point.
    pub fn gate(&self) -> std::result::Result<(), String> {
        if !matches!(self.state, CellState::Ok | CellState::Partial) {
            return Err(format!("status {}", self.state.as_str()));
        }
        if self.figures.requests_ok == 0 {
            return Err("no successful request".into());
        }
        if self.figures.error_rate > 0.10 {
            return Err(format!(
                "{:.1}% of requests failed (more than 10%)",
                self.figures.error_rate * 100.0
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_keeps_its_stored_key_and_parses_back_from_its_row() {
        let c = Configuration {
            runner: "h100".into(),
            model: "llama-3.1-8b".into(),
            engine: EngineKind::LlamaServer,
            precision: None,
            tp: 2,
            ep: 0,
            users: 16,
            offload: Offload::Noprefix,
        };
        // The history's stored trends are keyed by this exact text.
        assert_eq!(
            c.key(),
            "runner=h100 model=llama-3.1-8b engine=llama-server precision= tp=2 ep=0 users=16 offload=noprefix"
        );
        let values = c.values();
        let field = |name: &str| {
            let i = Configuration::COLUMNS.iter().position(|c| *c == name)?;
            Some(values[i].as_ref())
        };
        assert_eq!(Configuration::parse(field).unwrap(), c);
        let e = Configuration::parse(|n| if n == "users" { None } else { field(n) }).unwrap_err();
        assert!(format!("{e:#}").contains("no column `users`"), "{e:#}");
    }
}
