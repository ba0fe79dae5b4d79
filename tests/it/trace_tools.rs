//! `kvsweep trace analyze | convert | synth | generate` on the sample traces and constructed
//! cases, and `analyze` against `aiperf analyze-trace` on the same Mooncake file.

use crate::common;

use std::path::{Path, PathBuf};

use common::{kvsweep_ok, repo_root, write};
use kvsweep::data::trace::analyze::{Growth, growth};

fn samples() -> PathBuf {
    repo_root().join("traces/samples/kv-cache-tester")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

fn analyze(paths: &[&Path], extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["trace", "analyze", "--json"];
    args.extend(paths.iter().map(|p| s(p)));
    args.extend(extra);
    serde_json::from_str(&kvsweep_ok(&args)).expect("analysis JSON")
}

#[test]
fn growth_classes_of_constructed_turns() {
    assert_eq!(growth(&[1, 2], &[1, 2, 3]), Growth::Append);
    assert_eq!(growth(&[1, 2], &[1, 2]), Growth::Append);
    assert_eq!(growth(&[1, 2, 3], &[1, 2, 9, 9]), Growth::ReplaceTail);
    assert_eq!(growth(&[1, 2, 3], &[1, 2]), Growth::DropBack);
}

#[test]
fn a_constructed_trace_has_the_hit_rate_and_growth_it_was_built_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 3 blocks, then the same 3 plus one (append), then its last block replaced.
    write(
        dir.path(),
        "t.json",
        r#"{"id": "t", "block_size": 64, "requests": [
            {"t": 0, "in": 192, "out": 10, "hash_ids": [1, 2, 3], "think_time": 1},
            {"t": 5, "in": 256, "out": 10, "hash_ids": [1, 2, 3, 4], "think_time": 3},
            {"t": 9, "in": 256, "out": 10, "hash_ids": [1, 2, 3, 7], "think_time": 2}]}"#,
    );
    let v = analyze(&[dir.path()], &["--model", "llama-3.1-8b"]);
    let set = &v["set"];
    assert_eq!(set["requests"], 3);
    assert_eq!(set["growth"]["append"], 0.5);
    assert_eq!(set["growth"]["replace_tail"], 0.5);
    // Hits: 0, then 3 blocks, then 3 blocks, of 192 + 256 + 256 tokens.
    let hit = set["reuse"]["session_scope_hit_rate"]
        .as_f64()
        .expect("hit rate");
    assert!((hit - 384.0 / 704.0).abs() < 1e-12, "{hit}");
    assert_eq!(set["reuse"]["unique_blocks"], 5);
    // Llama 3.1 8B: 128 KiB of KV a token.
    assert_eq!(set["reuse"]["working_set_bytes"], 5.0 * 64.0 * 131072.0);
    assert_eq!(set["think_time_s"]["median"], 2.0);
}

#[test]
fn the_sample_traces_are_analyzed_per_file_and_as_a_set() {
    let v = analyze(&[&samples()], &[]);
    let set = &v["set"];
    assert_eq!(set["files"], 15);
    assert_eq!(v["files"].as_array().expect("files").len(), 15);
    assert!(set["subagents"].as_u64() > Some(0));
    let g = &set["growth"];
    let total: f64 = ["append", "replace_tail", "drop_back"]
        .iter()
        .map(|k| g[k].as_f64().expect("share"))
        .sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert!(
        g["append"].as_f64() > Some(0.85),
        "agentic sessions mostly append: {g}"
    );
    let hit = set["reuse"]["global_scope_hit_rate"].as_f64().expect("hit");
    assert!((0.5..1.0).contains(&hit), "{hit}");
    assert!(set["input_tokens"]["p99"].as_f64() >= set["input_tokens"]["median"].as_f64());
}

#[test]
fn duplicate_traces_are_found_whatever_their_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = samples().join("trace_0538.json");
    std::fs::copy(&a, dir.path().join("a.json")).expect("copy");
    std::fs::copy(&a, dir.path().join("b.json")).expect("copy");
    std::fs::copy(samples().join("trace_0012.json"), dir.path().join("c.json")).expect("copy");
    let v = analyze(&[dir.path()], &[]);
    let dups = v["duplicate_traces"].as_array().expect("duplicates");
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].as_array().expect("group").len(), 2);
}

/// The shared-prefix length, in tokens, of every ordered pair of distinct requests in `file`.
fn sharing(file: &Path) -> Vec<(u32, u32, u32)> {
    let set = kvsweep::data::trace::load(
        &[file.to_path_buf()],
        kvsweep::data::trace::LoadOptions {
            format: kvsweep::plan::spec::TraceFormat::Auto,
            jsonl_block_size: Some(512),
            strict: true,
        },
    )
    .expect("load");
    let mut reqs = Vec::new();
    for sess in &set.sessions {
        for r in &sess.requests {
            reqs.push((r.input_tokens, r.hash_ids.clone(), sess.block_size));
        }
    }
    let mut out = Vec::new();
    for (i, (a, ia, bs)) in reqs.iter().enumerate() {
        for (j, (b, ib, _)) in reqs.iter().enumerate() {
            if i == j {
                continue;
            }
            let common = ia.iter().zip(ib).take_while(|(x, y)| x == y).count() as u32;
            out.push((*a, *b, common * bs));
        }
    }
    out
}

