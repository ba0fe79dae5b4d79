//! `kvsweep test working-set`: grow the number of distinct prefixes; at each size warm them all,
//! then read them back round-robin (the order that defeats LRU once they no longer fit) and
//! see what still hits. Where hits from HBM collapse is the HBM cliff; where all hits collapse
//! (HBM and offload tier) is the offload cliff.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::json;

use super::cache_rate::{detail_columns, detail_rows};
use super::load::{Ask, Load, Stats};
use super::output::{self, Progress, f};
use super::plot_lines;
use crate::base::rng::mix;
use crate::base::workload::tester::{Scale, WorkingSetArgs};

/// The sizes tested.
pub fn sizes(args: &WorkingSetArgs) -> Result<Vec<u64>> {
    let (lo, hi, n) = (
        args.min_working_set_size,
        args.max_working_set_size,
        args.working_set_increments,
    );
    if lo == 0 || lo > hi || n == 0 {
        bail!(
            "--min-working-set-size must be positive and at most --max-working-set-size; --working-set-increments positive"
        );
    }
    if n == 1 {
        return Ok(vec![lo]);
    }
    let mut out: Vec<u64> = (0..n)
        .map(|i| {
            let t = f64::from(i) / f64::from(n - 1);
            match args.scale {
                Scale::Linear => lo as f64 + t * (hi - lo) as f64,
                Scale::Geometric => lo as f64 * (hi as f64 / lo as f64).powf(t),
            }
            .round() as u64
        })
        .collect();
    out.dedup();
    Ok(out)
}

/// Where a hit rate collapses: the last size that still hit and the first that did not.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cliff {
    pub last_fit_tokens: u64,
    pub first_miss_tokens: u64,
    last_fit_bytes: Option<f64>,
    pub first_miss_bytes: Option<f64>,
}

/// The first fall below half the best hit rate seen before it, over sizes in increasing order.
pub fn cliff(points: &[(u64, f64)], bytes_per_token: Option<f64>) -> Option<Cliff> {
    let mut best: f64 = 0.0;
    for w in points.windows(2) {
        best = best.max(w[0].1);
        if best > 0.0 && w[1].1 < 0.5 * best {
            return Some(Cliff {
                last_fit_tokens: w[0].0,
                first_miss_tokens: w[1].0,
                last_fit_bytes: bytes_per_token.map(|b| b * w[0].0 as f64),
                first_miss_bytes: bytes_per_token.map(|b| b * w[1].0 as f64),
            });
        }
    }
    None
}

const SUMMARY_COLUMNS: &[&str] = &[
    "step",
    "working_set_tokens",
    "prefixes",
    "target_hit_rate",
    "measured_hit_rate",
    "hbm_hit_rate",
    "offload_hit_rate",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "input_tps",
    "output_tps",
];

/// A counter's growth over a measurement, when the server exposes it.
async fn delta(load: &Load, name: &str, before: Option<f64>) -> Option<f64> {
    Some(load.counter(name).await? - before?)
}

