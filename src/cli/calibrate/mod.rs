//! `kvsweep calibrate`: fits the simulator's step-time model (`sim::calibration`) to measured
//! cells of one engine, model, runner and TP.
//!
//! Every successful request of the cells gives two equations in the model's five unknowns
//! (step overhead, prefill per token and per attention pair, decode per sequence and per
//! context token), built from its `requests.csv` row and the other requests in flight beside it:
//!
//! - **TTFT** = the steps that compute its uncached prompt (⌈uncached / token budget⌉ steps,
//!   each also decoding the requests then decoding) plus, when the engine was busy at the
//!   send, half a step of waiting for the running one to end;
//! - **decode time** (E2E − TTFT) = its N − 1 further steps, each carrying the requests decoding
//!   beside it (their count and context, averaged over the window) and the uncached prompts of
//!   the requests whose prefill overlapped the window.
//!
//! Both are linear in the unknowns, so one non-negative least-squares fit (`lsq.rs`) on the
//! relative residuals (each equation divided by its measurement: a 10 ms TTFT counts as much as
//! a 10 s one) gives them all. The engine's scheduling limits and KV capacity are settings,
//! taken from the flags and from the engine's `cache_config_info` metric (metrics_meta.json),
//! not fitted. The host-tier load rate is held at zero (not fitted) until cells that load from
//! a host tier are given: the CPU engine of the test suite cannot offload.

mod lsq;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::data::artifact::schema::{CellPlan, JsonArtifact, Outcome, RequestRow, read_csv_rows};
use crate::run::sim::calibration::{Calibration, FitInfo, Identity, Limits, Term, Terms};

/// The fewest cells, and distinct user counts among them, a fit needs: with one load level the
/// per-sequence decode cost cannot be told from the step overhead.
const MIN_CELLS: usize = 2;
/// The fewest successful requests with two or more output tokens over all cells.
const MIN_REQUESTS: usize = 20;

/// Fit the simulator's time model to measured cells of one engine, model, runner and TP.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    /// Measured cell directories (at least two, at two or more user counts).
    #[arg(required = true, value_name = "CELL_DIR")]
    pub cells: Vec<PathBuf>,
    /// The calibration file to write (YAML).
    #[arg(long)]
    pub out: PathBuf,
    /// The engine's running-request limit (vLLM's --max-num-seqs), when the cells' engine
    /// arguments do not set it.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// The engine's token budget per step (vLLM's --max-num-batched-tokens), when the cells'
    /// engine arguments do not set it.
    #[arg(long, default_value_t = 2048)]
    pub max_num_batched_tokens: usize,
    /// Tokens the engine's KV cache holds, when its /metrics does not say
    /// (vLLM's cache_config_info gives num_gpu_blocks × block_size).
    #[arg(long)]
    pub kv_capacity_tokens: Option<usize>,
    /// KV block size, when its /metrics does not say.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Bytes of KV per token (for offload traffic), when known.
    #[arg(long, default_value_t = 0)]
    pub kv_bytes_per_token: u64,
}

/// One measured request, in seconds and tokens.
#[derive(Debug, Clone, Copy)]
struct Req {
    sent: f64,
    ttft: f64,
    e2e: f64,
    prompt: f64,
    cached: f64,
    output: f64,
}

impl Req {
    fn uncached(&self) -> f64 {
        (self.prompt - self.cached).max(0.0)
    }
    fn first_token(&self) -> f64 {
        self.sent + self.ttft
    }
    fn done(&self) -> f64 {
        self.sent + self.e2e
    }
    /// Its context while decoding at time `t`: the prompt and the tokens generated so far.
    fn context_at(&self, t: f64) -> f64 {
        let span = (self.e2e - self.ttft).max(1e-9);
        self.prompt + self.output * ((t - self.first_token()) / span).clamp(0.0, 1.0)
    }
    /// Attention pairs of its prefill: uncached × (cached + uncached / 2).
    fn pairs(&self) -> f64 {
        self.uncached() * (self.cached + self.uncached() / 2.0)
    }
}

/// Unknowns, in this order.
const TERMS: usize = 5;

/// One equation: the coefficients of the five terms, and the measured seconds.
type Equation = (Vec<f64>, f64);

