//! GPU telemetry beside the server metrics: utilization, memory and power per GPU into `gpu.csv`.
//!
//! The vendor tools are the only interface every driver install has, so each interval runs the
//! first of `nvidia-smi`, `amd-smi` or `rocm-smi` found on `PATH` and parses its machine-readable
//! output. A sample that fails or times out is counted, not fatal: telemetry must never fail a cell.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::data::artifact::CsvLog;

/// Columns of `gpu.csv`; documented in README.md ("Server metrics").
pub const COLUMNS: &[&str] = &[
    "time",
    "gpu",
    "util_pct",
    "mem_used_mib",
    "mem_total_mib",
    "power_w",
];

/// A vendor telemetry tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the tools are named so: nvidia-smi, amd-smi, rocm-smi
pub(crate) enum GpuTool {
    NvidiaSmi,
    AmdSmi,
    RocmSmi,
}

impl GpuTool {
    const ALL: [GpuTool; 3] = [GpuTool::NvidiaSmi, GpuTool::AmdSmi, GpuTool::RocmSmi];

    pub fn name(self) -> &'static str {
        match self {
            GpuTool::NvidiaSmi => "nvidia-smi",
            GpuTool::AmdSmi => "amd-smi",
            GpuTool::RocmSmi => "rocm-smi",
        }
    }

    /// The arguments that print one sample of every visible GPU.
    fn args(self) -> Vec<String> {
        match self {
            GpuTool::NvidiaSmi => {
                let mut args = vec![
                    "--query-gpu=index,utilization.gpu,memory.used,memory.total,power.draw".into(),
                    "--format=csv,noheader,nounits".into(),
                ];
                // Only the GPUs this cell was given, where the scheduler said which.
                if let Ok(ids) = std::env::var("CUDA_VISIBLE_DEVICES")
                    && !ids.is_empty()
                    && ids.split(',').all(|i| i.trim().parse::<u32>().is_ok())
                {
                    args.push(format!("--id={ids}"));
                }
                args
            }
            GpuTool::AmdSmi => ["metric", "--usage", "--power", "--mem-usage", "--json"]
                .map(String::from)
                .to_vec(),
            GpuTool::RocmSmi => [
                "--showuse",
                "--showpower",
                "--showmeminfo",
                "vram",
                "--json",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// Parses the tool's output into one sample per GPU.
    pub fn parse(self, out: &str) -> Result<Vec<GpuSample>> {
        let samples = match self {
            GpuTool::NvidiaSmi => parse_nvidia(out)?,
            GpuTool::AmdSmi => parse_amd_smi(out)?,
            GpuTool::RocmSmi => parse_rocm_smi(out)?,
        };
        if samples.is_empty() {
            bail!("{} printed no GPU", self.name());
        }
        Ok(samples)
    }
}

/// One GPU at one moment; `None` where the tool reported the value as unsupported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GpuSample {
    pub gpu: String,
    pub util_pct: Option<f64>,
    pub mem_used_mib: Option<f64>,
    pub mem_total_mib: Option<f64>,
    pub power_w: Option<f64>,
}

/// `nvidia-smi --format=csv,noheader,nounits`: `0, 45, 1234, 81559, 350.12`; `[N/A]` where unsupported.
fn parse_nvidia(out: &str) -> Result<Vec<GpuSample>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 5 {
                bail!(
                    "nvidia-smi line `{line}` has {} fields, expected 5",
                    f.len()
                );
            }
            let num = |s: &str| s.parse::<f64>().ok();
            Ok(GpuSample {
                gpu: f[0].to_owned(),
                util_pct: num(f[1]),
                mem_used_mib: num(f[2]),
                mem_total_mib: num(f[3]),
                power_w: num(f[4]),
            })
        })
        .collect()
}

/// A number that amd-smi prints either bare or as `{"value": V, "unit": U}`, in MiB for memory.
fn amd_value(v: Option<&Value>) -> Option<f64> {
    let v = v?;
    let (value, unit) = match v {
        Value::Object(o) => (o.get("value")?, o.get("unit").and_then(Value::as_str)),
        other => (other, None),
    };
    let n = value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))?;
    Some(match unit {
        Some("GB") => n * 1024.0,
        Some("B") => n / (1024.0 * 1024.0),
        _ => n,
    })
}

/// `amd-smi metric --json`: a list of GPUs (older releases) or `{"gpu_data": [...]}` (newer).
fn parse_amd_smi(out: &str) -> Result<Vec<GpuSample>> {
    let doc: Value = serde_json::from_str(out).context("amd-smi did not print JSON")?;
    let gpus = doc
        .get("gpu_data")
        .unwrap_or(&doc)
        .as_array()
        .context("amd-smi JSON is not a list of GPUs")?;
    Ok(gpus
        .iter()
        .enumerate()
        .map(|(i, g)| GpuSample {
            gpu: g
                .get("gpu")
                .map_or_else(|| i.to_string(), |v| v.to_string()),
            util_pct: amd_value(g.pointer("/usage/gfx_activity")),
            mem_used_mib: amd_value(g.pointer("/mem_usage/used_vram")),
            mem_total_mib: amd_value(g.pointer("/mem_usage/total_vram")),
            power_w: amd_value(g.pointer("/power/socket_power")),
        })
        .collect())
}

