//! `kvsweep oracle` and `kvsweep kv-size` end to end: the seed's commands and files, on the
//! sample traces and on hand-made ones, and their errors.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{csv_rows, json, kvsweep, kvsweep_err, kvsweep_ok, repo_root, run, write};
use kvsweep::data::artifact::schema::{CellPlan, JsonArtifact, Outcome, RequestRow};
use kvsweep::plan::spec::TraceFormat;
use serde_json::Value;

fn samples() -> String {
    repo_root()
        .join("traces/samples/kv-cache-tester")
        .display()
        .to_string()
}

fn config(name: &str) -> String {
    repo_root()
        .join("sweeps/oracle")
        .join(name)
        .display()
        .to_string()
}

fn num(row: &HashMap<String, String>, key: &str) -> f64 {
    row[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key} = `{}` is not a number", row[key]))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// `kvsweep oracle COMMAND --trace SAMPLES --config sweeps/oracle/CONFIG --output-dir OUT EXTRA...`.
fn on_samples(command: &str, config_name: &str, out: &Path, extra: &[&str]) -> String {
    let (traces, config) = (samples(), config(config_name));
    let mut args = vec![
        "oracle",
        command,
        "--trace",
        &traces,
        "--config",
        &config,
        "--output-dir",
        s(out),
    ];
    args.extend_from_slice(extra);
    kvsweep_ok(&args)
}

/// The four bounds of a row, in order.
fn assert_ordered(row: &HashMap<String, String>, strict: &str, lru: &str) {
    let (c, r, s, l) = (
        num(row, "Content Upper Bound"),
        num(row, "Relaxed Upper Bound"),
        num(row, strict),
        num(row, lru),
    );
    assert!(l <= s && s <= r && r <= c, "{row:?}");
}

#[test]
fn quick_form_on_the_sample_traces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("o");
    let stdout = kvsweep_ok(&[
        "oracle",
        &samples(),
        "--out",
        s(&out),
        "--model",
        "llama-3.1-8b",
        "--runner",
        "h200",
        "--gpus",
        "1",
        "--kv-gb-per-card",
        "8",
    ]);
    assert!(stdout.contains("bottleneck"), "{stdout}");
    let hit = csv_rows(&out.join("hit_summary.csv"));
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0]["Requests"], "251");
    assert_ordered(&hit[0], "Exact Strict-Prefix", "LRU Baseline");
    // 8 GiB of 128 KiB tokens: 65,536 tokens, far less than the sessions' contexts.
    assert_eq!(hit[0]["HBM KV Tokens"], "65536");
    assert_eq!(hit[0]["HBM Current Bottleneck"], "Capacity");
    let tiers = csv_rows(&out.join("tier_summary.csv"));
    let labels: Vec<&str> = tiers.iter().map(|t| t["Tier"].as_str()).collect();
    assert_eq!(labels, ["HBM", "HBM+1T", "HBM+10T"]);
    for pair in tiers.windows(2) {
        assert!(num(&pair[1], "Strict-Prefix Hit Rate") >= num(&pair[0], "Strict-Prefix Hit Rate"));
        let gain = num(&pair[1], "Strict-Prefix Gain vs Previous Tier");
        let diff =
            num(&pair[1], "Strict-Prefix Hit Rate") - num(&pair[0], "Strict-Prefix Hit Rate");
        assert!((gain - diff).abs() < 1e-5);
    }
    // 1 TiB of host KV holds every session: the tier reaches the content bound.
    assert_eq!(
        tiers[1]["Strict-Prefix Hit Rate"],
        tiers[1]["Content Upper Bound"]
    );
    let meta = json(&out.join("metadata.json"));
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["traces"]["records_loaded"], 251);
    assert!(meta["definitions"]["strict_prefix"].is_string());
    let details = json(&out.join("details.json"));
    let curve = details["buckets"][0]["curve"].as_array().expect("curve");
    assert!(curve.len() >= 10);
    // Planning without TPS anchors: only the gain columns are filled.
    let plan = csv_rows(&out.join("planning_strict_prefix.csv"));
    assert_eq!(plan.len(), 3);
    assert!(plan[0]["Min Cards"].is_empty());
    assert!(num(&plan[0], "TPS Gain Factor") > 1.0);
}