#[test]
fn convert_round_trips_keep_the_sharing_structure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = samples().join("trace_0538.json");
    // Same block size both ways: every shared prefix survives exactly.
    let jsonl = dir.path().join("t.jsonl");
    kvsweep_ok(&[
        "trace",
        "convert",
        s(&src),
        "--to",
        "mooncake",
        "--block-size",
        "64",
        "--out",
        s(&jsonl),
    ]);
    let back = dir.path().join("back");
    kvsweep_ok(&[
        "trace",
        "convert",
        s(&jsonl),
        "--to",
        "kvct",
        "--input-block-size",
        "64",
        "--out",
        s(&back),
    ]);
    let back_file = std::fs::read_dir(&back)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().contains("trace_0538"))
        .expect("the session's file");
    assert_eq!(sharing(&src), sharing(&back_file));

    // 64 → 512: sharing is kept at the coarser grain.
    let coarse = dir.path().join("coarse.jsonl");
    kvsweep_ok(&[
        "trace",
        "convert",
        s(&src),
        "--to",
        "mooncake",
        "--out",
        s(&coarse),
    ]);
    let fine = sharing(&src);
    let big = sharing(&coarse);
    assert_eq!(fine.len(), big.len());
    for ((a, b, f), (_, _, c)) in fine.iter().zip(&big) {
        let full = |n: u32| n / 512 * 512;
        assert_eq!(
            *c,
            (f / 512 * 512).min(full(*a)).min(full(*b)),
            "{a} {b} {f}"
        );
    }
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&coarse)
            .expect("jsonl")
            .lines()
            .next()
            .expect("a line"),
    )
    .expect("json");
    let isl = line["input_length"].as_u64().expect("isl");
    assert_eq!(
        line["hash_ids"].as_array().expect("ids").len() as u64,
        isl.div_ceil(512)
    );
}

#[test]
fn synth_at_unit_multipliers_is_the_identity_and_roots_split_sharing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("set.jsonl");
    kvsweep_ok(&[
        "trace",
        "convert",
        s(&samples()),
        "--to",
        "mooncake",
        "--out",
        s(&jsonl),
    ]);
    let same = dir.path().join("same.jsonl");
    kvsweep_ok(&["trace", "synth", s(&jsonl), "--out", s(&same)]);
    assert_eq!(sharing(&jsonl), sharing(&same));
    let a = analyze(&[&jsonl], &[]);
    let b = analyze(&[&same], &[]);
    assert_eq!(a["set"]["aiperf"], b["set"]["aiperf"]);

    // A kv-cache-tester file: the same at unit multipliers, times halved by --speedup-ratio 2.
    let kvct = samples().join("trace_0538.json");
    let kvct_same = dir.path().join("same.json");
    kvsweep_ok(&["trace", "synth", s(&kvct), "--out", s(&kvct_same)]);
    assert_eq!(sharing(&kvct), sharing(&kvct_same));
    let fast = dir.path().join("fast.json");
    kvsweep_ok(&[
        "trace",
        "synth",
        s(&kvct),
        "--speedup-ratio",
        "2",
        "--out",
        s(&fast),
    ]);
    let think = |p: &Path| analyze(&[p], &[])["set"]["think_time_s"]["mean"].as_f64();
    let (slow, quick) = (think(&kvct).expect("mean"), think(&fast).expect("mean"));
    assert!(
        (quick * 2.0 - slow).abs() < 1e-6 * slow.max(1.0),
        "{slow} {quick}"
    );

    let split = dir.path().join("split.jsonl");
    kvsweep_ok(&[
        "trace",
        "synth",
        s(&jsonl),
        "--prefix-root-multiplier",
        "4",
        "--speedup-ratio",
        "2",
        "--max-osl",
        "100",
        "--out",
        s(&split),
    ]);
    let c = analyze(&[&split], &[]);
    assert!(
        c["set"]["aiperf"]["cache_hit_rate"].as_f64()
            < a["set"]["aiperf"]["cache_hit_rate"].as_f64(),
        "four roots share less"
    );
    assert!(c["set"]["output_tokens"]["max"].as_f64() <= Some(100.0));

    let longer = dir.path().join("longer.jsonl");
    kvsweep_ok(&[
        "trace",
        "synth",
        s(&jsonl),
        "--prompt-len-multiplier",
        "2",
        "--out",
        s(&longer),
    ]);
    let d = analyze(&[&longer], &[]);
    assert!(d["set"]["input_tokens"]["mean"].as_f64() > a["set"]["input_tokens"]["mean"].as_f64());
}