/// `rocm-smi --json`: `{"card0": {"GPU use (%)": "12", "... Power (W)": "150.0", ...}}`.
fn parse_rocm_smi(out: &str) -> Result<Vec<GpuSample>> {
    let doc: Value = serde_json::from_str(out).context("rocm-smi did not print JSON")?;
    let cards = doc.as_object().context("rocm-smi JSON is not an object")?;
    Ok(cards
        .iter()
        .filter(|(k, _)| k.starts_with("card"))
        .map(|(card, fields)| {
            let find = |pred: &dyn Fn(&str) -> bool| {
                fields.as_object().and_then(|o| {
                    o.iter()
                        .find(|(k, _)| pred(k))
                        .and_then(|(_, v)| v.as_str()?.trim().parse::<f64>().ok())
                })
            };
            let mib = |b: Option<f64>| b.map(|b| b / (1024.0 * 1024.0));
            GpuSample {
                gpu: card.trim_start_matches("card").to_owned(),
                util_pct: find(&|k| k == "GPU use (%)"),
                mem_used_mib: mib(find(&|k| k == "VRAM Total Used Memory (B)")),
                mem_total_mib: mib(find(&|k| k == "VRAM Total Memory (B)")),
                power_w: find(&|k| k.contains("Power (W)")),
            }
        })
        .collect())
}

/// The first telemetry tool on `PATH`, with its full path.
fn find_tool() -> Option<(GpuTool, PathBuf)> {
    let path = std::env::var_os("PATH")?;
    GpuTool::ALL.into_iter().find_map(|tool| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(tool.name()))
            .find(|p| is_executable(p))
            .map(|p| (tool, p))
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Samples the GPUs each interval and appends them to `gpu.csv`.
pub(crate) struct GpuRecorder {
    tool: GpuTool,
    program: PathBuf,
    out: CsvLog,
    samples_ok: u64,
    samples_failed: u64,
    last_error: Option<String>,
}

impl GpuRecorder {
    /// A recorder for the tool found on `PATH`; `None` where there is none.
    pub fn create(dir: &Path) -> Result<Option<Self>> {
        let Some((tool, program)) = find_tool() else {
            return Ok(None);
        };
        let out = CsvLog::create(&dir.join("gpu.csv"), COLUMNS)?;
        Ok(Some(Self {
            tool,
            program,
            out,
            samples_ok: 0,
            samples_failed: 0,
            last_error: None,
        }))
    }

    /// Runs the tool once (at most `timeout`) and records its GPUs at unix time `t`.
    pub async fn sample(&mut self, t: f64, timeout: Duration) -> Result<()> {
        match self.read(timeout).await {
            Ok(samples) => {
                self.samples_ok += 1;
                for s in samples {
                    let cell = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
                    self.out.append([
                        format!("{t:.3}"),
                        s.gpu,
                        cell(s.util_pct),
                        cell(s.mem_used_mib),
                        cell(s.mem_total_mib),
                        cell(s.power_w),
                    ])?;
                }
                self.out.flush()?;
            }
            Err(e) => {
                self.samples_failed += 1;
                self.last_error = Some(format!("{e:#}"));
            }
        }
        Ok(())
    }

    async fn read(&self, timeout: Duration) -> Result<Vec<GpuSample>> {
        let run = tokio::process::Command::new(&self.program)
            .args(self.tool.args())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(timeout, run)
            .await
            .with_context(|| format!("{} took over {timeout:?}", self.tool.name()))?
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        if !out.status.success() {
            bail!(
                "{} exited with {}: {}",
                self.tool.name(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.tool.parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// What `metrics_meta.json` says about GPU telemetry.
    pub fn meta(&self) -> Value {
        json!({
            "available": true,
            "tool": self.tool.name(),
            "path": self.program,
            "samples_ok": self.samples_ok,
            "samples_failed": self.samples_failed,
            "last_error": self.last_error,
        })
    }
}

/// `metrics_meta.json`'s GPU entry where no tool exists.
pub(crate) fn unavailable_meta() -> Value {
    json!({
        "available": false,
        "reason": "no nvidia-smi, amd-smi or rocm-smi on PATH: no gpu.csv",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_unsupported_values_are_empty() {
        let s = parse_nvidia("0, 45, 1234, 81559, 350.12\n1, [N/A], 10, 81559, [N/A]\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].power_w, Some(350.12));
        assert_eq!((s[1].util_pct, s[1].power_w), (None, None));
        assert!(parse_nvidia("0, 45\n").is_err());
    }

    #[test]
    fn amd_smi_both_shapes() {
        let old = r#"[{"gpu": 0, "usage": {"gfx_activity": {"value": 87, "unit": "%"}},
            "power": {"socket_power": {"value": 640, "unit": "W"}},
            "mem_usage": {"used_vram": {"value": 2048, "unit": "MB"}, "total_vram": {"value": 288, "unit": "GB"}}}]"#;
        let new = format!(r#"{{"gpu_data": {old}}}"#);
        for text in [old, new.as_str()] {
            let s = parse_amd_smi(text).unwrap();
            assert_eq!(s[0].util_pct, Some(87.0));
            assert_eq!(s[0].mem_used_mib, Some(2048.0));
            assert_eq!(s[0].mem_total_mib, Some(288.0 * 1024.0));
            assert_eq!(s[0].power_w, Some(640.0));
        }
    }

    #[test]
    fn rocm_smi_cards() {
        let text = r#"{"card0": {"GPU use (%)": "12", "Current Socket Graphics Package Power (W)": "150.5",
            "VRAM Total Memory (B)": "1073741824", "VRAM Total Used Memory (B)": "536870912"},
            "system": {"Driver version": "6.8"}}"#;
        let s = parse_rocm_smi(text).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].gpu, "0");
        assert_eq!(s[0].util_pct, Some(12.0));
        assert_eq!(s[0].power_w, Some(150.5));
        assert_eq!(
            (s[0].mem_used_mib, s[0].mem_total_mib),
            (Some(512.0), Some(1024.0))
        );
    }
}
