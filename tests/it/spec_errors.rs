//! Every validation error names the file, line, column and field, with a message saying what is
//! wrong. Each case checks all four.

use crate::common;

use common::{kvsweep_err, write};

/// A valid native spec; cases edit one thing in it.
const NATIVE: &str = "\
name: t
model:
  name: meta-llama/Llama-3.1-70B-Instruct
  preset: llama-3.1-70b
engine: vllm
runners: [h200]
traces: {path: traces}
offload_gb: 500
tp: [2, 4]
users: [1, 8]
offload: [\"on\", \"off\"]
";

/// Runs `kvsweep matrix` on `text` and checks the error's location prefix and message.
fn expect_error(text: &str, extra_args: &[&str], location: &str, message: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "spec.yaml", text);
    let spec = spec.to_str().expect("utf-8");
    let mut args = vec!["matrix", spec];
    args.extend_from_slice(extra_args);
    let err = kvsweep_err(&args);
    let expected = format!("{spec}:{location}: {message}");
    assert!(
        err.contains(&expected),
        "expected `{expected}`\n     got `{}`",
        err.trim()
    );
}

#[test]
fn a_spec_price_that_is_not_positive_is_refused() {
    let text = format!(
        "{NATIVE}economics:\n  prices:\n    neocloud: {{usd_per_gpu_hour: -2, source: a quote, date: \"2026-05\"}}\n"
    );
    expect_error(
        &text,
        &[],
        "14:16",
        "field `economics.prices.neocloud.usd_per_gpu_hour`: -2 must be a positive number",
    );
    let text = format!("{NATIVE}economics:\n  prices:\n    spot: {{usd_per_gpu_hour: 1}}\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "spec.yaml", &text);
    let err = kvsweep_err(&["matrix", spec.to_str().expect("utf-8")]);
    assert!(err.contains("unknown field `spot`"), "{err}");
}

#[test]
fn the_valid_base_spec_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "spec.yaml", NATIVE);
    common::kvsweep_ok(&["matrix", spec.to_str().expect("utf-8")]);
}

#[test]
fn unknown_field_native() {
    expect_error(
        &NATIVE.replace("users: [1, 8]", "usres: [1, 8]"),
        &[],
        "10:1: field `usres`",
        "unknown field `usres`, expected one of",
    );
}

#[test]
fn unknown_field_inferencex() {
    expect_error(
        "h200:\n  tp4:\n    users: [1]\n    offlaod: [\"on\"]\n",
        &[],
        "4:5: field `h200.tp4.offlaod`",
        "unknown field `offlaod`, expected one of `users`, `offload`, `ep`",
    );
}

#[test]
fn unknown_field_nested_in_model() {
    expect_error(
        &NATIVE.replace(
            "  preset: llama-3.1-70b",
            "  preset: llama-3.1-70b\n  layer: 80",
        ),
        &[],
        "5:3: field `model.layer`",
        "unknown field `layer`",
    );
}

#[test]
fn unknown_offload_mode() {
    expect_error(
        &NATIVE.replace("offload: [\"on\", \"off\"]", "offload: [\"on\", \"maybe\"]"),
        &[],
        "11:17: field `offload[1]`",
        "unknown variant `maybe`, expected one of `on`, `off`, `noprefix`",
    );
}

#[test]
fn empty_axis_native() {
    expect_error(
        &NATIVE.replace("users: [1, 8]", "users: []"),
        &[],
        "10:1: field `users`",
        "empty axis: give at least one value",
    );
}

#[test]
fn empty_axis_inferencex() {
    expect_error(
        "h200:\n  tp2:\n    users: [1]\n  tp4:\n    users: []\n",
        &[],
        "5:5: field `h200.tp4.users`",
        "empty axis: give at least one value",
    );
}

#[test]
fn tp_that_does_not_divide_the_runner_gpus_native() {
    expect_error(
        &NATIVE.replace("tp: [2, 4]", "tp: [2, 3]"),
        &[],
        "9:9: field `tp[1]`",
        "tp 3 does not divide the 8 GPUs per node of runner `h200`",
    );
}