#[test]
fn analyze_buckets_plans_cards_and_machines_per_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("b");
    on_samples("analyze-buckets", "trace-llama70b-h200.json", &out, &[]);
    let hit = csv_rows(&out.join("hit_summary.csv"));
    let labels: Vec<&str> = hit.iter().map(|r| r["Bucket"].as_str()).collect();
    assert_eq!(labels, ["0K-32K", "32K-64K", "64K-128K", "128K+"]);
    let requests: f64 = hit.iter().map(|r| num(r, "Requests")).sum();
    assert_eq!(requests, 251.0);
    for row in &hit {
        assert_ordered(row, "Exact Strict-Prefix", "LRU Baseline");
        assert!(["Capacity", "Policy", "None"].contains(&row["HBM Current Bottleneck"].as_str()));
    }
    for file in ["planning_strict_prefix.csv", "planning_lru.csv"] {
        let plan = csv_rows(&out.join(file));
        assert_eq!(plan.len(), 12, "{file}: 4 buckets × 3 tiers");
        for row in &plan {
            // One TP-8 replica is the smallest deployment, and it meets 8 TPS at baseline 1.
            assert_eq!(row["Min Cards"], "8", "{file} {row:?}");
            assert_eq!(row["Min Machines"], "1");
            let per_card = num(row, "Per-Card TPS");
            assert!((per_card - num(row, "TPS Gain Factor")).abs() < 1e-5);
        }
    }
    let summary = csv_rows(&out.join("summary.csv"));
    assert_eq!(summary.len(), 4);
    assert_eq!(
        summary[0]["Exact Strict-Prefix"],
        hit[0]["Exact Strict-Prefix"]
    );
}

#[test]
fn a_small_cache_needs_more_cards_with_lru_than_with_the_optimum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("small");
    on_samples(
        "analyze-buckets",
        "trace-llama8b-1x1-small-kv.json",
        &out,
        &[],
    );
    let strict = csv_rows(&out.join("planning_strict_prefix.csv"));
    let lru = csv_rows(&out.join("planning_lru.csv"));
    let cards = |rows: &[HashMap<String, String>]| num(&rows[0], "Min Cards");
    assert!(cards(&strict) <= cards(&lru), "{strict:?} {lru:?}");
    // Fewer cards than the zero-hit answer (8 at baseline 1, target 8).
    assert!(cards(&strict) < 8.0);
    // The hit rate at the minimum is that of the minimum's own (larger) cache.
    assert!(num(&strict[0], "Hit Rate At Min Cards") >= num(&strict[0], "Hit Rate"));
}

#[test]
fn audit_cross_checks_the_solvers_and_writes_both_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("a");
    let stdout = on_samples(
        "audit-buckets",
        "trace-llama8b-1x1-small-kv.json",
        &out,
        &["--sample-request-limit", "40"],
    );
    assert!(stdout.contains("micro traces agree"), "{stdout}");
    let en = std::fs::read_to_string(out.join("correctness_report.en.md")).expect("en");
    assert!(en.contains("| all |"), "{en}");
    assert!(!en.contains("NO"), "{en}");
    assert!(!en.contains("Disagreements"), "{en}");
    let zh = std::fs::read_to_string(out.join("correctness_report.zh.md")).expect("zh");
    assert!(zh.contains("正确性报告"));
    assert!(out.join("hit_summary.csv").is_file());
}