/// The requests decoding at `t` other than `skip`: their count and total context.
fn decoding_at(reqs: &[Req], t: f64, skip: usize) -> (f64, f64) {
    let mut n = 0.0;
    let mut ctx = 0.0;
    for (j, r) in reqs.iter().enumerate() {
        if j != skip && r.first_token() <= t && t < r.done() {
            n += 1.0;
            ctx += r.context_at(t);
        }
    }
    (n, ctx)
}

/// The TTFT and decode equations of one cell's requests.
fn equations(reqs: &[Req], budget: f64) -> (Vec<Equation>, Vec<Equation>) {
    let mut ttft = Vec::new();
    let mut decode = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        // TTFT: its prefill steps, each also decoding what was decoding at the send (the
        // request itself decodes only from its first token on).
        let (b, ctx) = decoding_at(reqs, r.sent, i);
        let chunks = (r.uncached() / budget).ceil().max(1.0);
        let busy = reqs
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && o.sent <= r.sent && r.sent < o.done());
        let steps = chunks + if busy { 0.5 } else { 0.0 };
        if r.ttft > 0.0 {
            ttft.push((
                vec![steps, r.uncached(), r.pairs(), steps * b, steps * ctx],
                r.ttft,
            ));
        }
        // Decode: N − 1 steps from the first token to the last.
        let steps = r.output - 1.0;
        let window = r.e2e - r.ttft;
        if steps < 1.0 || window <= 0.0 {
            continue;
        }
        let (a, z) = (r.first_token(), r.done());
        // Batch and context averaged over the window (sampled), this request included.
        let samples = 16;
        let (mut bsum, mut csum) = (0.0, 0.0);
        for k in 0..samples {
            let t = a + (z - a) * (f64::from(k) + 0.5) / f64::from(samples);
            let (n, c) = decoding_at(reqs, t, i);
            bsum += n + 1.0;
            csum += c + r.context_at(t);
        }
        let (bavg, cavg) = (bsum / f64::from(samples), csum / f64::from(samples));
        // Others' prefills inside the window, in proportion to the overlap of their TTFT.
        let (mut tokens, mut pairs) = (0.0, 0.0);
        for (j, o) in reqs.iter().enumerate() {
            if j == i || o.ttft <= 0.0 {
                continue;
            }
            let overlap = (o.first_token().min(z) - o.sent.max(a)).max(0.0) / o.ttft;
            tokens += o.uncached() * overlap;
            pairs += o.pairs() * overlap;
        }
        decode.push((
            vec![steps, tokens, pairs, steps * bavg, steps * cavg],
            window,
        ));
    }
    (ttft, decode)
}

/// A measured cell: its identity, users, requests and what its metrics say of the cache.
struct Cell {
    dir: PathBuf,
    identity: Identity,
    users: u32,
    reqs: Vec<Req>,
    engine_args: Vec<String>,
    cache_blocks: Option<(usize, usize)>,
}

fn load_cell(dir: &Path) -> Result<Cell> {
    let plan = CellPlan::read(dir).with_context(|| format!("cell {}", dir.display()))?;
    let rows = read_csv_rows(
        &dir.join(RequestRow::FILE),
        |r: &RequestRow| r.format_version,
        RequestRow::VERSION,
    )
    .with_context(|| format!("cell {}", dir.display()))?;
    let reqs = rows
        .iter()
        .filter(|r| r.status == Outcome::Ok)
        .filter_map(|r| {
            Some(Req {
                sent: r.sent_s,
                ttft: r.ttft_ms? / 1000.0,
                e2e: r.e2e_ms / 1000.0,
                prompt: f64::from(r.prompt_tokens?),
                cached: f64::from(r.cached_tokens.unwrap_or(0)),
                output: f64::from(r.completion_tokens?),
            })
        })
        .collect();
    Ok(Cell {
        dir: dir.to_path_buf(),
        identity: crate::cli::predict::identity_of(&plan),
        users: plan.cell.users,
        reqs,
        engine_args: plan.engine_args.clone(),
        cache_blocks: cache_blocks(dir),
    })
}

