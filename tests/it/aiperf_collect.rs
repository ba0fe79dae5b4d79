//! `kvsweep collect` reads AIPerf artifact directories as cells: an AIPerf run and kvsweep cells
//! in one summary and on one Pareto chart, each row saying which tool measured it.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::cells::SyntheticCell;
use common::sim::SimServer;
use kvsweep::data::aiperf::{CreditPhase, RecordInfo, read_profile_export, read_records};
use kvsweep::data::artifact::schema::JsonArtifact;
use kvsweep::plan::spec::Cell;

/// The real AIPerf 0.13.0 AgentX run against the simulator the AIPerf schema is checked on.
fn fixture() -> PathBuf {
    common::repo_root().join("tests/fixtures/aiperf/agentx-0.13.0")
}

/// Copies the fixture into `dir/result/aiperf_artifacts`, as InferenceX keeps AIPerf's exports.
fn result_dir(dir: &Path) -> PathBuf {
    let to = dir.join("result/aiperf_artifacts");
    std::fs::create_dir_all(&to).expect("mkdir");
    for f in std::fs::read_dir(fixture()).expect("fixture").flatten() {
        std::fs::copy(f.path(), to.join(f.file_name())).expect("copy");
    }
    to
}

/// The figures the AIPerf row must show, computed here from the records: successful and failed
/// profiled requests, and the profiled requests' cache hit rate.
struct Expected {
    ok: u64,
    failed: u64,
    hit_rate: f64,
}

fn expected(records: &[RecordInfo]) -> Expected {
    let profiled: Vec<&RecordInfo> = records
        .iter()
        .filter(|r| r.metadata.benchmark_phase == CreditPhase::Profiling)
        .collect();
    let ok: Vec<&&RecordInfo> = profiled.iter().filter(|r| r.error.is_none()).collect();
    let sum = |tag: &str| ok.iter().map(|r| r.metric(tag).unwrap_or(0.0)).sum::<f64>();
    Expected {
        ok: ok.len() as u64,
        failed: (profiled.len() - ok.len()) as u64,
        hit_rate: sum("usage_prompt_cache_read_tokens") / sum("usage_prompt_tokens"),
    }
}

fn row<'a>(rows: &'a [HashMap<String, String>], cell: &str) -> &'a HashMap<String, String> {
    rows.iter()
        .find(|r| r["cell"] == cell)
        .unwrap_or_else(|| panic!("no row {cell} in {rows:?}"))
}

fn num(r: &HashMap<String, String>, col: &str) -> f64 {
    r[col]
        .parse()
        .unwrap_or_else(|e| panic!("{col} = `{}`: {e}", r[col]))
}