#[test]
fn mooncake_traces_by_hand() {
    // Block size 4 (--block-size). Global ids: the second request shares 2 blocks with the first,
    // the third shares 3 with the second. Inputs 12 + 16 + 16 = 44 tokens; without output KV
    // the content bound reuses 2 × 4 + 3 × 4 = 20 tokens.
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = write(
        dir.path(),
        "t.jsonl",
        concat!(
            r#"{"timestamp": 0, "input_length": 12, "output_length": 1, "hash_ids": [1, 2, 3]}"#,
            "\n",
            r#"{"timestamp": 10, "input_length": 16, "output_length": 1, "hash_ids": [1, 2, 4, 5]}"#,
            "\n",
            r#"{"timestamp": 20, "input_length": 16, "output_length": 1, "hash_ids": [1, 2, 4, 6]}"#,
            "\n",
        ),
    );
    let out = dir.path().join("m");
    kvsweep_ok(&[
        "oracle",
        s(&trace),
        "--out",
        s(&out),
        "--block-size",
        "4",
        "--kv-bytes-per-token",
        "1073741824",
        "--kv-gb-per-card",
        "3",
        "--runner",
        "h200",
        "--gpus",
        "1",
        "--no-output-kv",
        "--tiers",
        "",
    ]);
    let hit = &csv_rows(&out.join("hit_summary.csv"))[0];
    assert!(
        (num(hit, "Content Upper Bound") - 20.0 / 44.0).abs() < 1e-6,
        "{hit:?}"
    );
    // 3 tokens of cache are not one block: nothing can hit.
    assert_eq!(num(hit, "LRU Baseline"), 0.0);
    assert_eq!(num(hit, "Relaxed Upper Bound"), 0.0);
}

#[test]
fn max_records_reads_only_the_first_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m");
    on_samples(
        "analyze-buckets",
        "trace-llama8b-1x1-small-kv.json",
        &out,
        &["--max-records", "100"],
    );
    assert_eq!(csv_rows(&out.join("hit_summary.csv"))[0]["Requests"], "100");
    assert_eq!(
        json(&out.join("metadata.json"))["traces"]["max_records"],
        100
    );
}

#[test]
fn estimate_multi_agent_writes_the_heuristic_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("e");
    kvsweep_ok(&[
        "oracle",
        "estimate-multi-agent",
        "--config",
        &config("multi-agent-llama70b-h200.json"),
        "--output-dir",
        s(&out),
    ]);
    let summary = csv_rows(&out.join("heuristic_summary.csv"));
    assert_eq!(summary.len(), 2);
    for row in &summary {
        assert_ordered(row, "Exact Strict-Prefix", "LRU Baseline");
    }
    // Twice the cards, twice the cache: never a lower hit rate.
    assert!(num(&summary[1], "Exact Strict-Prefix") >= num(&summary[0], "Exact Strict-Prefix"));
    assert_eq!(csv_rows(&out.join("heuristic_tier_summary.csv")).len(), 6);
    assert!(!csv_rows(&out.join("planning_strict_prefix.csv"))[0]["Min Cards"].is_empty());
    for name in ["heuristic_report.en.md", "heuristic_report.zh.md"] {
        let text = std::fs::read_to_string(out.join(name)).expect("report");
        assert!(text.contains("zipf_s"), "{name}");
    }
}

#[test]
fn calibrate_fits_the_two_parameters_and_reads_the_structure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("c");
    kvsweep_ok(&[
        "oracle",
        "calibrate-multi-agent",
        "--trace",
        &samples(),
        "--bucket-config",
        &config("trace-llama8b-1x1-small-kv.json"),
        "--heuristic-config",
        &config("multi-agent-llama70b-h200.json"),
        "--output-dir",
        s(&out),
    ]);
    let trials = csv_rows(&out.join("calibration_trials.csv"));
    assert_eq!(trials.len(), 41 * 51);
    let best = json(&out.join("calibration.json"))["best"].clone();
    let min = trials
        .iter()
        .map(|t| num(t, "rmse"))
        .fold(f64::INFINITY, f64::min);
    assert!((best["rmse"].as_f64().expect("rmse") - min).abs() < 1e-6);
    let calibrated = json(&out.join("calibrated_config.json"));
    assert_eq!(
        calibrated["heuristic_multi_agent"]["zipf_s"],
        best["zipf_s"]
    );
    // Everything else of the heuristic config is kept.
    assert_eq!(calibrated["deployments"].as_array().map(Vec::len), Some(2));
    let recommended = json(&out.join("recommended_heuristic_config.json"));
    let scenario = &recommended["heuristic_multi_agent"];
    // 15 sample sessions and their 6 subagents start together; kv-cache-tester files never share ids.
    assert!(scenario["concurrent_agents"].as_f64().expect("agents") >= 15.0);
    assert_eq!(scenario["shared_prefix_tokens"], 0.0);
    let turns = scenario["avg_turns_per_session"].as_f64().expect("turns");
    assert!(turns > 5.0 && turns < 40.0, "{turns}");
}

