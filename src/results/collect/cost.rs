//! What a cell's throughput costs and draws: cost per million tokens under each of the runner's
//! three prices, tok/s per MW and joules per token, with InferenceX's formulas (README.md, "Cost
//! and energy").
//!
//! Power is the GPUs' own, measured (`gpu.csv`, integrated over the replay's window) where the
//! cell sampled it, else the runner's all-in figure per GPU, and the figures say which
//! ([`EnergyBasis`]). A simulated cell is priced and powered as the hardware the simulator
//! modelled, at the rate that hardware would serve: its tok/s are already in that hardware's
//! time when they get here (`collect::modelled_time`).

use std::path::Path;

use anyhow::{Context, Result};

use crate::base::economics::{Economics, EnergyBasis, Override, PriceKind};
use crate::base::runner::RunnerSet;
use crate::data::artifact::schema::{CellPlan, GpuRow, JsonArtifact, Metadata, read_csv_rows};

use super::cells::CellResult;
pub use super::result::CellCost;
use super::result::Priced;

/// Throughput per GPU of the hardware priced, tok/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PerGpuRates {
    pub input: f64,
    pub output: f64,
    pub total: f64,
}

/// $ per million tokens at `tps_per_gpu`: price per GPU-hour / (tok/s/GPU × 3600 / 10⁶).
pub(crate) fn usd_per_mtok(usd_per_gpu_hour: f64, tps_per_gpu: f64) -> Option<f64> {
    (tps_per_gpu > 0.0).then(|| usd_per_gpu_hour / (tps_per_gpu * 3600.0 / 1e6))
}

/// The figures of a cell that served `rates` per GPU at `power_w_per_gpu`.
fn cell_cost(
    economics: &Economics,
    rates: PerGpuRates,
    power_w_per_gpu: f64,
    basis: EnergyBasis,
) -> CellCost {
    let per = |tps: f64, what: f64| (tps > 0.0).then(|| what / tps);
    CellCost {
        usd_per_mtok: PriceKind::ALL.map(|kind| {
            let usd = economics.prices.get(kind).usd_per_gpu_hour;
            [rates.total, rates.input, rates.output].map(|tps| usd_per_mtok(usd, tps))
        }),
        tps_per_mw: (power_w_per_gpu > 0.0).then(|| rates.total * 1e6 / power_w_per_gpu),
        power_w_per_gpu,
        joules_per_output_token: per(rates.output, power_w_per_gpu),
        joules_per_total_token: per(rates.total, power_w_per_gpu),
        basis,
    }
}

/// Mean power per GPU over `[start, end]` (unix seconds): each GPU's samples in the window
/// integrated by the trapezoid rule over the span they cover, averaged over the GPUs. `None`
/// where no GPU has a power sample in the window.
fn measured_power_w(rows: &[GpuRow], start: f64, end: f64) -> Option<f64> {
    let mut gpus: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
    for r in rows {
        let Some(w) = r.power_w.filter(|w| w.is_finite()) else {
            continue;
        };
        if r.time < start || r.time > end {
            continue;
        }
        match gpus.iter_mut().find(|(g, _)| *g == r.gpu) {
            Some((_, samples)) => samples.push((r.time, w)),
            None => gpus.push((&r.gpu, vec![(r.time, w)])),
        }
    }
    let means: Vec<f64> = gpus
        .into_iter()
        .map(|(_, mut s)| {
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
            let span = s[s.len() - 1].0 - s[0].0;
            if span <= 0.0 {
                return s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
            }
            let joules: f64 = s
                .windows(2)
                .map(|p| (p[1].0 - p[0].0) * (p[0].1 + p[1].1) / 2.0)
                .sum();
            joules / span
        })
        .collect();
    (!means.is_empty()).then(|| means.iter().sum::<f64>() / means.len() as f64)
}

