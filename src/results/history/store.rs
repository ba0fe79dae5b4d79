//! The history's reads and writes: runs (one stored sweep each, with where and what it ran)
//! and their cells.

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;

use super::db::{Db, Location, Param, Value};
use super::migrations;
use super::sweep::{CellRecord, Sweep};
use crate::results::collect::cells::Configuration;

/// What a stored sweep ran: the build, the CI run, the image and engine, the spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMeta {
    pub label: Option<String>,
    /// RFC 3339, UTC.
    pub date: String,
    pub git_commit: Option<String>,
    pub kvsweep_version: String,
    pub run_id: Option<String>,
    pub image: Option<String>,
    pub engine_version: Option<String>,
    pub spec_digest: Option<String>,
    pub source: String,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: i64,
    pub meta: RunMeta,
    pub cells: i64,
}

/// Which stored run a gate compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The newest run of any label.
    Latest,
    /// The newest run with this label.
    Label(String),
}

/// An open, migrated history database.
pub struct History {
    db: Db,
    /// Where it is, for messages (a PostgreSQL URL without its password).
    pub place: String,
}

const RUN_COLUMNS: &str = "r.id, r.label, r.date, r.git_commit, r.kvsweep_version, r.run_id, \
    r.image, r.engine_version, r.spec_digest, r.source, \
    (SELECT count(*) FROM cells c WHERE c.run = r.id)";

const CELL_COLUMNS: &str =
    "config, cell, runner, model, engine, simulated, measured_by, repeats, summary, spread";

impl History {
    /// Opens the database at `url` and brings its schema up to date. With `create`, a SQLite
    /// file that does not exist is created; without it, that is an error.
    pub fn open(url: &str, create: bool) -> Result<Self> {
        let location = Location::parse(url);
        let place = location.display();
        let mut db = Db::connect(&location, create)?;
        migrations::apply(&mut db, &place)?;
        Ok(Self { db, place })
    }

