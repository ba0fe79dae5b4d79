//! report.html opens with the offload story: at the highest user count that ran offload on and
//! off at the same tp, how the hit rate and total tok/s/GPU changed; and a simulated sweep says
//! how much faster than real time it ran.

use crate::common;

use std::path::Path;

use common::cells::SyntheticCell;
use common::sim::SimServer;
use kvsweep::data::artifact::schema::{JsonArtifact, Metadata, Summary};

/// A synthetic cell with the given client hit rate and total tok/s (across its GPUs).
fn cell(dir: &Path, tp: u32, users: u32, offload: &'static str, hit: f64, total_tps: f64) {
    let mut c = SyntheticCell::new("h100", tp, users, offload);
    c.total_tps = total_tps;
    patch_hit_rate(&c.write(dir), hit);
}

/// Sets the client hit rate in a written cell's summary.json.
fn patch_hit_rate(cell_dir: &Path, hit: f64) {
    let mut summary = Summary::read(cell_dir).expect("summary.json");
    summary.cache.hit_rate = Some(hit);
    summary.write(cell_dir).expect("write summary");
}

/// What a replay against the simulator keeps in metadata.json: its /v1/models answer.
fn metadata(dir: &Path, speed: f64, time_scale: f64) {
    for entry in std::fs::read_dir(dir).expect("cells") {
        Metadata {
            format_version: Metadata::VERSION,
            engine: Some("sim".into()),
            time_scale,
            simulated: Some(true),
            models: Some(serde_json::json!({"object": "list", "data": [
                {"id": "llama-3.1-8b", "owned_by": "kvsweep-sim", "sim_speed": speed}
            ]})),
            ..Metadata::default()
        }
        .write(&entry.expect("entry").path())
        .expect("write metadata");
    }
}

/// The collected report's HTML, with the entities the template escapes turned back into text.
fn report(cells: &Path) -> String {
    let out = cells.parent().expect("parent").join("collected");
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    [
        ("&#x2f;", "/"),
        ("&#x27;", "'"),
        ("&quot;", "\""),
        ("&lt;", "<"),
        ("&gt;", ">"),
    ]
    .iter()
    .fold(html, |text, (entity, ch)| text.replace(entity, ch))
    .replace("&amp;", "&")
}

/// The text of the page's first `<p class="story">`.
fn first_story(html: &str) -> Option<&str> {
    let start = html.find("<p class=\"story\">")? + "<p class=\"story\">".len();
    Some(&html[start..start + html[start..].find("</p>")?])
}

#[test]
fn the_story_compares_on_and_off_at_the_highest_user_count_that_ran_both() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cells = tmp.path().join("cells");
    // At 2 users offload makes no difference; at 32 it does, on both tps.
    for tp in [1, 2] {
        let gpus = f64::from(tp);
        cell(&cells, tp, 2, "on", 0.95, 1000.0 * gpus);
        cell(&cells, tp, 2, "off", 0.95, 1000.0 * gpus);
    }
    // tp 1: 40 % → 90 %, 1,000 → 2,000 tok/s/GPU; tp 2: 60 % → 80 %, 2,000 → 2,500.
    cell(&cells, 1, 32, "off", 0.40, 1000.0);
    cell(&cells, 1, 32, "on", 0.90, 2000.0);
    cell(&cells, 2, 32, "off", 0.60, 4000.0);
    cell(&cells, 2, 32, "on", 0.80, 5000.0);
    // 64 users ran with offload on only: no pair, so not the story's user count.
    cell(&cells, 1, 64, "on", 0.10, 100.0);

    let html = report(&cells);
    // Hit rates averaged over the tps, (40 + 60) / 2 → (90 + 80) / 2; tok/s/GPU
    // (1,000 + 2,000) / 2 = 1,500 → (2,000 + 2,500) / 2 = 2,250: +50 %.
    assert_eq!(
        first_story(&html),
        Some(
            "At 32 users (tp 1 and 2, averaged), offload on changed the hit rate from 50.0 % to 85.0 % and total tok/s/GPU by +50 %."
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<li>tp 1: hit rate 40.0 % → 90.0 %, total tok/s/GPU 1,000 → 2,000 (+100 %)</li>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<li>tp 2: hit rate 60.0 % → 80.0 %, total tok/s/GPU 2,000 → 2,500 (+25 %)</li>"
        ),
        "{html}"
    );
    let story_at = html.find("<p class=\"story\">").expect("story");
    let headline_at = html.find("<h2>Headline</h2>").expect("headline");
    assert!(story_at < headline_at, "the page opens with the story");
}

