//! `kvsweep trace`: the trace tools' command line.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::generate::Profile;
use super::synth::SynthParams;
use super::{LoadOptions, analyze, convert, generate, synth};
use crate::base::kinds::TraceFormat;

/// Analyze, convert, synthesize and generate traces.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    #[command(subcommand)]
    pub action: TraceAction,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TraceAction {
    /// What a trace set will do to a cache: lengths, growth, think times, reuse, working set.
    Analyze(AnalyzeArgs),
    /// kv-cache-tester JSON ↔ Mooncake JSONL (or from Qwen-Bailian JSONL), re-blocking hash ids.
    Convert(ConvertArgs),
    /// AIPerf prefix synthesis: scale prefixes, prompts and time.
    Synth(SynthArgs),
    /// kv-cache-tester traces from a profile fitted to real ones.
    Generate(GenerateArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// Trace files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Tokens per hash id in JSON Lines files [default: 512 for Mooncake, 16 for Qwen-Bailian].
    #[arg(long)]
    pub block_size: Option<u32>,
    /// A model preset, for the working set in bytes.
    #[arg(long)]
    pub model: Option<String>,
    /// Print the whole analysis as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConvertArgs {
    /// A trace file or directory.
    pub input: PathBuf,
    #[arg(long, value_enum)]
    pub to: Target,
    /// Tokens per hash id in the output [default: 512 for mooncake, 64 for kvct].
    #[arg(long)]
    pub block_size: Option<u32>,
    /// Tokens per hash id in JSON Lines input [default: 512 for Mooncake, 16 for Qwen-Bailian].
    #[arg(long)]
    input_block_size: Option<u32>,
    /// A .jsonl file (mooncake) or a directory (kvct).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Mooncake,
    Kvct,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// A Mooncake .jsonl file or a kv-cache-tester .json file.
    pub input: PathBuf,
    #[command(flatten)]
    pub params: SynthParams,
    /// Tokens per hash id in Mooncake input.
    #[arg(long, default_value_t = 512)]
    pub block_size: u32,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    #[arg(long)]
    pub sessions: usize,
    /// Fit the profile to these traces instead of using the built-in one.
    #[arg(long)]
    pub fit: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Clip every prompt to this many tokens.
    #[arg(long, default_value_t = u32::MAX)]
    max_input_tokens: u32,
    /// Also write the profile used.
    #[arg(long)]
    save_profile: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
}

fn opts(jsonl_block_size: Option<u32>) -> LoadOptions {
    LoadOptions {
        format: TraceFormat::Auto,
        jsonl_block_size,
        strict: false,
    }
}

fn print_analysis(v: &serde_json::Value) {
    let s = &v["set"];
    let f = |x: &serde_json::Value| x.as_f64().unwrap_or(0.0);
    let pct = |x: &serde_json::Value| {
        x.as_f64()
            .map_or("–".into(), |x| format!("{:.1}%", x * 100.0))
    };
    println!(
        "{} files, {} sessions ({} subagents), {} requests",
        s["files"], s["sessions"], s["subagents"], s["requests"]
    );
    for (name, d) in [
        ("input tokens", &s["input_tokens"]),
        ("output tokens", &s["output_tokens"]),
        ("think time s", &s["think_time_s"]),
    ] {
        println!(
            "  {name:14} p50 {:>10.1}  p90 {:>10.1}  p99 {:>10.1}  max {:>10.1}",
            f(&d["median"]),
            f(&d["p90"]),
            f(&d["p99"]),
            f(&d["max"])
        );
    }
    let g = &s["growth"];
    println!(
        "  growth         append {}  replace tail {}  drop back {}  ({} turns)",
        pct(&g["append"]),
        pct(&g["replace_tail"]),
        pct(&g["drop_back"]),
        g["turns"]
    );
    let r = &s["reuse"];
    println!(
        "  reuse          unbounded-cache hit rate: session scope {}, global scope {}; {} unique blocks, working set {} tokens{}",
        pct(&r["session_scope_hit_rate"]),
        pct(&r["global_scope_hit_rate"]),
        r["unique_blocks"],
        r["working_set_tokens"],
        r["working_set_bytes"]
            .as_f64()
            .map_or(String::new(), |b| format!(" ({:.2} GB of KV)", b / 1e9))
    );
    let a = &s["aiperf"];
    println!(
        "  aiperf         cache hit rate {}, prefix reuse {}, {} unique prefixes, {} prefix groups",
        pct(&a["cache_hit_rate"]),
        pct(&a["prefix_reuse_ratio"]),
        a["unique_prefixes"],
        a["num_prefix_groups"]
    );
    if let Some(d) = v["duplicate_traces"].as_array().filter(|d| !d.is_empty()) {
        println!(
            "  duplicates     {}",
            serde_json::to_string(d).unwrap_or_default()
        );
    }
}

pub fn run(args: &TraceArgs) -> Result<()> {
    match &args.action {
        TraceAction::Analyze(a) => {
            let files = super::list_files(&a.paths)?;
            let kv = a
                .model
                .as_deref()
                .map(|m| {
                    crate::base::model::preset(m)
                        .map(|p| p.geometry.kv_bytes_per_token() as f64)
                        .with_context(|| {
                            format!(
                                "unknown model preset `{m}`; presets: {}",
                                crate::base::model::preset_names().join(", ")
                            )
                        })
                })
                .transpose()?;
            let v = analyze::analyze(&files, opts(a.block_size), kv)?;
            for warning in v["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_analysis(&v);
            }
            Ok(())
        }
        TraceAction::Convert(c) => {
            let set = super::load(std::slice::from_ref(&c.input), opts(c.input_block_size))?;
            let Some(src) = set.sessions.first().map(|s| s.block_size) else {
                bail!("{} holds no sessions", c.input.display());
            };
            let dst = c.block_size.unwrap_or(match c.to {
                Target::Mooncake => 512,
                Target::Kvct => 64,
            });
            convert::check_blocks(src, dst)?;
            let n = match c.to {
                Target::Mooncake => convert::to_mooncake(&set, dst, &c.out)?,
                Target::Kvct => convert::to_kvct(&set, dst, &c.out)?,
            };
            eprintln!(
                "convert: {n} {} written to {}",
                if c.to == Target::Mooncake {
                    "requests"
                } else {
                    "sessions"
                },
                c.out.display()
            );
            Ok(())
        }
        TraceAction::Synth(s) => {
            let text_head = std::fs::read_to_string(&s.input)
                .with_context(|| format!("cannot read {}", s.input.display()))?;
            let n = match super::file_format(&s.input, &text_head, opts(Some(s.block_size))) {
                TraceFormat::Mooncake => {
                    synth::mooncake(&s.input, &s.out, &s.params, s.block_size)?
                }
                // synth writes Mooncake timestamps as whole numbers (milliseconds), which would
                // cut Qwen-Bailian's fractional seconds, and it does not follow chat chains.
                TraceFormat::Bailian => bail!(
                    "{} is a Qwen-Bailian trace; synth reads Mooncake and kv-cache-tester traces: \
                     convert it first (`kvsweep trace convert {} --to mooncake --out F`)",
                    s.input.display(),
                    s.input.display()
                ),
                TraceFormat::Auto | TraceFormat::Kvct => synth::kvct(&s.input, &s.out, &s.params)?,
            };
            eprintln!("synth: {n} requests written to {}", s.out.display());
            Ok(())
        }
        TraceAction::Generate(g) => {
            let profile = match &g.fit {
                Some(dir) => Profile::fit(&super::load(std::slice::from_ref(dir), opts(None))?),
                None => Profile::builtin()?,
            };
            if let Some(p) = &g.save_profile {
                std::fs::write(p, serde_json::to_string_pretty(&profile)? + "\n")
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            let paths =
                generate::generate(&profile, g.sessions, g.seed, g.max_input_tokens, &g.out)?;
            eprintln!(
                "generate: {} traces written to {}",
                paths.len(),
                g.out.display()
            );
            Ok(())
        }
    }
}