    /// Stores `sweep` as one run, in one transaction. The same sweep (same summary.csv and
    /// repeats.csv) stored before is refused, naming the run that holds it.
    pub fn add(&mut self, sweep: &Sweep, meta: &RunMeta) -> Result<i64> {
        let place = self.place.clone();
        self.db
            .transaction(|db| {
                let existing = db.query(
                    "SELECT id, label, date FROM runs WHERE digest = $1",
                    &[Param::from(sweep.digest.clone())],
                )?;
                if let Some(row) = existing.first() {
                    bail!(
                        "{} is already stored in {place} as run {} (label {}, dated {}): a sweep is added once; nothing was changed",
                        sweep.source.display(),
                        row[0].int()?,
                        row[1].opt_text()?.unwrap_or("none"),
                        row[2].text()?
                    );
                }
                let id = db.query(
                    "INSERT INTO runs (digest, label, date, added_at, git_commit, kvsweep_version, \
                     run_id, image, engine_version, spec_digest, source) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                    &[
                        Param::from(sweep.digest.clone()),
                        Param::from(meta.label.clone()),
                        Param::from(meta.date.clone()),
                        Param::from(super::now_rfc3339()),
                        Param::from(meta.git_commit.clone()),
                        Param::from(meta.kvsweep_version.clone()),
                        Param::from(meta.run_id.clone()),
                        Param::from(meta.image.clone()),
                        Param::from(meta.engine_version.clone()),
                        Param::from(meta.spec_digest.clone()),
                        Param::from(meta.source.clone()),
                    ],
                )?[0][0]
                    .int()?;
                for c in &sweep.cells {
                    let summary = serde_json::to_string(&c.summary)?;
                    db.query(
                        "INSERT INTO cells (run, config, cell, runner, model, engine, simulated, \
                         measured_by, repeats, summary, spread) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        &[
                            Param::from(id),
                            Param::from(c.config.clone()),
                            Param::from(c.cell.clone()),
                            Param::from(c.configuration.runner.clone()),
                            Param::from(c.configuration.model.clone()),
                            Param::from(c.configuration.engine.as_str()),
                            Param::from(i64::from(c.simulated)),
                            Param::from(c.measured_by.clone()),
                            Param::from(c.repeats),
                            Param::from(summary),
                            Param::from(c.spread_json()),
                        ],
                    )
                    .with_context(|| format!("cannot store cell `{}`", c.cell))?;
                }
                Ok(id)
            })
            .with_context(|| format!("cannot add {} to {place}", sweep.source.display()))
    }

    /// Every run, oldest first.
    pub fn runs(&mut self) -> Result<Vec<Run>> {
        let rows = self.db.query(
            &format!("SELECT {RUN_COLUMNS} FROM runs r ORDER BY r.date, r.id"),
            &[],
        )?;
        rows.iter().map(|r| run_of(r)).collect()
    }

    /// The run a gate compares against.
    pub fn pick(&mut self, pick: &Pick) -> Result<Run> {
        let (sql, params) = match pick {
            Pick::Latest => (
                format!("SELECT {RUN_COLUMNS} FROM runs r ORDER BY r.date DESC, r.id DESC LIMIT 1"),
                vec![],
            ),
            Pick::Label(l) => (
                format!(
                    "SELECT {RUN_COLUMNS} FROM runs r WHERE r.label = $1 \
                     ORDER BY r.date DESC, r.id DESC LIMIT 1"
                ),
                vec![Param::from(l.as_str())],
            ),
        };
        let rows = self.db.query(&sql, &params)?;
        match rows.first() {
            Some(r) => run_of(r),
            None => match pick {
                Pick::Latest => bail!("{} holds no runs", self.place),
                Pick::Label(l) => bail!("{} holds no run labelled `{l}`", self.place),
            },
        }
    }

    /// A run's cells.
    pub fn cells(&mut self, run: i64) -> Result<Vec<CellRecord>> {
        let rows = self.db.query(
            &format!("SELECT {CELL_COLUMNS} FROM cells WHERE run = $1 ORDER BY config"),
            &[Param::from(run)],
        )?;
        rows.iter().map(|r| cell_of(r)).collect()
    }

    /// Every stored configuration, with how many runs measured it.
    pub fn configs(&mut self) -> Result<Vec<(String, i64)>> {
        let rows = self.db.query(
            "SELECT config, count(*) FROM cells GROUP BY config ORDER BY config",
            &[],
        )?;
        rows.iter()
            .map(|r| Ok((r[0].text()?.to_owned(), r[1].int()?)))
            .collect()
    }

    /// A configuration's measurements, oldest run first, at most the newest `limit`.
    pub(crate) fn config_runs(
        &mut self,
        config: &str,
        limit: i64,
    ) -> Result<Vec<(Run, CellRecord)>> {
        let rows = self.db.query(
            &format!(
                "SELECT {RUN_COLUMNS}, {CELL_COLUMNS} FROM runs r JOIN cells ON cells.run = r.id \
                 WHERE cells.config = $1 ORDER BY r.date DESC, r.id DESC LIMIT $2"
            ),
            &[Param::from(config), Param::from(limit)],
        )?;
        let mut out = rows
            .iter()
            .map(|r| Ok((run_of(&r[..11])?, cell_of(&r[11..])?)))
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }
}

fn opt(v: &Value) -> Result<Option<String>> {
    Ok(v.opt_text()?.map(str::to_owned))
}

fn run_of(r: &[Value]) -> Result<Run> {
    Ok(Run {
        id: r[0].int()?,
        meta: RunMeta {
            label: opt(&r[1])?,
            date: r[2].text()?.to_owned(),
            git_commit: opt(&r[3])?,
            kvsweep_version: r[4].text()?.to_owned(),
            run_id: opt(&r[5])?,
            image: opt(&r[6])?,
            engine_version: opt(&r[7])?,
            spec_digest: opt(&r[8])?,
            source: r[9].text()?.to_owned(),
        },
        cells: r[10].int()?,
    })
}

fn cell_of(r: &[Value]) -> Result<CellRecord> {
    let cell = r[1].text()?.to_owned();
    let summary: IndexMap<String, String> = serde_json::from_str(r[8].text()?)
        .with_context(|| format!("stored summary of cell `{cell}` is not a JSON object"))?;
    let configuration = Configuration::parse(|c| summary.get(c).map(String::as_str))
        .with_context(|| format!("stored summary of cell `{cell}`"))?;
    Ok(CellRecord {
        config: r[0].text()?.to_owned(),
        configuration,
        simulated: r[5].int()? != 0,
        measured_by: r[6].text()?.to_owned(),
        repeats: r[7].int()?,
        summary,
        spread: CellRecord::parse_spread(r[9].text()?)
            .with_context(|| format!("stored spread of cell `{cell}`"))?,
        cell,
    })
}