#[test]
fn config_errors_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"model_profile": {"preset": "llama-3.1-8b"}, "bucket_deployments": [{"lower_tokens": 0, "accelerator_count": "eight", "cards_per_machine": 8, "hbm_kv_gb_per_card": 8}]}"#,
    );
    let args = |config: &PathBuf| {
        vec![
            "oracle".to_owned(),
            "analyze-buckets".into(),
            "--trace".into(),
            samples(),
            "--config".into(),
            s(config).to_owned(),
            "--output-dir".into(),
            s(&dir.path().join("o")).to_owned(),
        ]
    };
    let run_err = |config: &PathBuf| {
        let a = args(config);
        kvsweep_err(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let err = run_err(&bad);
    assert!(
        err.contains("bad.json") && err.contains("accelerator_count"),
        "{err}"
    );
    let no_memory = write(
        dir.path(),
        "nomem.json",
        r#"{"model_profile": {"preset": "llama-3.1-8b"}, "bucket_deployments": [{"lower_tokens": 0, "accelerator_count": 1, "cards_per_machine": 8}]}"#,
    );
    let err = run_err(&no_memory);
    assert!(
        err.contains("hbm_kv_gb_per_card") && err.contains("nomem.json"),
        "{err}"
    );
    let unknown = write(
        dir.path(),
        "preset.json",
        r#"{"model_profile": {"preset": "gpt-9"}, "bucket_deployments": []}"#,
    );
    let err = run_err(&unknown);
    assert!(
        err.contains("gpt-9") && err.contains("llama-3.1-8b"),
        "{err}"
    );
    let counted = write(
        dir.path(),
        "spec.json",
        r#"{"model_profile": {"preset": "llama-3.1-8b"}, "bucket_deployments": [{"lower_tokens": 0, "accelerator_count": 8, "cards_per_machine": 8, "machine_spec": "8*h20", "hbm_kv_gb_per_card": 8}]}"#,
    );
    let err = run_err(&counted);
    assert!(err.contains("machine_spec"), "{err}");
}

#[test]
fn traces_with_two_block_sizes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "m.jsonl",
        "{\"timestamp\": 0, \"input_length\": 1024, \"output_length\": 1, \"hash_ids\": [1, 2]}\n",
    );
    let kvct = repo_root().join("traces/samples/kv-cache-tester");
    let first = std::fs::read_dir(&kvct)
        .expect("samples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a sample");
    std::fs::copy(&first, dir.path().join("k.json")).expect("copy");
    let err = kvsweep_err(&["oracle", s(dir.path()), "--out", s(&dir.path().join("o"))]);
    assert!(err.contains("mix block sizes"), "{err}");
}

