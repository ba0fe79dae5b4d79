//! Inference engines: how each one is started, checked and reset.
//!
//! The command line for a cell is built here once, from the runner's flags, and used both by the
//! rendered runner script and by `run-cell` (`host`: as run on the host, in the runner's
//! container), so the two can never disagree.

mod host;
pub mod process;

use anyhow::{Result, bail};
use serde::Serialize;

pub use crate::base::kinds::EngineKind;
use crate::base::kinds::{Offload, OffloadBackend};
use crate::base::matrix_cell::Cell;
use crate::base::paths::expand_home;
use crate::base::recipe::Recipe;
use crate::base::runner::{EngineFlags, PLACEHOLDERS, Runner};
pub use host::{HostCommand, HostValues, HostVar, Part, Word, host_command};

/// The program an engine command runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Program {
    External(String),
    /// This kvsweep binary (the simulator); the script finds it through `$KVSWEEP`.
    Kvsweep,
}

/// A fully resolved engine command line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Launch {
    pub program: Program,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What [`launch`] needs to know about one cell.
pub struct LaunchRequest<'a> {
    pub engine: EngineKind,
    /// What the engine loads: a model id, a path, or (for the simulator) a preset name.
    pub model: &'a str,
    /// The name clients ask for, where it differs from `model` (a model loaded from a path).
    pub served_name: Option<&'a str>,
    /// The longest sequence the engine must accept, when the spec sets one.
    pub max_model_len: Option<u32>,
    pub runner: &'a Runner,
    pub cell: &'a Cell,
    pub backend: OffloadBackend,
    /// Host memory for the offload tier, GiB across the TP group; needed when offload is on.
    pub offload_gib: Option<f64>,
    pub port: u16,
    /// The spec's own engine flags, last.
    pub extra_args: &'a [String],
    /// A recorded InferenceX launch to start instead of the runner's flags.
    pub recipe: Option<&'a Recipe>,
}

/// Builds the engine command for a cell: the engine's own flags, then the runner's flags for the
/// engine, then the runner's flags for the cell's offload mode, then the spec's `engine_args`.
pub fn launch(req: &LaunchRequest<'_>) -> Result<Launch> {
    if let Some(recipe) = req.recipe {
        return recipe_launch(req, recipe);
    }
    let cell = req.cell;
    let runner = req.runner;
    let Some(engine_flags) = runner.engines.get(&req.engine) else {
        bail!(
            "runner `{}` cannot start engine `{}`",
            runner.name,
            req.engine
        );
    };
    let Some(mode) = runner.mode_flags(req.engine, cell.offload, req.backend) else {
        bail!(
            "runner `{}` defines no {} flags for offload `{}`{}",
            runner.name,
            req.engine,
            cell.offload,
            if cell.offload == Offload::On {
                format!(" with backend `{}`", req.backend)
            } else {
                String::new()
            }
        );
    };
    let port = req.port.to_string();
    let tp = cell.tp.to_string();
    let (program, mut args) = match req.engine {
        EngineKind::Vllm => {
            let mut a = strings(&["serve", req.model, "--host", "0.0.0.0", "--port", &port]);
            a.extend(strings(&["--tensor-parallel-size", &tp]));
            if cell.ep > 0 {
                // vLLM sizes expert parallelism as TP × DP; the flag turns it on.
                a.push("--enable-expert-parallel".into());
            }
            if let Some(name) = req.served_name {
                a.extend(strings(&["--served-model-name", name]));
            }
            if let Some(len) = req.max_model_len {
                a.extend(["--max-model-len".into(), len.to_string()]);
            }
            (Program::External(program(engine_flags, "vllm")), a)
        }
        EngineKind::Sglang => {
            let mut a = strings(&["-m", "sglang.launch_server", "--model-path", req.model]);
            a.extend(strings(&[
                "--host", "0.0.0.0", "--port", &port, "--tp", &tp,
            ]));
            if cell.ep > 0 {
                a.extend(["--ep-size".into(), cell.ep.to_string()]);
            }
            if let Some(name) = req.served_name {
                a.extend(strings(&["--served-model-name", name]));
            }
            if let Some(len) = req.max_model_len {
                a.extend(["--context-length".into(), len.to_string()]);
            }
            (Program::External(program(engine_flags, "python3")), a)
        }
        EngineKind::LlamaServer => {
            let a = strings(&[
                "-m",
                req.model,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--metrics",
            ]);
            (Program::External(program(engine_flags, "llama-server")), a)
        }
        EngineKind::Sim => {
            let a = strings(&["sim-server", "--host", "127.0.0.1", "--port", &port]);
            let mut a = a;
            a.extend(strings(&["--model", req.model, "--tp", &tp]));
            (Program::Kvsweep, a)
        }
    };
    let fill = |s: &str| fill_placeholders(s, req);
    for arg in engine_flags.args.iter().chain(&mode.args) {
        args.push(fill(arg)?);
    }
    args.extend(req.extra_args.iter().cloned());
    let env = engine_flags
        .env
        .iter()
        .chain(&mode.env)
        .map(|(k, v)| Ok((k.clone(), fill(v)?)))
        .collect::<Result<_>>()?;
    Ok(Launch { program, args, env })
}

