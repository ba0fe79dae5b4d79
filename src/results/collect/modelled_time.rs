//! A simulated cell's figures in the modelled hardware's time.
//!
//! The simulator can run `speed` times faster than the hardware it models (`--speed`; the demo
//! runs at 20), and the replay scales its waits to match, so what the replay measures in
//! wall-clock time is `speed` times the hardware's rates and `1 / speed` of its latencies. Cost
//! and energy are the modelled hardware's by nature (its price, its power), so a row that mixed
//! the two clocks would describe two machines. Collect converts each simulated cell here, once,
//! after the figures read off its files and before anything derives from them (cost, the repeats'
//! means and intervals, the frontiers, plots and report), so every figure downstream is in one
//! clock. The cell's own files (`summary.json`, `requests.csv`, ...) stay as measured, and
//! `summary.csv` keeps the speed (`sim_speed`).

use super::cells::CellResult;

/// Puts `cell`'s rates and times into the modelled hardware's time: rates (tok/s, tok/s/user,
/// GB/s) divided by its simulator's speed, latencies and spans multiplied by it. Counts, shares
/// and bytes do not depend on the clock. A cell without a recorded speed is left as it is.
pub fn convert(cell: &mut CellResult) {
    let Some(speed) = cell.sim_speed else {
        return;
    };
    let (f, a) = (&mut cell.figures, &mut cell.agentx);
    let (to_host, from_host) = match cell.tiers.as_mut() {
        Some(t) => (&mut t.to_host_gb_s, &mut t.from_host_gb_s),
        None => (&mut None, &mut None),
    };
    for rate in [
        &mut f.input_tps,
        &mut f.output_tps,
        &mut f.total_tps,
        &mut f.input_tps_per_gpu,
        &mut f.output_tps_per_gpu,
        &mut f.total_tps_per_gpu,
    ] {
        *rate /= speed;
    }
    for rate in [
        &mut f.interactivity,
        &mut a.e2e_norm_intvty_p50,
        &mut a.e2e_norm_intvty_p90,
        &mut a.e2e_norm_intvty_p99,
        &mut a.input_tps_per_gpu,
        &mut a.output_tps_per_gpu,
        &mut a.total_tps_per_gpu,
        to_host,
        from_host,
    ]
    .into_iter()
    .flatten()
    {
        *rate /= speed;
    }
    for span in [&mut f.duration_s, &mut cell.warmup_window_s] {
        *span *= speed;
    }
    for latency in [
        &mut f.ttft_p50_ms,
        &mut f.ttft_p90_ms,
        &mut f.ttft_p99_ms,
        &mut f.tpot_p50_ms,
        &mut f.tpot_p90_ms,
        &mut f.tpot_p99_ms,
        &mut f.itl_p50_ms,
        &mut f.itl_p90_ms,
        &mut f.itl_p99_ms,
        &mut f.e2e_p50_ms,
        &mut f.e2e_p90_ms,
        &mut f.e2e_p99_ms,
    ]
    .into_iter()
    .flatten()
    {
        *latency *= speed;
    }
}