#[test]
fn kv_size_from_presets_and_hugging_face_configs() {
    let out = kvsweep_ok(&["kv-size", "--preset", "llama-3.1-70b", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["kv_bytes_per_token"], 327_680);
    let fixtures = repo_root().join("tests/fixtures/hf");
    // Llama 3.1 8B: 2 × 32 layers × 8 heads × 128 × 2 bytes; 8.03 B parameters.
    let out = kvsweep_ok(&[
        "kv-size",
        "--config",
        s(&fixtures.join("llama-3.1-8b.json")),
        "--json",
        "--runner",
        "h100",
        "--tp",
        "2",
    ]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["kv_bytes_per_token"], 131_072);
    assert_eq!(v["attention"], "gqa");
    let params = v["params_b"].as_f64().expect("params");
    assert!((params - 8.03).abs() < 0.05, "{params}");
    let fit = &v["fit"];
    // Heads split over TP 2: half a token's KV per GPU.
    assert_eq!(fit["kv_bytes_per_token_per_gpu"], 65_536.0);
    let tokens = fit["tokens_per_gpu"].as_u64().expect("tokens");
    let expected = ((80e9 * 0.9 - params * 1e9 * 2.0 / 2.0) / 65_536.0).floor() as u64;
    assert!(tokens.abs_diff(expected) <= 1, "{tokens} vs {expected}");
    assert_eq!(fit["tokens_per_node"], tokens * 4);
    // DeepSeek-V3: MLA, (512 + 64) × 61 layers × 2 bytes, about 671 B parameters.
    let out = kvsweep_ok(&[
        "kv-size",
        "--config",
        s(&fixtures.join("deepseek-v3.json")),
        "--dtype",
        "fp8",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["attention"], "mla");
    assert_eq!(v["kv_bytes_per_token"], (512 + 64) * 61);
    let params = v["params_b"].as_f64().expect("params");
    assert!((params - 671.0).abs() < 15.0, "{params}");
    let err = kvsweep_err(&["kv-size", "--preset", "nope"]);
    assert!(err.contains("unknown preset `nope`"), "{err}");
    let err = kvsweep_err(&["kv-size"]);
    assert!(
        err.contains("--config") || err.contains("--preset"),
        "{err}"
    );
}

#[test]
fn collect_sets_the_bound_for_what_each_cell_sent_beside_the_measured_rate() {
    // One conversation of 64-token blocks: 10, then 20 blocks (10 shared), then 30 (20 shared).
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = dir.path().join("traces");
    std::fs::create_dir_all(&traces).expect("mkdir");
    let ids = |n: u64| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    write(
        &traces,
        "conv.json",
        &format!(
            r#"{{"id": "conv", "block_size": 64, "requests": [
                {{"t": 0, "type": "s", "in": 640, "out": 10, "hash_ids": [{}]}},
                {{"t": 1, "type": "s", "in": 1280, "out": 10, "hash_ids": [{}]}},
                {{"t": 2, "type": "s", "in": 1920, "out": 10, "hash_ids": [{}]}}]}}"#,
            ids(10),
            ids(20),
            ids(30)
        ),
    );
    let cells = dir.path().join("cells");
    let cell = common::cells::SyntheticCell::new("h200", 1, 1, "off").write(&cells);
    let mut plan = CellPlan::read(&cell).expect("cell.json");
    plan.traces = Some(traces.clone());
    plan.trace_format = TraceFormat::Kvct;
    plan.write(&cell).expect("write");
    // Only the first two turns were sent before the cell's time ran out.
    let mut requests = csv::Writer::from_path(cell.join(RequestRow::FILE)).expect("requests.csv");
    for (i, (sent_s, tokens)) in [(0.0, 640), (1.0, 1280)].into_iter().enumerate() {
        requests
            .serialize(RequestRow {
                request_id: i as u64,
                user: 0,
                session: "conv".into(),
                request_index: i as u32,
                scheduled_s: sent_s,
                sent_s,
                done_s: sent_s + 0.5,
                schedule_delay_ms: 0.0,
                ttft_ms: Some(50.0),
                e2e_ms: 500.0,
                tpot_ms: None,
                itl_mean_ms: None,
                itl_max_ms: None,
                trace_input_tokens: tokens,
                trace_output_tokens: 10,
                prompt_tokens: Some(tokens),
                completion_tokens: Some(10),
                cached_tokens: None,
                status: Outcome::Ok,
                http_status: 200,
                error: String::new(),
                endpoint: 0,
                attempts: 1,
                effective_ttft_ms: Some(50.0),
                meets_slo: true,
                format_version: RequestRow::VERSION,
            })
            .expect("a row");
    }
    requests.flush().expect("flush");
    let out = dir.path().join("out");
    kvsweep_ok(&["collect", s(&cells), "--out", s(&out)]);
    let row = &csv_rows(&out.join("summary.csv"))[0];
    // Output KV counts: 640 + 10 tokens complete no further block, so 10 of 20 blocks hit.
    assert!(
        (num(row, "oracle_hit_rate") - 640.0 / 1920.0).abs() < 1e-9,
        "{row:?}"
    );
    assert_eq!(row["oracle_hit_rate"], row["oracle_lru_hit_rate"]);
    // Llama 3.1 8B on one H200: far more room than these 30 blocks.
    assert!(num(row, "oracle_capacity_tokens") > 100_000.0);
    assert!(!row["server_hit_rate"].is_empty());
    let report = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(report.contains("best possible"));
}