/// A recorded InferenceX launch as the cell starts it: the script's program, arguments and
/// environment, with the differences of [`crate::base::recipe::DELIBERATE_DIFFERENCES`] (the cell's port;
/// vLLM's prompt-token details) and the spec's `engine_args` last.
fn recipe_launch(req: &LaunchRequest<'_>, recipe: &Recipe) -> Result<Launch> {
    let expected = match req.engine {
        EngineKind::Vllm => "vllm",
        EngineKind::Sglang => "python3",
        other => bail!(
            "recipe `{}` is an InferenceX launch; engine {other} has none",
            recipe.name
        ),
    };
    if recipe.program != expected {
        bail!(
            "recipe `{}` starts `{}`, not {} (`{expected}`)",
            recipe.name,
            recipe.program,
            req.engine
        );
    }
    let mut args = recipe.args.clone();
    // `--port N` or `--port=N`.
    if let Some(i) = args.iter().position(|a| a == "--port")
        && let Some(value) = args.get_mut(i + 1)
    {
        *value = req.port.to_string();
    } else if let Some(arg) = args.iter_mut().find(|a| a.starts_with("--port=")) {
        *arg = format!("--port={}", req.port);
    } else {
        bail!(
            "recipe `{}` sets no `--port`: the cell could not reach its engine",
            recipe.name
        );
    }
    if req.engine == EngineKind::Vllm && !args.iter().any(|a| a == PROMPT_TOKENS_DETAILS) {
        args.push(PROMPT_TOKENS_DETAILS.into());
    }
    let mut env: Vec<(String, String)> = recipe
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if recipe.offload_from_runner {
        let runner = req.runner;
        let Some(mode) = runner.mode_flags(req.engine, req.cell.offload, req.backend) else {
            bail!(
                "runner `{}` defines no {} flags for offload `{}`, which recipe `{}` takes from it",
                runner.name,
                req.engine,
                req.cell.offload,
                recipe.name
            );
        };
        let theirs = flag_values(&args);
        let fill = |s: &str| fill_placeholders(s, req);
        let ours: Vec<String> = mode.args.iter().map(|a| fill(a)).collect::<Result<_>>()?;
        for (flag, value) in flag_values(&ours) {
            let opposite = flag
                .strip_prefix("--no-")
                .map(|f| format!("--{f}"))
                .unwrap_or_else(|| format!("--no-{}", &flag[2..]));
            let clash = match theirs.iter().find(|(f, _)| *f == flag) {
                Some((_, v)) => *v != value,
                None => theirs.iter().any(|(f, _)| *f == opposite),
            };
            if clash {
                bail!(
                    "runner `{}` sets `{flag}{}` for offload `{}`, which conflicts with recipe `{}`'s `{}`",
                    runner.name,
                    value.map(|v| format!(" {v}")).unwrap_or_default(),
                    req.cell.offload,
                    recipe.name,
                    args_of(&args, flag, &opposite)
                );
            }
        }
        args.extend(ours);
        for (k, v) in &mode.env {
            let v = fill(v)?;
            match env.iter().find(|(ek, _)| ek == k) {
                Some((_, theirs)) if *theirs != v => bail!(
                    "runner `{}` sets {k}={v} for offload `{}`, which conflicts with recipe `{}`'s {k}={theirs}",
                    runner.name,
                    req.cell.offload,
                    recipe.name
                ),
                Some(_) => {}
                None => env.push((k.clone(), v)),
            }
        }
    }
    args.extend(req.extra_args.iter().cloned());
    Ok(Launch {
        program: Program::External(recipe.program.clone()),
        args,
        env,
    })
}

