//! Cost, energy and cache-tier views (`kvsweep collect`): constructed cells with known
//! throughput, GPU power samples and the runners' prices give the exact figures; the command
//! line overrides the runners' figures; the report draws the panels and says what offload
//! changed in cost.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use common::cells::SyntheticCell;
use kvsweep::data::artifact::schema::{
    CellPlan, GpuRow, JsonArtifact, Metadata, MetricsRow, Summary,
};
use kvsweep::plan::engine::EngineKind;

/// Makes a synthetic cell a real vLLM cell (not simulated) whose replay started at unix 1000.
fn as_vllm(dir: &Path) {
    let mut plan = CellPlan::read(dir).expect("cell.json");
    plan.engine = EngineKind::Vllm;
    plan.write(dir).expect("cell.json");
    let mut summary = Summary::read(dir).expect("summary.json");
    summary.engine = "vllm".into();
    summary.simulated = false;
    summary.write(dir).expect("summary.json");
    metadata(dir, None);
}

/// A replay's metadata.json: started at unix 1000, against a server whose /v1/models said
/// `models`.
fn metadata(dir: &Path, models: Option<serde_json::Value>) {
    Metadata {
        format_version: Metadata::VERSION,
        started_at: 1000.0,
        duration_s: 60.0,
        simulated: Some(models.is_some()),
        models,
        ..Metadata::default()
    }
    .write(dir)
    .expect("metadata.json");
}

/// GPU 0 ramps 400 → 500 → 600 W across the 60 s replay (mean 500 W), GPU 1 holds 500 W; a
/// sample after the replay's end must not count.
fn gpu_csv(dir: &Path) {
    let mut w = csv::Writer::from_path(dir.join(GpuRow::FILE)).expect("gpu.csv");
    for (t, gpu, watts) in [
        (1000.0, "0", 400.0),
        (1000.0, "1", 500.0),
        (1030.0, "0", 500.0),
        (1060.0, "0", 600.0),
        (1060.0, "1", 500.0),
        (1100.0, "0", 5000.0),
    ] {
        w.serialize(GpuRow {
            time: t,
            gpu: gpu.into(),
            util_pct: Some(90.0),
            mem_used_mib: None,
            mem_total_mib: None,
            power_w: Some(watts),
        })
        .expect("row");
    }
    w.flush().expect("flush");
}

/// Server counters split by tier over three scrapes 10 s apart: 6,000 prompt tokens, 3,000
/// from HBM, 2,000 from the host tier; 20 GB to the host and 5 GB back.
fn tier_metrics(dir: &Path) {
    let mut w = csv::Writer::from_path(dir.join(MetricsRow::FILE)).expect("metrics.csv");
    for i in 0..3 {
        let k = f64::from(i);
        w.serialize(MetricsRow {
            time: 1000.0 + 10.0 * k,
            rel_s: 10.0 * k,
            prompt_tokens: Some(3000.0 * k),
            prefix_hits: Some(2500.0 * k),
            prefix_hits_device: Some(1500.0 * k),
            prefix_hits_host: Some(1000.0 * k),
            offload_bytes_to_cpu: Some(1e10 * k),
            offload_bytes_to_gpu: Some(2.5e9 * k),
            format_version: MetricsRow::VERSION,
            ..MetricsRow::default()
        })
        .expect("row");
    }
    w.flush().expect("flush");
}

type Rows = Vec<HashMap<String, String>>;

fn row<'a>(rows: &'a Rows, cell: &str) -> &'a HashMap<String, String> {
    rows.iter()
        .find(|r| r["cell"] == cell)
        .unwrap_or_else(|| panic!("no row {cell}"))
}

/// Asserts `cell`'s `column` is `expected` to 12 significant digits.
fn assert_figure(rows: &Rows, cell: &str, column: &str, expected: f64) {
    let text = &row(rows, cell)[column];
    let got: f64 = text
        .parse()
        .unwrap_or_else(|e| panic!("{cell} {column} = `{text}`: {e}"));
    assert!(
        (got - expected).abs() <= expected.abs() * 1e-12,
        "{cell} {column}: {got}, expected {expected}"
    );
}