#[test]
fn collect_reads_an_answer_after_a_side_request() {
    // Issue #35 in collect's column: 10 blocks answering one block, a side request, then 12
    // blocks that carry the answer as block 11.
    let dir = tempfile::tempdir().expect("tempdir");
    let traces = dir.path().join("traces");
    std::fs::create_dir_all(&traces).expect("mkdir");
    let ids = |n: u64| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    write(
        &traces,
        "conv.json",
        &format!(
            r#"{{"id": "conv", "block_size": 64, "requests": [
                {{"t": 0, "type": "s", "in": 640, "out": 64, "hash_ids": [{}]}},
                {{"t": 1, "type": "s", "in": 64, "out": 0, "hash_ids": [50]}},
                {{"t": 2, "type": "s", "in": 768, "out": 0, "hash_ids": [{}]}}]}}"#,
            ids(10),
            ids(12)
        ),
    );
    let cells = dir.path().join("cells");
    let cell = common::cells::SyntheticCell::new("h200", 1, 1, "off").write(&cells);
    let mut plan = CellPlan::read(&cell).expect("cell.json");
    plan.traces = Some(traces.clone());
    plan.trace_format = TraceFormat::Kvct;
    plan.write(&cell).expect("write");
    let mut requests = csv::Writer::from_path(cell.join(RequestRow::FILE)).expect("requests.csv");
    for (i, (sent_s, tokens)) in [(0.0, 640), (1.0, 64), (2.0, 768)].into_iter().enumerate() {
        requests
            .serialize(RequestRow {
                request_id: i as u64,
                user: 0,
                session: "conv".into(),
                request_index: i as u32,
                scheduled_s: sent_s,
                sent_s,
                done_s: sent_s + 0.5,
                schedule_delay_ms: 0.0,
                ttft_ms: Some(50.0),
                e2e_ms: 500.0,
                tpot_ms: None,
                itl_mean_ms: None,
                itl_max_ms: None,
                trace_input_tokens: tokens,
                trace_output_tokens: 0,
                prompt_tokens: Some(tokens),
                completion_tokens: Some(0),
                cached_tokens: None,
                status: Outcome::Ok,
                http_status: 200,
                error: String::new(),
                endpoint: 0,
                attempts: 1,
                effective_ttft_ms: Some(50.0),
                meets_slo: true,
                format_version: RequestRow::VERSION,
            })
            .expect("a row");
    }
    requests.flush().expect("flush");
    let out = dir.path().join("out");
    kvsweep_ok(&["collect", s(&cells), "--out", s(&out)]);
    let row = &csv_rows(&out.join("summary.csv"))[0];
    // The last turn reads its 10 blocks and the answer's: 11 of 23 blocks.
    assert!(
        (num(row, "oracle_hit_rate") - 704.0 / 1472.0).abs() < 1e-9,
        "{row:?}"
    );
    assert_eq!(row["oracle_hit_rate"], row["oracle_lru_hit_rate"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_url_is_downloaded_first() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let body = concat!(
        r#"{"timestamp": 0, "input_length": 1024, "output_length": 1, "hash_ids": [1, 2]}"#,
        "\n",
        r#"{"timestamp": 5, "input_length": 1536, "output_length": 1, "hash_ids": [1, 2, 3]}"#,
        "\n",
    );
    Mock::given(method("GET"))
        .and(path("/traces/mini.jsonl"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/traces/gone.jsonl"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "c.json",
        r#"{"model_profile": {"preset": "llama-3.1-8b"}, "bucket_deployments": [{"lower_tokens": 0, "accelerator_count": 1, "cards_per_machine": 8, "hbm_kv_gb_per_card": 8}]}"#,
    );
    let out = dir.path().join("o");
    let url = format!("{}/traces/mini.jsonl", server.uri());
    let args = move |url: String| {
        vec![
            "oracle".to_owned(),
            "analyze-buckets".into(),
            "--trace".into(),
            url,
            "--config".into(),
            s(&config).to_owned(),
            "--output-dir".into(),
            s(&out).to_owned(),
        ]
    };
    // Downloads land in the trace cache, here a folder of the test's own.
    let cache = dir.path().join("cache");
    let ok = tokio::task::spawn_blocking(move || {
        let with_cache = |a: &[String]| run(kvsweep().args(a).env("KVSWEEP_CACHE", &cache));
        let a = args(url);
        let ok = with_cache(&a);
        assert!(ok.status.success(), "{}", common::stderr(&ok));
        let gone = with_cache(&args(a[3].replace("mini", "gone")));
        assert!(!gone.status.success());
        (common::stdout(&ok), common::stderr(&gone))
    })
    .await
    .expect("join");
    let hit = &csv_rows(&dir.path().join("o/hit_summary.csv"))[0];
    // 512-token blocks: the second request rereads 2 of its 3 blocks.
    assert!(
        (num(hit, "Content Upper Bound") - 1024.0 / 2560.0).abs() < 1e-9,
        "{hit:?} {}",
        ok.0
    );
    assert!(
        ok.1.contains("gone.jsonl") && ok.1.contains("404"),
        "{}",
        ok.1
    );
}

/// Issue #35's held-out check on the carried traces: each trace on its own, in both scopes, at
/// caches from 4k tokens to all of it. Output KV never lowers the content or relaxed bound, nor
/// the strict-prefix optimum given room for the largest answer on top (what an answer costs is
/// room while it is generated, never a reuse).
#[test]
fn output_kv_never_lowers_the_bounds_on_the_carried_traces() {
    use kvsweep::data::trace::{self, LoadOptions};
    use kvsweep::results::oracle::bounds;
    use kvsweep::results::oracle::stream::{self, Scope};
    let folders =
        ["traces/samples/kv-cache-tester", "traces/generated"].map(|f| repo_root().join(f));
    let files = trace::list_files(&folders).expect("the carried traces");
    assert!(files.len() >= 30, "{files:?}");
    let mut raised = 0;
    for file in &files {
        let options = LoadOptions {
            format: TraceFormat::Auto,
            jsonl_block_size: None,
            strict: true,
        };
        let set = trace::load(std::slice::from_ref(file), options).expect("a carried trace");
        for scope in [Scope::Global, Scope::Session] {
            let entries = stream::order(&set, scope, &|_| true);
            let (on, off) = (
                stream::reuse(&entries, true),
                stream::reuse(&entries, false),
            );
            let block = u64::from(on.block_size);
            let answer = entries.iter().map(|e| e.output_blocks(true)).max();
            let answer = answer.unwrap_or(0) as u64;
            for tokens in [4096, 16_384, 65_536, 262_144, 1 << 20, 1 << 40] {
                let c = tokens / block;
                let (a, b) = (bounds::hits(&on, &[c])[0], bounds::hits(&off, &[c])[0]);
                let ctx = format!("{} {scope:?} C={c}: on {a:?}, off {b:?}", file.display());
                assert!(a.content >= b.content && a.relaxed >= b.relaxed, "{ctx}");
                assert!(
                    bounds::greedy(&on, c + answer, true) >= b.strict_prefix,
                    "{ctx}"
                );
                raised += usize::from(a.content > b.content);
            }
        }
    }
    // Answers are read: output KV raises the content bound of most traces.
    assert!(raised > files.len(), "{raised}");
}
