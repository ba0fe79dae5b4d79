//! `kvsweep matrix`: the job matrix for both spec shapes, compared with the InferenceX workflow's
//! own generator where the shape is InferenceX's.

use crate::common;

use common::{kvsweep_err, kvsweep_ok, repo_root, require_tool, run, write};
use serde_json::{Value, json};

fn matrix(args: &[&str]) -> Value {
    serde_json::from_str(&kvsweep_ok(args)).expect("matrix output is JSON")
}

/// The reference generator's output for a spec (tests/inferencex_matrix.py, PyYAML).
fn reference(spec: &std::path::Path, key: Option<&str>) -> Value {
    require_tool("python3");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(repo_root().join("tests/inferencex_matrix.py"))
        .arg(spec);
    if let Some(k) = key {
        cmd.arg(k);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "reference generator failed (is PyYAML installed? run scripts/install-test-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference prints JSON")
}

/// Compares two matrices including the order of entries and of keys inside each entry.
fn assert_same_matrix(ours: &Value, theirs: &Value) {
    assert_eq!(
        serde_json::to_string(ours).expect("json"),
        serde_json::to_string(theirs).expect("json"),
    );
}

const TWO_ENTRIES: &str = r#"
h200-fp8-llama70b:
  tp2:
    users: [2, 4]
    offload: ["on", "off"]
  tp8:
    users: [16]
    offload: ["off", "noprefix"]
b200-fp4-dsr1:
  tp4:
    ep: 4
    users: [1, 8]
  tp8:
    ep: 0
    users: [32]
    offload: ["on"]
"#;

#[test]
fn key_selects_an_entry_in_workflow_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "agentic.yaml", TWO_ENTRIES);
    let spec = spec.to_str().expect("utf-8 path");
    let m = matrix(&["matrix", spec, "--key", "b200-fp4-dsr1"]);
    let expected = json!({"include": [
        {"tp": 4, "users": 1, "offload": "on", "ep": 4, "name": "multiturn_tp4_users1_offloadon"},
        {"tp": 4, "users": 1, "offload": "off", "ep": 4, "name": "multiturn_tp4_users1_offloadoff"},
        {"tp": 4, "users": 8, "offload": "on", "ep": 4, "name": "multiturn_tp4_users8_offloadon"},
        {"tp": 4, "users": 8, "offload": "off", "ep": 4, "name": "multiturn_tp4_users8_offloadoff"},
        {"tp": 8, "users": 32, "offload": "on", "name": "multiturn_tp8_users32_offloadon"},
    ]});
    assert_same_matrix(&m, &expected);
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs Python with PyYAML")]
fn the_only_entry_is_used_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "one.yaml", "h100-x:\n  tp2: {users: [3]}\n");
    let m = matrix(&["matrix", spec.to_str().expect("utf-8")]);
    assert_same_matrix(
        &m,
        &json!({"include": [
            {"tp": 2, "users": 3, "offload": "on", "name": "multiturn_tp2_users3_offloadon"},
            {"tp": 2, "users": 3, "offload": "off", "name": "multiturn_tp2_users3_offloadoff"},
        ]}),
    );
    assert_same_matrix(&m, &reference(&spec, None));
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs Python with PyYAML")]
fn a_file_of_tp_keys_is_the_entry_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(
        dir.path(),
        "flat.yaml",
        "tp8:\n  users: [64]\n  offload: [\"noprefix\"]\ntp4: {users: [1, 2], ep: 2}\n",
    );
    let m = matrix(&["matrix", spec.to_str().expect("utf-8")]);
    let names: Vec<&str> = m["include"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "multiturn_tp8_users64_offloadnoprefix",
            "multiturn_tp4_users1_offloadon",
            "multiturn_tp4_users1_offloadoff",
            "multiturn_tp4_users2_offloadon",
            "multiturn_tp4_users2_offloadoff",
        ]
    );
    assert_same_matrix(&m, &reference(&spec, None));
}

#[test]
fn an_unknown_key_lists_the_available_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "agentic.yaml", TWO_ENTRIES);
    let err = kvsweep_err(&["matrix", spec.to_str().expect("utf-8"), "--key", "mi300"]);
    assert!(
        err.contains("config key `mi300` not found; available: h200-fp8-llama70b, b200-fp4-dsr1"),
        "{err}"
    );
}

#[test]
fn several_entries_without_a_key_is_an_error_listing_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "agentic.yaml", TWO_ENTRIES);
    let err = kvsweep_err(&["matrix", spec.to_str().expect("utf-8")]);
    assert!(err.contains("choose one with --key"), "{err}");
    assert!(err.contains("h200-fp8-llama70b, b200-fp4-dsr1"), "{err}");
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs Python with PyYAML")]
fn every_example_entry_matches_the_reference_generator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = write(dir.path(), "agentic.yaml", TWO_ENTRIES);
    let example = repo_root().join("sweeps/inferencex-agentic.yaml");
    let cases = [
        (fixture.clone(), "h200-fp8-llama70b"),
        (fixture, "b200-fp4-dsr1"),
        (example.clone(), "h200-fp8-llama70b"),
        (example.clone(), "mi355x-fp8-llama70b"),
        (example, "b200-fp4-dsr1"),
    ];
    for (spec, key) in cases {
        let ours = matrix(&["matrix", spec.to_str().expect("utf-8"), "--key", key]);
        assert_same_matrix(&ours, &reference(&spec, Some(key)));
    }
}