/// Fills `cell`'s cost and energy columns from its runner's figures (or the one its simulator
/// modelled), overridden by its spec's (`cell.json`) and then by `over`; leaves them empty
/// where the runner has none. A simulated `cell`'s rates must already be the modelled
/// hardware's ([`super::modelled_time::convert`]).
pub fn fill(cell: &mut CellResult, runners: &RunnerSet, over: &Override) -> Result<()> {
    let dir = cell.dir.clone();
    let meta = match dir.join(Metadata::FILE).exists() {
        true => Some(Metadata::read(&dir)?),
        false => None,
    };
    let sim_runner = meta
        .as_ref()
        .and_then(Metadata::simulator)
        .and_then(|s| s.runner);
    let priced_as = match (cell.simulated, sim_runner) {
        (true, Some(modelled)) => modelled,
        _ => cell.config.runner.clone(),
    };
    let Some(economics) = runners.get(&priced_as).and_then(|r| r.economics.as_ref()) else {
        return Ok(());
    };
    // The spec's figures, then the command line's.
    let plan = CellPlan::read(&dir)?;
    let economics = match &plan.economics {
        Some(spec) => economics.with_spec(spec),
        None => economics.clone(),
    }
    .overridden(over);
    let rates = PerGpuRates {
        input: cell.figures.input_tps_per_gpu,
        output: cell.figures.output_tps_per_gpu,
        total: cell.figures.total_tps_per_gpu,
    };
    let measured = match &meta {
        Some(m) if !cell.simulated => gpu_power(&dir, m.started_at, cell.figures.duration_s)?,
        _ => None,
    };
    let (power, basis) = match (measured, cell.simulated) {
        (_, true) => (economics.power.kw_per_gpu * 1000.0, EnergyBasis::Simulated),
        (Some(w), false) => (w, EnergyBasis::Measured),
        (None, false) => (economics.power.kw_per_gpu * 1000.0, EnergyBasis::Estimated),
    };
    cell.cost = Some(Priced {
        cost: cell_cost(&economics, rates, power, basis),
        priced_as,
    });
    Ok(())
}

/// The measured power per GPU of a cell's replay window, from its `gpu.csv` where it has one.
fn gpu_power(dir: &Path, started_at: f64, duration_s: f64) -> Result<Option<f64>> {
    let path = dir.join(GpuRow::FILE);
    if !path.exists() {
        return Ok(None);
    }
    let rows = read_csv_rows(&path, |_: &GpuRow| GpuRow::VERSION, GpuRow::VERSION)
        .with_context(|| format!("the GPU power of {}", dir.display()))?;
    Ok(measured_power_w(&rows, started_at, started_at + duration_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: f64, gpu: &str, w: Option<f64>) -> GpuRow {
        GpuRow {
            time: t,
            gpu: gpu.into(),
            util_pct: None,
            mem_used_mib: None,
            mem_total_mib: None,
            power_w: w,
        }
    }

    #[test]
    fn power_is_integrated_per_gpu_inside_the_window() {
        // GPU 0 ramps 400 → 600 W over 10 s (mean 500), GPU 1 holds 300 W; samples outside
        // [100, 110] and empty ones do not count.
        let rows = [
            row(90.0, "0", Some(9999.0)),
            row(100.0, "0", Some(400.0)),
            row(100.0, "1", Some(300.0)),
            row(105.0, "0", Some(500.0)),
            row(105.0, "1", None),
            row(110.0, "0", Some(600.0)),
            row(110.0, "1", Some(300.0)),
            row(111.0, "1", Some(9999.0)),
        ];
        assert_eq!(measured_power_w(&rows, 100.0, 110.0), Some(400.0));
        assert_eq!(measured_power_w(&rows, 200.0, 210.0), None);
        // One sample: its value.
        assert_eq!(measured_power_w(&rows[..2], 100.0, 110.0), Some(400.0));
    }

    #[test]
    fn zero_throughput_has_no_cost() {
        assert_eq!(usd_per_mtok(2.0, 0.0), None);
        assert_eq!(usd_per_mtok(3.6, 1000.0), Some(1.0));
    }
}