/// vLLM's `cache_config_info` labels in metrics_meta.json: (num_gpu_blocks, block_size).
fn cache_blocks(dir: &Path) -> Option<(usize, usize)> {
    let text = std::fs::read_to_string(dir.join("metrics_meta.json")).ok()?;
    let meta: serde_json::Value = serde_json::from_str(&text).ok()?;
    let labels = meta.get("cache_config")?.get("labels")?;
    let num = |k: &str| labels.get(k)?.as_str()?.parse::<usize>().ok();
    Some((num("num_gpu_blocks")?, num("block_size")?))
}

/// The value of `--flag N` among an engine's arguments.
fn engine_flag(args: &[String], flag: &str) -> Option<usize> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1)?.parse().ok()
}

pub fn run(args: &CalibrateArgs) -> Result<()> {
    let cells: Vec<Cell> = args
        .cells
        .iter()
        .map(|d| load_cell(d))
        .collect::<Result<_>>()?;
    let calibration = fit(&cells, args)?;
    calibration.write(&args.out)?;
    let t = &calibration.terms;
    eprintln!(
        "calibrate: {} from {} cells ({} requests): step {:.2} ms + {:.3} µs/prefill token + {:.3} µs/decoding sequence; TTFT residual {:.0} %, decode residual {:.0} % → {}",
        calibration.identity,
        cells.len(),
        calibration.fit.requests,
        t.step_overhead.value * 1e3,
        t.prefill_per_token.value * 1e6,
        t.decode_per_seq.value * 1e6,
        calibration.fit.ttft_residual * 100.0,
        calibration.fit.decode_residual * 100.0,
        args.out.display()
    );
    Ok(())
}

