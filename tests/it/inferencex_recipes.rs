//! Every recorded InferenceX launch (`runners/inferencex-recipes/launches.json`, recorded from
//! InferenceX's job scripts by `scripts/import-inferencex-recipes.sh`) renders as the same
//! engine command: the job of the fixture job list, rendered, starts the recorded program with
//! the recorded arguments (JSON values equal as objects) and environment, differing only where
//! `kvsweep::base::recipe::DELIBERATE_DIFFERENCES` says. And the script's engine command is the one
//! `run-cell` starts.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde_json::Value;

use kvsweep::base::recipe::DELIBERATE_DIFFERENCES;
use kvsweep::base::runner::RunnerSet;
use kvsweep::plan::engine::{self, HostValues};
use kvsweep::plan::render::{self, CellOverrides, CellSelector};

use crate::common::repo_root;

/// The AgentX jobs of the fixture master configs, as InferenceX's generator printed them.
fn agentic_jobs() -> Vec<Value> {
    let path = repo_root().join("tests/fixtures/inferencex/golden/agentic.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("golden"))
        .read_to_string(&mut text)
        .expect("gzip");
    serde_json::from_str(&text).expect("json")
}

fn recordings() -> Value {
    let path = repo_root().join("runners/inferencex-recipes/launches.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("launches.json")).expect("json")
}

/// Our runner for an InferenceX GPU without a runner file of its own: the recorded launch does
/// not depend on it (only the container wrapper does), so a sibling stands in.
fn runner_for(label: &str) -> &'static str {
    let gpu = label.trim_start_matches("cluster:").split('-').next();
    match gpu {
        Some("b200" | "b300") => "b200",
        Some("h100") => "h100",
        Some("h200") => "h200",
        _ => "mi355x",
    }
}

/// Renders `job` into a script, in-process, as `kvsweep render JOB --cell EXP --runner R`.
fn render_job(dir: &Path, job: &Value, runners: &RunnerSet) -> anyhow::Result<String> {
    let file = dir.join("job.json");
    std::fs::write(&file, job.to_string()).expect("write job");
    let sel = CellSelector {
        spec: file,
        cell: job["exp-name"].as_str().expect("exp-name").to_owned(),
        key: None,
        runner: Some(runner_for(job["runner"].as_str().expect("runner")).to_owned()),
    };
    let (sweep, cell, runner) = render::select(&sel, runners)?;
    let overrides = CellOverrides {
        traces: Some("/data/traces".into()),
        port: 8000,
        ..CellOverrides::default()
    };
    let plan = render::plan(&sweep, &cell, runner, &overrides)?;
    render::render_script(&plan, runner, None)
}

/// The engine command of a script: its `start_bg "$SERVER_LOG"` line and continued lines,
/// without `start_bg "$SERVER_LOG"`, as shell text.
fn engine_text(script: &str) -> String {
    let mut text = String::new();
    let mut lines = script
        .lines()
        .skip_while(|l| !l.starts_with("start_bg \"$SERVER_LOG\""));
    for line in lines.by_ref() {
        match line.trim().strip_suffix('\\') {
            Some(continued) => text.push_str(continued),
            None => {
                text.push_str(line.trim());
                break;
            }
        }
        text.push(' ');
    }
    let text = text
        .strip_prefix("start_bg \"$SERVER_LOG\"")
        .expect("no engine command in the script");
    text.trim().to_owned()
}

/// The words bash reads from `text` (the script's quoting: `'...'`, `$'...'`, `"$VAR"`), with
/// the script's variables set as `values` says.
fn shell_words(text: &str, values: &HostValues) -> Vec<String> {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ENGINE_CONTAINER={} HOME=/root HF_HOME='{}' SQSH={} KVSWEEP={}; printf '%s\\0' {text}",
            values.container_name,
            values.hf_home.display(),
            values.enroot_image.as_deref().expect("sqsh"),
            values.kvsweep.display(),
        ))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .split_terminator('\0')
        .map(str::to_owned)
        .collect()
}

