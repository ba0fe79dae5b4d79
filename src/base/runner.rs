//! Hardware runners: one YAML file per kind of machine a cell can run on (`runners/*.yaml`).
//!
//! A runner says what the node has (GPUs, HBM, host DRAM), how to reach it (Slurm GRES, GitHub
//! labels), how engines are started there (container runtime, default images) and, for each engine
//! and offload mode, the exact engine flags and environment. Keeping the flags here, as data, means a
//! new vLLM release or a new vendor quirk is a YAML edit, not a code change.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::base::economics::Economics;
use crate::base::kinds::{EngineKind, Offload, OffloadBackend};
use crate::base::yaml::{SpecError, YamlDoc};

/// The runner files built into the binary, so `kvsweep` works outside a checkout.
const BUILTIN: &[(&str, &str)] = &[
    ("b200", include_str!("../../runners/b200.yaml")),
    ("cpu", include_str!("../../runners/cpu.yaml")),
    ("h100", include_str!("../../runners/h100.yaml")),
    ("h200", include_str!("../../runners/h200.yaml")),
    ("mi355x", include_str!("../../runners/mi355x.yaml")),
];

/// Placeholders a runner's flags may use; render substitutes them per cell.
pub(crate) const PLACEHOLDERS: &[&str] = &[
    "{{offload_gib}}",
    "{{offload_gib_per_gpu}}",
    "{{offload_bytes_per_rank}}",
    "{{tp}}",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Nvidia,
    Amd,
    /// No accelerator: the simulator or llama.cpp on the host CPU.
    Cpu,
}

/// How the engine process is started on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    Docker,
    /// enroot through Slurm's pyxis plugin (`srun --container-image`).
    Enroot,
    /// The engine binary runs directly on the host.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runner {
    pub name: String,
    pub vendor: Vendor,
    /// Human-readable accelerator name, for report titles.
    pub gpu: String,
    pub gpus_per_node: u32,
    pub(crate) hbm_gb_per_gpu: f64,
    pub hbm_bandwidth_tb_s: f64,
    /// Dense BF16 peak per GPU, for the simulator's roofline.
    pub(crate) bf16_tflops: f64,
    pub(crate) host_dram_gb: f64,
    /// Host↔GPU copy bandwidth per GPU in practice (GB/s), for the offload-tier model.
    pub(crate) host_link_gb_s: f64,
    pub slurm: SlurmSettings,
    pub container: ContainerRuntime,
    pub github: GithubSettings,
    /// Default container image per engine, used when a spec gives none.
    #[serde(default)]
    pub images: IndexMap<EngineKind, String>,
    /// The engines this runner can start, with their flags.
    pub engines: IndexMap<EngineKind, EngineFlags>,
    /// Price per GPU-hour and power per GPU, with their sources; `None` for a machine nobody
    /// rents by the GPU-hour (a laptop, a CI runner): its cells get no cost or energy figures.
    #[serde(default)]
    pub economics: Option<Economics>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// Typed GRES (`gpu:<type>:N`): clusters that declare typed GPUs reject an untyped request.
    pub gres_type: Option<String>,
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    /// Nodes known to fail pinned host allocations (cudaMallocHost/mlock).
    #[serde(default)]
    pub(crate) exclude_nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSettings {
    /// `runs-on` labels of the GitHub Actions runners of this kind.
    pub labels: Vec<String>,
}

/// Flags and environment one engine needs on this runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFlags {
    /// The engine's executable where it is not the usual one on `PATH` (a bare engine installed
    /// in a virtual environment of its own). A leading `~/` is the home directory of the machine
    /// that renders the cell.
    #[serde(default)]
    pub program: Option<String>,
    /// The engine release these flags were last checked against by the engine's own argument
    /// parser and config validation (`tests/it/vllm.rs` for vLLM), e.g. `vllm 0.32.0`.
    #[serde(default)]
    pub checked_with: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: IndexMap<String, String>,
    pub offload: OffloadFlags,
}

/// Flags per offload mode; `on` is further split by offload backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadFlags {
    #[serde(default)]
    pub off: Option<ModeFlags>,
    #[serde(default)]
    pub noprefix: Option<ModeFlags>,
    #[serde(default)]
    pub on: IndexMap<OffloadBackend, ModeFlags>,
    /// Modes this engine cannot run on this runner, with the reason: a spec asking for one is
    /// refused when it is checked, instead of an engine that dies minutes into its start-up.
    #[serde(default)]
    pub(crate) unsupported: IndexMap<Offload, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeFlags {
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: IndexMap<String, String>,
}

