//! `kvsweep history trend`: a metric of each configuration over its stored runs (oldest to
//! newest, i.e. in commit order), each run's 95 % interval drawn through its point, as PNG and
//! SVG, with `trend.csv` and a `trend.html` report that shows the plots and the runs.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};

use super::TrendArgs;
use super::store::History;
use crate::base::plot::{Chart, Mark, PALETTE, Series};
use crate::results::collect::repeats::LEVEL;

pub fn run(args: &TrendArgs) -> Result<()> {
    let mut history = History::open(&args.db.db, false)?;
    let configs = match &args.config {
        Some(filter) => super::matching_configs(&mut history, filter)?,
        None => history.configs()?.into_iter().map(|(c, _)| c).collect(),
    };
    if configs.is_empty() {
        bail!("{} holds no runs to plot", history.place);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let metric = &args.metric;
    let mut csv = csv::Writer::from_path(args.out.join("trend.csv"))
        .with_context(|| format!("cannot write {}", args.out.join("trend.csv").display()))?;
    csv.write_record([
        "config",
        "run",
        "date",
        "label",
        "commit",
        "metric",
        "n",
        "mean",
        "ci95_low",
        "ci95_high",
    ])?;
    let mut html = format!(
        "<!doctype html><meta charset=utf-8><title>kvsweep trend: {metric}</title>\
         <h1>{metric} over stored runs</h1><p>History: {}</p>",
        escape(&history.place)
    );
    let mut plotted = 0;
    for (k, config) in configs.iter().enumerate() {
        let runs = history.config_runs(config, i64::MAX)?;
        let mut points = Vec::new();
        let mut bars = Vec::new();
        let mut rows = String::new();
        for (i, (run, cell)) in runs.iter().enumerate() {
            let Some(s) = cell.sample(metric) else {
                continue;
            };
            let x = (i + 1) as f64;
            points.push((x, s.mean));
            let half = s.half_width(LEVEL);
            if let Some(h) = half {
                bars.push(Series::line(
                    "",
                    vec![(x, s.mean - h), (x, s.mean + h)],
                    PALETTE[0],
                ));
            }
            let commit = run.meta.git_commit.clone().unwrap_or_default();
            csv.write_record([
                config.clone(),
                run.id.to_string(),
                run.meta.date.clone(),
                run.meta.label.clone().unwrap_or_default(),
                commit.clone(),
                metric.clone(),
                s.n.to_string(),
                s.mean.to_string(),
                half.map(|h| (s.mean - h).to_string()).unwrap_or_default(),
                half.map(|h| (s.mean + h).to_string()).unwrap_or_default(),
            ])?;
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}{}</td></tr>",
                i + 1,
                run.id,
                escape(&run.meta.date),
                escape(run.meta.label.as_deref().unwrap_or("")),
                escape(&commit[..commit.len().min(12)]),
                s.mean,
                half.map(|h| format!(" ± {h:.3}")).unwrap_or_default()
            );
        }
        if points.is_empty() {
            eprintln!("trend: {config}: no run has {metric}");
            continue;
        }
        let mut series = vec![Series {
            label: metric.clone(),
            points,
            color: PALETTE[0],
            mark: Mark::LineAndPoints,
            point_labels: Vec::new(),
        }];
        series.extend(bars);
        let chart = Chart {
            title: config.clone(),
            x_label: "run (oldest to newest)".into(),
            y_label: metric.clone(),
            series,
        };
        let stem = format!("trend_{metric}_{k}");
        chart.save(&args.out.join(format!("{stem}.png")))?;
        chart.save(&args.out.join(format!("{stem}.svg")))?;
        let _ = write!(
            html,
            "<h2>{}</h2><img src=\"{stem}.svg\" width=800>\
             <table><tr><th>#</th><th>run</th><th>date</th><th>label</th><th>commit</th><th>{metric} (95 % interval)</th></tr>{rows}</table>",
            escape(config)
        );
        plotted += 1;
    }
    csv.flush()?;
    if plotted == 0 {
        bail!("no stored run of the chosen configurations has the metric `{metric}`");
    }
    let page = args.out.join("trend.html");
    std::fs::write(&page, html).with_context(|| format!("cannot write {}", page.display()))?;
    eprintln!(
        "trend: {plotted} configurations plotted into {}",
        args.out.display()
    );
    println!("{}", page.display());
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
