//! `kvsweep test cache-rate`: a fixed working set of distinct prefixes, warmed once; for each
//! target hit rate every request starts with that share of one prefix and ends with a tail no
//! other request has, so exactly the target share can hit. `sustained` ramps concurrency until
//! the TTFT limit and measures again at the peak; `fixed` measures at one concurrency.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

use super::load::{Ask, Load, SAMPLE_COLUMNS, Sample, Stats};
use super::output::{self, Progress, f, opt};
use super::plot_lines;
use crate::base::rng::mix;
use crate::base::workload::tester::{CacheRateArgs, LoadShape, Mode, Reinit};

/// Columns of the per-request CSVs: where a request belongs, then [`SAMPLE_COLUMNS`], then
/// `error`.
pub(crate) fn detail_columns() -> Vec<&'static str> {
    let mut c = vec![
        "step",
        "phase",
        "context_tokens",
        "target_hit_rate",
        "concurrency",
        "sent_s",
    ];
    c.extend_from_slice(SAMPLE_COLUMNS);
    c.push("error");
    c
}

const PHASE_COLUMNS: &[&str] = &[
    "step",
    "phase",
    "concurrency",
    "requests",
    "failed",
    "seconds",
    "input_tps",
    "output_tps",
    "ttft_avg_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "ttft_max_ms",
    "itl_avg_ms",
    "hit_rate",
    "within_ttft_limit",
];

pub(crate) fn detail_rows(
    step: &str,
    phase: &str,
    ctx: u32,
    rate: f64,
    c: usize,
    samples: &[Sample],
) -> Vec<Vec<String>> {
    samples
        .iter()
        .map(|s| {
            let mut row = vec![
                step.to_owned(),
                phase.to_owned(),
                ctx.to_string(),
                f(rate),
                c.to_string(),
                format!("{:.4}", s.sent_s),
            ];
            row.extend(s.cells());
            row.push(s.error.clone());
            row
        })
        .collect()
}

fn phase_row(step: &str, phase: &str, c: usize, st: &Stats, within: bool) -> Vec<String> {
    vec![
        step.to_owned(),
        phase.to_owned(),
        c.to_string(),
        st.requests.to_string(),
        st.failed.to_string(),
        f(st.seconds),
        f(st.input_tps),
        f(st.output_tps),
        f(st.ttft_avg_ms),
        f(st.ttft_p50_ms),
        f(st.ttft_p95_ms),
        f(st.ttft_max_ms),
        f(st.itl_avg_ms),
        format!("{:.4}", st.hit_rate),
        within.to_string(),
    ]
}

/// Ramps concurrency while the TTFT metric stays within the limit; the peak that did, with every
/// level's figures. `None` when even the first level is over the limit.
pub async fn ramp(
    load: &Load,
    shape: &LoadShape,
    next: &(dyn Fn(u64) -> Ask + Sync),
    mut on_level: impl FnMut(usize, &[Sample], &Stats, bool),
) -> Option<usize> {
    let budget = Duration::from_secs_f64(shape.test_duration.max(0.0));
    let level = Duration::from_secs_f64(shape.ramp_duration.max(0.1));
    let started = std::time::Instant::now();
    let mut peak = None;
    let mut c = shape.start_concurrency.max(1);
    while c <= shape.max_concurrency.max(1) && started.elapsed() + level <= budget.max(level) {
        let samples = load.for_duration(c, level, next).await;
        let st = Stats::of(&samples);
        let within = shape.ttft_metric.of(&st) <= shape.max_ttft * 1000.0 && st.failed == 0;
        on_level(c, &samples, &st, within);
        if !within {
            break;
        }
        peak = Some(c);
        c += shape.concurrency_increment.max(1);
    }
    peak
}

