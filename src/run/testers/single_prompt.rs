//! `kvsweep test single-prompt`: at each context size a prompt nobody sent before (a miss),
//! then the same prompt again (a hit), one request at a time: TTFT and throughput for both.

use anyhow::{Result, bail};
use serde_json::json;

use super::load::{Ask, Load, SAMPLE_COLUMNS};
use super::output::{self, Progress, opt};
use super::plot_lines;
use crate::base::workload::tester::SinglePromptArgs;

/// Columns of `single_prompt_results.csv`.
fn columns() -> Vec<&'static str> {
    let mut c = vec!["step", "context_tokens", "iteration", "phase"];
    c.extend_from_slice(SAMPLE_COLUMNS);
    c.extend(["output_tps", "error"]);
    c
}

/// The context sizes: the list, or doubling from `min` up to `max`.
pub fn sizes(args: &SinglePromptArgs) -> Result<Vec<u32>> {
    if !args.context_sizes.is_empty() {
        return Ok(args.context_sizes.clone());
    }
    if args.min_tokens == 0 || args.min_tokens > args.max_tokens {
        bail!("--min-tokens must be positive and at most --max-tokens");
    }
    let mut out = Vec::new();
    let mut s = args.min_tokens;
    while s <= args.max_tokens {
        out.push(s);
        s = s.saturating_mul(2);
    }
    Ok(out)
}

pub async fn run(args: &SinglePromptArgs) -> Result<()> {
    let sizes = sizes(args)?;
    let dir = &args.common.output_dir;
    let mut progress = Progress::open(
        dir,
        "single-prompt",
        json!({"sizes": sizes, "iterations": args.num_iterations, "output_tokens": args.common.output_tokens, "url": args.common.url}),
        args.common.force_restart,
    )?;
    let results = dir.join("single_prompt_results.csv");
    progress.prune(&results)?;
    output::write_command(dir)?;
    let load = Load::connect(&args.common, 1).await?;
    for &size in &sizes {
        let step = format!("ctx{size}");
        if progress.is_done(&step) {
            eprintln!("single-prompt: {size} tokens already measured, skipped");
            continue;
        }
        let mut rows = Vec::new();
        for iteration in 0..args.num_iterations {
            let unique = load.fresh();
            let ask = Ask {
                prefix: unique,
                shared_tokens: load.aligned(size),
                context_tokens: size,
                unique,
            };
            for phase in ["cold", "warm"] {
                let s = load.send(ask).await;
                let decode_s = (s.e2e_ms - s.ttft_ms.unwrap_or(0.0)) / 1000.0;
                let tps = (decode_s > 0.0).then(|| f64::from(s.completion_tokens) / decode_s);
                let mut row = vec![
                    step.clone(),
                    size.to_string(),
                    iteration.to_string(),
                    phase.to_owned(),
                ];
                row.extend(s.cells());
                row.extend([opt(tps), s.error]);
                rows.push(row);
            }
        }
        output::append(&results, &columns(), &rows)?;
        progress.finish(&step)?;
        eprintln!(
            "single-prompt: {size} tokens done ({}/{})",
            progress.finished(),
            sizes.len()
        );
    }
    summarize(dir)?;
    let index = output::write_index(dir)?;
    println!("{}", index.display());
    Ok(())
}

/// `summary.csv` and the plots, from `single_prompt_results.csv` (so they can be redrawn).
pub(crate) fn summarize(dir: &std::path::Path) -> Result<()> {
    let rows = output::read_rows(&dir.join("single_prompt_results.csv"))?;
    let mut sizes: Vec<u32> = rows
        .iter()
        .filter_map(|r| r["context_tokens"].parse().ok())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let median = |size: u32, phase: &str, key: &str| {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| {
                r["context_tokens"] == size.to_string() && r["phase"] == phase && r["ok"] == "true"
            })
            .filter_map(|r| r[key].parse().ok())
            .collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| crate::base::stats::percentile(&v, 50.0))
    };
    let mut table = Vec::new();
    let (mut cold, mut warm, mut speedup) = (Vec::new(), Vec::new(), Vec::new());
    for &size in &sizes {
        let (c, w) = (
            median(size, "cold", "ttft_ms"),
            median(size, "warm", "ttft_ms"),
        );
        let s = match (c, w) {
            (Some(c), Some(w)) if w > 0.0 => Some(c / w),
            _ => None,
        };
        let x = f64::from(size);
        cold.extend(c.map(|v| (x, v)));
        warm.extend(w.map(|v| (x, v)));
        speedup.extend(s.map(|v| (x, v)));
        let cached = median(size, "warm", "cached_tokens");
        let prompt = median(size, "warm", "prompt_tokens");
        table.push(vec![
            size.to_string(),
            opt(c),
            opt(w),
            opt(s),
            opt(median(size, "cold", "e2e_ms")),
            opt(median(size, "warm", "e2e_ms")),
            opt(median(size, "cold", "output_tps")),
            opt(median(size, "warm", "output_tps")),
            opt(cached
                .zip(prompt)
                .filter(|(_, p)| *p > 0.0)
                .map(|(c, p)| c / p)),
        ]);
    }
    let path = dir.join("summary.csv");
    std::fs::remove_file(&path).ok();
    output::append(
        &path,
        &[
            "context_tokens",
            "cold_ttft_p50_ms",
            "warm_ttft_p50_ms",
            "speedup",
            "cold_ttlt_p50_ms",
            "warm_ttlt_p50_ms",
            "cold_output_tps",
            "warm_output_tps",
            "warm_hit_rate",
        ],
        &table,
    )?;
    plot_lines(
        &dir.join("ttft_vs_context.png"),
        "TTFT: miss (cold) and hit (warm)",
        "context tokens",
        "TTFT p50 (ms)",
        vec![("cold", cold), ("warm", warm)],
    )?;
    plot_lines(
        &dir.join("speedup_vs_context.png"),
        "TTFT speedup from the cache",
        "context tokens",
        "cold / warm TTFT",
        vec![("speedup", speedup)],
    )
}
