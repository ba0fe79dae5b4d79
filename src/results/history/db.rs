//! One connection to the history database, SQLite or PostgreSQL, behind the few operations the
//! history needs: run statements, query rows, and transactions.
//!
//! Crates: rusqlite (with SQLite bundled, so no system library is needed and every machine runs
//! the same SQLite) and the synchronous `postgres` client. Both are small, long-kept and
//! blocking, which suits a command that adds one sweep and exits; sqlx would bring compile-time
//! query checking against a live database and an async pool this tool has no use for. The SQL is
//! written once where both dialects agree (`$1` placeholders, `RETURNING`), and per dialect
//! where they do not (the migrations).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Which database a `--db` value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (`kvsweep.db`, `sqlite://PATH`, any path).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl Location {
    pub fn parse(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Location::Postgres(url.to_owned())
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            Location::Sqlite(PathBuf::from(path))
        }
    }

    /// The location as the user may read it: a PostgreSQL URL without its password.
    pub fn display(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    let user = &url[scheme + 3..at];
                    let user = user.split(':').next().unwrap_or(user);
                    format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }
}

/// The two SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A statement parameter, typed even when null (PostgreSQL checks a parameter's type against
/// its column's).
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_owned()))
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::Text(v)
    }
}

/// A value read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl Value {
    pub fn int(&self) -> Result<i64> {
        match self {
            Value::Int(v) => Ok(*v),
            other => bail!("expected an integer in the history database, found {other:?}"),
        }
    }
    pub fn text(&self) -> Result<&str> {
        match self {
            Value::Text(v) => Ok(v),
            other => bail!("expected text in the history database, found {other:?}"),
        }
    }
    pub(crate) fn opt_text(&self) -> Result<Option<&str>> {
        match self {
            Value::Null => Ok(None),
            other => other.text().map(Some),
        }
    }
}

/// An open connection.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: Box<postgres::Client>,
        /// Statements prepared once per connection (adding a sweep runs one insert per cell).
        prepared: HashMap<String, postgres::Statement>,
    },
}

impl Db {
    /// Connects. A SQLite file that does not exist is created only when `create`; one that is
    /// not a SQLite database is refused before anything is written to it.
    pub fn connect(location: &Location, create: bool) -> Result<Self> {
        match location {
            Location::Sqlite(path) => connect_sqlite(path, create),
            Location::Postgres(url) => {
                let client =
                    postgres::Client::connect(url, postgres::NoTls).with_context(|| {
                        format!("cannot connect to PostgreSQL at {}", location.display())
                    })?;
                Ok(Db::Postgres {
                    client: Box::new(client),
                    prepared: HashMap::new(),
                })
            }
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// Runs statements that take no parameters and return nothing (DDL, BEGIN, COMMIT).
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql)?,
            Db::Postgres { client, .. } => client.batch_execute(sql)?,
        }
        Ok(())
    }

    /// Runs one statement; returns its rows (none for a plain INSERT).
    pub(crate) fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Value>>> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let bound = params.iter().map(sqlite_param);
                let mut rows = stmt.query(rusqlite::params_from_iter(bound))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(columns);
                    for i in 0..columns {
                        values.push(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                            rusqlite::types::ValueRef::Real(v) => Value::Real(v),
                            rusqlite::types::ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            rusqlite::types::ValueRef::Blob(_) => {
                                bail!("unexpected binary value in column {i} of `{sql}`")
                            }
                        });
                    }
                    out.push(values);
                }
                Ok(out)
            }
            Db::Postgres { client, prepared } => {
                let stmt = match prepared.get(sql) {
                    Some(s) => s.clone(),
                    None => {
                        let s = client.prepare(sql)?;
                        prepared.insert(sql.to_owned(), s.clone());
                        s
                    }
                };
                let bound: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    params.iter().map(postgres_param).collect();
                let rows = client.query(&stmt, &bound)?;
                rows.iter().map(postgres_row).collect()
            }
        }
    }

    /// Runs `work` in one transaction: all of it is stored, or (on an error, or when the
    /// process is killed) none of it.
    pub fn transaction<T>(&mut self, work: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        // IMMEDIATE takes SQLite's write lock now rather than at the first write, so two
        // writers wait for each other instead of one failing half-way.
        self.batch(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        })?;
        match work(self) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                // The error that matters is `work`'s; a failed rollback leaves the transaction
                // open, and it dies with the connection.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

fn connect_sqlite(path: &Path, create: bool) -> Result<Db> {
    if !create && !path.exists() {
        bail!(
            "no history database at {} (`kvsweep history add` creates it; --db or $KVSWEEP_DB name another)",
            path.display()
        );
    }
    use rusqlite::OpenFlags;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open the history database {}", path.display()))?;
    // SQLite reads the header lazily: read the schema now, so a file that is not a database is
    // refused before any statement could write to it.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .with_context(|| {
        format!(
            "{} is not a SQLite database, or is corrupt: it was left as it is",
            path.display()
        )
    })?;
    // Another process adding a sweep holds the write lock for well under a second.
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    Ok(Db::Sqlite(conn))
}

fn sqlite_param(p: &Param) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match p {
        Param::Int(Some(v)) => V::Integer(*v),
        Param::Text(Some(v)) => V::Text(v.clone()),
        Param::Int(None) | Param::Text(None) => V::Null,
    }
}

fn postgres_param(p: &Param) -> &(dyn postgres::types::ToSql + Sync) {
    match p {
        Param::Int(v) => v,
        Param::Text(v) => v,
    }
}

fn postgres_row(row: &postgres::Row) -> Result<Vec<Value>> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            bail!(
                "unexpected PostgreSQL type {ty} in column `{}`",
                column.name()
            );
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(values)
}
