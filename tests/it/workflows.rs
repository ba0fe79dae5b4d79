//! The GitHub workflows: actionlint finds nothing, and the security rules hold in every one —
//! least-privilege permissions, third-party actions pinned by commit SHA, and no expression
//! interpolated straight into a `run:` script.

use crate::common;

use std::path::PathBuf;

use common::{repo_root, require_tool, run};
use serde_norway::Value;

fn workflows() -> Vec<PathBuf> {
    let dir = repo_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("workflows dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "expected ci.yml and sweep.yml in {}",
        dir.display()
    );
    files
}

fn load(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).expect("read workflow");
    serde_norway::from_str(&text).expect("workflow is YAML")
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs actionlint")]
fn actionlint_is_clean_on_every_workflow() {
    require_tool("actionlint");
    let out = run(std::process::Command::new("actionlint")
        .arg("-no-color")
        .args(workflows())
        .current_dir(repo_root()));
    assert!(
        out.status.success(),
        "actionlint findings:\n{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
}

#[test]
fn every_workflow_and_job_limits_its_token() {
    for path in workflows() {
        let wf = load(&path);
        let top = wf.get("permissions");
        assert!(
            top.is_some(),
            "{}: no top-level permissions",
            path.display()
        );
        if let Some(Value::Mapping(perms)) = top {
            for (scope, level) in perms {
                assert!(
                    level.as_str() == Some("read") || level.as_str() == Some("none"),
                    "{}: top-level permission {scope:?} is {level:?}; grant writes per job",
                    path.display()
                );
            }
        }
        let jobs = wf.get("jobs").and_then(Value::as_mapping).expect("jobs");
        for (name, job) in jobs {
            let job_perms = job.get("permissions");
            if let Some(Value::Mapping(perms)) = job_perms {
                for (scope, level) in perms {
                    assert_ne!(
                        level.as_str(),
                        Some("write-all"),
                        "{}: job {name:?} scope {scope:?}",
                        path.display()
                    );
                }
            }
        }
    }
}

/// Every `uses:` of every step, with the file it is in.
fn uses() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for path in workflows() {
        let wf = load(&path);
        let jobs = wf.get("jobs").and_then(Value::as_mapping).expect("jobs");
        for job in jobs.values() {
            if let Some(u) = job.get("uses").and_then(Value::as_str) {
                out.push((path.clone(), u.to_owned()));
            }
            for step in job
                .get("steps")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                if let Some(u) = step.get("uses").and_then(Value::as_str) {
                    out.push((path.clone(), u.to_owned()));
                }
            }
        }
    }
    out
}

#[test]
fn third_party_actions_are_pinned_by_commit_sha() {
    let all = uses();
    assert!(!all.is_empty());
    for (path, action) in all {
        if action.starts_with("./") {
            continue;
        }
        let reference = action.rsplit_once('@').map(|(_, r)| r).unwrap_or_default();
        assert!(
            reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit()),
            "{}: `{action}` is not pinned to a full commit SHA",
            path.display()
        );
    }
}

#[test]
fn run_scripts_take_untrusted_values_only_through_env() {
    // Values a workflow's triggerer controls; they must arrive as environment variables.
    let untrusted = ["inputs.", "github.event.", "github.head_ref", "matrix."];
    for path in workflows() {
        let wf = load(&path);
        let jobs = wf.get("jobs").and_then(Value::as_mapping).expect("jobs");
        for (name, job) in jobs {
            for step in job
                .get("steps")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let Some(script) = step.get("run").and_then(Value::as_str) else {
                    continue;
                };
                for expr in script.split("${{").skip(1) {
                    let inner = expr.split("}}").next().unwrap_or_default().trim();
                    assert!(
                        !untrusted.iter().any(|u| inner.contains(u)),
                        "{}: job {name:?} interpolates `{inner}` into a run script; pass it through env:",
                        path.display()
                    );
                }
            }
        }
    }
}

#[test]
fn the_sweep_workflow_has_the_documented_shape() {
    let wf = load(&repo_root().join(".github/workflows/sweep.yml"));
    let inputs = wf["on"]["workflow_dispatch"]["inputs"]
        .as_mapping()
        .expect("workflow_dispatch inputs");
    for input in [
        "spec", "key", "runner", "duration", "filters", "shard", "ref",
    ] {
        assert!(inputs.contains_key(input), "missing input {input}");
    }
    let jobs = &wf["jobs"];
    assert_eq!(jobs["sweep"]["strategy"]["fail-fast"], Value::Bool(false));
    assert_eq!(
        jobs["collect"]["if"]
            .as_str()
            .map(|s| s.starts_with("always()")),
        Some(true)
    );
    // The optional gate runs only when a baseline is given, after the results are uploaded.
    let collect_steps = jobs["collect"]["steps"]
        .as_sequence()
        .expect("collect steps");
    let gate = collect_steps
        .iter()
        .position(|s| s.get("id").and_then(Value::as_str) == Some("gate"))
        .expect("a gate step");
    assert_eq!(
        collect_steps[gate]["if"].as_str(),
        Some("inputs.gate_baseline != ''")
    );
    assert!(
        collect_steps[gate]["run"]
            .as_str()
            .is_some_and(|r| r.contains("kvsweep gate aggregated --baseline \"$BASELINE\""))
    );
    assert!(
        collect_steps[..gate]
            .iter()
            .any(|s| s["with"]["name"].as_str() == Some("sweep-aggregated"))
    );
    let gen_steps = jobs["generate-matrix"]["steps"]
        .as_sequence()
        .expect("steps");
    assert!(gen_steps.iter().any(|s| {
        s.get("run")
            .and_then(Value::as_str)
            .is_some_and(|r| r.contains("matrix \"$SPEC\"") && r.contains("--github-output"))
    }));
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs shellcheck")]
fn the_project_scripts_pass_shellcheck() {
    require_tool("shellcheck");
    let root = repo_root();
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("scripts"))
        .expect("scripts dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.push(root.join(".ci/run"));
    assert!(scripts.len() >= 3);
    let out = run(std::process::Command::new("shellcheck")
        .arg("--shell=bash")
        .args(&scripts));
    assert!(
        out.status.success(),
        "shellcheck findings:\n{}",
        common::stdout(&out)
    );
}
