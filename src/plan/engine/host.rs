//! How the engine command runs on the host: inside the runner's container (Docker or Enroot via
//! `srun --container-image`) or as it is, as one list of words that the rendered script prints
//! with shell variables and `run-cell` starts with their values.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Launch, Program};
use crate::base::runner::{ContainerRuntime, Runner, Vendor};

/// A value the rendered script holds in a shell variable and `run-cell` knows itself, so that
/// both print and start one command ([`host_command`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVar {
    /// The engine's Docker container (`$ENGINE_CONTAINER`).
    ContainerName,
    /// The Hugging Face cache on the host (`${HF_HOME:-$HOME/.cache/huggingface}`).
    HfHome,
    /// The squashed enroot image (`$SQSH`), imported once per node.
    EnrootImage,
    /// This kvsweep binary (`$KVSWEEP`), for the simulator.
    Kvsweep,
}

impl HostVar {
    /// How the script writes it: quoted, so a value with spaces stays one word.
    fn shell(self) -> &'static str {
        match self {
            HostVar::ContainerName => "\"$ENGINE_CONTAINER\"",
            HostVar::HfHome => "\"${HF_HOME:-$HOME/.cache/huggingface}\"",
            HostVar::EnrootImage => "\"$SQSH\"",
            HostVar::Kvsweep => "\"$KVSWEEP\"",
        }
    }
}

/// One piece of a command-line word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Var(HostVar),
}

/// One word of a host command: literal text and [`HostVar`]s, joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word(pub Vec<Part>);

impl Word {
    fn text(s: impl Into<String>) -> Self {
        Word(vec![Part::Text(s.into())])
    }

    fn var(v: HostVar) -> Self {
        Word(vec![Part::Var(v)])
    }

    /// The word as a POSIX shell reads it back: text quoted, variables expanded.
    pub fn shell(&self) -> Result<String> {
        self.0
            .iter()
            .map(|p| match p {
                Part::Text(t) if t.contains(['\n', '\r', '\t']) => Ok(ansi_c_quote(t)),
                Part::Text(t) => shlex::try_quote(t)
                    .map(|q| q.into_owned())
                    .with_context(|| format!("cannot shell-quote {t:?}")),
                Part::Var(v) => Ok(v.shell().to_owned()),
            })
            .collect()
    }

    /// The word with the variables' values.
    fn resolve(&self, values: &HostValues) -> Result<String> {
        self.0
            .iter()
            .map(|p| match p {
                Part::Text(t) => Ok(t.clone()),
                Part::Var(v) => values.get(*v),
            })
            .collect()
    }
}

/// Bash's `$'...'` quoting, for a word with line breaks (a pretty-printed JSON config): the
/// script keeps one line per flag, and bash reads the same bytes back.
fn ansi_c_quote(text: &str) -> String {
    let mut out = String::from("$'");
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// What `run-cell` puts where the script has a [`HostVar`].
#[derive(Debug, Clone)]
pub struct HostValues {
    pub container_name: String,
    pub hf_home: PathBuf,
    /// `KVSWEEP_ENROOT_SQSH`, which `kvsweep slurm submit` sets after importing the image.
    pub enroot_image: Option<String>,
    pub kvsweep: PathBuf,
}

impl HostValues {
    /// This host's values: `$HF_HOME` (else `~/.cache/huggingface`) and `KVSWEEP_ENROOT_SQSH`.
    pub fn here(container_name: &str, kvsweep: &Path) -> Self {
        let hf_home = std::env::var_os("HF_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/huggingface")
            });
        HostValues {
            container_name: container_name.to_owned(),
            hf_home,
            enroot_image: std::env::var("KVSWEEP_ENROOT_SQSH").ok(),
            kvsweep: kvsweep.to_path_buf(),
        }
    }

    fn get(&self, var: HostVar) -> Result<String> {
        Ok(match var {
            HostVar::ContainerName => self.container_name.clone(),
            HostVar::HfHome => self.hf_home.display().to_string(),
            HostVar::EnrootImage => self.enroot_image.clone().context(
                "an enroot runner needs the imported image in KVSWEEP_ENROOT_SQSH: run the cell through `kvsweep slurm submit`, which imports it",
            )?,
            HostVar::Kvsweep => self.kvsweep.display().to_string(),
        })
    }
}

