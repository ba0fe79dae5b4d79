//! Where a cell's prompt tokens came from: the HBM prefix cache, the host tier (KV offloaded to
//! CPU memory), or computed again; and how fast KV moved to and from the host. This is what an
//! offload sweep exists to answer, read from the server's counters in `metrics.csv`.
//!
//! The split is the engine's own where it reports one (`prefix_hits_device` / `_host`: vLLM's
//! `prompt_tokens_cached_by_source`, SGLang's HiCache `cached_tokens{cache_source}`, the
//! simulator's counters under vLLM's names); else vLLM's older `prompt_tokens_by_source` (a local
//! hit is HBM, an external KV transfer is the host tier).

use anyhow::Result;

use crate::data::artifact::schema::{MetricsRow, read_csv_rows};

use super::cells::CellResult;
pub use super::result::{CellTiers, TierTokens};

impl TierTokens {
    /// The split at one row of `metrics.csv`.
    pub fn at(row: &MetricsRow) -> Self {
        let computed = row.prompt_compute.or_else(|| {
            let hits = row.prefix_hits?;
            Some((row.prompt_tokens? - hits).max(0.0))
        });
        Self {
            hbm: row.prefix_hits_device.or(row.prompt_cache_hit),
            host: row.prefix_hits_host.or(row.prompt_external),
            computed,
        }
    }

    /// What moved between `before` and `self`, per second over `dt`.
    pub(crate) fn rate_since(&self, before: &Self, dt: f64) -> Self {
        let rate = |a: Option<f64>, b: Option<f64>| Some(((a? - b?) / dt).max(0.0));
        Self {
            hbm: rate(self.hbm, before.hbm),
            host: rate(self.host, before.host),
            computed: rate(self.computed, before.computed),
        }
    }
}

/// The tier figures of a cell's `metrics.csv` rows (in scrape order); `None` without rows.
fn cell_tiers(rows: &[MetricsRow]) -> Option<CellTiers> {
    let (first, last) = (rows.first()?, rows.last()?);
    let dt = last.time - first.time;
    let mean = |a: Option<f64>, b: Option<f64>| {
        (dt > 0.0).then_some(())?;
        Some((a? - b?).max(0.0) / dt / 1e9)
    };
    Some(CellTiers {
        tokens: TierTokens::at(last),
        to_host_gb_s: mean(last.offload_bytes_to_cpu, first.offload_bytes_to_cpu),
        from_host_gb_s: mean(last.offload_bytes_to_gpu, first.offload_bytes_to_gpu),
    })
}

/// A cell's `metrics.csv` rows; empty where it has none.
pub(crate) fn metrics_rows(dir: &std::path::Path) -> Result<Vec<MetricsRow>> {
    let path = dir.join(MetricsRow::FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_csv_rows(
        &path,
        |r: &MetricsRow| r.format_version,
        MetricsRow::VERSION,
    )
}

/// Fills `cell`'s cache-tier columns from its `metrics.csv`, where it has one.
pub fn fill(cell: &mut CellResult) -> Result<()> {
    let Some(t) = cell_tiers(&metrics_rows(&cell.dir)?) else {
        return Ok(());
    };
    cell.tiers = Some(t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_split_wins_over_the_older_counters() {
        let row = MetricsRow {
            time: 10.0,
            prompt_tokens: Some(1000.0),
            prefix_hits: Some(700.0),
            prefix_hits_device: Some(500.0),
            prefix_hits_host: Some(200.0),
            prompt_cache_hit: Some(1.0),
            prompt_external: Some(2.0),
            offload_bytes_to_cpu: Some(5e9),
            ..MetricsRow::default()
        };
        assert_eq!(
            TierTokens::at(&row),
            TierTokens {
                hbm: Some(500.0),
                host: Some(200.0),
                computed: Some(300.0)
            }
        );
        let older = MetricsRow {
            prefix_hits_device: None,
            prefix_hits_host: None,
            prompt_compute: Some(250.0),
            ..row.clone()
        };
        assert_eq!(
            TierTokens::at(&older),
            TierTokens {
                hbm: Some(1.0),
                host: Some(2.0),
                computed: Some(250.0)
            }
        );
        let start = MetricsRow {
            time: 0.0,
            offload_bytes_to_cpu: Some(1e9),
            ..MetricsRow::default()
        };
        let t = cell_tiers(&[start, row]).expect("rows");
        assert_eq!(t.to_host_gb_s, Some(0.4));
        assert_eq!(t.from_host_gb_s, None);
    }
}
