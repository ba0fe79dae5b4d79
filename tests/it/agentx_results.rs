//! AgentX results InferenceX ingests: `kvsweep collect` writes, for each `--scenario agentx`
//! cell, AIPerf-compatible exports and InferenceX's AgentX aggregate. The aggregate is compared
//! with goldens InferenceX's own processor made from the same exports
//! (`scripts/regen-agentx-goldens.sh`), so this needs no Python and no InferenceX checkout.

use crate::common;

use std::path::{Path, PathBuf};

use kvsweep::data::aiperf::{CreditPhase, read_profile_export, read_records, read_server_metrics};
use kvsweep::data::artifact::schema::{CellPlan, JsonArtifact};
use kvsweep::results::collect::agentx_result::{Identity, aggregate};
use serde_json::Value;

fn fixture() -> PathBuf {
    common::repo_root().join("tests/fixtures/agentx")
}

/// The fixture cells copied into `dir/cells`, their traces (listed in traces.txt) beside them
/// and `cell.json` pointing there, as the regen script prepares them.
fn cells(dir: &Path) -> PathBuf {
    let traces = dir.join("traces");
    std::fs::create_dir_all(&traces).expect("traces dir");
    let names = std::fs::read_to_string(fixture().join("traces.txt")).expect("traces.txt");
    for name in names.lines().filter(|l| !l.is_empty()) {
        std::fs::copy(
            common::repo_root()
                .join("traces/samples/kv-cache-tester")
                .join(name),
            traces.join(name),
        )
        .expect("copy trace");
    }
    let to = dir.join("cells");
    for cell in std::fs::read_dir(fixture().join("cells")).expect("cells") {
        let from = cell.expect("entry").path();
        let cell_dir = to.join(from.file_name().expect("name"));
        std::fs::create_dir_all(&cell_dir).expect("cell dir");
        for f in std::fs::read_dir(&from).expect("cell") {
            let f = f.expect("file").path();
            std::fs::copy(&f, cell_dir.join(f.file_name().expect("name"))).expect("copy");
        }
        let mut plan = CellPlan::read(&cell_dir).expect("cell.json");
        plan.traces = Some(traces.clone());
        plan.write(&cell_dir).expect("write cell.json");
    }
    to
}