fn host_values() -> HostValues {
    HostValues {
        container_name: "kvsweep-cell-7".into(),
        hf_home: "/hf home".into(),
        enroot_image: Some("/enroot/image.sqsh".into()),
        kvsweep: "/opt/kvsweep".into(),
    }
}

/// What a container-wrapped engine command starts: program, image, arguments, environment.
#[derive(Debug)]
struct Started {
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

/// Unwraps `docker run ... -e K=V ... --entrypoint PROGRAM IMAGE ARGS` and
/// `srun ... env K=V ... PROGRAM ARGS`.
fn unwrap(words: &[String], image: &str) -> Started {
    let mut env = BTreeMap::new();
    let rest: &[String] = if words[0] == "docker" {
        let mut i = 0;
        while words[i] != "--entrypoint" {
            if words[i] == "-e"
                && let Some((k, v)) = words[i + 1].split_once('=')
            {
                env.insert(k.to_owned(), v.to_owned());
            }
            i += 1;
        }
        assert_eq!(words[i + 2], image, "the job's image");
        return Started {
            program: words[i + 1].clone(),
            args: words[i + 3..].to_vec(),
            env,
        };
    } else {
        let at = words.iter().position(|w| w == "env").expect("env");
        &words[at + 1..]
    };
    let mut i = 0;
    while let Some((k, v)) = rest[i].split_once('=').filter(|(k, _)| {
        k.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    }) {
        env.insert(k.to_owned(), v.to_owned());
        i += 1;
    }
    Started {
        program: rest[i].clone(),
        args: rest[i + 1..].to_vec(),
        env,
    }
}

/// Whether a job of the list is the recorded one (its key's fields).
fn same_job(job: &Value, rec: &Value) -> bool {
    [
        "runner",
        "exp-name",
        "framework",
        "precision",
        "tp",
        "ep",
        "dp-attn",
    ]
    .iter()
    .all(|k| job[*k] == rec[*k])
        && job["router"]["name"] == rec["router"]
}

/// An argument as compared: a JSON object or list as its value, anything else as text.
fn value(arg: &str) -> Value {
    match serde_json::from_str::<Value>(arg) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
        _ => Value::String(arg.to_owned()),
    }
}

/// The differences between a started command and the recording, outside the deliberate ones.
fn differences(started: &Started, launch: &Value, port: &str) -> Vec<String> {
    let mut out = Vec::new();
    if started.program != launch["program"] {
        out.push(format!(
            "program {} ≠ {}",
            started.program, launch["program"]
        ));
    }
    let recorded: Vec<String> = launch["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").to_owned())
        .collect();
    let mut args = started.args.clone();
    // Deliberate: vLLM's prompt-token details, added where the script lacks them.
    if started.program == "vllm"
        && !recorded.iter().any(|a| a == engine::PROMPT_TOKENS_DETAILS)
        && args.last().map(String::as_str) == Some(engine::PROMPT_TOKENS_DETAILS)
    {
        args.pop();
    }
    if args.len() != recorded.len() {
        out.push(format!("{} arguments ≠ {}", args.len(), recorded.len()));
    }
    for (i, (got, want)) in args.iter().zip(&recorded).enumerate() {
        // Deliberate: the cell's port.
        if want.starts_with("--port=") {
            if *got != format!("--port={port}") {
                out.push(format!("{got}, not the cell's port {port}"));
            }
            continue;
        }
        if i > 0 && recorded[i - 1] == "--port" {
            if got != port {
                out.push(format!("--port {got}, not the cell's {port}"));
            }
            continue;
        }
        if value(got) != value(want) {
            out.push(format!("argument {i}: {got} ≠ {want}"));
        }
    }
    let env: BTreeMap<String, String> = launch["env"]
        .as_object()
        .expect("env")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("value").to_owned()))
        .collect();
    let mut got_env = started.env.clone();
    got_env.remove("HF_TOKEN");
    if got_env != env {
        out.push(format!("environment {got_env:?} ≠ {env:?}"));
    }
    out
}