#[test]
fn tp_that_does_not_divide_the_runner_gpus_inferencex() {
    expect_error(
        "mi355x:\n  tp4:\n    users: [1]\n  tp6:\n    users: [2]\n",
        &["--runner", "mi355x"],
        "4:3: field `mi355x.tp6`",
        "tp 6 does not divide the 8 GPUs per node of runner `mi355x`",
    );
}

#[test]
fn ep_larger_than_the_cell_gpus_inferencex() {
    expect_error(
        "b200:\n  tp2:\n    users: [1]\n    ep: 4\n",
        &[],
        "4:5: field `b200.tp2.ep`",
        "ep 4 is larger than the 2 GPUs of the cell (tp 2)",
    );
}

#[test]
fn ep_larger_than_the_cell_gpus_native() {
    expect_error(
        &format!("{NATIVE}per_tp:\n  tp2: {{ep: 8}}\n"),
        &[],
        "13:9: field `per_tp.tp2.ep`",
        "ep 8 is larger than the 2 GPUs of the cell (tp 2)",
    );
}

#[test]
fn offload_on_without_a_host_memory_budget() {
    expect_error(
        &NATIVE.replace("offload_gb: 500\n", ""),
        &[],
        "10:11: field `offload[0]`",
        "offload `on` needs a host-memory budget: set offload_gb or offload_dram_fraction",
    );
}

#[test]
fn unknown_runner_in_the_spec() {
    expect_error(
        &NATIVE.replace("runners: [h200]", "runners: [h200, h300]"),
        &[],
        "6:17: field `runners[1]`",
        "unknown runner `h300`; known runners: b200, cpu, h100, h200, mi355x",
    );
}

#[test]
fn unknown_runner_on_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write(dir.path(), "spec.yaml", "h200:\n  tp2:\n    users: [1]\n");
    let err = kvsweep_err(&["matrix", spec.to_str().expect("utf-8"), "--runner", "h300"]);
    assert!(
        err.contains(
            "unknown runner `h300`; known runners: b200, cpu, h100, h200, mi355x (from --runner)"
        ),
        "{err}"
    );
}

#[test]
fn duplicate_cells_from_a_repeated_axis_value() {
    expect_error(
        &NATIVE.replace("users: [1, 8]", "users: [1, 8, 1]"),
        &[],
        "10:15: field `users[2]`",
        "duplicate value `1` would make duplicate cells",
    );
    expect_error(
        "h200:\n  tp2:\n    users: [4, 4]\n",
        &[],
        "3:16: field `h200.tp2.users[1]`",
        "duplicate value `4` would make duplicate cells",
    );
}

#[test]
fn duplicate_cells_from_an_include() {
    expect_error(
        &format!("{NATIVE}include:\n  - {{tp: 4, users: 8, offload: \"off\"}}\n"),
        &[],
        "13:5: field `include[0]`",
        "duplicates cell `t_h200_tp4_users8_offloadoff`",
    );
}

#[test]
fn more_than_256_cells_without_a_shard() {
    let users: Vec<String> = (1..=65).map(|u| u.to_string()).collect();
    let text = NATIVE.replace("users: [1, 8]", &format!("users: [{}]", users.join(", ")));
    expect_error(
        &text,
        &[],
        "9:1: field `tp`",
        "the sweep has 260 cells, more than the 256 jobs a GitHub matrix allows; split it with --shard I/N (N >= 2)",
    );
}

#[test]
fn exclude_that_matches_nothing() {
    expect_error(
        &format!("{NATIVE}exclude:\n  - {{tp: 8}}\n"),
        &[],
        "13:5: field `exclude[0]`",
        "matches no cell: check it for a typo",
    );
}

#[test]
fn engine_mode_the_runner_cannot_run() {
    expect_error(
        &NATIVE
            .replace("runners: [h200]", "runners: [mi355x]")
            .replace(
                "offload_gb: 500",
                "offload_gb: 500\noffload_backend: simple-cpu",
            ),
        &[],
        "12:11: field `offload[0]`",
        "runner `mi355x` defines no vllm flags for offload `on` with backend `simple-cpu`",
    );
}