impl Runner {
    /// The flags for one offload mode, or `None` when this runner cannot run that combination.
    pub(crate) fn mode_flags(
        &self,
        engine: EngineKind,
        offload: Offload,
        backend: OffloadBackend,
    ) -> Option<&ModeFlags> {
        let flags = &self.engines.get(&engine)?.offload;
        match offload {
            Offload::Off => flags.off.as_ref(),
            Offload::Noprefix => flags.noprefix.as_ref(),
            Offload::On => flags.on.get(&backend),
        }
    }

    /// Why this runner cannot run `engine` in `offload` mode, where its file says.
    pub(crate) fn unsupported_reason(&self, engine: EngineKind, offload: Offload) -> Option<&str> {
        let flags = &self.engines.get(&engine)?.offload;
        flags.unsupported.get(&offload).map(String::as_str)
    }

    fn check(&self, doc: &YamlDoc, stem: &str) -> Result<(), SpecError> {
        if self.name != stem {
            return Err(doc.error(
                "name",
                format!(
                    "runner name `{}` must match its file name `{stem}`",
                    self.name
                ),
            ));
        }
        if self.gpus_per_node == 0 {
            return Err(doc.error("gpus_per_node", "must be at least 1"));
        }
        if let Some((field, value)) = self.economics.as_ref().and_then(Economics::invalid_figure) {
            return Err(doc.error(
                &format!("economics.{field}"),
                format!("{value} must be a positive number"),
            ));
        }
        if self.github.labels.is_empty() {
            return Err(doc.error("github.labels", "needs at least one runs-on label"));
        }
        for (engine, flags) in &self.engines {
            let base = format!("engines.{engine}");
            check_placeholders(doc, &format!("{base}.args"), &flags.args)?;
            for offload in flags.offload.unsupported.keys() {
                let defined = match offload {
                    Offload::Off => flags.offload.off.is_some(),
                    Offload::Noprefix => flags.offload.noprefix.is_some(),
                    Offload::On => !flags.offload.on.is_empty(),
                };
                if defined {
                    return Err(doc.error(
                        &format!("{base}.offload.unsupported.{offload}"),
                        format!(
                            "offload `{offload}` has flags above: it cannot also be unsupported"
                        ),
                    ));
                }
            }
            let modes = [
                ("off", flags.offload.off.as_ref()),
                ("noprefix", flags.offload.noprefix.as_ref()),
            ]
            .into_iter()
            .filter_map(|(name, m)| m.map(|m| (name.to_owned(), m)))
            .chain(flags.offload.on.iter().map(|(b, m)| (format!("on.{b}"), m)));
            for (mode, m) in modes {
                let field = format!("{base}.offload.{mode}");
                check_placeholders(doc, &format!("{field}.args"), &m.args)?;
                let values: Vec<String> = m.env.values().cloned().collect();
                check_placeholders(doc, &format!("{field}.env"), &values)?;
            }
        }
        Ok(())
    }
}

/// Rejects `{{name}}` placeholders that render would not fill.
fn check_placeholders(doc: &YamlDoc, field: &str, values: &[String]) -> Result<(), SpecError> {
    for (i, value) in values.iter().enumerate() {
        let mut rest = value.as_str();
        while let Some(start) = rest.find("{{") {
            let tail = &rest[start..];
            let end = tail.find("}}").map_or(tail.len(), |e| e + 2);
            let placeholder = &tail[..end];
            if !PLACEHOLDERS.contains(&placeholder) {
                return Err(doc.error(
                    &format!("{field}[{i}]"),
                    format!(
                        "unknown placeholder `{placeholder}`; known: {}",
                        PLACEHOLDERS.join(", ")
                    ),
                ));
            }
            rest = &tail[end..];
        }
    }
    Ok(())
}

/// The runners a command can use: the built-in ones, or those of a `--runners-dir`.
#[derive(Debug, Clone)]
pub struct RunnerSet {
    runners: Vec<Runner>,
}

impl RunnerSet {
    /// Loads `dir/*.yaml` when given, else the runner files built into the binary.
    pub fn load(dir: Option<&Path>) -> Result<Self, SpecError> {
        match dir {
            Some(dir) => Self::from_dir(dir),
            None => Self::builtin(),
        }
    }