pub async fn run(args: &CacheRateArgs) -> Result<()> {
    if args.context_sizes.contains(&0) || args.working_set_size == 0 {
        bail!("--context-sizes and --working-set-size must be positive");
    }
    if let Some(r) = args.cache_hit_rates.iter().find(|r| **r > 100) {
        bail!("--cache-hit-rates: {r} is over 100");
    }
    let dir = &args.common.output_dir;
    let mut progress = Progress::open(
        dir,
        "cache-rate",
        json!({
            "context_sizes": args.context_sizes, "working_set_size": args.working_set_size,
            "cache_hit_rates": args.cache_hit_rates, "mode": format!("{:?}", args.mode),
            "url": args.common.url, "output_tokens": args.common.output_tokens,
        }),
        args.common.force_restart,
    )?;
    output::write_command(dir)?;
    let connections = args
        .load
        .max_concurrency
        .max(args.load.concurrency)
        .max(args.load.init_concurrency);
    let load = Load::connect(&args.common, connections.min(4096)).await?;
    for &ctx in &args.context_sizes {
        let detail = dir.join(format!("detailed_results_ctx{ctx}.csv"));
        let phases = dir.join(format!("phase_metadata_ctx{ctx}.csv"));
        progress.prune(&detail)?;
        progress.prune(&phases)?;
        let prefixes = (args.working_set_size / u64::from(ctx)).max(1);
        let aligned = load.aligned(ctx);
        // Each context size gets its own prefixes; a resumed run warms them again.
        let base = mix(u64::from(ctx) ^ args.common.seed ^ 0xCAC4E);
        let mut warmed = false;
        for &rate in &args.cache_hit_rates {
            let step = format!("ctx{ctx}_hit{rate}");
            if progress.is_done(&step) {
                eprintln!("cache-rate: {step} already measured, skipped");
                continue;
            }
            let target = f64::from(rate) / 100.0;
            let mut rows = Vec::new();
            let mut phase_rows = Vec::new();
            if !warmed || args.reinit_strategy == Reinit::PerCacheRate {
                let asks: Vec<Ask> = (0..prefixes)
                    .map(|p| Ask {
                        prefix: base ^ p,
                        shared_tokens: aligned,
                        context_tokens: ctx,
                        unique: load.fresh(),
                    })
                    .collect();
                let samples = load.each(&asks, args.load.init_concurrency).await;
                let st = Stats::of(&samples);
                phase_rows.push(phase_row(
                    &step,
                    "init",
                    args.load.init_concurrency,
                    &st,
                    true,
                ));
                warmed = true;
            }
            let shared = load.aligned((target * f64::from(aligned)) as u32);
            let random = args.random_working_set_selection;
            let next = |i: u64| Ask {
                prefix: base
                    ^ if random {
                        mix(i ^ 0x5E1) % prefixes
                    } else {
                        i % prefixes
                    },
                shared_tokens: shared,
                context_tokens: ctx,
                unique: load.fresh(),
            };
            let peak = match args.mode {
                Mode::Fixed => Some(args.load.concurrency.max(1)),
                Mode::Sustained => {
                    ramp(&load, &args.load, &next, |c, samples, st, within| {
                        rows.extend(detail_rows(&step, "ramp", ctx, target, c, samples));
                        phase_rows.push(phase_row(&step, "ramp", c, st, within));
                    })
                    .await
                }
            };
            let measure = Duration::from_secs_f64(args.load.ramp_duration.max(0.1));
            let retries = if args.mode == Mode::Fixed {
                1
            } else {
                args.load.num_retries.max(1)
            };
            if let Some(c) = peak {
                for _ in 0..retries {
                    let samples = load.for_duration(c, measure, &next).await;
                    let st = Stats::of(&samples);
                    let within = args.load.ttft_metric.of(&st) <= args.load.max_ttft * 1000.0;
                    rows.extend(detail_rows(&step, "measure", ctx, target, c, &samples));
                    phase_rows.push(phase_row(&step, "measure", c, &st, within));
                }
            }
            output::append(&detail, &detail_columns(), &rows)?;
            output::append(&phases, PHASE_COLUMNS, &phase_rows)?;
            progress.finish(&step)?;
            eprintln!(
                "cache-rate: {step}: peak concurrency {}",
                peak.map_or("none (over the TTFT limit at the start)".into(), |c| c
                    .to_string())
            );
        }
    }
    summarize(dir, &args.context_sizes)?;
    println!("{}", output::write_index(dir)?.display());
    Ok(())
}

