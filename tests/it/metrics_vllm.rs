//! vLLM 0.32's metrics as a real server writes them: one scrape of vLLM 0.32.0 on a CPU
//! (tests/fixtures/metrics/vllm-0.32.0-cpu.prom, see the README there) mapped onto the schema,
//! prefix-cache hits split by the tier that supplied them, and the cache configuration that
//! `metrics_meta.json` records.

use crate::common;

use kvsweep::run::metrics::Recorder;
use kvsweep::run::metrics::parse::parse;
use kvsweep::run::metrics::schema::{Engine, detect, snapshot};
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path = common::repo_root()
        .join("tests/fixtures/metrics")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `metrics_meta.json` of a recorder that saw `scrapes`, one a second.
fn meta_after(scrapes: &[&str]) -> (Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rec = Recorder::create(dir.path()).expect("recorder");
    for (i, text) in scrapes.iter().enumerate() {
        rec.scrape(100.0 + i as f64, text).expect("scrape");
    }
    (rec.meta(Value::Null), dir)
}

#[test]
fn a_real_vllm_0_32_scrape_maps_onto_the_schema() {
    let text = fixture("vllm-0.32.0-cpu.prom");
    let e = parse(&text);
    assert_eq!(e.malformed, 0);
    assert_eq!(detect(&e), Some(Engine::Vllm));
    let s = snapshot(Engine::Vllm, &e);
    assert_eq!(
        (s.running, s.waiting, s.kv_usage, s.preemptions),
        (Some(0.0), Some(0.0), Some(0.0), Some(0.0))
    );
    assert_eq!(
        (s.prefix_queries, s.prefix_hits),
        (Some(24_026.0), Some(1_920.0))
    );
    assert_eq!(
        (s.prompt_tokens, s.generation_tokens),
        (Some(24_026.0), Some(368.0))
    );
    assert_eq!(
        (s.prompt_compute, s.prompt_cache_hit, s.prompt_external),
        (Some(22_106.0), Some(1_920.0), Some(0.0))
    );
    assert_eq!(
        (
            s.prefix_hits_device,
            s.prefix_hits_host,
            s.prefix_hits_other
        ),
        (Some(1_920.0), Some(0.0), Some(0.0)),
        "every hit came from the device's own cache"
    );
    assert_eq!(
        (s.ttft_count, s.itl_count, s.queue_count),
        (Some(24.0), Some(344.0), Some(24.0))
    );
    assert_eq!(
        (s.offload_bytes_to_cpu, s.offload_seconds_to_gpu),
        (None, None),
        "no offload connector ran: no offload metric, not a zero"
    );
}

#[test]
fn the_real_scrape_has_every_expected_name_and_its_cache_config_is_recorded() {
    let (meta, _dir) = meta_after(&[&fixture("vllm-0.32.0-cpu.prom")]);
    assert_eq!(meta["engine"], "vllm");
    assert_eq!(meta["expected_absent"], json!([]), "{meta}");
    let config = &meta["cache_config"];
    assert_eq!(config["block_size"], 128);
    assert_eq!(
        config["kv_offloading"],
        Value::Null,
        "vLLM names its default backend, but no size: nothing is offloaded"
    );
    let labels = config["labels"].as_object().expect("labels");
    assert_eq!(labels["kv_offloading_backend"], "native");
    assert_eq!(labels["kv_offloading_size"], "None");
    assert_eq!(labels["num_gpu_blocks"], "8192");
    assert_eq!(labels["kv_cache_memory_bytes"], "2147483648");
    assert_eq!(labels["prefix_caching_hash_algo"], "sha256");
    assert_eq!(labels.len(), 37, "every label of vllm:cache_config_info");
}

/// A vLLM with KV offloading to CPU memory: hits from the host tier, from disk, and the
/// offload backend and size in the cache configuration.
const OFFLOADING: &str = r#"vllm:num_requests_running{engine="0",model_name="m"} 2
vllm:num_requests_waiting{engine="0",model_name="m"} 0
vllm:prompt_tokens_total{engine="0",model_name="m"} 12000
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 12000
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 6000
vllm:external_prefix_cache_hits_total{engine="0",model_name="m"} 3000
vllm:prompt_tokens_cached_by_source_total{engine="0",model_name="m",source="device"} 6000
vllm:prompt_tokens_cached_by_source_total{engine="0",model_name="m",source="host"} 2500
vllm:prompt_tokens_cached_by_source_total{engine="0",model_name="m",source="p2p"} 0
vllm:prompt_tokens_cached_by_source_total{engine="0",model_name="m",source="disk"} 500
vllm:prompt_tokens_cached_by_source_total{engine="0",model_name="m",source="external_unspecified"} 0
vllm:cache_config_info{block_size="16",enable_prefix_caching="True",engine="0",kv_offloading_backend="native",kv_offloading_size="64.0",num_gpu_blocks="4096"} 1.0
"#;

#[test]
fn host_hits_are_told_apart_from_device_hits() {
    let s = snapshot(Engine::Vllm, &parse(OFFLOADING));
    assert_eq!(s.prefix_hits, Some(9_000.0), "local and external hits");
    assert_eq!(
        (
            s.prefix_hits_device,
            s.prefix_hits_host,
            s.prefix_hits_other
        ),
        (Some(6_000.0), Some(2_500.0), Some(500.0))
    );

    let idle = OFFLOADING
        .lines()
        .filter(|l| !l.contains("_total"))
        .collect::<Vec<_>>()
        .join("\n");
    let (meta, dir) = meta_after(&[&idle, OFFLOADING]);
    assert_eq!(
        meta["cache_config"]["kv_offloading"],
        json!({"backend": "native", "size_gib": 64.0})
    );
    assert_eq!(meta["cache_config"]["block_size"], 16);
    let rows = common::csv_rows(&dir.path().join("metrics.csv"));
    assert_eq!(rows.len(), 1, "one interval of activity");
    let row = &rows[0];
    assert_eq!(
        (
            row["prefix_hits"].as_str(),
            row["prefix_hits_device"].as_str(),
            row["prefix_hits_host"].as_str(),
            row["prefix_hits_other"].as_str()
        ),
        ("9000", "6000", "2500", "500")
    );
    let raw = common::csv_rows(&dir.path().join("metrics_raw.csv"));
    assert_eq!(raw[1]["prefix_hits_host"], "2500");
    assert_eq!(
        raw[0]["prefix_hits_host"], "",
        "no such counter before any activity"
    );
}

#[test]
fn an_older_vllm_has_no_tiers_and_no_cache_config() {
    let text = fixture("vllm_old.prom");
    let s = snapshot(Engine::Vllm, &parse(&text));
    assert_eq!(
        (
            s.prefix_hits_device,
            s.prefix_hits_host,
            s.prefix_hits_other
        ),
        (None, None, None),
        "missing, not zero"
    );
    let (meta, _dir) = meta_after(&[&text]);
    assert_eq!(meta["cache_config"], Value::Null);
}
