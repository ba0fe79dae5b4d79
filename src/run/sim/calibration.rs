//! A calibration file: the simulator's step-time model fitted to measured cells of one engine,
//! model, hardware and TP (`kvsweep calibrate` writes it, `sim-server --calibration` and
//! `kvsweep predict` read it).
//!
//! The calibrated model replaces the roofline with a linear model of one engine step:
//!
//! ```text
//! step_s = step_overhead
//!        + prefill_per_token   × new prompt tokens computed in the step
//!        + prefill_per_pair    × Σ chunk × (context before it + chunk / 2)   (attention pairs)
//!        + decode_per_seq      × sequences decoding one token
//!        + decode_per_context  × Σ context of the decoding sequences
//!        + load_per_token      × tokens loaded back from the host tier
//! ```
//!
//! Linear, because each term is one kind of work an engine step scales with (launch and
//! scheduling overhead, GEMMs over new tokens, attention over cached context, per-sequence
//! sampling, KV reads while decoding, host→device copies), and a linear model is what a few
//! cells can identify. The scheduling limits (`max_num_seqs`, `max_num_batched_tokens`) and the
//! KV capacity are not fitted: they are the engine's settings, recorded from the cells.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One fitted (or fixed) term of the step model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Term {
    pub value: f64,
    pub units: String,
    /// The standard error of `value` from the fit; absent for a term held fixed.
    pub std_error: Option<f64>,
    /// Root-mean-square relative residual of the equations that fixed the term (0.12: the
    /// fitted model misses those measurements by 12 % on average); absent for a fixed term.
    pub residual: Option<f64>,
    /// Whether the cells fixed the term (`false`: held at `value`, e.g. no cell loaded from
    /// a host tier).
    pub fitted: bool,
}

/// The step-time model's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    pub step_overhead: Term,
    pub prefill_per_token: Term,
    pub prefill_per_pair: Term,
    pub decode_per_seq: Term,
    pub decode_per_context: Term,
    pub load_per_token: Term,
}

/// Which engine, model, hardware and TP the calibration describes: it predicts only those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub engine: String,
    pub model: String,
    pub runner: String,
    pub tp: u32,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "engine {}, model {}, runner {}, tp {}",
            self.engine, self.model, self.runner, self.tp
        )
    }
}

/// The engine's settings the simulated engine copies (not fitted).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    /// Tokens the engine's KV cache holds.
    pub kv_capacity_tokens: usize,
    pub block_size: usize,
    /// Bytes of KV per token (offload traffic is counted in bytes).
    pub kv_bytes_per_token: u64,
}

/// What the fit was made from and how well it fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitInfo {
    /// The cells' directories, as given.
    pub cells: Vec<String>,
    /// Users of each cell (the load levels).
    pub users: Vec<u32>,
    pub requests: usize,
    /// RMS relative residual of the TTFT equations (one per request).
    pub ttft_residual: f64,
    /// RMS relative residual of the decode equations (one per request with two or more tokens).
    pub decode_residual: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub format_version: u32,
    pub identity: Identity,
    pub limits: Limits,
    pub terms: Terms,
    pub fit: FitInfo,
}

impl Calibration {
    pub const VERSION: u32 = 1;