/// Where `a` and `b` differ: keys, their order, strings, booleans and nulls exactly; numbers
/// within 2e-5 (both sides are rounded to 5 decimals, and Python's statistics module sums
/// exactly where Rust sums in floating point) or 1e-9 of their size.
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<&String>, Vec<&String>) = (x.keys().collect(), y.keys().collect());
            if kx != ky {
                out.push(format!("{path}: keys {kx:?} != {ky:?}"));
            }
            for (k, v) in x {
                if let Some(w) = y.get(k) {
                    differences(v, w, &format!("{path}.{k}"), out);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                out.push(format!("{path}: {} items != {}", x.len(), y.len()));
            }
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                differences(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            if !((x - y).abs() <= 2e-5 || (x - y).abs() <= 1e-9 * y.abs()) {
                out.push(format!("{path}: {x} != {y}"));
            }
        }
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

#[test]
fn differences_finds_a_changed_number_key_or_string_and_forgives_rounding() {
    let golden = serde_json::json!({"a": 1.23456, "b": {"c": "x", "d": null}, "e": [1, 2]});
    let mut out = Vec::new();
    differences(
        &serde_json::json!({"a": 1.23457, "b": {"c": "x", "d": null}, "e": [1, 2.0]}),
        &golden,
        "",
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    differences(
        &serde_json::json!({"a": 1.2346, "b": {"c": "y", "f": null}, "e": [1]}),
        &golden,
        "",
        &mut out,
    );
    assert_eq!(out.len(), 4, "{out:?}");
    assert!(out.iter().any(|d| d.starts_with(".a: ")), "{out:?}");
    assert!(out.iter().any(|d| d.starts_with(".b: keys")), "{out:?}");
    assert!(out.iter().any(|d| d.starts_with(".b.c: ")), "{out:?}");
    assert!(out.iter().any(|d| d.starts_with(".e: 1 items")), "{out:?}");
}

/// The aggregates and exports written for the fixture cells, under `agentx`.
struct Collected {
    _dir: tempfile::TempDir,
    agentx: PathBuf,
}

/// What `kvsweep collect` writes under `OUT/agentx` for the fixture cells, through the
/// function its per-cell hook calls (a whole collect also draws plots: seconds of a debug build).
fn agentx_results() -> Collected {
    let dir = tempfile::tempdir().expect("tempdir");
    let cells = cells(dir.path());
    let out = dir.path().join("collect");
    // One trace cache for every cell, as collect keeps it.
    let mut traces = kvsweep::results::collect::agentx_result::TraceHitsCache::default();
    for cell in std::fs::read_dir(&cells).expect("cells") {
        let cell = cell.expect("entry").path();
        kvsweep::results::collect::agentx_result::write(&cell, &out, &mut traces)
            .expect("AgentX results")
            .expect("an AgentX cell");
    }
    Collected {
        agentx: out.join("agentx"),
        _dir: dir,
    }
}

/// `kvsweep collect` itself on the fixture cells.
fn collect() -> Collected {
    let dir = tempfile::tempdir().expect("tempdir");
    let cells = cells(dir.path());
    let out = dir.path().join("collect");
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    Collected {
        agentx: out.join("agentx"),
        _dir: dir,
    }
}

/// The goldens of the fixture cells (named by their `RESULT_FILENAME`).
fn goldens() -> Vec<PathBuf> {
    let mut g: Vec<PathBuf> = std::fs::read_dir(fixture().join("golden"))
        .expect("golden")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.to_string_lossy().ends_with(REAL_AIPERF_GOLDEN))
        .collect();
    g.sort();
    g
}

#[test]
fn the_aggregate_is_the_one_inferencex_makes_from_the_cells_exports() {
    let c = agentx_results();
    let goldens = goldens();
    assert_eq!(goldens.len(), 3, "one golden per fixture cell");
    for golden in &goldens {
        let name = golden.file_name().expect("name");
        let ours = c.agentx.join(name);
        assert!(ours.is_file(), "collect wrote no {}", ours.display());
        let mut diff = Vec::new();
        differences(&common::json(&ours), &common::json(golden), "", &mut diff);
        assert!(
            diff.is_empty(),
            "{} differs from InferenceX's:\n{}",
            name.to_string_lossy(),
            diff.join("\n")
        );
    }
    // The offload cell: InferenceX's DRAM offload fields.
    let on = goldens
        .iter()
        .find(|g| g.to_string_lossy().contains("offloadon"))
        .expect("the offload-on cell");
    let agg = common::json(&c.agentx.join(on.file_name().expect("name")));
    assert_eq!(agg["kv_offloading"], "dram");
    assert_eq!(agg["kv_offload_backend"]["name"], "native");
    assert_eq!(agg["scenario_type"], "agentic-coding");
    // The cell with server errors and a warm-up window: both counted, neither in the figures.
    let faults = goldens
        .iter()
        .find(|g| g.to_string_lossy().contains("faults"))
        .expect("the faults cell");
    let agg = common::json(&c.agentx.join(faults.file_name().expect("name")));
    let acc = &agg["request_accounting"];
    assert_eq!(acc["records_warmup_dropped"], 7);
    assert_eq!(acc["records_error_dropped"], 2);
    assert_eq!(acc["error_categories"]["500"], 2);
    assert_eq!(agg["num_requests_successful"], 9);
}

/// The golden InferenceX's processor made from the real AIPerf run carried for the schema.
const REAL_AIPERF_GOLDEN: &str = "aiperf-0.13.0-real.json";

/// kvsweep's aggregate of a real AIPerf 0.13.0 run (warm-up records, per-chunk latencies,
/// AIPerf's own server-metrics export) is the one InferenceX's processor makes from it, with
/// the identity the regen script gives the processor.
#[test]
fn the_aggregate_of_a_real_aiperf_run_is_the_one_inferencex_makes() {
    let dir = common::repo_root().join("tests/fixtures/aiperf/agentx-0.13.0");
    let records = read_records(&dir.join("profile_export.jsonl")).expect("records");
    let profile = read_profile_export(&dir.join("profile_export_aiperf.json")).expect("aggregate");
    let server = read_server_metrics(&dir.join("server_metrics_export.json")).expect("server");
    let id = Identity {
        runner: "cpu".into(),
        conc: 4,
        image: String::new(),
        model: "llama-3.1-8b".into(),
        framework: "vllm".into(),
        precision: "bf16".into(),
        tp: 1,
        ep: 1,
        kv_offloading: "none".into(),
        kv_offload_backend: None,
        cpu_dram_gb: 0,
        exp_name: String::new(),
    };
    let ours = aggregate(&id, &records, Some(&profile), Some(&server), None).expect("aggregate");
    let golden = common::json(&fixture().join("golden").join(REAL_AIPERF_GOLDEN));
    let mut diff = Vec::new();
    differences(&ours, &golden, "", &mut diff);
    assert!(
        diff.is_empty(),
        "differs from InferenceX's:\n{}",
        diff.join("\n")
    );
    // The warm-up records are counted and left out.
    assert_eq!(ours["request_accounting"]["records_warmup_dropped"], 4);
}

#[test]
fn the_exports_read_back_and_pass_inferencexs_validity_gate() {
    let c = agentx_results();
    for golden in goldens() {
        let stem = golden
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let artifacts = c.agentx.join(&stem).join("aiperf_artifacts");
        let records = read_records(&artifacts.join("profile_export.jsonl")).expect("records");
        let profile =
            read_profile_export(&artifacts.join("profile_export_aiperf.json")).expect("aggregate");
        let server =
            read_server_metrics(&artifacts.join("server_metrics_export.json")).expect("server");
        let profiled = |failed: bool| {
            records
                .iter()
                .filter(|r| r.metadata.benchmark_phase == CreditPhase::Profiling)
                .filter(|r| r.error.is_some() == failed)
                .count() as f64
        };
        assert!(server.metrics.contains_key("vllm:prompt_tokens_by_source"));
        // validate_agentic_result.py: request_count.avg present and non-negative, completed
        // requests positive, errors / completed within --failed-request-threshold 0.10.
        let avg = |tag: &str| profile.metric(tag).and_then(|m| m.avg);
        let ok = avg("request_count").expect("request_count.avg");
        let errors = avg("error_request_count").unwrap_or(0.0);
        let completed = avg("completed_request_count").unwrap_or(ok + errors);
        assert_eq!((ok, errors), (profiled(false), profiled(true)));
        let summary = profile.error_summary.as_ref().expect("error_summary");
        assert_eq!(
            summary.iter().map(|c| c.count as f64).sum::<f64>(),
            errors,
            "{summary:?}"
        );
        assert!(completed > 0.0 && errors / completed <= 0.10);
        // AIPerf's verdict on a 30 s run of local traces: not a submission, and why.
        let md = profile.metadata.as_ref().expect("metadata");
        assert_eq!(md.scenario.as_deref(), Some("inferencex-agentx-mvp"));
        assert_eq!(md.submission_valid, Some(false));
        assert_eq!(
            md.submission_invalid_reasons.as_deref(),
            Some(
                &[
                    "benchmark_duration_below_minimum".to_owned(),
                    "unpinned_dataset".to_owned()
                ][..]
            )
        );
        let hit = profile
            .metric("theoretical_prefix_cache_hit")
            .expect("the theoretical prefix-cache hit rate");
        assert_eq!(hit.unit, "%");
        assert!(hit.avg.is_some_and(|a| a > 0.0 && a < 100.0), "{hit:?}");
        let env =
            std::fs::read_to_string(c.agentx.join(&stem).join("inferencex.env")).expect("env");
        assert!(env.contains(&format!("RESULT_FILENAME={stem}\n")), "{env}");
    }
}

/// `kvsweep collect` writes the AgentX results, and their exports load with AIPerf's own
/// pydantic models, each counter family as AIPerf's `CounterMetricData`.
#[test]
#[cfg_attr(
    not(feature = "external-tools"),
    ignore = "needs python3 with aiperf 0.13.0"
)]
fn collect_writes_exports_that_load_with_aiperfs_own_models() {
    let c = collect();
    let check = r#"
import json, sys
from aiperf.common.models.record_models import MetricRecordInfo
from aiperf.common.models.export_models import JsonExportData, JsonMetricResult
from aiperf.common.models.server_metrics_models import ServerMetricsExportData
d = sys.argv[1]
with open(d + "/profile_export.jsonl") as f:
    records = [MetricRecordInfo.model_validate_json(line) for line in f if line.strip()]
with open(d + "/profile_export_aiperf.json") as f:
    text = f.read()
agg = JsonExportData.model_validate_json(text)
metrics = JsonMetricResult.project_summary_dict(json.loads(text))
with open(d + "/server_metrics_export.json") as f:
    server = ServerMetricsExportData.model_validate_json(f.read())
kinds = {n: type(m).__name__ for n, m in server.metrics.items()}
assert kinds["vllm:prompt_tokens"] == "CounterMetricData", kinds
assert kinds["vllm:kv_cache_usage_perc"] == "GaugeMetricData", kinds
ok = [r for r in records if r.metadata.benchmark_phase == "profiling" and r.error is None]
assert agg.request_count.avg == len(ok), (agg.request_count, len(ok))
assert agg.metadata["submission_valid"] is False
print(len(records), len(metrics), len(kinds))
"#;
    for golden in goldens() {
        let stem = golden
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let mut diff = Vec::new();
        differences(
            &common::json(&c.agentx.join(format!("{stem}.json"))),
            &common::json(&golden),
            "",
            &mut diff,
        );
        assert!(diff.is_empty(), "{stem}: {diff:?}");
        let artifacts = c.agentx.join(&stem).join("aiperf_artifacts");
        let out = common::run(
            std::process::Command::new(common::require_tool("python3"))
                .args(["-c", check])
                .arg(&artifacts),
        );
        assert!(
            out.status.success(),
            "AIPerf's models refused {}:\n{}",
            artifacts.display(),
            common::stderr(&out)
        );
    }
}