/// The cells: on h200, tp 2, 8 users, offload on serving 10,000 tok/s (9,000 in, 1,000 out)
/// with GPU power measured, offload off serving 5,000 tok/s without; on the `cpu` runner, a
/// simulator cell that modelled a B200 at 20× speed, and one that did not say what it modelled.
fn cells(parent: &Path) -> [String; 4] {
    let mut on = SyntheticCell::new("h200", 2, 8, "on");
    on.total_tps = 10_000.0;
    let dir = on.write(parent);
    as_vllm(&dir);
    gpu_csv(&dir);
    tier_metrics(&dir);
    let mut off = SyntheticCell::new("h200", 2, 8, "off");
    off.total_tps = 5_000.0;
    as_vllm(&off.write(parent));
    let sim = SyntheticCell::new("cpu", 1, 8, "on");
    metadata(
        &sim.write(parent),
        Some(serde_json::json!({"data": [{"id": "m", "sim_speed": 20.0, "sim_runner": "b200"}]})),
    );
    let unknown = SyntheticCell::new("cpu", 1, 8, "off");
    unknown.write(parent);
    [on.name, off.name, sim.name, unknown.name]
}

#[test]
fn constructed_cells_give_the_exact_cost_and_energy_figures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let [on, off, sim, unknown] = cells(&tmp.path().join("cells"));
    let out = tmp.path().join("out");
    common::kvsweep_ok(&[
        "collect",
        tmp.path().join("cells").to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let rows = common::csv_rows(&out.join("summary.csv"));

    // Offload on: 4,500 / 500 / 5,000 tok/s per GPU; h200 at $1.41, $1.74, $1.60 per GPU-hour;
    // measured 500 W per GPU.
    assert_figure(&rows, &on, "usd_per_mtok_total_hyperscaler", 1.41 / 18.0);
    assert_figure(&rows, &on, "usd_per_mtok_input_hyperscaler", 1.41 / 16.2);
    assert_figure(&rows, &on, "usd_per_mtok_output_hyperscaler", 1.41 / 1.8);
    assert_figure(&rows, &on, "usd_per_mtok_total_neocloud", 1.74 / 18.0);
    assert_figure(&rows, &on, "usd_per_mtok_total_rental_3y", 1.60 / 18.0);
    assert_figure(&rows, &on, "usd_per_mtok_output_rental_3y", 1.60 / 1.8);
    assert_figure(&rows, &on, "power_w_per_gpu", 500.0);
    assert_figure(&rows, &on, "tps_per_mw", 1e7);
    assert_figure(&rows, &on, "joules_per_output_token", 1.0);
    assert_figure(&rows, &on, "joules_per_total_token", 0.1);
    assert_eq!(row(&rows, &on)["energy_basis"], "measured");
    assert_eq!(row(&rows, &on)["priced_as"], "h200");

    // Offload off: 2,250 / 250 / 2,500 per GPU, no power samples: the runner's 1.73 kW.
    assert_figure(&rows, &off, "usd_per_mtok_total_hyperscaler", 1.41 / 9.0);
    assert_figure(&rows, &off, "power_w_per_gpu", 1730.0);
    assert_figure(&rows, &off, "tps_per_mw", 2500.0 * 1e6 / 1730.0);
    assert_figure(&rows, &off, "joules_per_output_token", 6.92);
    assert_figure(&rows, &off, "joules_per_total_token", 0.692);
    assert_eq!(row(&rows, &off)["energy_basis"], "estimated");

    // The simulator's 8,000 tok/s at 20× are a B200's 400 (360 in, 40 out) at $1.95 and 2.17 kW.
    assert_figure(&rows, &sim, "usd_per_mtok_total_hyperscaler", 1.95 / 1.44);
    assert_figure(&rows, &sim, "usd_per_mtok_output_neocloud", 2.34 / 0.144);
    assert_figure(&rows, &sim, "joules_per_output_token", 2170.0 / 40.0);
    assert_eq!(row(&rows, &sim)["energy_basis"], "simulated");
    // ... and its row says so in every figure: the B200's tok/s, the speed kept.
    assert_figure(&rows, &sim, "total_tps_per_gpu", 400.0);
    assert_figure(&rows, &sim, "sim_speed", 20.0);
    assert_eq!(row(&rows, &unknown)["sim_speed"], "");
    assert_eq!(row(&rows, &sim)["priced_as"], "b200");

    // The `cpu` runner has no figures of its own: empty, not zero.
    for column in ["usd_per_mtok_total_hyperscaler", "tps_per_mw", "priced_as"] {
        assert_eq!(row(&rows, &unknown)[column], "", "{column}");
    }

    // The panels: per runner with priced cells; the points name their configuration.
    for stem in [
        "cost_vs_interactivity_h200",
        "tps_per_mw_vs_interactivity_h200",
        "cost_vs_interactivity_cpu",
    ] {
        let path = out.join(format!("plots/{stem}.svg"));
        let svg = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert!(svg.contains("offload on"), "{stem}");
    }
    let svg =
        std::fs::read_to_string(out.join("plots/cost_vs_interactivity_h200.svg")).expect("svg");
    assert!(
        svg.contains("tp 2 8u"),
        "a point labelled with its tp and users"
    );
    let pareto = common::csv_rows(&out.join("pareto.csv"));
    let cost_rows: Vec<_> = pareto
        .iter()
        .filter(|r| r["panel"] == "cost_vs_interactivity" && r["group"] == "h200/all")
        .collect();
    assert_eq!(cost_rows.len(), 2);
    // Equal interactivity: the cheaper cell (offload on) alone is on the frontier.
    for r in cost_rows {
        assert_eq!(r["on_frontier"] == "true", r["cell"] == on, "{r:?}");
    }

    let html = std::fs::read_to_string(out.join("report.html"))
        .expect("report")
        .replace("&#x2f;", "/");
    assert!(
        html.contains("At 8 users with llama-3.1-8b on h200, offload on changed the cost per million total tokens at equal or better interactivity from $0.157 (tp 2, 55.6 tok/s/user) to $0.0783 (tp 2, 55.6 tok/s/user): -50 %."),
        "{html}"
    );
    assert!(html.contains("No price or power figures for runner cpu"));
}

#[test]
fn prompt_tokens_are_split_by_cache_tier_per_cell_and_across_cells() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let [on, off, ..] = cells(&tmp.path().join("cells"));
    let out = tmp.path().join("out");
    common::kvsweep_ok(&[
        "collect",
        tmp.path().join("cells").to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let rows = common::csv_rows(&out.join("summary.csv"));
    assert_figure(&rows, &on, "prompt_tokens_hbm", 3000.0);
    assert_figure(&rows, &on, "prompt_tokens_host", 2000.0);
    assert_figure(&rows, &on, "prompt_tokens_computed", 1000.0);
    assert_figure(&rows, &on, "offload_to_host_gb_s", 1.0);
    assert_figure(&rows, &on, "offload_from_host_gb_s", 0.25);
    // The synthetic off cell's server counted hits but no split and no prompt tokens.
    assert_eq!(row(&rows, &off)["prompt_tokens_host"], "");
    for stem in ["tiers_hbm", "tiers_host", "tiers_computed"] {
        let path = out.join(format!("plots/{stem}.png"));
        assert!(path.metadata().expect("plot").len() > 1000, "{path:?}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(html.contains(&format!("Prompt tokens by cache tier: {on}")));
    assert!(!html.contains(&format!("Prompt tokens by cache tier: {off}")));
    // The tier table: half of the on cell's prompt tokens from HBM, a third from the host.
    assert!(html.contains("<td>50.0%</td><td>33.3%</td><td>16.7%</td><td>1.00</td><td>0.25</td>"));
}

#[test]
fn the_command_line_overrides_the_runners_figures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let [on, off, ..] = cells(&tmp.path().join("cells"));
    let out = tmp.path().join("out");
    common::kvsweep_ok(&[
        "collect",
        tmp.path().join("cells").to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--gpu-price",
        "neocloud=3.6",
        "--gpu-power-kw",
        "2",
    ]);
    let rows = common::csv_rows(&out.join("summary.csv"));
    assert_figure(&rows, &on, "usd_per_mtok_total_neocloud", 0.2);
    assert_figure(&rows, &off, "usd_per_mtok_total_neocloud", 0.4);
    // The other prices stay the runner's; measured power wins over any figure.
    assert_figure(&rows, &on, "usd_per_mtok_total_hyperscaler", 1.41 / 18.0);
    assert_figure(&rows, &on, "joules_per_output_token", 1.0);
    assert_figure(&rows, &off, "joules_per_output_token", 8.0);

    let err = common::kvsweep_err(&[
        "collect",
        tmp.path().join("cells").to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--gpu-price",
        "spot=1",
    ]);
    assert!(err.contains("hyperscaler, neocloud, rental_3y"), "{err}");
}

#[test]
fn a_specs_figures_travel_in_cell_json_and_the_command_line_wins_over_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A native spec rendered: its `economics:` lands in the cell's plan.
    let spec = std::fs::read_to_string(common::repo_root().join("sweeps/local-sim.yaml"))
        .expect("spec")
        .replace(
            "../traces/generated",
            common::repo_root()
                .join("traces/generated")
                .to_str()
                .expect("utf-8"),
        )
        + "economics:\n  prices:\n    neocloud: {usd_per_gpu_hour: 3.6, source: a quote, date: \"2026-05\"}\n";
    let spec = common::write(tmp.path(), "spec.yaml", &spec);
    let rendered = tmp.path().join("rendered");
    common::kvsweep_ok(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--cell",
        "local-sim_cpu_tp1_users2_offloadon",
        "--out",
        rendered.to_str().expect("utf-8"),
    ]);
    // run.sh writes the plan as cell.json when it runs: take it from there.
    let script = std::fs::read_to_string(rendered.join("run.sh")).expect("run.sh");
    let json = script
        .split("<<'KVSWEEP_CELL_JSON'\n")
        .nth(1)
        .and_then(|rest| rest.split("\nKVSWEEP_CELL_JSON").next())
        .expect("the cell.json here-document");
    let plan: CellPlan = serde_json::from_str(json).expect("cell.json");
    let given = plan.economics.expect("the spec's economics");
    let neocloud = given.prices.neocloud.clone().expect("a neocloud price");
    assert_eq!(
        (neocloud.usd_per_gpu_hour, neocloud.source.as_str()),
        (3.6, "a quote")
    );
    assert_eq!(given.power, None);

    // Collect prices the cell with the spec's figure, the command line's over it.
    let [_, off, ..] = cells(&tmp.path().join("cells"));
    let off_dir = tmp.path().join("cells").join(&off);
    let mut off_plan = CellPlan::read(&off_dir).expect("cell.json");
    off_plan.economics = Some(given);
    off_plan.write(&off_dir).expect("cell.json");
    let cells_dir = tmp.path().join("cells");
    let out = tmp.path().join("out");
    let collect = |extra: &[&str]| {
        let mut args = vec![
            "collect",
            cells_dir.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        common::kvsweep_ok(&args);
        common::csv_rows(&out.join("summary.csv"))
    };
    let rows = collect(&[]);
    assert_figure(&rows, &off, "usd_per_mtok_total_neocloud", 0.4);
    assert_figure(&rows, &off, "usd_per_mtok_total_hyperscaler", 1.41 / 9.0);
    let rows = collect(&["--gpu-price", "neocloud=1.8"]);
    assert_figure(&rows, &off, "usd_per_mtok_total_neocloud", 0.2);
}

/// The report's cost sentence of a collect of `cells`, at `users`.
fn cost_sentence(cells: &Path, users: u32) -> String {
    let out = cells.parent().expect("parent").join("out");
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let html = std::fs::read_to_string(out.join("report.html"))
        .expect("report")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/");
    // The story opens "At N users (tp ...": the cost sentence has a comma after the users.
    let start = html
        .find(&format!("At {users} users, "))
        .unwrap_or_else(|| panic!("no sentence at {users} users: {html}"));
    let end = start + html[start..].find("</").expect("the sentence ends");
    html[start..end].to_owned()
}

/// At 2 users offload changes nothing: the tp 1 cells, each run twice, differ by noise alone,
/// offload on's interactivity a little lower than off's but inside the repeats' intervals. The
/// sentence says nothing changed, at tp 1, rather than comparing with the dearer tp 2.
#[test]
fn the_cost_sentence_calls_noise_no_change_and_keeps_the_configuration() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cells = tmp.path().join("cells");
    for (tp, offload, runs) in [
        (1, "off", [(2000.0, 9.40), (2020.0, 9.50)]),
        (1, "on", [(2010.0, 9.48), (1990.0, 9.56)]),
        (2, "off", [(2300.0, 5.7), (2320.0, 5.8)]),
        (2, "on", [(2280.0, 5.6), (2300.0, 5.7)]),
    ] {
        for (k, (total_tps, tpot)) in (1..).zip(runs) {
            let mut c = SyntheticCell::new("h100", tp, 2, offload);
            c.total_tps = total_tps;
            c.tpot_p50_ms = tpot;
            common::write_repeat(&c, &cells, k);
        }
    }
    let sentence = cost_sentence(&cells, 2);
    assert!(
        sentence.starts_with("At 2 users, offload on left the cost per million total tokens at equal or better interactivity unchanged within the repeats' 95 % intervals: $0.180 off (tp 1, 105.8 tok/s/user), $0.181 on (tp 1, 105.0 tok/s/user)."),
        "{sentence}"
    );
    assert!(!sentence.contains("tp 2"), "{sentence}");
}

/// Single runs: offload on at offload off's cheapest configuration (tp 1) is compared with it,
/// and a cheaper offload-on configuration elsewhere (tp 2) gets a sentence of its own.
#[test]
fn the_cost_sentence_compares_the_same_configuration_and_names_a_cheaper_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cells = tmp.path().join("cells");
    // Per GPU: tp 1 off 4,000 and on 5,000 tok/s at 50 tok/s/user; tp 2 off 1,000 and on
    // 6,000 at 100.
    for (tp, offload, total_tps, tpot) in [
        (1, "off", 4000.0, 20.0),
        (1, "on", 5000.0, 20.0),
        (2, "off", 2000.0, 10.0),
        (2, "on", 12_000.0, 10.0),
    ] {
        let mut c = SyntheticCell::new("h100", tp, 8, offload);
        c.total_tps = total_tps;
        c.tpot_p50_ms = tpot;
        c.write(&cells);
    }
    // $1.30 an hour: 1.3 / (4,000 × 0.0036) = $0.0903; 5,000 → $0.0722; 6,000 → $0.0602.
    assert_eq!(
        cost_sentence(&cells, 8),
        "At 8 users, offload on changed the cost per million total tokens at equal or better interactivity from $0.0903 (tp 1, 50.0 tok/s/user) to $0.0722 (tp 1, 50.0 tok/s/user): -20 %. The cheapest offload-on configuration as interactive, tp 2, 100.0 tok/s/user, costs $0.0602 (-33 % against offload off)."
    );
}

#[test]
fn collect_prices_with_the_runners_given_by_runners_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let [on, ..] = cells(&tmp.path().join("cells"));
    // The built-in runners, with h200's hyperscaler price doubled.
    let runners = tmp.path().join("runners");
    std::fs::create_dir(&runners).expect("mkdir");
    for entry in std::fs::read_dir(common::repo_root().join("runners")).expect("runners") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("runner");
        let text = if path.ends_with("h200.yaml") {
            assert!(
                text.contains("usd_per_gpu_hour: 1.41"),
                "h200's price moved"
            );
            text.replace("usd_per_gpu_hour: 1.41", "usd_per_gpu_hour: 2.82")
        } else {
            text
        };
        std::fs::write(runners.join(path.file_name().expect("name")), text).expect("write");
    }
    let out = tmp.path().join("out");
    common::kvsweep_ok(&[
        "--runners-dir",
        runners.to_str().expect("utf-8"),
        "collect",
        tmp.path().join("cells").to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let rows = common::csv_rows(&out.join("summary.csv"));
    assert_figure(&rows, &on, "usd_per_mtok_total_hyperscaler", 2.82 / 18.0);
}
