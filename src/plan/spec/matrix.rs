//! `kvsweep matrix`: a sweep's cells as a GitHub Actions job matrix.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use super::{Cell, LoadOptions, Sweep, master};
use crate::base::runner::RunnerSet;

/// GitHub Actions refuses a matrix of more jobs than this.
pub const MAX_MATRIX_JOBS: usize = 256;

/// One of `count` contiguous slices of the cell list (`--shard 2/4`), 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("`{s}` is not a shard: expected I/N with 1 <= I <= N, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: usize = i.trim().parse().map_err(|_| err())?;
        let count: usize = n.trim().parse().map_err(|_| err())?;
        if index == 0 || count == 0 || index > count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The items of this shard: contiguous, sizes differing by at most one, order kept.
    pub fn select<'a, T>(&self, cells: &'a [T]) -> &'a [T] {
        let base = cells.len() / self.count;
        let extra = cells.len() % self.count;
        let i = self.index - 1;
        let start = i * base + i.min(extra);
        let len = base + usize::from(i < extra);
        &cells[start..start + len]
    }
}

/// The cells a matrix job list holds, after sharding and the GitHub size limit.
pub fn select(
    sweep: &Sweep,
    shard: Option<Shard>,
) -> Result<&[Cell], crate::base::yaml::SpecError> {
    let total = sweep.cells.len();
    let cells = match shard {
        Some(shard) => shard.select(&sweep.cells),
        None => &sweep.cells[..],
    };
    if cells.len() > MAX_MATRIX_JOBS {
        let message = match shard {
            None => format!(
                "the sweep has {total} cells, more than the {MAX_MATRIX_JOBS} jobs a GitHub matrix allows; split it with --shard I/N (N >= {})",
                total.div_ceil(MAX_MATRIX_JOBS)
            ),
            Some(s) => format!(
                "shard {}/{} has {} cells, more than {MAX_MATRIX_JOBS}; use N >= {}",
                s.index,
                s.count,
                cells.len(),
                total.div_ceil(MAX_MATRIX_JOBS)
            ),
        };
        return Err(sweep.matrix_error(message));
    }
    Ok(cells)
}

/// One matrix entry. Keys and their order are those of the InferenceX workflow (`tp`, `users`,
/// `offload`, and `ep` only when > 0), then `name`, then `runner` when the cell has one.
pub fn entry(cell: &Cell) -> Value {
    let mut m = Map::new();
    m.insert("tp".into(), json!(cell.tp));
    m.insert("users".into(), json!(cell.users));
    m.insert("offload".into(), json!(cell.offload.as_str()));
    if cell.ep > 0 {
        m.insert("ep".into(), json!(cell.ep));
    }
    m.insert("name".into(), json!(cell.name));
    if let Some(runner) = &cell.runner {
        m.insert("runner".into(), json!(runner));
    }
    Value::Object(m)
}

/// `{"include": [...]}` for `strategy.matrix`.
pub fn to_json(cells: &[Cell]) -> Value {
    json!({ "include": cells.iter().map(entry).collect::<Vec<_>>() })
}

