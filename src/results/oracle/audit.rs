//! `audit-buckets`: the analysis, then the fast solvers recomputed by the reference ones on a
//! sample of every bucket, the strict-prefix theorem checked by brute force on micro traces, and
//! a report of what is proved and what is only evidence.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::buckets::{Analysis, BucketResult};
use super::config::Config;
use super::{AuditArgs, bounds, naive, stream};

/// The reference solvers' work is bounded: a sample stops at this many touched blocks.
const SAMPLE_BLOCK_LIMIT: usize = 50_000;
/// Micro traces the brute force is run on.
const MICRO_TRACES: u64 = 200;

/// One bucket's cross-check.
#[derive(Debug, Clone, Default)]
pub(crate) struct BucketAudit {
    sample_requests: usize,
    pub(crate) capacities: Vec<u64>,
    mismatches: Vec<String>,
    pub ordered: bool,
    pub(crate) monotone: bool,
}

/// The brute-force check of the strict-prefix optimum.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BruteForce {
    pub cases: usize,
    pub agree: usize,
}

pub fn run(a: &AuditArgs, runtime: &tokio::runtime::Handle) -> Result<()> {
    let config = Config::load(&a.analyze.config)?;
    let (set, analysis) = super::analyze_command(
        &a.analyze,
        &config,
        "audit-buckets",
        serde_json::json!({}),
        runtime,
    )?;
    let audits: Vec<BucketAudit> = config
        .bucket_deployments
        .iter()
        .zip(&analysis.buckets)
        .map(|(b, result)| {
            let entries = stream::order(&set, config.scope, &|r| {
                b.contains(u64::from(r.input_tokens))
            });
            audit_sample(
                &entries,
                config.include_output_kvcache,
                a.sample_request_limit,
                result,
            )
        })
        .collect();
    let brute = brute_force();
    let dir = &a.analyze.output_dir;
    write_report(dir, &analysis, &audits, brute, Language::En)?;
    write_report(dir, &analysis, &audits, brute, Language::Zh)?;
    let failed: Vec<&String> = audits.iter().flat_map(|x| &x.mismatches).collect();
    println!(
        "audit: {} buckets cross-checked, brute force {}/{} micro traces agree; report in {}",
        audits.len(),
        brute.agree,
        brute.cases,
        dir.join("correctness_report.en.md").display()
    );
    if !failed.is_empty() || brute.agree != brute.cases {
        bail!("the audit found disagreements: {failed:?}");
    }
    Ok(())
}

/// Recomputes a bucket's sample with the reference solvers, and checks the full result's
/// ordering and monotonicity.
fn audit_sample(
    entries: &[stream::Entry],
    include_output: bool,
    request_limit: usize,
    result: &BucketResult,
) -> BucketAudit {
    let mut blocks = 0;
    let take = entries
        .iter()
        .take(request_limit)
        .take_while(|e| {
            blocks += e.blocks() + e.output_blocks(include_output);
            blocks <= SAMPLE_BLOCK_LIMIT
        })
        .count();
    let sample = &entries[..take];
    let reuse = stream::reuse(sample, include_output);
    let steps = naive::steps(sample, include_output);
    let peak = reuse
        .accesses
        .iter()
        .map(|a| u64::from(a.working))
        .max()
        .unwrap_or(0);
    let touched: u64 = reuse.accesses.iter().map(|a| u64::from(a.working)).sum();
    // Capacities where the sample evicts, plus the bucket's own tiers.
    let mut capacities: Vec<u64> = [1, 2, 4, 8]
        .iter()
        .map(|k| peak * k)
        .chain([touched / 4, touched / 2])
        .chain(
            result
                .tiers
                .iter()
                .map(|t| (t.capacity_tokens / f64::from(reuse.block_size.max(1))) as u64),
        )
        .collect();
    capacities.sort_unstable();
    capacities.dedup();
    let mut mismatches = Vec::new();
    let content = naive::content(&steps);
    for h in bounds::hits(&reuse, &capacities) {
        let c = h.capacity_blocks;
        let pairs = [
            ("content", h.content, content),
            ("lru", h.lru, naive::lru(&steps, c)),
            ("relaxed", h.relaxed, naive::greedy(&steps, c, false)),
            (
                "strict_prefix",
                h.strict_prefix,
                naive::greedy(&steps, c, true),
            ),
        ];
        for (name, fast, reference) in pairs {
            if fast != reference {
                mismatches.push(format!(
                    "bucket {} capacity {c} blocks: {name} fast {fast} vs reference {reference}",
                    result.label
                ));
            }
        }
    }
    let all: Vec<_> = result.tiers.iter().chain(&result.curve).collect();
    let ordered = all.iter().all(|t| {
        t.lru <= t.strict_prefix && t.strict_prefix <= t.relaxed && t.relaxed <= t.content
    });
    let mut by_capacity = all.clone();
    by_capacity.sort_by(|a, b| a.capacity_tokens.total_cmp(&b.capacity_tokens));
    let monotone = by_capacity.windows(2).all(|w| {
        w[0].lru <= w[1].lru
            && w[0].strict_prefix <= w[1].strict_prefix
            && w[0].relaxed <= w[1].relaxed
    });
    BucketAudit {
        sample_requests: take,
        capacities,
        mismatches,
        ordered,
        monotone,
    }
}

