//! `kvsweep trace synth`: AIPerf's prefix synthesis (`aiperf.dataset.synthesis.Synthesizer`),
//! for Mooncake JSONL and kv-cache-tester JSON.
//!
//! A request's prefix is its leading run of hash ids that occur more than once in the file; the
//! rest is its unique prompt. `--prefix-len-multiplier` stretches the prefix (each shared id
//! becomes `int(m)` ids, topped up to `ceil(len × m)` with new shared ids; below 1 it is cut),
//! `--prompt-len-multiplier` scales the unique part (new ids), `--prefix-root-multiplier N`
//! moves each request into one of N copies of the id space (less sharing), `--speedup-ratio`
//! divides times, `--max-isl`/`--max-osl` clip. Records keep every other field. A kv-cache-tester
//! file is one scope: its requests (subagents' too) are synthesized together, in order.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The synthesis knobs, as AIPerf names them.
#[derive(Debug, Clone, clap::Args)]
pub struct SynthParams {
    /// Divide timestamps (and think times) by this.
    #[arg(long, default_value_t = 1.0)]
    speedup_ratio: f64,
    #[arg(long, default_value_t = 1.0)]
    prefix_len_multiplier: f64,
    #[arg(long, default_value_t = 1)]
    prefix_root_multiplier: u32,
    #[arg(long, default_value_t = 1.0)]
    prompt_len_multiplier: f64,
    #[arg(long)]
    max_isl: Option<u32>,
    #[arg(long)]
    max_osl: Option<u32>,
    /// Seeds the prefix-root assignment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// One request's (input tokens, hash ids): what the multipliers change.
struct Shape {
    input: u64,
    ids: Vec<u64>,
}

/// AIPerf's `_apply_multipliers` over requests in order.
fn apply(shapes: &mut [Shape], p: &SynthParams, block_size: u64) -> Result<()> {
    let mut counts: HashMap<u64, u32> = HashMap::new();
    for s in shapes.iter() {
        for id in &s.ids {
            *counts.entry(*id).or_default() += 1;
        }
    }
    let shared = |id: &u64| counts.get(id).is_some_and(|c| *c > 1);
    let mult = if p.prefix_len_multiplier > 1.0 {
        p.prefix_len_multiplier as u64
    } else {
        1
    };
    let mut max_id = (counts
        .keys()
        .filter(|id| shared(id))
        .max()
        .copied()
        .unwrap_or(0)
        + 1)
        * mult;
    for s in shapes.iter_mut() {
        if s.ids.is_empty() {
            continue;
        }
        let prefix: Vec<u64> = s.ids.iter().copied().take_while(|id| shared(id)).collect();
        let prefix_len = prefix.len() as u64 * block_size;
        if s.input < prefix_len {
            bail!(
                "a request of {} tokens has {prefix_len} tokens of shared prefix blocks",
                s.input
            );
        }
        let prompt_len = s.input - prefix_len;
        let (mut ids, new_prefix_len) = if p.prefix_len_multiplier > 1.0 {
            let mut ids: Vec<u64> = prefix
                .iter()
                .flat_map(|h| (0..mult).map(move |j| h * mult + j))
                .collect();
            let target = (prefix.len() as f64 * p.prefix_len_multiplier).ceil() as usize;
            while ids.len() < target {
                max_id += 1;
                ids.push(max_id);
            }
            let len = ids.len() as u64 * block_size;
            (ids, len)
        } else if p.prefix_len_multiplier < 1.0 {
            let n = ((prefix.len() as f64 * p.prefix_len_multiplier) as usize).max(1);
            (
                prefix[..n.min(prefix.len())].to_vec(),
                n as u64 * block_size,
            )
        } else {
            (prefix, prefix_len)
        };
        let new_prompt_len = (prompt_len as f64 * p.prompt_len_multiplier) as u64;
        for _ in 0..new_prompt_len.div_ceil(block_size) {
            max_id += 1;
            ids.push(max_id);
        }
        s.ids = ids;
        s.input = new_prefix_len + new_prompt_len;
    }
    if p.prefix_root_multiplier > 1 {
        let offset = max_id + 1;
        for (i, s) in shapes.iter_mut().enumerate() {
            let root = crate::base::rng::mix(p.seed ^ (i as u64).wrapping_mul(0x5EED))
                % u64::from(p.prefix_root_multiplier);
            if root > 0 {
                for id in &mut s.ids {
                    *id += root * offset;
                }
            }
        }
    }
    Ok(())
}

fn scale_time(v: &mut Value, key: &str, ratio: f64, integer: bool) {
    if ratio <= 0.0 {
        return;
    }
    if let Some(t) = v.get(key).and_then(Value::as_f64) {
        v[key] = if integer {
            Value::from((t / ratio) as u64)
        } else {
            Value::from(t / ratio)
        };
    }
}

/// Applies `p` to the records (`input_key`, `output_key`, `hash_ids`) in order.
fn synthesize(
    records: &mut [&mut Value],
    p: &SynthParams,
    block_size: u64,
    keys: (&str, &str),
) -> Result<()> {
    let (in_key, out_key) = keys;
    let mut shapes: Vec<Shape> = records
        .iter()
        .map(|r| Shape {
            input: r[in_key].as_u64().unwrap_or(0),
            ids: r["hash_ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default(),
        })
        .collect();
    apply(&mut shapes, p, block_size)?;
    for (r, s) in records.iter_mut().zip(shapes) {
        let mut input = s.input;
        if let Some(max) = p.max_isl {
            input = input.min(u64::from(max));
        }
        r[in_key] = Value::from(input);
        if !s.ids.is_empty() {
            r["hash_ids"] = Value::from(s.ids);
        }
        if let Some(max) = p.max_osl
            && let Some(o) = r[out_key].as_u64()
        {
            r[out_key] = Value::from(o.min(u64::from(max)).max(1));
        }
    }
    Ok(())
}

/// Synthesizes a Mooncake JSONL file.
pub fn mooncake(input: &Path, out: &Path, p: &SynthParams, block_size: u32) -> Result<usize> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read {}", input.display()))?;
    let mut lines: Vec<Value> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a JSON record", input.display(), i + 1))
        })
        .collect::<Result<_>>()?;
    let mut refs: Vec<&mut Value> = lines.iter_mut().collect();
    synthesize(
        &mut refs,
        p,
        u64::from(block_size),
        ("input_length", "output_length"),
    )?;
    for l in &mut lines {
        scale_time(l, "timestamp", p.speedup_ratio, true);
        scale_time(l, "delay", p.speedup_ratio, true);
    }
    let body: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    std::fs::write(out, body).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(lines.len())
}

/// Every request object of a kv-cache-tester document (subagents' included), in order.
fn kvct_requests(v: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    if let Some(reqs) = v.get_mut("requests").and_then(Value::as_array_mut) {
        for r in reqs {
            if r["type"] == "subagent" {
                out.extend(kvct_requests(r));
            } else {
                out.push(r);
            }
        }
    }
    out
}

/// Synthesizes one kv-cache-tester file.
pub fn kvct(input: &Path, out: &Path, p: &SynthParams) -> Result<usize> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read {}", input.display()))?;
    let mut doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", input.display()))?;
    let block_size = doc["block_size"].as_u64().unwrap_or(64);
    let mut reqs = kvct_requests(&mut doc);
    let n = reqs.len();
    synthesize(&mut reqs, p, block_size, ("in", "out"))?;
    for r in reqs {
        for key in ["t", "think_time", "api_time"] {
            scale_time(r, key, p.speedup_ratio, false);
        }
        // kv-cache-tester counts only whole blocks.
        let input = r["in"].as_u64().unwrap_or(0);
        if let Some(ids) = r["hash_ids"].as_array_mut() {
            ids.truncate((input / block_size) as usize);
        }
    }
    std::fs::write(out, serde_json::to_vec(&doc)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(n)
}
