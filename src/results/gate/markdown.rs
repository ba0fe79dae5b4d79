//! The gate's Markdown: the whole table for the workflow's step summary, and a short PR
//! comment (verdict, regressions and improvements) with a marker a workflow can find to update
//! its previous comment instead of adding one per push.

use std::fmt::Write as _;

use super::verdict::Outcome;
use super::{Report, Row};

/// The line a workflow looks for to find the gate's previous comment.
const COMMENT_MARKER: &str = "<!-- kvsweep-gate -->";

fn headline(report: &Report) -> String {
    let n = report.regressions().count();
    if n == 0 {
        "✅ kvsweep gate passed: no regression".into()
    } else {
        format!("❌ kvsweep gate failed: {n} regression(s)")
    }
}

fn rules_line(report: &Report) -> String {
    format!(
        "Candidate `{}` against baseline `{}`. A regression is a change worse than {:.1} % by more than the noise explains, at {:.0} % per configuration (Welch's one-sided t-test against the margin on the repeats, or the configuration's history for a single run; each metric at that level divided by the number of metrics; spread floor {:.1} % of the mean).",
        report.candidate,
        report.baseline,
        report.rules.margin * 100.0,
        report.rules.alpha * 100.0,
        report.rules.noise_floor * 100.0
    )
}

fn mark(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Regression => "🔴",
        Outcome::Improvement => "🟢",
        Outcome::WithinMargin => "⚪",
        Outcome::NotSignificant => "🟡",
        Outcome::Untested => "⚫",
    }
}

fn table(rows: &[&Row]) -> String {
    let mut t = String::from(
        "| configuration | metric | baseline | candidate | change | p-value | verdict |\n| --- | --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| `{}` | {} | {:.4} (n={}) | {:.4} (n={}) | {:+.1} % | {} | {} {} |",
            r.config,
            r.metric,
            r.baseline,
            r.baseline_n,
            r.candidate,
            r.candidate_n,
            r.verdict.change * 100.0,
            r.verdict.p_value.map_or("–".into(), |p| format!("{p:.4}")),
            mark(r.verdict.outcome),
            r.verdict.outcome.as_str()
        );
    }
    t
}

/// The step summary: every gated metric.
pub fn summary(report: &Report) -> String {
    let mut s = format!("## {}\n\n{}\n\n", headline(report), rules_line(report));
    let rows: Vec<&Row> = report.rows.iter().collect();
    s.push_str(&table(&rows));
    if !report.new_configs.is_empty() {
        let _ = writeln!(s, "\nNot in the baseline (not gated):");
        for c in &report.new_configs {
            let _ = writeln!(s, "- `{c}`");
        }
    }
    s
}

/// The PR comment: the verdict and only what changed beyond the margin significantly.
pub(crate) fn pr_comment(report: &Report) -> String {
    let mut s = format!(
        "{COMMENT_MARKER}\n### {}\n\n{}\n\n",
        headline(report),
        rules_line(report)
    );
    let changed: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| {
            matches!(
                r.verdict.outcome,
                Outcome::Regression | Outcome::Improvement
            )
        })
        .collect();
    if changed.is_empty() {
        let _ = writeln!(
            s,
            "No significant change beyond the margin in {} gated metrics.",
            report.rows.len()
        );
    } else {
        s.push_str(&table(&changed));
    }
    s.push_str("\nThe full table is in the workflow run's summary.\n");
    s
}