/// The strict-prefix optimum by exhaustive search against the greedy, on micro traces.
pub(crate) fn brute_force() -> BruteForce {
    let mut out = BruteForce::default();
    for seed in 0..MICRO_TRACES {
        let set = naive::micro_trace(seed);
        let entries = stream::order(&set, stream::Scope::Global, &|_| true);
        let steps = naive::steps(&entries, true);
        let reuse = stream::reuse(&entries, true);
        for cap in [1, 2, 3, 5, 8] {
            if let Some(best) = naive::brute_force(&steps, cap) {
                out.cases += 1;
                out.agree += usize::from(bounds::greedy(&reuse, cap, true) == best);
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Language {
    En,
    Zh,
}

fn write_report(
    dir: &Path,
    analysis: &Analysis,
    audits: &[BucketAudit],
    brute: BruteForce,
    lang: Language,
) -> Result<()> {
    let en = lang == Language::En;
    let t = |e: &'static str, z: &'static str| if en { e } else { z };
    let yes_no = |b: bool| if b { t("yes", "是") } else { t("NO", "否") };
    let mut md = String::new();
    writeln!(md, "# {}\n", t("Correctness report", "正确性报告"))?;
    writeln!(
        md,
        "{}\n",
        t(
            "Written by `kvsweep oracle audit-buckets`. Definitions are in metadata.json (`definitions`).",
            "由 `kvsweep oracle audit-buckets` 生成。各指标定义见 metadata.json 的 `definitions`。"
        )
    )?;
    writeln!(
        md,
        "## {}\n",
        t("What is proved, and how", "哪些结论已被证明，如何证明")
    )?;
    writeln!(
        md,
        "| {} | {} | {} |",
        t("Result", "结果"),
        t("Status", "状态"),
        t("Proof path", "证明路径")
    )?;
    writeln!(md, "|---|---|---|")?;
    let rows: [(&str, &str, String); 4] = [
        (
            t("Content upper bound", "内容上界"),
            t("exact (definition)", "精确（按定义）"),
            t("every block read before is a hit; recomputed with a set of keys on each sample", "凡此前读过的块都算命中；在每个样本上用键集合重新计算").to_owned(),
        ),
        (
            t("Relaxed upper bound", "松弛上界"),
            t("exact optimum of its model; an upper bound on every policy", "其模型下的精确最优；任何策略的上界"),
            t("interval packing by earliest end (Belady with bypass, exchange argument); recomputed block by block on each sample", "按最早结束时间的区间装箱（带旁路的 Belady，交换论证）；在每个样本上逐块重新计算").to_owned(),
        ),
        (
            t("Exact strict-prefix", "精确严格前缀最优"),
            t("exact optimum (proved)", "精确最优（已证明）"),
            format!(
                "{} {}/{} {}",
                t("nested reuse intervals make the greedy prefix-closed, so it is the strict-prefix optimum; brute force over every interval subset agrees on", "复用区间嵌套使贪心结果天然是前缀，因此即严格前缀最优；对所有区间子集的穷举在"),
                brute.agree,
                brute.cases,
                t("micro-trace cases", "个微型 trace 用例上一致"),
            ),
        ),
        (
            t("LRU baseline", "LRU 基线"),
            t("exact simulation", "精确模拟"),
            t("LRU stack depths per run; recomputed with an `lru::LruCache` block by block on each sample", "按段计算 LRU 栈深度；在每个样本上用 `lru::LruCache` 逐块重新计算").to_owned(),
        ),
    ];
    for (name, status, proof) in rows {
        writeln!(md, "| {name} | {status} | {proof} |")?;
    }
    writeln!(
        md,
        "\n## {}\n",
        t("Per bucket (HBM tier)", "各分桶（HBM 层）")
    )?;
    writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        t("Bucket", "分桶"),
        t("Lower bound: LRU", "下界：LRU"),
        t("Exact strict-prefix", "精确严格前缀"),
        t("Upper bounds: relaxed / content", "上界：松弛 / 内容"),
        t("Sample requests", "样本请求数"),
        t("Capacities checked (blocks)", "校验容量（块）"),
        t("Fast = reference", "快速解 = 参考解"),
        t("Ordered", "有序"),
        t("Monotone", "单调"),
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|")?;
    for (b, audit) in analysis.buckets.iter().zip(audits) {
        let h = b.hbm();
        writeln!(
            md,
            "| {} | {:.4} | {:.4} | {:.4} / {:.4} | {} | {} | {} | {} | {} |",
            b.label,
            h.lru,
            h.strict_prefix,
            h.relaxed,
            h.content,
            audit.sample_requests,
            audit
                .capacities
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            yes_no(audit.mismatches.is_empty()),
            yes_no(audit.ordered),
            yes_no(audit.monotone),
        )?;
    }
    let mismatches: Vec<&String> = audits.iter().flat_map(|a| &a.mismatches).collect();
    if !mismatches.is_empty() {
        writeln!(md, "\n## {}\n", t("Disagreements", "不一致"))?;
        for m in mismatches {
            writeln!(md, "- {m}")?;
        }
    }
    writeln!(
        md,
        "\n{}",
        t(
            "Evidence, not proof: the sample cross-checks show the fast solvers implement the definitions on these requests; the model itself (one request served at a time, one cache spanning the replicas) is an assumption.",
            "证据而非证明：样本交叉校验说明快速求解器在这些请求上实现了定义；模型本身（请求逐个服务、所有副本共用一个缓存）是假设。"
        )
    )?;
    let name = if en {
        "correctness_report.en.md"
    } else {
        "correctness_report.zh.md"
    };
    let path = dir.join(name);
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))
}
