//! Inference engines: how each one is started, checked and reset.
//!
//! The command line for a cell is built here once, from the runner's flags, and used both by the
//! rendered runner script and (later) by `run-cell`, so the two can never disagree.

pub mod process;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

pub use crate::kinds::EngineKind;
use crate::kinds::{Offload, OffloadBackend};
use crate::matrix_cell::Cell;
use crate::paths::expand_home;
use crate::runner::{ContainerRuntime, EngineFlags, PLACEHOLDERS, Runner, Vendor};

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
}

/// Builds the engine command for a cell: the engine's own flags, then the runner's flags for the
/// engine, then the runner's flags for the cell's offload mode, then the spec's `engine_args`.
pub fn launch(req: &LaunchRequest<'_>) -> Result<Launch> {
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

/// An engine command ready to run on this host: the program, wrapped in the runner's container.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCommand {
    pub argv: Vec<String>,
    /// Added to the environment of `argv` itself (bare engines; containers get theirs inside).
    pub env: Vec<(String, String)>,
    pub docker_container: Option<String>,
}

/// Wraps a launch for the runner's container runtime, as `templates/run-cell.sh.j2` does:
/// Docker (`docker run` with the vendor's device flags), enroot through Slurm's pyxis plugin
/// (the squashed image in `KVSWEEP_ENROOT_SQSH`, which `kvsweep slurm submit` imports), or bare.
pub fn host_command(
    launch: &Launch,
    runner: &Runner,
    image: Option<&str>,
    kvsweep: &Path,
    container_name: &str,
) -> Result<HostCommand> {
    let program = match &launch.program {
        Program::External(p) => p.clone(),
        Program::Kvsweep if runner.container == ContainerRuntime::None => {
            kvsweep.display().to_string()
        }
        Program::Kvsweep => bail!(
            "the simulator runs on the host, but runner `{}` starts engines in containers",
            runner.name
        ),
    };
    let hf_home = std::env::var_os("HF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/huggingface")
        });
    let hf_mount = format!("{}:/root/.cache/huggingface", hf_home.display());
    let needs_image = || {
        image.with_context(|| {
            format!(
                "runner `{}` starts engines in containers but no image was given",
                runner.name
            )
        })
    };
    let mut argv: Vec<String> = Vec::new();
    let mut env = Vec::new();
    let mut docker_container = None;
    match runner.container {
        ContainerRuntime::Docker => {
            let image = needs_image()?;
            argv.extend(strings(&[
                "docker",
                "run",
                "--rm",
                "--init",
                "--name",
                container_name,
                "--network",
                "host",
                "--ipc",
                "host",
            ]));
            match runner.vendor {
                Vendor::Nvidia => argv.extend(strings(&["--gpus", "all"])),
                Vendor::Amd => argv.extend(strings(&[
                    "--device",
                    "/dev/kfd",
                    "--device",
                    "/dev/dri",
                    "--group-add",
                    "video",
                    "--security-opt",
                    "seccomp=unconfined",
                ])),
                Vendor::Cpu => {}
            }
            argv.extend(["-v".into(), hf_mount, "-e".into(), "HF_TOKEN".into()]);
            for (k, v) in &launch.env {
                argv.extend(["-e".into(), format!("{k}={v}")]);
            }
            argv.extend(["--entrypoint".into(), program, image.to_owned()]);
            docker_container = Some(container_name.to_owned());
        }
        ContainerRuntime::Enroot => {
            needs_image()?;
            let sqsh = std::env::var("KVSWEEP_ENROOT_SQSH").context(
                "an enroot runner needs the imported image in KVSWEEP_ENROOT_SQSH: run the cell through `kvsweep slurm submit`, which imports it",
            )?;
            argv.extend(strings(&[
                "srun",
                "--overlap",
                "--ntasks=1",
                &format!("--container-image={sqsh}"),
                "--no-container-mount-home",
                &format!("--container-mounts={hf_mount}"),
                "env",
            ]));
            argv.extend(launch.env.iter().map(|(k, v)| format!("{k}={v}")));
            argv.push(program);
        }
        ContainerRuntime::None => {
            argv.push(program);
            env.clone_from(&launch.env);
        }
    }
    argv.extend(launch.args.iter().cloned());
    Ok(HostCommand {
        argv,
        env,
        docker_container,
    })
}

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
    use crate::runner::RunnerSet;

    fn cell(tp: u32, ep: u32, offload: Offload) -> Cell {
        Cell {
            name: "c".into(),
            runner: None,
            tp,
            ep,
            users: 4,
            offload,
        }
    }

    fn launch_on(
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

    fn host_on(runner: &str, engine: EngineKind, image: Option<&str>) -> Result<HostCommand> {
        let runners = RunnerSet::builtin().expect("runners");
        let runner = runners.get(runner).expect("runner");
        let l = launch_on(&runner.name, engine, &cell(2, 0, Offload::On), Some(100.0))?;
        host_command(&l, runner, image, Path::new("/opt/kvsweep"), "kvsweep-c-1")
    }

    #[test]
    fn docker_runs_the_engine_with_the_vendor_devices_and_env_inside() {
        let h = host_on("b200", EngineKind::Vllm, Some("vllm/vllm-openai:v1")).expect("cmd");
        let joined = h.argv.join(" ");
        assert!(
            joined.starts_with("docker run --rm --init --name kvsweep-c-1"),
            "{joined}"
        );
        assert!(joined.contains("--gpus all"), "{joined}");
        assert!(
            joined.contains("-e VLLM_USE_SIMPLE_KV_OFFLOAD=1"),
            "{joined}"
        );
        assert!(
            joined.contains("--entrypoint vllm vllm/vllm-openai:v1 serve"),
            "{joined}"
        );
        assert!(h.env.is_empty(), "the container gets the env, not docker");
        assert_eq!(h.docker_container.as_deref(), Some("kvsweep-c-1"));

        let amd = host_on("mi355x", EngineKind::Vllm, Some("rocm/vllm:v1")).expect("cmd");
        let joined = amd.argv.join(" ");
        assert!(
            joined.contains("--device /dev/kfd --device /dev/dri"),
            "{joined}"
        );
        assert!(!joined.contains("--gpus"), "{joined}");
        assert!(
            host_on("b200", EngineKind::Vllm, None).is_err(),
            "an image is required"
        );
    }

    #[test]
    fn bare_engines_get_their_env_and_the_simulator_is_this_binary() {
        let h = host_on("cpu", EngineKind::Sim, None).expect("cmd");
        assert_eq!(h.argv[0], "/opt/kvsweep");
        assert_eq!(h.argv[1], "sim-server");
        assert_eq!(h.docker_container, None);
    }
}