#[test]
fn an_aiperf_run_and_kvsweep_cells_share_one_summary_and_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifacts = result_dir(dir.path());
    let cells = dir.path().join("cells");
    SyntheticCell::new("cpu", 1, 2, "on").write(&cells);
    SyntheticCell::new("cpu", 1, 8, "on").write(&cells);
    let out = dir.path().join("out");
    let placement = format!(
        "{}:runner=cpu,tp=1,offload=on,engine=sim,name=aiperf_agentx",
        dir.path().join("result").display()
    );
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--aiperf-cell",
        &placement,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let rows = common::csv_rows(&out.join("summary.csv"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    let ap = row(&rows, "aiperf_agentx");
    assert_eq!(ap["measured_by"], "aiperf");
    let kv = row(&rows, "s_cpu_tp1_users2_offloadon");
    assert_eq!(kv["measured_by"], "kvsweep");
    // Placed as the flag says; users are AIPerf's concurrency (4 in the fixture's config).
    assert_eq!(
        (
            ap["runner"].as_str(),
            ap["tp"].as_str(),
            ap["offload"].as_str()
        ),
        ("cpu", "1", "on")
    );
    assert_eq!((ap["engine"].as_str(), ap["users"].as_str()), ("sim", "4"));
    assert_eq!(ap["model"], "llama-3.1-8b");
    let want = expected(&read_records(&artifacts.join("profile_export.jsonl")).expect("records"));
    assert_eq!(num(ap, "requests_ok") as u64, want.ok);
    assert_eq!(num(ap, "requests_failed") as u64, want.failed);
    assert!(
        (num(ap, "client_hit_rate") - want.hit_rate).abs() < 1e-9,
        "{} vs {}",
        ap["client_hit_rate"],
        want.hit_rate
    );
    // Figures kvsweep's code computed from the records: present and sane.
    for col in [
        "ttft_p50_ms",
        "e2e_p50_ms",
        "itl_p99_ms",
        "e2e_norm_intvty_p90",
        "agentx_total_tps_per_gpu",
        "total_tps_per_gpu",
        "server_hit_rate",
    ] {
        assert!(num(ap, col) > 0.0, "{col} = {}", ap[col]);
    }
    assert!(num(ap, "ttft_p50_ms") <= num(ap, "e2e_p50_ms"));
    // A 60 s run with --unsafe-override: AIPerf itself says it is no submission, and the
    // verdict says so; the point is drawn, marked invalid.
    assert_eq!(ap["valid"], "false");
    assert!(
        ap["invalid_reasons"].contains("AIPerf: submission_valid false (unsafe_override)"),
        "{}",
        ap["invalid_reasons"]
    );

    // One chart: the AIPerf point is in the same comparison group as kvsweep's cells, and the
    // chart labels it as AIPerf's.
    let pareto = common::csv_rows(&out.join("pareto.csv"));
    let in_group = |cell: &str| {
        pareto.iter().any(|r| {
            r["group"] == "cpu/on"
                && r["cell"] == cell
                && r["panel"] == "agentx_tput_vs_e2e_norm_intvty"
        })
    };
    assert!(
        in_group("aiperf_agentx") && in_group("s_cpu_tp1_users8_offloadon"),
        "{pareto:?}"
    );
    let report = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(
        report.contains("(AIPerf)"),
        "the chart labels the AIPerf point"
    );
}

#[test]
fn an_aiperf_run_collect_cannot_place_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifacts = result_dir(dir.path());
    let out = dir.path().join("out");
    let err = common::kvsweep_err(&[
        "collect",
        dir.path().to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains(&artifacts.display().to_string()) && err.contains("--aiperf-cell"),
        "{err}"
    );
    let err = common::kvsweep_err(&[
        "collect",
        "--aiperf-cell",
        &format!("{}:runner=cpu,tp=1,engine=sim", artifacts.display()),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("does not say `offload=`"), "{err}");
}

#[test]
fn a_record_missing_a_field_is_named_with_its_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifacts = result_dir(dir.path());
    let path = artifacts.join("profile_export.jsonl");
    let text = std::fs::read_to_string(&path).expect("records");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // The first profiled record loses its latency.
    let at = lines
        .iter()
        .position(|l| l.contains("\"benchmark_phase\":\"profiling\""))
        .expect("a profiled record");
    let mut v: serde_json::Value = serde_json::from_str(&lines[at]).expect("json");
    v["metrics"]
        .as_object_mut()
        .expect("metrics")
        .remove("request_latency");
    lines[at] = v.to_string();
    std::fs::write(&path, lines.join("\n") + "\n").expect("write");
    let collect = |out: &str| {
        common::kvsweep_err(&[
            "collect",
            "--aiperf-cell",
            &format!(
                "{}:runner=cpu,tp=1,offload=on,engine=sim",
                artifacts.display()
            ),
            "--out",
            dir.path().join(out).to_str().expect("utf-8"),
        ])
    };
    let err = collect("a");
    let want = format!(
        "{}: line {}: field `metrics.request_latency` is missing",
        path.display(),
        at + 1
    );
    assert!(err.contains(&want), "{err}");

    // A record cut short (a run killed mid-write) names its line.
    let last = lines.len();
    let cut = lines.join("\n");
    std::fs::write(&path, &cut[..cut.len() - 30]).expect("write");
    let err = collect("b");
    assert!(
        err.contains(&format!("{}: line {last}", path.display())),
        "{err}"
    );
}

/// One real AIPerf 0.13.0 AgentX run and one kvsweep AgentX replay, same traces, users and seed,
/// against one simulator; `kvsweep collect` puts both in one summary and on one chart, the
/// AIPerf row agreeing with AIPerf's own aggregate on what both count the same way.
#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs aiperf 0.13.0")]
fn aiperf_and_kvsweep_runs_against_one_simulator_sit_on_one_chart() {
    let sim = SimServer::start(&["--speed", "20"]);
    let dir = common::aiperf::short_tempdir("apc");
    let traces = common::aiperf::carried_traces(dir.path(), &["0012", "0019", "0021", "0277"]);
    let artifacts = dir.path().join("result/aiperf_artifacts");
    let out = common::aiperf::profile_agentx(&sim, &traces, &artifacts, dir.path(), 4, 30, 42);
    assert!(
        out.status.success(),
        "aiperf failed:\n{}",
        common::stderr(&out)
    );

    // kvsweep's AgentX replay against the same simulator, as a cell on the same runner.
    let cell_dir = dir.path().join("cells/agentx_users4");
    common::kvsweep_ok(&[
        "replay",
        "--url",
        &sim.base,
        "--api",
        "chat",
        "--traces",
        traces.to_str().expect("utf-8"),
        "--out",
        cell_dir.to_str().expect("utf-8"),
        "--scenario",
        "agentx",
        "--users",
        "4",
        "--seed",
        "42",
        "--duration",
        "30",
        "--warmup-requests-per-lane",
        "0",
    ]);
    common::cells::plan(
        Cell {
            name: "agentx_users4".into(),
            runner: Some("cpu".into()),
            tp: 1,
            ep: 0,
            users: 4,
            offload: serde_json::from_value("off".into()).expect("offload"),
        },
        30,
    )
    .write(&cell_dir)
    .expect("cell.json");

    let collected = dir.path().join("collected");
    common::kvsweep_ok(&[
        "collect",
        dir.path().join("cells").to_str().expect("utf-8"),
        "--aiperf-cell",
        &format!(
            "{}:runner=cpu,tp=1,offload=off,engine=sim,speed=20",
            dir.path().join("result").display()
        ),
        "--out",
        collected.to_str().expect("utf-8"),
    ]);
    let rows = common::csv_rows(&collected.join("summary.csv"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let ap = row(&rows, "aiperf_tp1_users4_offloadoff");
    let kv = row(&rows, "agentx_users4");
    assert_eq!(
        (ap["measured_by"].as_str(), kv["measured_by"].as_str()),
        ("aiperf", "kvsweep")
    );
    // Both in the modelled hardware's time: the replay read the speed off the simulator, the
    // AIPerf run's placement gave it.
    assert_eq!(
        (ap["sim_speed"].as_str(), kv["sim_speed"].as_str()),
        ("20.0", "20.0")
    );

    // The AIPerf row counts what AIPerf's own aggregate counts.
    let records = read_records(&artifacts.join("profile_export.jsonl")).expect("records");
    let want = expected(&records);
    let aggregate =
        read_profile_export(&artifacts.join("profile_export_aiperf.json")).expect("aggregate");
    let agg = |tag: &str| {
        aggregate
            .metric(tag)
            .and_then(|m| m.avg)
            .unwrap_or_else(|| panic!("{tag} in AIPerf's aggregate"))
    };
    assert_eq!(num(ap, "requests_ok") as u64, want.ok);
    assert_eq!(agg("request_count") as u64, want.ok);
    assert!((num(ap, "client_hit_rate") - want.hit_rate).abs() < 1e-9);
    assert!(
        (num(ap, "client_hit_rate") - agg("overall_usage_prompt_cache_read_pct") / 100.0).abs()
            < 1e-9,
        "{} vs AIPerf's {}",
        ap["client_hit_rate"],
        agg("overall_usage_prompt_cache_read_pct")
    );
    // The AIPerf run's server counters (its server-metrics export) saw a warm prefix cache.
    let server = num(ap, "server_hit_rate");
    assert!(
        (0.5..=1.0).contains(&server),
        "AIPerf's server hit rate {server}"
    );
    // Both tools replayed the same traces from part-way in against the same simulator: both
    // found most of each prompt cached, and both points have the North Star x-axis.
    for r in [ap, kv] {
        let h = num(r, "client_hit_rate");
        assert!((0.5..=1.0).contains(&h), "{}: {h}", r["cell"]);
        assert!(num(r, "e2e_norm_intvty_p90") > 0.0);
    }
    for col in [
        "requests_ok",
        "client_hit_rate",
        "server_hit_rate",
        "ttft_p50_ms",
        "e2e_p50_ms",
        "e2e_norm_intvty_p90",
        "agentx_total_tps_per_gpu",
    ] {
        eprintln!("{col}: AIPerf {} kvsweep {}", ap[col], kv[col]);
    }
    let pareto = common::csv_rows(&collected.join("pareto.csv"));
    for cell in ["aiperf_tp1_users4_offloadoff", "agentx_users4"] {
        assert!(
            pareto
                .iter()
                .any(|r| r["group"] == "cpu/off" && r["cell"] == cell),
            "{cell} on the cpu/off chart: {pareto:?}"
        );
    }
    assert!(collected.join("report.html").is_file());
}