#[test]
fn a_single_tp_story_names_it_and_a_loss_reads_as_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cells = tmp.path().join("cells");
    cell(&cells, 2, 8, "off", 0.5, 2000.0);
    cell(&cells, 2, 8, "on", 0.5, 1916.0);
    let html = report(&cells);
    assert_eq!(
        first_story(&html),
        Some(
            "At 8 users (tp 2), offload on changed the hit rate from 50.0 % to 50.0 % and total tok/s/GPU by -4.2 %."
        ),
    );
    assert!(
        !html.contains("<ul class=\"story-details\">"),
        "one tp needs no lines per tp"
    );
}

#[test]
fn each_runner_gets_its_own_story_that_names_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cells = tmp.path().join("cells");
    for (runner, tps_on) in [("h100", 1500.0), ("h200", 3000.0)] {
        for (offload, hit, tps) in [("off", 0.5, 1000.0), ("on", 0.9, tps_on)] {
            let mut c = SyntheticCell::new(runner, 1, 8, offload);
            c.total_tps = tps;
            patch_hit_rate(&c.write(&cells), hit);
        }
    }
    let html = report(&cells);
    assert!(
        html.contains("<p class=\"story\">At 8 users with llama-3.1-8b on h100 (tp 1), offload on changed the hit rate from 50.0 % to 90.0 % and total tok/s/GPU by +50 %.</p>"),
        "{html}"
    );
    assert!(
        html.contains("<p class=\"story\">At 8 users with llama-3.1-8b on h200 (tp 1), offload on changed the hit rate from 50.0 % to 90.0 % and total tok/s/GPU by +200 %.</p>"),
        "{html}"
    );
}

#[test]
fn no_story_without_an_on_and_off_pair() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cells = tmp.path().join("cells");
    cell(&cells, 1, 8, "on", 0.9, 1000.0);
    cell(&cells, 2, 8, "off", 0.5, 1000.0);
    let html = report(&cells);
    assert_eq!(first_story(&html), None);
}

#[test]
fn a_simulated_sweep_says_how_much_faster_than_real_time_it_ran() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cells = tmp.path().join("cells");
    cell(&cells, 1, 8, "off", 0.5, 1000.0);
    cell(&cells, 1, 8, "on", 0.9, 1500.0);
    let plain = report(&cells);
    assert!(plain.contains("<strong>Simulated.</strong>"));
    assert!(
        !plain.contains("faster than real time"),
        "no speed recorded, none claimed"
    );

    metadata(&cells, 10.0, 0.1);
    let html = report(&cells);
    assert!(
        html.contains("The simulator ran 10× faster than real time: each second of a cell modelled 10 s of serving. The replay scaled the think times of the traces by 0.1."),
        "{html}"
    );
    assert!(
        html.contains("the tok/s measured in wall-clock time were divided by 10 and the latencies multiplied by it"),
        "{html}"
    );
}

/// The `sim_speed` in the /v1/models answer of a simulator started with `args`.
async fn reported_speed(args: &[&str]) -> serde_json::Value {
    let server = SimServer::start(args);
    let models: serde_json::Value = reqwest::get(server.url("/v1/models"))
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    models["data"][0]["sim_speed"].clone()
}

#[tokio::test]
async fn the_simulator_reports_its_speed_where_a_replay_records_it() {
    assert_eq!(reported_speed(&["--speed", "20"]).await, 20.0);
    assert_eq!(reported_speed(&[]).await, 1.0);
    // With --instant, steps take no time: there is no speed to report.
    assert_eq!(
        reported_speed(&["--speed", "20", "--instant"]).await,
        serde_json::Value::Null
    );
}