#[test]
fn unknown_model_preset() {
    expect_error(
        &NATIVE.replace("preset: llama-3.1-70b", "preset: llama-9"),
        &[],
        "4:3: field `model.preset`",
        "unknown model preset `llama-9`; known presets: llama-3.1-8b",
    );
}

#[test]
fn bad_tp_key_inferencex() {
    expect_error(
        "h200:\n  tpfour:\n    users: [1]\n",
        &[],
        "2:3: field `h200.tpfour`",
        "`tpfour` is not a tensor-parallel key",
    );
}

#[test]
fn yaml_syntax_error_is_located() {
    expect_error(
        "h200:\n  tp2:\n    users: [1, 2\n  tp4: {users: [1]}\n",
        &[],
        "4:6",
        "invalid YAML: illegal placement of ':' indicator",
    );
}

#[test]
fn missing_file_names_the_file() {
    let err = kvsweep_err(&["matrix", "/nonexistent/spec.yaml"]);
    assert!(
        err.contains("/nonexistent/spec.yaml: cannot read file"),
        "{err}"
    );
}

#[test]
fn offload_on_for_vllm_on_cpu_is_refused_with_the_reason() {
    expect_error(
        &NATIVE
            .replace("runners: [h200]", "runners: [cpu]")
            .replace("tp: [2, 4]", "tp: [1]"),
        &[],
        "11:11: field `offload[0]`",
        "runner `cpu` cannot run vllm with offload `on`: vLLM's CPU backend accepts every KV offload flag, then its engine dies",
    );
}

#[test]
fn a_model_path_must_not_be_empty_nor_a_max_len_zero() {
    let with = |extra: &str| {
        NATIVE.replace(
            "  preset: llama-3.1-70b\n",
            &format!("  preset: llama-3.1-70b\n{extra}"),
        )
    };
    expect_error(
        &with("  path: ''\n"),
        &[],
        "5:3: field `model.path`",
        "must not be empty",
    );
    expect_error(
        &with("  max_len: 0\n"),
        &[],
        "5:3: field `model.max_len`",
        "must be at least 1 token",
    );
}

#[test]
fn unknown_replay_option_is_found_when_the_spec_loads() {
    expect_error(
        &format!("{NATIVE}replay:\n  max_users: 8\n  max_userz: 4\n"),
        &[],
        "14:3: field `replay.max_userz`",
        "unknown option `max_userz` (did you mean `max_users`?)",
    );
}

#[test]
fn bad_replay_value_is_found_when_the_spec_loads() {
    expect_error(
        &format!("{NATIVE}replay:\n  max_users: lots\n"),
        &[],
        "13:3: field `replay.max_users`",
        "invalid type: string \"lots\", expected u32",
    );
}

#[test]
fn unknown_tester_option_is_found_when_the_spec_loads() {
    expect_error(
        &format!(
            "{}tester:\n  kind: cache-rate\n  hit_ratez: [0.5]\n",
            NATIVE.replace("traces: {path: traces}\n", "")
        ),
        &[],
        "13:3: field `tester.hit_ratez`",
        "unknown option `hit_ratez`",
    );
}

#[test]
fn a_replay_value_out_of_range_is_named_by_its_key() {
    expect_error(
        &format!("{NATIVE}replay:\n  seed: 3\n  warm_prefix_pct: 50\n"),
        &[],
        "14:3: field `replay.warm_prefix_pct`",
        "50 is not a share from 0 to 1",
    );
}

#[test]
fn a_required_tester_option_left_out_is_named() {
    expect_error(
        &format!(
            "{}tester:\n  kind: cache-rate\n  context_sizes: [4000]\n",
            NATIVE.replace("traces: {path: traces}\n", "")
        ),
        &[],
        "11:1: field `tester`",
        "missing option `working_set_size`",
    );
}