/// `summary_ctx{C}.csv` (the measurements at the peak, averaged) and the plots.
pub(crate) fn summarize(dir: &Path, contexts: &[u32]) -> Result<()> {
    let mut input_by_ctx = Vec::new();
    let mut output_by_ctx = Vec::new();
    for &ctx in contexts {
        let phases = output::read_rows(&dir.join(format!("phase_metadata_ctx{ctx}.csv")))?;
        let mut table = Vec::new();
        let (mut input, mut output, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
        let mut steps: Vec<String> = phases.iter().map(|r| r["step"].clone()).collect();
        steps.dedup();
        for step in steps {
            let Some(rate) = step
                .rsplit("_hit")
                .next()
                .and_then(|r| r.parse::<f64>().ok())
            else {
                continue;
            };
            let measured: Vec<_> = phases
                .iter()
                .filter(|r| r["step"] == step && r["phase"] == "measure")
                .collect();
            let mean = |k: &str| {
                let v: Vec<f64> = measured.iter().filter_map(|r| r[k].parse().ok()).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let peak = measured
                .first()
                .map(|r| r["concurrency"].clone())
                .unwrap_or_default();
            input.extend(mean("input_tps").map(|v| (rate, v)));
            output.extend(mean("output_tps").map(|v| (rate, v)));
            ttft.extend(mean("ttft_p95_ms").map(|v| (rate, v)));
            table.push(vec![
                format!("{rate}"),
                peak,
                opt(mean("input_tps")),
                opt(mean("output_tps")),
                opt(mean("ttft_avg_ms")),
                opt(mean("ttft_p50_ms")),
                opt(mean("ttft_p95_ms")),
                opt(mean("itl_avg_ms")),
                opt(mean("hit_rate")),
            ]);
            let ramp: Vec<_> = phases
                .iter()
                .filter(|r| r["step"] == step && r["phase"] == "ramp")
                .collect();
            if !ramp.is_empty() {
                let pts = |k: &str| -> Vec<(f64, f64)> {
                    ramp.iter()
                        .filter_map(|r| Some((r["concurrency"].parse().ok()?, r[k].parse().ok()?)))
                        .collect()
                };
                plot_lines(
                    &dir.join(format!("ramp_ctx{ctx}_cache{rate}.png")),
                    &format!("Concurrency ramp, {ctx} tokens, {rate}% hits"),
                    "concurrency",
                    "ms / tokens per s",
                    vec![
                        ("TTFT p95 (ms)", pts("ttft_p95_ms")),
                        ("input tokens/s", pts("input_tps")),
                    ],
                )?;
            }
        }
        let path = dir.join(format!("summary_ctx{ctx}.csv"));
        std::fs::remove_file(&path).ok();
        output::append(
            &path,
            &[
                "cache_hit_rate",
                "peak_concurrency",
                "input_tps",
                "output_tps",
                "ttft_avg_ms",
                "ttft_p50_ms",
                "ttft_p95_ms",
                "itl_avg_ms",
                "measured_hit_rate",
            ],
            &table,
        )?;
        plot_lines(
            &dir.join(format!("performance_vs_cache_rate_{ctx}.png")),
            &format!("Throughput vs hit rate, {ctx}-token context"),
            "target hit rate (%)",
            "tokens/s",
            vec![("input", input.clone()), ("output", output.clone())],
        )?;
        plot_lines(
            &dir.join(format!("ttft_vs_cache_rate_{ctx}.png")),
            &format!("TTFT p95 vs hit rate, {ctx}-token context"),
            "target hit rate (%)",
            "TTFT p95 (ms)",
            vec![("TTFT p95", ttft)],
        )?;
        input_by_ctx.push((format!("{ctx} tokens"), input));
        output_by_ctx.push((format!("{ctx} tokens"), output));
    }
    fn named(v: &[(String, Vec<(f64, f64)>)]) -> Vec<(&str, Vec<(f64, f64)>)> {
        v.iter().map(|(l, p)| (l.as_str(), p.clone())).collect()
    }
    plot_lines(
        &dir.join("input_throughput_comparison.png"),
        "Input throughput across context sizes",
        "target hit rate (%)",
        "input tokens/s",
        named(&input_by_ctx),
    )?;
    plot_lines(
        &dir.join("output_throughput_comparison.png"),
        "Output throughput across context sizes",
        "target hit rate (%)",
        "output tokens/s",
        named(&output_by_ctx),
    )
}