/// Two runs of one cell (`repeat-K/` folders) get an aggregate each, named apart.
#[test]
fn each_repeat_of_a_cell_gets_its_own_result_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cells = cells(dir.path());
    let cell = std::fs::read_dir(&cells)
        .expect("cells")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with("offloadoff"))
        .expect("a cell");
    let out = dir.path().join("collect");
    let mut names = Vec::new();
    for k in 1..=2 {
        let repeat = dir.path().join("repeats").join(format!("repeat-{k}"));
        std::fs::create_dir_all(&repeat).expect("repeat dir");
        for f in std::fs::read_dir(&cell).expect("cell") {
            let f = f.expect("file").path();
            std::fs::copy(&f, repeat.join(f.file_name().expect("name"))).expect("copy");
        }
        let path =
            kvsweep::results::collect::agentx_result::write(&repeat, &out, &mut Default::default())
                .expect("AgentX results")
                .expect("an AgentX cell");
        names.push(
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert_ne!(names[0], names[1]);
    assert!(names[0].contains("_repeat-1_none_sim_tp1-"), "{names:?}");
    assert!(out.join("agentx").join(&names[0]).is_file());
    assert!(out.join("agentx").join(&names[1]).is_file());
}

/// A kvsweep cell exported in AIPerf's formats reads back, through the reader collect uses for
/// AIPerf runs, to the figures of the cell itself: the writer and the reader of the AIPerf
/// formats agree, and an export loses nothing collect needs.
#[test]
fn a_cells_aiperf_export_reads_back_to_the_cells_own_figures() {
    use kvsweep::data::artifact::schema::Summary;
    use kvsweep::results::collect::aiperf_cells::{Placement, convert};
    let c = agentx_results();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for golden in goldens() {
        let stem = golden.file_stem().expect("stem").to_string_lossy();
        let cell = stem.split("_none_").next().expect("the cell's name");
        let exports = c.agentx.join(&*stem).join("aiperf_artifacts");
        let offload = if cell.contains("offloadon") {
            "on"
        } else {
            "off"
        };
        let placement: Placement = format!(
            "{}:runner=cpu,tp=1,offload={offload},engine=sim",
            exports.display()
        )
        .parse()
        .expect("a placement");
        let back = dir.path().join(cell);
        convert(&exports, &placement, &back).expect("the export reads as an AIPerf run");
        let ours = Summary::read(&fixture().join("cells").join(cell)).expect("summary.json");
        let read = Summary::read(&back).expect("the converted summary.json");

        let (o, r) = (&ours.requests, &read.requests);
        assert_eq!(
            (r.total, r.ok, r.failed),
            (o.total, o.ok, o.failed),
            "{cell}"
        );
        assert_eq!(read.warmup_requests, ours.warmup_requests, "{cell}");
        assert_eq!(
            (read.cache.prompt_tokens, read.cache.cached_tokens),
            (ours.cache.prompt_tokens, ours.cache.cached_tokens),
            "{cell}"
        );
        // AIPerf's records keep times in integer nanoseconds and latencies in ms: the same
        // figures to well under a microsecond, so to 1e-6 of their size.
        let close = |what: &str, a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{cell} {what}: read back {a}, the cell's {b}"
            ),
            _ => assert_eq!(a, b, "{cell} {what}"),
        };
        for (what, a, b) in [
            ("ttft", &read.ttft_ms, &ours.ttft_ms),
            ("e2e", &read.e2e_ms, &ours.e2e_ms),
            // AIPerf's inter_token_latency; the gaps between tokens are not in requests.csv,
            // so a kvsweep export has no inter_chunk_latency and the gap quantiles stay behind.
            ("tpot", &read.tpot_ms, &ours.tpot_ms),
        ] {
            assert_eq!(a.count, b.count, "{cell} {what} count");
            for (q, x, y) in [
                ("p50", a.p50, b.p50),
                ("p90", a.p90, b.p90),
                ("p99", a.p99, b.p99),
            ] {
                close(&format!("{what} {q}"), x, y);
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "every fixture cell");
}