#[test]
fn every_recorded_job_renders_inferencexs_engine_command() {
    let runners = RunnerSet::builtin().expect("runners");
    let recorded = recordings();
    let launches = recorded["launches"].as_array().expect("launches");
    let jobs = agentic_jobs();
    let dir = tempfile::tempdir().expect("tempdir");
    let values = host_values();
    let (mut identical, mut report) = (0, Vec::new());
    let (mut refused, mut side_servers) = (0, 0);
    let recorded_jobs = recorded["jobs"].as_array().expect("jobs");
    for rec in recorded_jobs {
        let job = jobs
            .iter()
            .find(|j| same_job(j, rec))
            .unwrap_or_else(|| panic!("recorded job {rec} is not in the fixture job list"));
        let launch =
            &launches[usize::try_from(rec["launch"].as_u64().expect("launch")).expect("index")];
        let backend = job["kv-offload-backend"]["name"].as_str();
        let script = match render_job(dir.path(), job, &runners) {
            Ok(script) => script,
            // Mooncake needs its master and store beside the engine: refused, by name.
            Err(e) if backend == Some("mooncake") => {
                assert!(format!("{e:#}").contains("mooncake"), "{e:#}");
                refused += 1;
                continue;
            }
            Err(e) => panic!("{} {}: {e:#}", rec["runner"], rec["exp-name"]),
        };
        // LMCache's servers start beside the engine in InferenceX's script: the runner's
        // LMCache flags stand in, and the script says so.
        if backend == Some("lmcache") {
            assert!(
                script.contains("# 1. Start the engine: runner"),
                "{}",
                rec["exp-name"]
            );
            side_servers += 1;
            continue;
        }
        assert!(script.contains("# 1. Start the engine: InferenceX's launch"));
        let words = shell_words(&engine_text(&script), &values);
        let started = unwrap(&words, launch["image"].as_str().expect("image"));
        let diff = differences(&started, launch, "8000");
        if diff.is_empty() {
            identical += 1;
        } else {
            report.push(format!(
                "{} {}: {}",
                rec["runner"],
                rec["exp-name"],
                diff.join("; ")
            ));
        }
    }
    eprintln!(
        "{identical} of {} recorded jobs render InferenceX's command ({refused} Mooncake jobs refused, {side_servers} LMCache jobs on the runner's flags); deliberate differences: {}",
        recorded_jobs.len(),
        DELIBERATE_DIFFERENCES
            .iter()
            .map(|(what, _)| *what)
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        recorded_jobs.len() > 300,
        "{} recorded jobs",
        recorded_jobs.len()
    );
    assert!(
        report.is_empty(),
        "{} differ:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn the_script_starts_the_command_run_cell_starts() {
    let runners = RunnerSet::builtin().expect("runners");
    let jobs = agentic_jobs();
    let recorded = recordings();
    let dir = tempfile::tempdir().expect("tempdir");
    let values = host_values();
    // A Docker runner (b200) and an enroot one (h200), each on a recorded job.
    for gpu in ["b200", "h200"] {
        let rec = recorded["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .find(|j| j["runner"].as_str().is_some_and(|r| r.contains(gpu)))
            .expect("a recorded job");
        let job = jobs
            .iter()
            .find(|j| same_job(j, rec))
            .expect("in the job list");
        let script = render_job(dir.path(), job, &runners).expect("renders");
        // The shell's words, with the script's variables set as run-cell sets them.
        let script_argv = shell_words(&engine_text(&script), &values);

        let sel = CellSelector {
            spec: dir.path().join("job.json"),
            cell: job["exp-name"].as_str().expect("exp-name").to_owned(),
            key: None,
            runner: Some(runner_for(job["runner"].as_str().expect("runner")).to_owned()),
        };
        let (sweep, cell, runner) = render::select(&sel, &runners).expect("select");
        let overrides = CellOverrides {
            traces: Some("/data/traces".into()),
            port: 8000,
            ..CellOverrides::default()
        };
        let plan = render::plan(&sweep, &cell, runner, &overrides).expect("plan");
        let launch = plan.launch(runner).expect("launch");
        let run_cell_argv = engine::host_command(&launch, runner, plan.image.as_deref())
            .expect("host command")
            .argv(&values)
            .expect("argv");
        assert_eq!(script_argv, run_cell_argv, "{gpu}");
        assert!(
            script_argv
                .iter()
                .any(|w| w == "/hf home:/root/.cache/huggingface"
                    || w == "--container-mounts=/hf home:/root/.cache/huggingface")
        );
    }
}

/// A native spec over our own axes on a recorded launch: `recipe: dsv4_fp4_b200_vllm_mtp`.
fn recipe_spec(dir: &Path, tp: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "name: dsv4-recipe\nmodel:\n  name: deepseek-ai/DeepSeek-V4-Pro\n  preset: deepseek-r1\nengine: vllm\nrunners: [b200]\ntraces:\n  path: /data/traces\nrecipe: dsv4_fp4_b200_vllm_mtp\noffload_gb: 1000\ntp: [{tp}]\nusers: [4, 64]\noffload: [\"on\", \"noprefix\"]\n{extra}"
    );
    let path = dir.join("spec.yaml");
    std::fs::write(&path, text).expect("spec");
    path
}

#[test]
fn a_native_spec_sweeps_its_axes_on_a_recorded_launch_with_the_runners_offload_flags() {
    let runners = RunnerSet::builtin().expect("runners");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = recipe_spec(dir.path(), "8", "");
    let sweep = kvsweep::plan::spec::load(
        &spec,
        kvsweep::plan::spec::LoadOptions {
            key: None,
            runner: None,
            runners: &runners,
        },
    )
    .expect("loads");
    assert_eq!(sweep.cells.len(), 4);
    let overrides = CellOverrides {
        port: 8000,
        ..CellOverrides::default()
    };
    for cell in &sweep.cells {
        let runner = render::cell_runner(&sweep, cell, &runners).expect("runner");
        let plan = render::plan(&sweep, cell, runner, &overrides).expect("plan");
        let recipe = plan.recipe.as_ref().expect("the recipe");
        assert_eq!(plan.image.as_deref(), Some(recipe.image.as_str()));
        let launch = plan.launch(runner).expect("launch");
        let args = launch.args.join(" ");
        // The tuned command: InferenceX's flags for the model.
        assert!(
            args.contains("--kv-cache-dtype fp8 --block-size 256"),
            "{args}"
        );
        assert!(
            args.contains("\"synthetic_acceptance_length\": 2.49"),
            "{args}"
        );
        // Its own offload connector is out; the runner's flags for the cell's mode are in.
        assert!(!args.contains("SimpleCPUOffloadConnector"), "{args}");
        match cell.offload {
            kvsweep::base::kinds::Offload::On => {
                assert!(args.contains("--kv_offloading_size 1000"), "{args}")
            }
            _ => assert!(args.contains("--no-enable-prefix-caching"), "{args}"),
        }
        assert!(
            launch
                .env
                .iter()
                .any(|(k, _)| k == "VLLM_USE_V2_MODEL_RUNNER")
        );
    }

    // A TP the recipe has no launch for is refused with those it has.
    let spec = recipe_spec(dir.path(), "2", "");
    let err = kvsweep::plan::spec::load(
        &spec,
        kvsweep::plan::spec::LoadOptions {
            key: None,
            runner: None,
            runners: &runners,
        },
    )
    .expect_err("tp 2");
    assert!(
        err.to_string()
            .contains("no launch recorded for tp 2; it has tp 8"),
        "{err}"
    );
    assert!(err.to_string().contains("recipe"), "{err}");
}