#[test]
fn runner_flag_adds_the_runner_to_every_entry() {
    let spec = repo_root().join("sweeps/inferencex-agentic.yaml");
    let m = matrix(&[
        "matrix",
        spec.to_str().expect("utf-8"),
        "--key",
        "b200-fp4-dsr1",
        "--runner",
        "b200",
    ]);
    let first = &m["include"][0];
    let keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["tp", "users", "offload", "ep", "name", "runner"]);
    assert!(
        m["include"]
            .as_array()
            .expect("array")
            .iter()
            .all(|e| e["runner"] == "b200")
    );
}

#[test]
fn native_spec_expands_per_tp_overrides_excludes_and_includes() {
    let spec = repo_root().join("sweeps/h200-llama70b.yaml");
    let m = matrix(&["matrix", spec.to_str().expect("utf-8")]);
    let entries = m["include"].as_array().expect("array");
    // tp2: 6 users × (on, off) after excluding noprefix; tp4: 6 × 3; tp8 (per_tp users): 6 × 3.
    assert_eq!(entries.len(), 12 + 18 + 18);
    assert!(
        entries
            .iter()
            .all(|e| !(e["tp"] == 2 && e["offload"] == "noprefix"))
    );
    assert!(entries.iter().any(|e| e["tp"] == 8 && e["users"] == 256));
    assert!(entries.iter().all(|e| !(e["tp"] == 8 && e["users"] == 2)));
    assert_eq!(
        entries[0],
        json!({"tp": 2, "users": 2, "offload": "on", "name": "h200-llama70b_h200_tp2_users2_offloadon", "runner": "h200"})
    );

    let spec = repo_root().join("sweeps/mi355x-llama70b.yaml");
    let m = matrix(&["matrix", spec.to_str().expect("utf-8")]);
    let last = m["include"].as_array().expect("array").last().cloned();
    assert_eq!(
        last,
        Some(
            json!({"tp": 8, "users": 512, "offload": "on", "name": "mi355x-llama70b_mi355x_tp8_users512_offloadon", "runner": "mi355x"})
        )
    );
}

#[test]
fn native_cell_names_are_unique_and_artifact_safe() {
    for file in [
        "h200-llama70b.yaml",
        "b200-dsr1.yaml",
        "mi355x-llama70b.yaml",
        "local-sim.yaml",
    ] {
        let spec = repo_root().join("sweeps").join(file);
        let m = matrix(&["matrix", spec.to_str().expect("utf-8")]);
        let names: Vec<&str> = m["include"]
            .as_array()
            .expect("array")
            .iter()
            .map(|e| e["name"].as_str().expect("name"))
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{file}: duplicate names");
        for name in names {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                "{name}"
            );
        }
    }
}

#[test]
fn local_sim_demo_is_two_tp_by_three_users_by_on_off() {
    let spec = repo_root().join("sweeps/local-sim.yaml");
    let m = matrix(&["matrix", spec.to_str().expect("utf-8")]);
    assert_eq!(m["include"].as_array().expect("array").len(), 12);
}

const BIG: &str = r#"
name: big
model: {name: m, preset: llama-3.1-8b}
engine: vllm
runners: [h200]
traces: {path: traces}
offload_gb: 100
tp: [1, 2, 4]
users: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]
offload: ["on", "off"]
"#;

#[test]
fn shards_split_a_large_sweep_under_the_github_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "big.yaml", BIG);
    let spec = spec.to_str().expect("utf-8");
    let mut all = Vec::new();
    for shard in ["1/2", "2/2"] {
        let m = matrix(&["matrix", spec, "--shard", shard]);
        let entries = m["include"].as_array().expect("array").clone();
        assert_eq!(entries.len(), 150);
        all.extend(entries);
    }
    assert_eq!(all.len(), 300);
    assert_eq!(all[0]["name"], "big_h200_tp1_users1_offloadon");
    assert_eq!(all[299]["name"], "big_h200_tp4_users50_offloadoff");
    let err = kvsweep_err(&["matrix", spec, "--shard", "1/1"]);
    assert!(err.contains("shard 1/1 has 300 cells"), "{err}");
}

#[test]
fn github_output_appends_matrix_count_and_runner_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = write(dir.path(), "github_output", "earlier=1\n");
    let spec = repo_root().join("sweeps/inferencex-agentic.yaml");
    let out = run(common::kvsweep()
        .args([
            "matrix",
            spec.to_str().expect("utf-8"),
            "--key",
            "h200-fp8-llama70b",
            "--runner",
            "h200",
            "--github-output",
        ])
        .env("GITHUB_OUTPUT", &out_file));
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = std::fs::read_to_string(&out_file).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "earlier=1");
    let matrix: Value =
        serde_json::from_str(lines[1].strip_prefix("matrix=").expect("matrix line")).expect("json");
    assert_eq!(matrix["include"].as_array().expect("array").len(), 40);
    assert_eq!(lines[2], "count=40");
    assert_eq!(lines[3], r#"runs_on=["self-hosted","h200"]"#);

    let err = run(common::kvsweep()
        .args([
            "matrix",
            spec.to_str().expect("utf-8"),
            "--key",
            "b200-fp4-dsr1",
            "--github-output",
        ])
        .env_remove("GITHUB_OUTPUT"));
    assert!(!err.status.success());
    assert!(common::stderr(&err).contains("$GITHUB_OUTPUT"));
}

#[test]
fn table_format_lists_every_cell() {
    let spec = repo_root().join("sweeps/local-sim.yaml");
    let table = kvsweep_ok(&["matrix", spec.to_str().expect("utf-8"), "--format", "table"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        first,
        [
            "local-sim_cpu_tp1_users2_offloadon",
            "cpu",
            "1",
            "-",
            "2",
            "on"
        ]
    );
    assert_eq!(lines.last().copied(), Some("12 cells"));
}