/// The `--flag [value]` pairs of an argument list.
fn flag_values(args: &[String]) -> Vec<(&str, Option<&str>)> {
    args.iter()
        .enumerate()
        .filter(|(_, a)| a.starts_with("--"))
        .map(|(i, a)| {
            let value = args
                .get(i + 1)
                .filter(|v| !v.starts_with("--"))
                .map(String::as_str);
            (a.as_str(), value)
        })
        .collect()
}

/// How `flag` (or its `--no-` opposite) appears in `args`, for a message.
fn args_of(args: &[String], flag: &str, opposite: &str) -> String {
    flag_values(args)
        .into_iter()
        .find(|(f, _)| *f == flag || *f == opposite)
        .map(|(f, v)| format!("{f}{}", v.map(|v| format!(" {v}")).unwrap_or_default()))
        .unwrap_or_default()
}

/// vLLM's flag that puts cached prompt tokens into each answer's usage, which the replay reads.
pub const PROMPT_TOKENS_DETAILS: &str = "--enable-prompt-tokens-details";

/// The runner's program for the engine (`~/` expanded here), else the usual one on `PATH`.
fn program(flags: &EngineFlags, default: &str) -> String {
    flags.program.as_deref().map_or_else(
        || default.to_owned(),
        |p| expand_home(p).display().to_string(),
    )
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Fills the runner-flag placeholders listed in [`PLACEHOLDERS`].
fn fill_placeholders(value: &str, req: &LaunchRequest<'_>) -> Result<String> {
    if !value.contains("{{") {
        return Ok(value.to_owned());
    }
    let tp = f64::from(req.cell.tp);
    let budget = || {
        req.offload_gib.ok_or_else(|| {
            anyhow::anyhow!(
                "cell `{}` needs a host-memory budget for its offload tier (offload_gb or offload_dram_fraction in the spec, or --offload-gb)",
                req.cell.name
            )
        })
    };
    let mut out = value.to_owned();
    for placeholder in PLACEHOLDERS {
        if !out.contains(placeholder) {
            continue;
        }
        // Engines take whole GiB; rounding down keeps the tier inside the budget.
        let filled = match *placeholder {
            "{{offload_gib}}" => format!("{}", budget()?.floor().max(1.0) as u64),
            "{{offload_gib_per_gpu}}" => format!("{}", (budget()? / tp).floor().max(1.0) as u64),
            "{{offload_bytes_per_rank}}" => {
                format!("{}", (budget()? / tp * 1024f64.powi(3)) as u64)
            }
            "{{tp}}" => req.cell.tp.to_string(),
            other => bail!("placeholder {other} has no value"),
        };
        out = out.replace(placeholder, &filled);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::runner::RunnerSet;

    pub(super) fn cell(tp: u32, ep: u32, offload: Offload) -> Cell {
        Cell {
            name: "c".into(),
            runner: None,
            tp,
            ep,
            users: 4,
            offload,
        }
    }

    pub(super) fn launch_on(
        runner: &str,
        engine: EngineKind,
        cell: &Cell,
        gib: Option<f64>,
    ) -> Result<Launch> {
        let runners = RunnerSet::builtin().expect("runners");
        let runner = runners.get(runner).expect("runner");
        launch(&LaunchRequest {
            engine,
            model: "m",
            served_name: None,
            max_model_len: None,
            runner,
            cell,
            backend: OffloadBackend::Native,
            offload_gib: gib,
            port: 8000,
            extra_args: &[],
            recipe: None,
        })
    }

    #[test]
    fn nvidia_offload_sets_the_simple_offload_env_and_keeps_hybrid_kv() {
        let l = launch_on(
            "h200",
            EngineKind::Vllm,
            &cell(4, 0, Offload::On),
            Some(800.0),
        )
        .expect("launch");
        assert!(
            l.env
                .contains(&("VLLM_USE_SIMPLE_KV_OFFLOAD".into(), "1".into()))
        );
        let joined = l.args.join(" ");
        assert!(
            joined.contains("--kv_offloading_size 800 --no-disable-hybrid-kv-cache-manager"),
            "{joined}"
        );
        assert!(joined.contains("--tensor-parallel-size 4"), "{joined}");
    }

    #[test]
    fn amd_offload_has_no_env_var_and_disables_hybrid_kv() {
        let l = launch_on(
            "mi355x",
            EngineKind::Vllm,
            &cell(8, 8, Offload::On),
            Some(1000.5),
        )
        .expect("launch");
        assert!(l.env.iter().all(|(k, _)| k != "VLLM_USE_SIMPLE_KV_OFFLOAD"));
        let joined = l.args.join(" ");
        assert!(
            joined.contains("--kv_offloading_size 1000 --disable-hybrid-kv-cache-manager"),
            "{joined}"
        );
        assert!(joined.contains("--enable-expert-parallel"), "{joined}");
    }

    #[test]
    fn offload_on_without_a_budget_is_an_error() {
        let err = launch_on("h100", EngineKind::Vllm, &cell(2, 0, Offload::On), None)
            .expect_err("must fail");
        assert!(err.to_string().contains("host-memory budget"), "{err}");
    }

    #[test]
    fn sglang_hicache_size_is_per_gpu() {
        let l = launch_on(
            "b200",
            EngineKind::Sglang,
            &cell(4, 4, Offload::On),
            Some(1000.0),
        )
        .expect("launch");
        let joined = l.args.join(" ");
        assert!(joined.contains("--hicache-size 250"), "{joined}");
        assert!(joined.contains("--ep-size 4"), "{joined}");
    }

    #[test]
    fn simulator_runs_through_kvsweep() {
        let l = launch_on("cpu", EngineKind::Sim, &cell(2, 0, Offload::Noprefix), None)
            .expect("launch");
        assert_eq!(l.program, Program::Kvsweep);
        assert_eq!(l.args[0], "sim-server");
        assert!(l.args.ends_with(&["--prefix-caching".into(), "off".into()]));
    }

    #[test]
    fn a_recipe_starts_its_command_on_the_cells_port_with_its_env() {
        let runners = RunnerSet::builtin().expect("runners");
        let recipe = Recipe {
            name: "m_fp4_b200_vllm_mtp".into(),
            inferencex_commit: "abc".into(),
            image: "vllm/vllm-openai:x".into(),
            program: "vllm".into(),
            args: ["serve", "m", "--port", "8889", "--block-size", "256"]
                .map(String::from)
                .to_vec(),
            env: [("PYTHONHASHSEED".to_owned(), "42".to_owned())].into(),
            offload_from_runner: false,
        };
        let c = cell(8, 0, Offload::On);
        let extra = vec!["--seed".to_owned(), "1".to_owned()];
        let req = LaunchRequest {
            engine: EngineKind::Vllm,
            model: "m",
            served_name: None,
            max_model_len: None,
            runner: runners.get("b200").expect("b200"),
            cell: &c,
            backend: OffloadBackend::Native,
            offload_gib: None,
            port: 8000,
            extra_args: &extra,
            recipe: Some(&recipe),
        };
        let l = launch(&req).expect("launch");
        assert_eq!(
            l.args,
            [
                "serve",
                "m",
                "--port",
                "8000",
                "--block-size",
                "256",
                PROMPT_TOKENS_DETAILS,
                "--seed",
                "1"
            ]
        );
        assert_eq!(l.env, [("PYTHONHASHSEED".to_owned(), "42".to_owned())]);
        let sglang = launch(&LaunchRequest {
            engine: EngineKind::Sglang,
            ..req
        });
        assert!(
            sglang
                .expect_err("mismatch")
                .to_string()
                .contains("starts `vllm`")
        );

        // A native spec's recipe: the runner's offload flags join it, a clash is refused.
        let mut named = recipe.clone();
        named.offload_from_runner = true;
        let off = cell(8, 0, Offload::Noprefix);
        let l = launch(&LaunchRequest {
            recipe: Some(&named),
            cell: &off,
            extra_args: &[],
            ..req
        })
        .expect("noprefix");
        assert!(
            l.args.iter().any(|a| a == "--no-enable-prefix-caching"),
            "{:?}",
            l.args
        );
        named.args.push("--enable-prefix-caching".into());
        let err = launch(&LaunchRequest {
            recipe: Some(&named),
            cell: &off,
            extra_args: &[],
            ..req
        })
        .expect_err("clash");
        let msg = err.to_string();
        assert!(
            msg.contains("runner `b200` sets `--no-enable-prefix-caching`"),
            "{msg}"
        );
        assert!(
            msg.contains("recipe `m_fp4_b200_vllm_mtp`'s `--enable-prefix-caching`"),
            "{msg}"
        );
    }
}
