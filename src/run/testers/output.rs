//! What the testers leave in their output directory: CSVs written a finished step at a time,
//! `progress.json` to resume, plots, and `index.html` linking every run's plots.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::data::artifact::write_json_atomic;

/// Finished steps, kept in `progress.json` so a killed run resumes without repeating one.
pub struct Progress {
    path: PathBuf,
    settings: Value,
    done: BTreeSet<String>,
}

impl Progress {
    /// Opens (or starts) the progress of `dir`. A directory holding progress made with other
    /// settings is refused, unless `restart` throws it away.
    pub fn open(dir: &Path, tester: &str, settings: Value, restart: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("progress.json");
        let mut done = BTreeSet::new();
        if path.is_file() && !restart {
            let old: Value = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            )
            .with_context(|| format!("{} is not JSON", path.display()))?;
            if old["tester"] != tester || old["settings"] != settings {
                bail!(
                    "{} holds a {} run with other settings; use another --output-dir or --force-restart",
                    path.display(),
                    old["tester"]
                );
            }
            done = old["finished"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
        } else if restart {
            for entry in std::fs::read_dir(dir)?.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "csv" || e == "png") {
                    std::fs::remove_file(&p).ok();
                }
            }
        }
        let settings = json!({"tester": tester, "settings": settings});
        let progress = Self {
            path,
            settings,
            done,
        };
        progress.save()?;
        Ok(progress)
    }

    pub(crate) fn is_done(&self, step: &str) -> bool {
        self.done.contains(step)
    }

    pub fn finished(&self) -> usize {
        self.done.len()
    }

    /// Marks `step` finished: call after its rows are written.
    pub fn finish(&mut self, step: &str) -> Result<()> {
        self.done.insert(step.to_owned());
        self.save()
    }

    fn save(&self) -> Result<()> {
        let mut v = self.settings.clone();
        v["finished"] = json!(self.done);
        write_json_atomic(&self.path, &v)
    }

    /// Drops the rows of steps that did not finish (a killed run's last step) from a CSV whose
    /// first column is the step, so the resumed step writes them once.
    pub fn prune(&self, csv_path: &Path) -> Result<()> {
        if !csv_path.is_file() {
            return Ok(());
        }
        let mut reader = csv::Reader::from_path(csv_path)
            .with_context(|| format!("cannot read {}", csv_path.display()))?;
        let header = reader.headers()?.clone();
        let keep: Vec<csv::StringRecord> = reader
            .records()
            .filter_map(|r| r.ok())
            .filter(|r| r.get(0).is_some_and(|step| self.is_done(step)))
            .collect();
        let tmp = csv_path.with_extension("csv.tmp");
        let mut w = csv::Writer::from_path(&tmp)?;
        w.write_record(&header)?;
        for r in keep {
            w.write_record(&r)?;
        }
        w.flush()?;
        drop(w);
        std::fs::rename(&tmp, csv_path)?;
        Ok(())
    }
}

/// Appends rows to a CSV (writing the header first when the file is new) and flushes.
pub fn append(path: &Path, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let new = !path.is_file();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(file);
    if new {
        w.write_record(header)?;
    }
    for r in rows {
        w.write_record(r)?;
    }
    w.flush()?;
    Ok(())
}

/// Reads back the rows of a CSV as column → value maps (for summaries and plots).
pub(crate) fn read_rows(path: &Path) -> Result<Vec<std::collections::HashMap<String, String>>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(reader.deserialize().filter_map(|r| r.ok()).collect())
}

pub fn f(x: f64) -> String {
    format!("{x:.3}")
}

pub fn opt(x: Option<f64>) -> String {
    x.map(f).unwrap_or_default()
}

/// `run_command.sh`: the command line that made this directory, to run it again.
pub(crate) fn write_command(dir: &Path) -> Result<()> {
    let args: Vec<String> = std::env::args()
        .map(|a| shlex::try_quote(&a).map_or(a.clone(), |q| q.into_owned()))
        .collect();
    let path = dir.join("run_command.sh");
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(
        f,
        "#!/bin/sh\n# Made by kvsweep {}; runs the same test again (it resumes from progress.json).",
        crate::VERSION
    )?;
    writeln!(f, "exec {}", args.join(" "))?;
    Ok(())
}

/// `index.html` under `root`: every tester run below it (a directory with `progress.json`),
/// its settings and summary tables, and links to its plots.
pub(crate) fn write_index(root: &Path) -> Result<PathBuf> {
    let mut runs = Vec::new();
    collect_runs(root, 0, &mut runs);
    runs.sort();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kvsweep cache tests</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:48%;margin:4px}</style></head><body><h1>kvsweep cache tests</h1>\n",
    );
    if runs.is_empty() {
        html.push_str("<p>No tester runs under this directory.</p>\n");
    }
    for run in &runs {
        let rel = run.strip_prefix(root).unwrap_or(run);
        let prefix = if rel.as_os_str().is_empty() {
            String::new()
        } else {
            format!("{}/", rel.display())
        };
        let progress: Value = std::fs::read_to_string(run.join("progress.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        html.push_str(&format!(
            "<h2>{} — {}</h2>\n<p>settings: <code>{}</code>; finished steps: {}</p>\n",
            escape(&rel.display().to_string()),
            escape(progress["tester"].as_str().unwrap_or("?")),
            escape(&progress["settings"].to_string()),
            progress["finished"].as_array().map_or(0, Vec::len),
        ));
        let mut files: Vec<PathBuf> = std::fs::read_dir(run)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for file in &files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("summary") && name.ends_with(".csv") {
                html.push_str(&format!("<h3>{}</h3>\n{}", escape(&name), table(file)));
            }
        }
        for file in &files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".png") {
                html.push_str(&format!(
                    "<a href=\"{p}{n}\"><img src=\"{p}{n}\" alt=\"{n}\"></a>\n",
                    p = escape(&prefix),
                    n = escape(&name)
                ));
            }
        }
        html.push_str("<p>");
        for file in &files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".csv") {
                html.push_str(&format!(
                    "<a href=\"{}{}\">{}</a> ",
                    escape(&prefix),
                    escape(&name),
                    escape(&name)
                ));
            }
        }
        html.push_str("</p>\n");
    }
    html.push_str("</body></html>\n");
    let path = root.join("index.html");
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn collect_runs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if dir.join("progress.json").is_file() {
        out.push(dir.to_path_buf());
    }
    if depth >= 4 {
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            collect_runs(&entry.path(), depth + 1, out);
        }
    }
}

fn table(csv_path: &Path) -> String {
    let Ok(mut reader) = csv::Reader::from_path(csv_path) else {
        return String::new();
    };
    let mut html = String::from("<table><tr>");
    if let Ok(h) = reader.headers() {
        for c in h {
            html.push_str(&format!("<th>{}</th>", escape(c)));
        }
    }
    html.push_str("</tr>\n");
    for r in reader.records().flatten() {
        html.push_str("<tr>");
        for c in &r {
            html.push_str(&format!("<td>{}</td>", escape(c)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
