//! A collected sweep (what `kvsweep collect` wrote: `summary.csv` and, for repeated cells,
//! `repeats.csv`) read as configurations and their measurements: what the history stores and
//! what the gate compares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::base::student_t::Sample;
use crate::results::collect::cells::Configuration;
use crate::results::collect::summary;

/// The columns the history needs from every row besides the configuration's.
const REQUIRED_COLUMNS: &[&str] = &["cell", "simulated", "measured_by", "repeats"];

/// One configuration's measurements in one sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRecord {
    /// `runner=… model=… engine=… precision=… tp=… ep=… users=… offload=…`
    /// ([`Configuration::key`]): what the history stores it under.
    pub config: String,
    /// The configuration itself, as collect typed it: what the gate matches cells by.
    pub configuration: Configuration,
    pub cell: String,
    pub simulated: bool,
    pub measured_by: String,
    pub repeats: i64,
    /// The summary.csv row, column → value as written.
    pub summary: IndexMap<String, String>,
    /// Per metric, the repeats' count, mean and standard deviation (none for a single run).
    pub spread: BTreeMap<String, Sample>,
}

impl CellRecord {
    /// `metric`'s measurement: the repeats' sample, or the single run's value (n = 1);
    /// `None` where the cell has no such figure.
    pub fn sample(&self, metric: &str) -> Option<Sample> {
        if let Some(s) = self.spread.get(metric).filter(|s| s.n > 1) {
            return Some(*s);
        }
        let v: f64 = self.summary.get(metric)?.parse().ok()?;
        v.is_finite().then_some(Sample {
            n: 1,
            mean: v,
            sd: 0.0,
        })
    }

    /// The spread as stored: `{metric: [n, mean, sd]}`.
    pub(crate) fn spread_json(&self) -> String {
        let map: BTreeMap<&String, (usize, f64, f64)> = self
            .spread
            .iter()
            .map(|(k, s)| (k, (s.n, s.mean, s.sd)))
            .collect();
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
    }

    /// Parses [`Self::spread_json`]'s text back.
    pub(crate) fn parse_spread(text: &str) -> Result<BTreeMap<String, Sample>> {
        let map: BTreeMap<String, (usize, f64, f64)> = serde_json::from_str(text)?;
        Ok(map
            .into_iter()
            .map(|(k, (n, mean, sd))| (k, Sample { n, mean, sd }))
            .collect())
    }
}

/// A collected sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub source: PathBuf,
    pub cells: Vec<CellRecord>,
    /// SHA-256 of summary.csv and repeats.csv: the same sweep added twice has the same digest.
    pub digest: String,
}

#[derive(Deserialize)]
struct RepeatRow {
    cell: String,
    metric: String,
    n: usize,
    mean: f64,
    sd: f64,
}

/// Reads a collected sweep: `dir/summary.csv` (or `dir` itself when it is that file) and the
/// `repeats.csv` beside it.
pub fn read(dir: &Path) -> Result<Sweep> {
    let summary_path = if dir.is_file() {
        dir.to_path_buf()
    } else {
        dir.join("summary.csv")
    };
    let base = summary_path.parent().unwrap_or(Path::new("."));
    let summary_bytes = std::fs::read(&summary_path).with_context(|| {
        format!(
            "cannot read {}: give a directory that `kvsweep collect` wrote",
            summary_path.display()
        )
    })?;
    let repeats_path = base.join("repeats.csv");
    let repeats_bytes = match std::fs::read(&repeats_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", repeats_path.display())),
    };
    let mut hasher = Sha256::new();
    hasher.update(&summary_bytes);
    hasher.update(b"\0repeats.csv\0");
    hasher.update(&repeats_bytes);
    let digest = format!("{:x}", hasher.finalize());

    let mut spreads: BTreeMap<String, BTreeMap<String, Sample>> = BTreeMap::new();
    if !repeats_bytes.is_empty() {
        let mut r = csv::Reader::from_reader(repeats_bytes.as_slice());
        for (i, row) in r.deserialize::<RepeatRow>().enumerate() {
            let row = row.with_context(|| format!("{}: line {}", repeats_path.display(), i + 2))?;
            spreads.entry(row.cell).or_default().insert(
                row.metric,
                Sample {
                    n: row.n,
                    mean: row.mean,
                    sd: row.sd,
                },
            );
        }
    }

    let file = summary_path.display();
    let mut r = csv::Reader::from_reader(summary_bytes.as_slice());
    let headers = r
        .headers()
        .with_context(|| format!("{file}: cannot read the header line"))?
        .clone();
    for column in Configuration::COLUMNS.iter().chain(REQUIRED_COLUMNS) {
        if !headers.iter().any(|h| h == *column) {
            bail!(
                "{file}: no column `{column}`: is this a summary.csv that `kvsweep collect` wrote?"
            );
        }
    }
    // A column collect never writes is a file of another kind (or of a newer kvsweep).
    if let Some(unknown) = headers
        .iter()
        .find(|h| !summary::columns().any(|c| c == *h))
    {
        bail!(
            "{file}: unknown column `{unknown}`: is this a summary.csv that `kvsweep collect` wrote?"
        );
    }
    let mut cells: Vec<CellRecord> = Vec::new();
    // Configuration → the cell that measured it, to refuse a second.
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (i, record) in r.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{file}: line {line}"))?;
        let summary: IndexMap<String, String> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_owned(), v.to_owned()))
            .collect();
        let field = |c: &str| summary.get(c).cloned().unwrap_or_default();
        let simulated = match field("simulated").as_str() {
            "true" => true,
            "false" => false,
            other => {
                bail!("{file}: line {line}, column `simulated`: `{other}` is not true or false")
            }
        };
        let repeats: i64 = field("repeats").parse().with_context(|| {
            format!(
                "{file}: line {line}, column `repeats`: `{}` is not a count",
                field("repeats")
            )
        })?;
        let cell = field("cell");
        let configuration = Configuration::parse(|c| summary.get(c).map(String::as_str))
            .with_context(|| format!("{file}: line {line}"))?;
        let config = configuration.key();
        if let Some(other) = seen.insert(config.clone(), cell.clone()) {
            bail!(
                "{file}: line {line}: cell `{cell}` has the same configuration as `{other}` ({config}): the history and the gate need one cell per configuration"
            );
        }
        cells.push(CellRecord {
            config,
            configuration,
            simulated,
            measured_by: field("measured_by"),
            repeats,
            spread: spreads.remove(&cell).unwrap_or_default(),
            cell,
            summary,
        });
    }
    if cells.is_empty() {
        bail!("{file} holds no cells");
    }
    Ok(Sweep {
        source: dir.to_path_buf(),
        cells,
        digest,
    })
}