    /// Reads a calibration file; a malformed one is an error naming the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read calibration {}", path.display()))?;
        let de = serde_norway::Deserializer::from_str(&text);
        let c: Calibration = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!("{}: field `{}`: {}", path.display(), e.path(), e.inner())
        })?;
        c.check()
            .with_context(|| format!("invalid calibration {}", path.display()))?;
        Ok(c)
    }

    fn check(&self) -> Result<()> {
        if self.format_version != Self::VERSION {
            bail!(
                "field `format_version`: {} (this kvsweep reads {})",
                self.format_version,
                Self::VERSION
            );
        }
        let t = &self.terms;
        for (name, term) in [
            ("step_overhead", &t.step_overhead),
            ("prefill_per_token", &t.prefill_per_token),
            ("prefill_per_pair", &t.prefill_per_pair),
            ("decode_per_seq", &t.decode_per_seq),
            ("decode_per_context", &t.decode_per_context),
            ("load_per_token", &t.load_per_token),
        ] {
            if !term.value.is_finite() || term.value < 0.0 {
                bail!(
                    "field `terms.{name}.value`: {} is not a non-negative number",
                    term.value
                );
            }
        }
        let l = &self.limits;
        for (name, v) in [
            ("max_num_seqs", l.max_num_seqs),
            ("max_num_batched_tokens", l.max_num_batched_tokens),
            ("kv_capacity_tokens", l.kv_capacity_tokens),
            ("block_size", l.block_size),
        ] {
            if v == 0 {
                bail!("field `limits.{name}`: must be positive");
            }
        }
        if self.identity.tp == 0 {
            bail!("field `identity.tp`: must be positive");
        }
        Ok(())
    }

    /// Refuses to describe a cell of another engine, model, hardware or TP, naming both.
    pub(crate) fn check_identity(&self, cell: &Identity, path: &Path) -> Result<()> {
        if &self.identity != cell {
            bail!(
                "calibration {} is for {}, not for the cell's {}: calibrate on cells of the same engine, model, runner and TP",
                path.display(),
                self.identity,
                cell
            );
        }
        Ok(())
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_norway::to_string(self).context("cannot serialize the calibration")?;
        let header = "# kvsweep calibration: the simulator's step-time model fitted to measured cells\n\
                      # (see `kvsweep calibrate --help`). step_s = step_overhead + prefill_per_token × new tokens\n\
                      # + prefill_per_pair × attention pairs + decode_per_seq × decoding sequences\n\
                      # + decode_per_context × their context tokens + load_per_token × tokens loaded from host.\n";
        std::fs::write(path, format!("{header}{text}"))
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Calibration {
        let term = |value: f64, units: &str| Term {
            value,
            units: units.to_owned(),
            std_error: Some(value / 10.0),
            residual: Some(0.1),
            fitted: true,
        };
        Calibration {
            format_version: Calibration::VERSION,
            identity: Identity {
                engine: "vllm".into(),
                model: "tiny".into(),
                runner: "cpu".into(),
                tp: 1,
            },
            limits: Limits {
                max_num_seqs: 256,
                max_num_batched_tokens: 2048,
                kv_capacity_tokens: 100_000,
                block_size: 16,
                kv_bytes_per_token: 1024,
            },
            terms: Terms {
                step_overhead: term(0.01, "s/step"),
                prefill_per_token: term(1e-5, "s/token"),
                prefill_per_pair: term(1e-9, "s/pair"),
                decode_per_seq: term(1e-4, "s/sequence"),
                decode_per_context: term(1e-8, "s/token"),
                load_per_token: term(0.0, "s/token"),
            },
            fit: FitInfo {
                cells: vec!["a".into(), "b".into()],
                users: vec![1, 4],
                requests: 100,
                ttft_residual: 0.1,
                decode_residual: 0.05,
            },
        }
    }

    #[test]
    fn a_written_calibration_reads_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        sample().write(&path).expect("write");
        assert_eq!(Calibration::load(&path).expect("load"), sample());
    }

    #[test]
    fn a_malformed_file_names_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        let text = serde_norway::to_string(&sample())
            .expect("yaml")
            .replace("value: 0.01", "value: fast");
        std::fs::write(&path, text).expect("write");
        let err = format!("{:#}", Calibration::load(&path).expect_err("malformed"));
        assert!(err.contains("terms.step_overhead.value"), "{err}");
        let mut neg = sample();
        neg.terms.decode_per_seq.value = -1.0;
        neg.write(&path).expect("write");
        let err = format!("{:#}", Calibration::load(&path).expect_err("negative"));
        assert!(err.contains("terms.decode_per_seq.value"), "{err}");
    }

    #[test]
    fn another_cell_is_refused_naming_both() {
        let mut other = sample().identity;
        other.tp = 2;
        let err = sample()
            .check_identity(&other, Path::new("c.yaml"))
            .expect_err("another tp");
        let msg = err.to_string();
        assert!(msg.contains("tp 1") && msg.contains("tp 2"), "{msg}");
        assert!(
            sample()
                .check_identity(&sample().identity, Path::new("c.yaml"))
                .is_ok()
        );
    }
}