#[test]
fn generated_traces_match_their_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("gen");
    let profile = dir.path().join("profile.json");
    kvsweep_ok(&[
        "trace",
        "generate",
        "--sessions",
        "200",
        "--seed",
        "3",
        "--fit",
        s(&samples()),
        "--save-profile",
        s(&profile),
        "--out",
        s(&out),
    ]);
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&profile).expect("profile")).expect("json");
    let v = analyze(&[&out], &[]);
    let g = &v["set"]["growth"];
    for (key, profile_key) in [
        ("append", "p_append"),
        ("replace_tail", "p_replace_tail"),
        ("drop_back", "p_drop_back"),
    ] {
        let got = g[key].as_f64().expect("share");
        let want = p[profile_key].as_f64().expect("profile share");
        assert!((got - want).abs() < 0.03, "{key}: {got} vs {want}");
    }
    let median =
        |q: &serde_json::Value| q.as_array().expect("quantiles")[10].as_f64().expect("p50");
    let out_med = v["set"]["output_tokens"]["median"]
        .as_f64()
        .expect("median");
    let want = median(&p["output_tokens"]);
    assert!(
        (out_med / want - 1.0).abs() < 0.2,
        "output median {out_med} vs {want}"
    );
    let think = v["set"]["think_time_s"]["median"].as_f64().expect("median");
    assert!(
        (think / median(&p["think_time_s"]) - 1.0).abs() < 0.3,
        "{think}"
    );
    // The same seed gives the same traces.
    let again = dir.path().join("again");
    kvsweep_ok(&[
        "trace",
        "generate",
        "--sessions",
        "3",
        "--seed",
        "3",
        "--out",
        s(&again),
    ]);
    let again2 = dir.path().join("again2");
    kvsweep_ok(&[
        "trace",
        "generate",
        "--sessions",
        "3",
        "--seed",
        "3",
        "--out",
        s(&again2),
    ]);
    let first = std::fs::read(again.join("gen_3_0000.json")).expect("file");
    assert_eq!(
        first,
        std::fs::read(again2.join("gen_3_0000.json")).expect("file")
    );
}

/// `aiperf analyze-trace` (PyPI aiperf; scripts/install-test-deps.sh installs it) on the same
/// Mooncake file gives the same figures.
#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs AIPerf")]
fn analyze_matches_aiperf_analyze_trace_on_mooncake() {
    let aiperf = common::require_tool("aiperf");
    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("set.jsonl");
    kvsweep_ok(&[
        "trace",
        "convert",
        s(&samples()),
        "--to",
        "mooncake",
        "--out",
        s(&jsonl),
    ]);
    let report = dir.path().join("aiperf.json");
    let out = std::process::Command::new(aiperf)
        .args([
            "analyze-trace",
            s(&jsonl),
            "--block-size",
            "512",
            "--output-file",
            s(&report),
        ])
        .env("HOME", dir.path())
        .output()
        .expect("aiperf runs");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let ours = analyze(&[&jsonl], &["--block-size", "512"]);
    let a = &ours["set"]["aiperf"];
    assert_eq!(a["total_requests"], theirs["total_requests"]);
    assert_eq!(a["unique_prefixes"], theirs["unique_prefixes"]);
    assert_eq!(a["num_prefix_groups"], theirs["num_prefix_groups"]);
    let close = |x: &serde_json::Value, y: &serde_json::Value, what: &str| {
        let (x, y) = (x.as_f64().expect(what), y.as_f64().expect(what));
        assert!(
            (x - y).abs() <= 1e-9 * y.abs().max(1.0),
            "{what}: ours {x}, aiperf {y}"
        );
    };
    close(
        &a["cache_hit_rate"],
        &theirs["cache_hit_rate"],
        "cache_hit_rate",
    );
    close(
        &a["prefix_reuse_ratio"],
        &theirs["prefix_reuse_ratio"],
        "prefix_reuse_ratio",
    );
    close(
        &ours["set"]["input_tokens"]["mean"],
        &theirs["isl_stats"]["mean"],
        "isl mean",
    );
    close(
        &ours["set"]["input_tokens"]["median"],
        &theirs["isl_stats"]["median"],
        "isl median",
    );
    close(
        &ours["set"]["input_tokens"]["p25"],
        &theirs["isl_stats"]["p25"],
        "isl p25",
    );
    close(
        &a["context_length"]["mean"],
        &theirs["context_length_stats"]["mean"],
        "context mean",
    );
    close(
        &a["unique_prompt_length"]["p75"],
        &theirs["unique_prompt_length_stats"]["p75"],
        "unique prompt p75",
    );
    close(
        &a["hit_rate"]["median"],
        &theirs["hit_rate_stats"]["median"],
        "hit rate median",
    );
}
