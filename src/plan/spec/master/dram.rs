//! `total-cpu-dram-gb`: the host DRAM an agentic server may offload KV to, as the generator
//! computes it: the runner's available DRAM (capped at 3 TB), times `dram-utilization`, times
//! the share of the node's GPUs the server uses, in decimal GB, rounded down.

use super::config::{Agentic, Point, Topology, Worker};
use super::runners::RunnerConfig;
use crate::base::yaml::SpecError;

/// 3 TB (decimal) in MiB: the most DRAM a node is counted with.
const MAX_AVAILABLE_CPU_DRAM_MIB: i64 = 2_861_022;
const BYTES_PER_MIB: i128 = 1024 * 1024;
const BYTES_PER_GB: i128 = 1_000_000_000;

/// The budget of one point's server on `runner` (0 unless it offloads to DRAM).
pub(crate) fn dram_offload_gb(
    a: &Agentic,
    p: &Point,
    runner: &str,
    runners: &RunnerConfig,
) -> Result<i64, SpecError> {
    let dram = p
        .kv_offloading
        .as_ref()
        .is_some_and(|n| n.value == super::yaml11::Value::Str("dram".into()));
    if !dram {
        return Ok(0);
    }
    let Some(hw) = runners.hardware.get(runner) else {
        let mut known: Vec<&String> = runners.hardware.keys().collect();
        known.sort();
        let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
        return Err(p.origin.error(format!(
            "runner `{runner}` needs available-cpu-dram-mib and gpus-per-node in the runner config's hardware section for kv-offloading: dram; hardware is known for: {}",
            known.join(", ")
        )));
    };
    let available = hw.available_cpu_dram_mib.min(MAX_AVAILABLE_CPU_DRAM_MIB);
    let gpus_per_node = hw.gpus_per_node;
    let gpus = match &p.topology {
        Topology::Multi { prefill, .. } => worker_gpus_per_node(prefill, gpus_per_node)
            .map_err(|m| p.origin.error(format!("prefill: {m}")))?,
        Topology::Single(t) => {
            let gpus = t.tp * t.pp * t.pcp;
            if gpus > gpus_per_node {
                return Err(p.origin.error(format!(
                    "tp={} with pp={} and pcp-size={} requires {gpus} GPUs and exceeds gpus-per-node={gpus_per_node} for runner `{runner}`",
                    t.tp, t.pp, t.pcp
                )));
            }
            gpus
        }
    };
    let utilization = a.dram_utilization.as_deref().unwrap_or("0");
    let (mantissa, scale) = decimal(utilization).ok_or_else(|| {
        p.origin
            .error(format!("dram-utilization `{utilization}` is not a decimal"))
    })?;
    let numerator = i128::from(available)
        .checked_mul(BYTES_PER_MIB)
        .and_then(|v| v.checked_mul(mantissa))
        .and_then(|v| v.checked_mul(i128::from(gpus)));
    let denominator = 10i128
        .checked_pow(scale)
        .and_then(|v| v.checked_mul(i128::from(gpus_per_node)))
        .and_then(|v| v.checked_mul(BYTES_PER_GB));
    let (Some(n), Some(d)) = (numerator, denominator) else {
        return Err(p.origin.error("the DRAM budget overflows"));
    };
    let gb = i64::try_from(n / d).map_err(|_| p.origin.error("the DRAM budget overflows"))?;
    if gb < 0 {
        return Err(p
            .origin
            .error(format!("total-cpu-dram-gb comes out negative ({gb})")));
    }
    Ok(gb)
}

/// GPUs one worker replica holds on one node; a replica must tile the node or fill whole nodes.
fn worker_gpus_per_node(w: &Worker, gpus_per_node: i64) -> Result<i64, String> {
    let per_replica = w.tp * w.pp * w.pcp;
    if per_replica > gpus_per_node {
        if per_replica % gpus_per_node != 0 {
            return Err(format!(
                "worker tp*pp*pcp-size={per_replica} spans multiple nodes but is not a multiple of gpus-per-node={gpus_per_node}"
            ));
        }
        return Ok(gpus_per_node);
    }
    if per_replica <= 0 || gpus_per_node % per_replica != 0 {
        return Err(format!(
            "worker tp*pp*pcp-size={per_replica} does not divide gpus-per-node={gpus_per_node} evenly"
        ));
    }
    Ok(per_replica)
}

/// `"0.1664"` → (1664, 4): a decimal as an integer and a power of ten.
fn decimal(text: &str) -> Option<(i128, u32)> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = format!("{whole}{frac}");
    let mantissa: i128 = digits.parse().ok()?;
    Some((mantissa, u32::try_from(frac.len()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(decimal("0.8"), Some((8, 1)));
        assert_eq!(decimal("0.15239"), Some((15239, 5)));
        assert_eq!(decimal("1"), Some((1, 0)));
        assert_eq!(decimal("1e-05"), None);
    }
}