    pub fn builtin() -> Result<Self, SpecError> {
        let runners = BUILTIN
            .iter()
            .map(|(stem, text)| {
                let path = PathBuf::from(format!("runners/{stem}.yaml"));
                parse_runner(YamlDoc::from_text(&path, (*text).to_owned())?, stem)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { runners })
    }

    fn from_dir(dir: &Path) -> Result<Self, SpecError> {
        let unreadable = |e: std::io::Error| SpecError {
            file: dir.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read runners directory: {e}"),
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(unreadable)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
            })
            .collect();
        paths.sort();
        let runners = paths
            .iter()
            .map(|path| {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                parse_runner(YamlDoc::read(path)?, stem)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { runners })
    }

    pub fn get(&self, name: &str) -> Option<&Runner> {
        self.runners.iter().find(|r| r.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.runners.iter().map(|r| r.name.as_str()).collect()
    }
}

fn parse_runner(doc: YamlDoc, stem: &str) -> Result<Runner, SpecError> {
    let runner: Runner = doc.parse()?;
    runner.check(&doc, stem)?;
    Ok(runner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_runners_load() {
        let set = RunnerSet::builtin().expect("built-in runners are valid");
        assert_eq!(set.names(), ["b200", "cpu", "h100", "h200", "mi355x"]);
    }

    #[test]
    fn unknown_placeholder_is_rejected_with_its_location() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text =
            include_str!("../../runners/h200.yaml").replace("{{offload_gib}}", "{{offload_gigs}}");
        std::fs::write(dir.path().join("h200.yaml"), text).expect("write");
        let err = RunnerSet::from_dir(dir.path()).expect_err("must fail");
        assert!(
            err.message
                .contains("unknown placeholder `{{offload_gigs}}`"),
            "{err}"
        );
        assert!(
            err.field
                .starts_with("engines.vllm.offload.on.native.args["),
            "{err}"
        );
        assert!(err.line > 1, "{err}");
    }

    #[test]
    fn a_mode_cannot_have_flags_and_be_unsupported() {
        let set = RunnerSet::builtin().expect("built-in runners");
        let cpu = set.get("cpu").expect("cpu");
        let why = cpu
            .unsupported_reason(EngineKind::Vllm, Offload::On)
            .expect("vLLM offload is unsupported on CPU");
        assert!(why.contains("only supported on CUDA-alike"), "{why}");
        assert_eq!(cpu.unsupported_reason(EngineKind::Vllm, Offload::Off), None);

        let dir = tempfile::tempdir().expect("tempdir");
        let text = include_str!("../../runners/cpu.yaml").replace("\"on\": >-", "off: >-");
        std::fs::write(dir.path().join("cpu.yaml"), text).expect("write");
        let err = RunnerSet::from_dir(dir.path()).expect_err("must fail");
        assert_eq!(err.field, "engines.vllm.offload.unsupported.off", "{err}");
        assert!(err.message.contains("cannot also be unsupported"), "{err}");
    }

    #[test]
    fn gpu_runners_carry_sourced_prices_and_power() {
        let set = RunnerSet::builtin().expect("built-in runners");
        for name in ["b200", "h100", "h200", "mi355x"] {
            let e = set.get(name).and_then(|r| r.economics.as_ref());
            let e = e.unwrap_or_else(|| panic!("{name} has no economics"));
            assert_eq!(e.invalid_figure(), None, "{name}");
            for kind in crate::base::economics::PriceKind::ALL {
                let p = e.prices.get(kind);
                assert!(
                    !p.source.is_empty() && !p.date.is_empty(),
                    "{name} {kind:?}"
                );
            }
        }
        let mi355x = set.get("mi355x").and_then(|r| r.economics.as_ref());
        assert_eq!(mi355x.map(|e| e.power.kw_per_gpu), Some(2.65));
        assert_eq!(set.get("cpu").map(|r| r.economics.is_some()), Some(false));
    }

    #[test]
    fn a_price_that_is_not_positive_is_named_with_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = include_str!("../../runners/h200.yaml")
            .replace("usd_per_gpu_hour: 1.74", "usd_per_gpu_hour: 0");
        std::fs::write(dir.path().join("h200.yaml"), text).expect("write");
        let err = RunnerSet::from_dir(dir.path()).expect_err("must fail");
        assert_eq!(
            err.field, "economics.prices.neocloud.usd_per_gpu_hour",
            "{err}"
        );
        assert_eq!(err.line, 72, "{err}");
        let text = include_str!("../../runners/h200.yaml").replace("    date: \"2026-04\"\n", "");
        std::fs::write(dir.path().join("h200.yaml"), text).expect("write");
        let err = RunnerSet::from_dir(dir.path()).expect_err("must fail");
        assert!(err.message.contains("missing field `date`"), "{err}");
    }

    #[test]
    fn runner_name_must_match_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("x200.yaml"),
            include_str!("../../runners/h200.yaml"),
        )
        .expect("write");
        let err = RunnerSet::from_dir(dir.path()).expect_err("must fail");
        assert_eq!(err.field, "name");
        assert_eq!(err.line, 3, "{err}");
    }
}