/// A plain aligned table for people.
fn to_table(cells: &[Cell]) -> String {
    let header = ["NAME", "RUNNER", "TP", "EP", "USERS", "OFFLOAD"];
    let rows: Vec<[String; 6]> = cells
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.runner.clone().unwrap_or_else(|| "-".into()),
                c.tp.to_string(),
                if c.ep > 0 {
                    c.ep.to_string()
                } else {
                    "-".into()
                },
                c.users.to_string(),
                c.offload.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(v.len());
        }
    }
    let mut out = String::new();
    let mut line = |vals: &[&str]| {
        let cols: Vec<String> = vals
            .iter()
            .zip(widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cols.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    let _ = writeln!(out, "{} cells", cells.len());
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MatrixFormat {
    Json,
    Table,
}

/// Expand a sweep spec into the job matrix (`{"include": [...]}`) a GitHub workflow runs.
#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// The sweep spec (native, InferenceX PR #993 or InferenceX master-config shape); several
    /// InferenceX master configs are read together, as the InferenceX generator reads them.
    #[arg(required = true, num_args = 1.., value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// The entry of an InferenceX-shape spec to expand.
    #[arg(long)]
    pub key: Option<String>,
    /// Native: keep this runner's cells. InferenceX: add `runner` to every entry and check tp against it.
    #[arg(long)]
    pub runner: Option<String>,
    /// Emit only slice I of N (1-based), to stay under GitHub's 256-job matrix limit.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    #[arg(long, value_enum, default_value_t = MatrixFormat::Json)]
    pub format: MatrixFormat,
    /// Also append `matrix=`, `count=` and (with --runner) `runs_on=` to the file named by $GITHUB_OUTPUT.
    #[arg(long)]
    pub github_output: bool,
    #[command(flatten)]
    pub master: super::master::Filters,
}

pub fn run(args: &MatrixArgs, runners: &RunnerSet) -> Result<()> {
    if let Some(doc) = super::master::detect(&args.specs[0]) {
        return run_master(args, doc, runners);
    }
    if args.specs.len() > 1 {
        bail!("only InferenceX master configs can be read together; give one spec");
    }
    if args.master.any_set() {
        bail!(
            "{} is not an InferenceX master config; the generator filters (--scenario-type, --max-conc, ...) only apply to those",
            args.specs[0].display()
        );
    }
    let sweep = super::load(
        &args.specs[0],
        LoadOptions {
            key: args.key.as_deref(),
            runner: args.runner.as_deref(),
            runners,
        },
    )?;
    let cells = select(&sweep, args.shard)?;
    let matrix = to_json(cells);
    let mut stdout = std::io::stdout().lock();
    match args.format {
        MatrixFormat::Json => writeln!(stdout, "{matrix}")?,
        MatrixFormat::Table => write!(stdout, "{}", to_table(cells))?,
    }
    if args.github_output {
        let mut lines = format!("matrix={matrix}\ncount={}\n", cells.len());
        if let Some(runner) = args.runner.as_deref().and_then(|r| runners.get(r)) {
            let labels = serde_json::to_string(&runner.github.labels)?;
            let _ = writeln!(lines, "runs_on={labels}");
        }
        append_github_output(&lines)?;
    }
    eprintln!("{} matrix entries", cells.len());
    Ok(())
}

/// `kvsweep matrix` on InferenceX master configs: the generator's job list on stdout (byte for
/// byte), sharded with `--shard`; `--github-output` writes it as `{"include": [...]}`.
fn run_master(
    args: &MatrixArgs,
    first: master::yaml11::Document,
    runners: &RunnerSet,
) -> Result<()> {
    let mut docs = vec![first];
    for path in &args.specs[1..] {
        match master::detect(path) {
            Some(doc) => docs.push(doc),
            None => bail!(
                "{} is not an InferenceX master config; master configs can only be read with others of their shape",
                path.display()
            ),
        }
    }
    if args.key.is_some() {
        bail!(
            "--key selects an entry of a PR #993-shape spec; filter master configs with --model-prefix"
        );
    }
    let jobs = master::generate_docs(&docs, &args.master)?;
    let total = jobs.len();
    let jobs = match args.shard {
        Some(shard) => shard.select(&jobs),
        None => &jobs[..],
    };
    let list = master::pyjson::dumps_list(jobs);
    let mut stdout = std::io::stdout().lock();
    match args.format {
        MatrixFormat::Json => writeln!(stdout, "{list}")?,
        MatrixFormat::Table => write!(stdout, "{}", master_table(jobs))?,
    }
    if args.github_output {
        if jobs.len() > MAX_MATRIX_JOBS {
            bail!(
                "{} jobs are more than the {MAX_MATRIX_JOBS} a GitHub matrix allows; split the {total} with --shard I/N (N >= {}) or filter them",
                jobs.len(),
                total.div_ceil(MAX_MATRIX_JOBS)
            );
        }
        let mut lines = format!("matrix={{\"include\": {list}}}\ncount={}\n", jobs.len());
        if let Some(runner) = args.runner.as_deref() {
            let runner = runners
                .get(runner)
                .with_context(|| format!("unknown runner `{runner}` (from --runner)"))?;
            let labels = serde_json::to_string(&runner.github.labels)?;
            let _ = writeln!(lines, "runs_on={labels}");
        }
        append_github_output(&lines)?;
    }
    eprintln!("{} matrix entries", jobs.len());
    Ok(())
}

/// Master-config jobs for people: name, runner, framework, concurrency.
fn master_table(jobs: &[master::yaml11::Value]) -> String {
    let field = |job: &master::yaml11::Value, key: &str| -> String {
        match job {
            master::yaml11::Value::Map(m) => m.get(key).map_or("-".into(), |n| match &n.value {
                master::yaml11::Value::Str(s) => s.clone(),
                other => master::pyjson::dumps(other),
            }),
            _ => "-".into(),
        }
    };
    let mut out = String::new();
    for job in jobs {
        let _ = writeln!(
            out,
            "{}  {}  {}  conc={}",
            field(job, "exp-name"),
            field(job, "runner"),
            field(job, "framework"),
            field(job, "conc")
        );
    }
    let _ = writeln!(out, "{} jobs", jobs.len());
    out
}

/// Appends `lines` to the file named by `$GITHUB_OUTPUT`.
pub(super) fn append_github_output(lines: &str) -> Result<()> {
    let Some(path) = std::env::var_os("GITHUB_OUTPUT") else {
        bail!(
            "--github-output needs $GITHUB_OUTPUT to name a file (it is set inside GitHub Actions)"
        );
    };
    let path = PathBuf::from(path);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .with_context(|| format!("cannot append to $GITHUB_OUTPUT file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::kinds::Offload;

    fn cells(n: u32) -> Vec<Cell> {
        (1..=n)
            .map(|u| Cell {
                name: format!("c{u}"),
                runner: None,
                tp: 1,
                ep: 0,
                users: u,
                offload: Offload::Off,
            })
            .collect()
    }

    #[test]
    fn shards_cover_every_cell_once_in_order() {
        let all = cells(10);
        let mut seen = Vec::new();
        for i in 1..=3 {
            let s = Shard { index: i, count: 3 };
            seen.extend(s.select(&all).iter().map(|c| c.users));
        }
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());
        assert_eq!(Shard { index: 1, count: 3 }.select(&all).len(), 4);
        assert_eq!(Shard { index: 3, count: 3 }.select(&all).len(), 3);
    }

    #[test]
    fn shard_syntax() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "2", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn entry_keys_follow_the_inferencex_order() {
        let mut c = cells(1).remove(0);
        c.ep = 4;
        c.runner = Some("b200".into());
        let e = entry(&c);
        let keys: Vec<&str> = e
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["tp", "users", "offload", "ep", "name", "runner"]);
        c.ep = 0;
        c.runner = None;
        let e = entry(&c);
        let keys: Vec<&str> = e
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["tp", "users", "offload", "name"]);
    }
}