/// An engine command on this host: the program, wrapped in the runner's container, as lines
/// of words (a flag with its value on one line) for people reading the script.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCommand {
    pub lines: Vec<Vec<Word>>,
    /// The engine's environment (inside the command already); kept to redact its secrets.
    pub env: Vec<(String, String)>,
    /// Whether the engine runs in a Docker container named [`HostVar::ContainerName`].
    pub docker: bool,
}

impl HostCommand {
    /// The command's lines as the script prints them.
    pub(crate) fn shell_lines(&self) -> Result<Vec<String>> {
        self.lines
            .iter()
            .map(|line| {
                Ok(line
                    .iter()
                    .map(Word::shell)
                    .collect::<Result<Vec<_>>>()?
                    .join(" "))
            })
            .collect()
    }

    /// The argv `run-cell` starts, with this host's values.
    pub fn argv(&self, values: &HostValues) -> Result<Vec<String>> {
        self.lines
            .iter()
            .flatten()
            .map(|w| w.resolve(values))
            .collect()
    }
}

/// Wraps a launch for the runner's container runtime: Docker (`docker run` with the vendor's
/// device flags), enroot through Slurm's pyxis plugin (the squashed image that the script, or
/// `kvsweep slurm submit`, imports), or bare (`env` sets the engine's variables). The one
/// definition of the engine start: the rendered script prints it, `run-cell` starts it.
pub fn host_command(launch: &Launch, runner: &Runner, image: Option<&str>) -> Result<HostCommand> {
    let program = match &launch.program {
        Program::External(p) => Word::text(p),
        Program::Kvsweep if runner.container == ContainerRuntime::None => {
            Word::var(HostVar::Kvsweep)
        }
        Program::Kvsweep => bail!(
            "the simulator runs on the host, but runner `{}` starts engines in containers",
            runner.name
        ),
    };
    let texts = |items: &[&str]| items.iter().map(|s| Word::text(*s)).collect::<Vec<_>>();
    let hf_mount = Word(vec![
        Part::Var(HostVar::HfHome),
        Part::Text(":/root/.cache/huggingface".into()),
    ]);
    let needs_image = || {
        image.with_context(|| {
            format!(
                "runner `{}` starts engines in containers but no image was given",
                runner.name
            )
        })
    };
    let env_words = || {
        launch
            .env
            .iter()
            .map(|(k, v)| Word::text(format!("{k}={v}")))
    };
    let mut lines: Vec<Vec<Word>> = Vec::new();
    match runner.container {
        ContainerRuntime::Docker => {
            let image = needs_image()?;
            let mut first = texts(&["docker", "run", "--rm", "--init", "--name"]);
            first.push(Word::var(HostVar::ContainerName));
            first.extend(texts(&["--network", "host", "--ipc", "host"]));
            lines.push(first);
            match runner.vendor {
                Vendor::Nvidia => lines.push(texts(&["--gpus", "all"])),
                Vendor::Amd => lines.push(texts(&[
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
            lines.push(vec![
                Word::text("-v"),
                hf_mount,
                Word::text("-e"),
                Word::text("HF_TOKEN"),
            ]);
            lines.extend(env_words().map(|kv| vec![Word::text("-e"), kv]));
            lines.push(vec![Word::text("--entrypoint"), program, Word::text(image)]);
        }
        ContainerRuntime::Enroot => {
            needs_image()?;
            lines.push(vec![
                Word::text("srun"),
                Word::text("--overlap"),
                Word::text("--ntasks=1"),
                Word(vec![
                    Part::Text("--container-image=".into()),
                    Part::Var(HostVar::EnrootImage),
                ]),
                Word::text("--no-container-mount-home"),
            ]);
            let mut mounts = vec![Part::Text("--container-mounts=".into())];
            mounts.extend(hf_mount.0);
            lines.push(vec![Word(mounts)]);
            lines.push(vec![Word::text("env")]);
            lines.extend(env_words().map(|kv| vec![kv]));
            lines.push(vec![program]);
        }
        ContainerRuntime::None => {
            lines.push(vec![Word::text("env")]);
            lines.extend(env_words().map(|kv| vec![kv]));
            lines.push(vec![program]);
        }
    }
    lines.extend(
        group_flags(&launch.args)
            .into_iter()
            .map(|g| g.into_iter().map(Word::text).collect()),
    );
    Ok(HostCommand {
        lines,
        env: launch.env.clone(),
        docker: runner.container == ContainerRuntime::Docker,
    })
}

/// Groups an argument list into lines for people: a flag with its value, or a lone word.
fn group_flags(args: &[String]) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for arg in args {
        match groups.last_mut() {
            Some(last) if last.len() == 1 && last[0].starts_with('-') && !arg.starts_with('-') => {
                last.push(arg.clone());
            }
            _ => groups.push(vec![arg.clone()]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cell, launch_on};
    use super::*;
    use crate::base::kinds::{EngineKind, Offload};
    use crate::base::runner::RunnerSet;

    fn host_on(runner: &str, engine: EngineKind, image: Option<&str>) -> Result<Vec<String>> {
        let runners = RunnerSet::builtin().expect("runners");
        let runner = runners.get(runner).expect("runner");
        let l = launch_on(&runner.name, engine, &cell(2, 0, Offload::On), Some(100.0))?;
        let values = HostValues {
            container_name: "kvsweep-c-1".into(),
            hf_home: PathBuf::from("/hf"),
            enroot_image: Some("/cache/img.sqsh".into()),
            kvsweep: PathBuf::from("/opt/kvsweep"),
        };
        host_command(&l, runner, image)?.argv(&values)
    }

    #[test]
    fn docker_runs_the_engine_with_the_vendor_devices_and_env_inside() {
        let h = host_on("b200", EngineKind::Vllm, Some("vllm/vllm-openai:v1")).expect("cmd");
        let joined = h.join(" ");
        assert!(
            joined.starts_with("docker run --rm --init --name kvsweep-c-1"),
            "{joined}"
        );
        assert!(joined.contains("--gpus all"), "{joined}");
        assert!(
            joined.contains("-v /hf:/root/.cache/huggingface"),
            "{joined}"
        );
        assert!(
            joined.contains("-e VLLM_USE_SIMPLE_KV_OFFLOAD=1"),
            "{joined}"
        );
        assert!(
            joined.contains("--entrypoint vllm vllm/vllm-openai:v1 serve"),
            "{joined}"
        );

        let amd = host_on("mi355x", EngineKind::Vllm, Some("rocm/vllm:v1")).expect("cmd");
        let joined = amd.join(" ");
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
    fn enroot_runs_the_imported_image_and_the_script_prints_its_variable() {
        let h = host_on("h200", EngineKind::Vllm, Some("vllm/vllm-openai:v1")).expect("cmd");
        assert_eq!(h[..3], ["srun", "--overlap", "--ntasks=1"]);
        assert_eq!(h[3], "--container-image=/cache/img.sqsh");
        let runners = RunnerSet::builtin().expect("runners");
        let l = launch_on("h200", EngineKind::Vllm, &cell(2, 0, Offload::Off), None).expect("l");
        let cmd = host_command(&l, runners.get("h200").expect("h200"), Some("i")).expect("cmd");
        let lines = cmd.shell_lines().expect("shell");
        // The script's variables, quoted, where run-cell puts its values.
        assert!(lines[0].starts_with("srun --overlap"), "{}", lines[0]);
        assert!(
            lines[0].contains("--container-image='\"$SQSH\""),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("\"${HF_HOME:-$HOME/.cache/huggingface}\":/root/.cache/huggingface"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn bare_engines_get_their_env_and_the_simulator_is_this_binary() {
        let h = host_on("cpu", EngineKind::Sim, None).expect("cmd");
        assert_eq!(h[0], "env");
        let at = h
            .iter()
            .position(|w| w == "/opt/kvsweep")
            .expect("the binary");
        assert_eq!(h[at + 1], "sim-server");
    }
}
