//! `summary.csv`: a [`CellResult`] flattened into one row, in one place. The column list is
//! this table's; readers (`history::sweep`) check a file's header against it.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use super::result::metric::{self, Metric};
use super::result::{CellResult, Configuration, MeasuredBy};
use crate::base::economics::EnergyBasis;

/// One cell of a `summary.csv` row.
enum Value<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Bool(bool),
    Count(u64),
    Number(Option<f64>),
    MeasuredBy(MeasuredBy),
    Basis(Option<EnergyBasis>),
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Text(t) => s.serialize_str(t),
            Value::OptText(t) => t.serialize(s),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Count(n) => s.serialize_u64(*n),
            Value::Number(x) => x.serialize(s),
            Value::MeasuredBy(m) => m.serialize(s),
            Value::Basis(b) => b.serialize(s),
        }
    }
}

/// A `summary.csv` column.
enum Column {
    /// The cell's name.
    Cell,
    /// One of [`Configuration::COLUMNS`], by index.
    Config(usize),
    Metric(Metric),
    Other(&'static str, fn(&CellResult) -> Value<'_>),
}

impl Column {
    fn name(&self) -> &'static str {
        match self {
            Column::Cell => "cell",
            Column::Config(i) => Configuration::COLUMNS[*i],
            Column::Metric(m) => m.column(),
            Column::Other(name, _) => name,
        }
    }
}

use Column::{Config, Metric as M, Other};
use Metric::*;

/// The columns, in order.
const COLUMNS: &[Column] = &[
    Column::Cell,
    Config(0),
    Config(1),
    Config(2),
    Config(3),
    Config(4),
    Config(5),
    Config(6),
    Config(7),
    Other("simulated", |c| Value::Bool(c.simulated)),
    Other("sim_speed", |c| Value::Number(c.sim_speed)),
    Other("measured_by", |c| Value::MeasuredBy(c.measured_by)),
    Other("status", |c| Value::Text(c.state.as_str())),
    Other("requests_ok", |c| Value::Count(c.figures.requests_ok)),
    Other("requests_failed", |c| {
        Value::Count(c.figures.requests_failed)
    }),
    M(ErrorRate),
    M(DurationS),
    M(InputTps),
    M(OutputTps),
    M(TotalTps),
    M(InputTpsPerGpu),
    M(OutputTpsPerGpu),
    M(TotalTpsPerGpu),
    M(TtftP50Ms),
    M(TtftP90Ms),
    M(TtftP99Ms),
    M(TpotP50Ms),
    M(TpotP90Ms),
    M(TpotP99Ms),
    M(ItlP50Ms),
    M(ItlP90Ms),
    M(ItlP99Ms),
    M(E2eP50Ms),
    M(E2eP90Ms),
    M(E2eP99Ms),
    M(Interactivity),
    // InferenceX's AgentX metrics (collect::inferencex).
    M(E2eNormIntvtyP50),
    M(E2eNormIntvtyP90),
    M(E2eNormIntvtyP99),
    M(AgentxInputTpsPerGpu),
    M(AgentxOutputTpsPerGpu),
    M(AgentxTotalTpsPerGpu),
    M(ClientHitRate),
    M(ServerHitRate),
    M(OracleHitRate),
    Other("oracle_lru_hit_rate", |c| {
        Value::Number(c.oracle.map(|o| o.lru_hit_rate))
    }),
    Other("oracle_capacity_tokens", |c| {
        Value::Number(c.oracle.map(|o| o.capacity_tokens))
    }),
    M(OffloadBytes),
    Other("valid", |c| Value::Bool(c.valid)),
    Other("invalid_reasons", |c| Value::Text(&c.invalid_reasons)),
    Other("warmup_window_s", |c| {
        Value::Number(Some(c.warmup_window_s))
    }),
    Other("repeats", |c| Value::Count(u64::from(c.repeats))),
    // Cost, energy and cache tiers (collect::cost, collect::tiers).
    M(UsdPerMtokTotalHyperscaler),
    Other("usd_per_mtok_input_hyperscaler", |c| {
        Value::Number(metric::usd(c, 0, 1))
    }),
    Other("usd_per_mtok_output_hyperscaler", |c| {
        Value::Number(metric::usd(c, 0, 2))
    }),
    M(UsdPerMtokTotalNeocloud),
    Other("usd_per_mtok_input_neocloud", |c| {
        Value::Number(metric::usd(c, 1, 1))
    }),
    Other("usd_per_mtok_output_neocloud", |c| {
        Value::Number(metric::usd(c, 1, 2))
    }),
    M(UsdPerMtokTotalRental3y),
    Other("usd_per_mtok_input_rental_3y", |c| {
        Value::Number(metric::usd(c, 2, 1))
    }),
    Other("usd_per_mtok_output_rental_3y", |c| {
        Value::Number(metric::usd(c, 2, 2))
    }),
    M(TpsPerMw),
    Other("power_w_per_gpu", |c| {
        Value::Number(c.cost.as_ref().map(|p| p.cost.power_w_per_gpu))
    }),
    M(JoulesPerOutputToken),
    M(JoulesPerTotalToken),
    Other("energy_basis", |c| {
        Value::Basis(c.cost.as_ref().map(|p| p.cost.basis))
    }),
    Other("priced_as", |c| {
        Value::OptText(c.cost.as_ref().map(|p| p.priced_as.as_str()))
    }),
    Other("prompt_tokens_hbm", |c| {
        Value::Number(c.tiers.as_ref().and_then(|t| t.tokens.hbm))
    }),
    Other("prompt_tokens_host", |c| {
        Value::Number(c.tiers.as_ref().and_then(|t| t.tokens.host))
    }),
    Other("prompt_tokens_computed", |c| {
        Value::Number(c.tiers.as_ref().and_then(|t| t.tokens.computed))
    }),
    Other("offload_to_host_gb_s", |c| {
        Value::Number(c.tiers.as_ref().and_then(|t| t.to_host_gb_s))
    }),
    Other("offload_from_host_gb_s", |c| {
        Value::Number(c.tiers.as_ref().and_then(|t| t.from_host_gb_s))
    }),
];

/// The column names of `summary.csv`, in order.
pub fn columns() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(Column::name)
}

/// A cell serializes as its `summary.csv` row (the report's template reads the same fields).
impl Serialize for CellResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self;
        let config = c.config.values();
        let mut row = s.serialize_struct("summary", COLUMNS.len())?;
        for column in COLUMNS {
            let name = column.name();
            match column {
                Column::Cell => row.serialize_field(name, &Value::Text(&c.name))?,
                Column::Config(i) => row.serialize_field(name, &Value::Text(&config[*i]))?,
                Column::Metric(m) => row.serialize_field(name, &Value::Number(m.of(c)))?,
                Column::Other(_, value) => row.serialize_field(name, &value(c))?,
            }
        }
        row.end()
    }
}

/// Writes `cells` to `path` as `summary.csv` (the header alone when there are none).
pub fn write(path: &Path, cells: &[CellResult]) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    if cells.is_empty() {
        w.write_record(columns())?;
    }
    for c in cells {
        w.serialize(c)?;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_named_once_and_every_metric_is_a_column() {
        let names: Vec<&str> = columns().collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for m in Metric::ALL {
            assert!(names.contains(&m.column()), "{m:?}");
        }
        assert_eq!(
            names[..9],
            [
                "cell",
                "runner",
                "model",
                "engine",
                "precision",
                "tp",
                "ep",
                "users",
                "offload"
            ]
        );
    }
}
