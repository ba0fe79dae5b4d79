//! The replay's result files, written as the run goes.
//!
//! One collector task receives every finished request. It appends a row to `requests.csv` and
//! adds the request to the run's [`Tally`]; every second it flushes the CSV (whole rows only:
//! [`CsvLog`]); at the end of each assessment period it appends the tally's `periods.csv` rows
//! and rewrites `summary.json` (through a temporary file, so a reader never sees half of one).
//! A run killed at any moment therefore leaves parseable files; `metadata.json` says
//! `completed: false` until the end. The figures themselves are the tally's; what is here is
//! the files, the replay's own additions to the summary and its CPU clock.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::data::artifact::CsvLog;
use crate::data::artifact::schema::{
    Adaptive, JsonArtifact, OpenLoop, PeriodRow, RequestRow, Summary,
};

use super::client_cpu::CpuClock;
use crate::base::workload::control::ControlArgs;
use crate::data::tally::{ClosedPeriod, Progress, RequestRecord, Slo, Tally};

/// Writes `requests.csv`, `periods.csv` and `summary.json` into the output directory.
pub struct Collector {
    dir: PathBuf,
    requests: CsvLog,
    periods: CsvLog,
    tally: Tally,
    pub(crate) period_s: f64,
    /// The share of first turns' prompts expected cached (`--warm-prefix-pct`).
    warm_prefix_pct: f64,
    adaptive: Option<Adaptive>,
    open_loop: Option<OpenLoop>,
    /// Requests held by admission past the deadline, not sent (`Run::unsent_at_deadline`).
    unsent_at_deadline: u64,
    cpu: CpuClock,
}

impl Collector {
    pub fn create(
        dir: &Path,
        period_s: f64,
        engine: &str,
        endpoints: &[String],
        control: &ControlArgs,
        warmup_window_s: f64,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            requests: CsvLog::create(&dir.join(RequestRow::FILE), RequestRow::COLUMNS)?,
            periods: CsvLog::create(&dir.join(PeriodRow::FILE), PeriodRow::COLUMNS)?,
            tally: Tally::new(engine, endpoints, Slo::of(control), warmup_window_s),
            period_s,
            warm_prefix_pct: control.warm_prefix_pct,
            adaptive: None,
            open_loop: None,
            unsent_at_deadline: 0,
            cpu: CpuClock::start(),
        })
    }

    pub fn add(&mut self, r: &RequestRecord) -> Result<()> {
        self.requests.append_row(&r.row(self.tally.slo()))?;
        self.tally.add(r);
        Ok(())
    }

    /// Flushes buffered rows to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.requests.flush()?;
        self.periods.flush()?;
        Ok(())
    }

    /// Closes the current period at `now_s` with `users` active and the token buckets at
    /// `fill`, if it is over (or `force`); returns it when closed.
    pub(crate) fn close_period(
        &mut self,
        now_s: f64,
        users: usize,
        fill: (Option<f64>, Option<f64>),
        force: bool,
    ) -> Result<Option<ClosedPeriod>> {
        if !force && now_s < self.tally.period_start_s() + self.period_s {
            return Ok(None);
        }
        let (rows, closed) = self.tally.close_period(now_s, users, fill);
        for row in &rows {
            self.periods.append_row(row)?;
        }
        self.periods.flush()?;
        self.write_summary(now_s, false)?;
        Ok(Some(closed))
    }

    /// The adaptive controller's state, for summary.json.
    pub(crate) fn set_adaptive(&mut self, a: Adaptive) {
        self.adaptive = Some(a);
    }

    /// Requests admission still held when the deadline came, which were not sent.
    pub(crate) fn set_unsent_at_deadline(&mut self, n: u64) {
        self.unsent_at_deadline = n;
    }

    /// The open-loop arrival figures, for summary.json.
    pub(crate) fn set_open_loop(&mut self, o: OpenLoop) {
        self.open_loop = Some(o);
    }

    /// A warning when the sessions' first turns found their prompts already cached: the cache
    /// was left warm by an earlier run (or shared with other traffic).
    pub fn warm_cache_warning(&self) -> Option<String> {
        let f = self.tally.first_turns();
        let share = f.cached_tokens as f64 / f.prompt_tokens.max(1) as f64;
        (f.sessions > 0 && share > (self.warm_prefix_pct + 0.25).max(0.5)).then(|| {
            format!(
                "{:.0}% of the first turns' prompt tokens ({} sessions) were already cached: the server's cache looks warm from an earlier run; use --reset-cache or restart it",
                share * 100.0,
                f.sessions
            )
        })
    }

    pub fn progress(&self) -> Progress {
        self.tally.progress()
    }

    /// Share of requests that failed.
    pub fn error_rate(&self) -> f64 {
        self.tally.error_rate()
    }

    pub(crate) fn write_summary(&self, duration_s: f64, completed: bool) -> Result<()> {
        self.summary(duration_s, completed).write(&self.dir)
    }

    /// The run's figures so far, as `summary.json` holds them: the tally's, with the replay's
    /// controller, arrivals, unsent requests and CPU use.
    pub fn summary(&self, duration_s: f64, completed: bool) -> Summary {
        let mut s = self.tally.summary(duration_s, completed);
        s.requests.unsent_at_deadline = self.unsent_at_deadline;
        s.adaptive = self.adaptive.clone();
        s.open_loop = self.open_loop.clone();
        s.client_cpu = self.cpu.reading();
        s
    }
}

/// How often the collector flushes `requests.csv`.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);