pub async fn run(args: &WorkingSetArgs) -> Result<()> {
    let sizes = sizes(args)?;
    if args.context_sizes.contains(&0) {
        bail!("--context-sizes must be positive");
    }
    let bytes_per_token = match (&args.kv_model, args.kv_bytes_per_token) {
        (_, Some(b)) => Some(b),
        (Some(m), None) => Some(
            crate::base::model::preset(m)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown --kv-model `{m}`; known: {}",
                        crate::base::model::preset_names().join(", ")
                    )
                })?
                .geometry
                .kv_bytes_per_token() as f64,
        ),
        (None, None) => None,
    };
    let dir = &args.common.output_dir;
    let mut progress = Progress::open(
        dir,
        "working-set",
        json!({
            "context_sizes": args.context_sizes, "sizes": sizes, "cache_hit_rates": args.cache_hit_rates,
            "passes": args.passes, "concurrency": args.concurrency, "url": args.common.url,
            "output_tokens": args.common.output_tokens,
        }),
        args.common.force_restart,
    )?;
    output::write_command(dir)?;
    let load = Load::connect(&args.common, args.concurrency).await?;
    for &ctx in &args.context_sizes {
        let detail = dir.join(format!("detailed_results_ctx{ctx}.csv"));
        let summary = dir.join(format!("summary_ctx{ctx}.csv"));
        progress.prune(&detail)?;
        progress.prune(&summary)?;
        let aligned = load.aligned(ctx);
        for &size in &sizes {
            for &rate in &args.cache_hit_rates {
                let step = format!("ctx{ctx}_ws{size}_hit{rate}");
                if progress.is_done(&step) {
                    eprintln!("working-set: {step} already measured, skipped");
                    continue;
                }
                let prefixes = (size / u64::from(ctx)).max(1);
                // Fresh prefixes per step: what earlier steps cached is only in the way.
                let base =
                    mix(mix(size ^ u64::from(ctx) << 32 ^ u64::from(rate)) ^ args.common.seed);
                let shared = load.aligned((f64::from(rate) / 100.0 * f64::from(aligned)) as u32);
                let pass = |tokens: u32| -> Vec<Ask> {
                    (0..prefixes)
                        .map(|p| Ask {
                            prefix: base ^ p,
                            shared_tokens: tokens,
                            context_tokens: ctx,
                            unique: load.fresh(),
                        })
                        .collect()
                };
                let warm = load.each(&pass(aligned), args.concurrency).await;
                let names = [
                    "vllm:prefix_cache_queries_total",
                    "vllm:prefix_cache_hits_total",
                    "vllm:external_prefix_cache_hits_total",
                ];
                let mut before = Vec::new();
                for n in names {
                    before.push(load.counter(n).await);
                }
                let mut measured = Vec::new();
                for _ in 0..args.passes.max(1) {
                    measured.extend(load.each(&pass(shared), args.concurrency).await);
                }
                let queries = delta(&load, names[0], before[0]).await.filter(|q| *q > 0.0);
                let hbm = delta(&load, names[1], before[1]).await;
                let offload = delta(&load, names[2], before[2]).await;
                let st = Stats::of(&measured);
                let share = |x: Option<f64>| Some(x? / queries?);
                let mut rows = detail_rows(
                    &step,
                    "warm",
                    ctx,
                    f64::from(rate) / 100.0,
                    args.concurrency,
                    &warm,
                );
                rows.extend(detail_rows(
                    &step,
                    "measure",
                    ctx,
                    f64::from(rate) / 100.0,
                    args.concurrency,
                    &measured,
                ));
                output::append(&detail, &detail_columns(), &rows)?;
                output::append(
                    &summary,
                    SUMMARY_COLUMNS,
                    &[vec![
                        step.clone(),
                        size.to_string(),
                        prefixes.to_string(),
                        rate.to_string(),
                        format!("{:.4}", st.hit_rate),
                        share(hbm).map(|v| format!("{v:.4}")).unwrap_or_default(),
                        share(offload)
                            .map(|v| format!("{v:.4}"))
                            .unwrap_or_default(),
                        f(st.ttft_p50_ms),
                        f(st.ttft_p95_ms),
                        f(st.input_tps),
                        f(st.output_tps),
                    ]],
                )?;
                progress.finish(&step)?;
                eprintln!(
                    "working-set: {ctx}-token prompts, {size} tokens ({prefixes} prefixes), {rate}%: hit rate {:.3}{}",
                    st.hit_rate,
                    share(hbm)
                        .map(|h| format!(" (HBM {h:.3})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    let cliffs = summarize(dir, &args.context_sizes, bytes_per_token)?;
    for (ctx, c) in &cliffs {
        let say = |c: &Option<Cliff>| {
            c.map_or("not reached".to_owned(), |c| {
                format!(
                    "between {} and {} tokens",
                    c.last_fit_tokens, c.first_miss_tokens
                )
            })
        };
        println!(
            "{ctx}-token prompts: HBM cliff {}; offload cliff {}",
            say(&c.hbm),
            say(&c.offload)
        );
    }
    println!("{}", output::write_index(dir)?.display());
    Ok(())
}

/// The two cliffs of one context size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cliffs {
    /// Where hits from HBM collapse (all hits, when the server does not tell tiers apart).
    pub hbm: Option<Cliff>,
    /// Where all hits collapse, when an offload tier held them past the HBM cliff.
    pub offload: Option<Cliff>,
}

/// `cliffs.json` and the plots, from the summaries; the highest target hit rate is used.
pub(crate) fn summarize(
    dir: &Path,
    contexts: &[u32],
    bytes_per_token: Option<f64>,
) -> Result<Vec<(u32, Cliffs)>> {
    let mut out = Vec::new();
    for &ctx in contexts {
        let rows = output::read_rows(&dir.join(format!("summary_ctx{ctx}.csv")))?;
        let top = rows
            .iter()
            .filter_map(|r| r["target_hit_rate"].parse::<u32>().ok())
            .max();
        let pts = |key: &str| -> Vec<(u64, f64)> {
            let mut v: Vec<(u64, f64)> = rows
                .iter()
                .filter(|r| r["target_hit_rate"].parse::<u32>().ok() == top)
                .filter_map(|r| Some((r["working_set_tokens"].parse().ok()?, r[key].parse().ok()?)))
                .collect();
            v.sort_by_key(|p| p.0);
            v
        };
        let total = pts("measured_hit_rate");
        let hbm_pts = pts("hbm_hit_rate");
        let offload_pts = pts("offload_hit_rate");
        let tiered = offload_pts.iter().any(|p| p.1 > 0.0);
        let cliffs = if tiered && hbm_pts.len() == total.len() {
            Cliffs {
                hbm: cliff(&hbm_pts, bytes_per_token),
                offload: cliff(&total, bytes_per_token),
            }
        } else {
            Cliffs {
                hbm: cliff(&total, bytes_per_token),
                offload: None,
            }
        };
        let as_f = |v: &[(u64, f64)]| v.iter().map(|(x, y)| (*x as f64, *y)).collect::<Vec<_>>();
        let mut series = vec![("all hits", as_f(&total))];
        if !hbm_pts.is_empty() {
            series.push(("HBM hits", as_f(&hbm_pts)));
        }
        if tiered {
            series.push(("offload hits", as_f(&offload_pts)));
        }
        plot_lines(
            &dir.join(format!("performance_vs_working_set_{ctx}.png")),
            &format!("Hit rate vs working set, {ctx}-token prompts"),
            "working set (tokens)",
            "hit rate",
            series,
        )?;
        plot_lines(
            &dir.join(format!("ttft_vs_working_set_{ctx}.png")),
            &format!("TTFT vs working set, {ctx}-token prompts"),
            "working set (tokens)",
            "TTFT p50 (ms)",
            vec![("TTFT p50", as_f(&pts("ttft_p50_ms")))],
        )?;
        out.push((ctx, cliffs));
    }
    crate::data::artifact::write_json_atomic(
        &dir.join("cliffs.json"),
        &json!(
            out.iter()
                .map(|(ctx, c)| json!({"context_tokens": ctx, "hbm": c.hbm, "offload": c.offload}))
                .collect::<Vec<_>>()
        ),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cliff_is_the_first_fall_below_half_the_best() {
        let pts = [(1, 0.9), (2, 0.95), (3, 0.6), (4, 0.1), (5, 0.0)];
        let c = cliff(&pts, Some(2.0)).expect("a cliff");
        assert_eq!((c.last_fit_tokens, c.first_miss_tokens), (3, 4));
        assert_eq!(c.first_miss_bytes, Some(8.0));
        assert_eq!(cliff(&[(1, 0.9), (2, 0.8)], None), None);
        assert_eq!(cliff(&[(1, 0.0), (2, 0.0)], None), None);
    }
}