fn fit(cells: &[Cell], args: &CalibrateArgs) -> Result<Calibration> {
    let Some(first) = cells.first() else {
        bail!(
            "no cell given: calibrate needs at least {MIN_CELLS} cells at two or more user counts"
        );
    };
    for c in cells {
        if c.identity != first.identity {
            bail!(
                "cells of different setups cannot be fitted together: {} is {}, {} is {}",
                first.dir.display(),
                first.identity,
                c.dir.display(),
                c.identity
            );
        }
    }
    let mut users: Vec<u32> = cells.iter().map(|c| c.users).collect();
    users.sort_unstable();
    users.dedup();
    if cells.len() < MIN_CELLS || users.len() < 2 {
        bail!(
            "{} cell(s) at {} user count(s): calibrate needs at least {MIN_CELLS} cells at two or more user counts (one low load, one high) to tell the per-sequence decode cost from the step overhead",
            cells.len(),
            users.len()
        );
    }
    let max_num_seqs = cells
        .iter()
        .find_map(|c| engine_flag(&c.engine_args, "--max-num-seqs"))
        .unwrap_or(args.max_num_seqs);
    let budget = cells
        .iter()
        .find_map(|c| engine_flag(&c.engine_args, "--max-num-batched-tokens"))
        .unwrap_or(args.max_num_batched_tokens);
    let (blocks, block_size) = match cells.iter().find_map(|c| c.cache_blocks) {
        Some((n, bs)) => (Some(n * bs), bs),
        None => (None, args.block_size),
    };
    let kv_capacity_tokens = args.kv_capacity_tokens.or(blocks).context(
        "the cells' metrics do not state the KV cache size (vLLM's cache_config_info): give --kv-capacity-tokens",
    )?;

    let (mut ttft, mut decode) = (Vec::new(), Vec::new());
    for c in cells {
        let (t, d) = equations(&c.reqs, budget.max(1) as f64);
        ttft.extend(t);
        decode.extend(d);
    }
    if decode.len() < MIN_REQUESTS {
        bail!(
            "{} successful requests with two or more output tokens in the cells: calibrate needs at least {MIN_REQUESTS}",
            decode.len()
        );
    }
    // Relative residuals: each equation divided by its measurement.
    let relative = |rows: &[Equation]| -> Vec<Equation> {
        rows.iter()
            .map(|(x, y)| (x.iter().map(|v| v / y).collect(), 1.0))
            .collect()
    };
    let mut rows = relative(&ttft);
    rows.extend(relative(&decode));
    let solution = lsq::solve_nonnegative(&rows, TERMS).context(
        "the cells' requests do not determine the step model (too alike to separate its terms)",
    )?;
    let b = &solution.coefficients;
    let rms = |rows: &[Equation]| -> f64 {
        let sse: f64 = rows
            .iter()
            .map(|(x, y)| {
                let fit: f64 = x.iter().zip(b).map(|(xi, bi)| xi * bi).sum();
                ((fit - y) / y).powi(2)
            })
            .sum();
        (sse / rows.len().max(1) as f64).sqrt()
    };
    let (ttft_res, decode_res) = (rms(&ttft), rms(&decode));
    let term = |k: usize, units: &str, residual: f64| Term {
        value: b[k],
        units: units.to_owned(),
        std_error: solution.std_errors[k],
        residual: Some(residual),
        fitted: solution.std_errors[k].is_some(),
    };
    Ok(Calibration {
        format_version: Calibration::VERSION,
        identity: first.identity.clone(),
        limits: Limits {
            max_num_seqs,
            max_num_batched_tokens: budget,
            kv_capacity_tokens,
            block_size,
            kv_bytes_per_token: args.kv_bytes_per_token,
        },
        terms: Terms {
            step_overhead: term(0, "s/step", solution.rms_residual),
            prefill_per_token: term(1, "s/token", ttft_res),
            prefill_per_pair: term(2, "s/(query token × context token)", ttft_res),
            decode_per_seq: term(3, "s/sequence/step", decode_res),
            decode_per_context: term(4, "s/context token/step", decode_res),
            load_per_token: Term {
                value: 0.0,
                units: "s/token".into(),
                std_error: None,
                residual: None,
                fitted: false,
            },
        },
        fit: FitInfo {
            cells: cells.iter().map(|c| c.dir.display().to_string()).collect(),
            users,
            requests: ttft.len(),
            ttft_residual: ttft_res,
            decode_residual: decode_res,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CalibrateArgs {
        CalibrateArgs {
            cells: Vec::new(),
            out: PathBuf::from("c.yaml"),
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
            kv_capacity_tokens: Some(100_000),
            block_size: 16,
            kv_bytes_per_token: 0,
        }
    }

    fn cell(name: &str, users: u32, tp: u32) -> Cell {
        Cell {
            dir: PathBuf::from(name),
            identity: Identity {
                engine: "vllm".into(),
                model: "tiny".into(),
                runner: "cpu".into(),
                tp,
            },
            users,
            reqs: Vec::new(),
            engine_args: vec!["--max-num-seqs".into(), "8".into()],
            cache_blocks: None,
        }
    }

    #[test]
    fn one_load_level_or_mixed_setups_are_refused() {
        let err = fit(&[cell("a", 2, 1), cell("b", 2, 1)], &args()).expect_err("one level");
        assert!(
            err.to_string()
                .contains("at least 2 cells at two or more user counts"),
            "{err}"
        );
        let err = fit(&[cell("a", 2, 1), cell("b", 8, 2)], &args()).expect_err("mixed tp");
        let msg = err.to_string();
        assert!(
            msg.contains("tp 1") && msg.contains("tp 2") && msg.contains('b'),
            "{msg}"
        );
        let err = fit(&[cell("a", 2, 1), cell("b", 8, 1)], &args()).expect_err("no requests");
        assert!(err.to_string().contains("at least 20"), "{err}");
        assert_eq!(
            engine_flag(&cell("a", 1, 1).engine_args, "--max-num-seqs"),
            Some(8)
        );
    }

    #[test]
    fn concurrent_requests_count_each_other_in_their_steps() {
        let a = Req {
            sent: 0.0,
            ttft: 0.1,
            e2e: 1.1,
            prompt: 100.0,
            cached: 0.0,
            output: 11.0,
        };
        let b = Req { sent: 0.5, ..a };
        let (ttft, decode) = equations(&[a, b], 2048.0);
        // b was sent while a decoded: half a step of wait, then steps decoding a beside it.
        assert_eq!(ttft[1].0[0], 1.5);
        assert_eq!(ttft[1].0[3], 1.5);
        // a's decode window saw b's whole prefill (100 tokens).
        assert!((decode[0].0[1] - 100.0).abs() < 1e-9, "{:?}", decode[0]);
    }
}
