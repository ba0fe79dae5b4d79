//! `kvsweep history` and `kvsweep gate`: sweeps stored in SQLite (and a real PostgreSQL with
//! the `external-tools` feature), the gate's verdicts and outputs, and bad input refused with
//! the database left as it was. `acceptance` runs the gate on real repeated sweeps against the
//! simulator (A/A and planted slowdowns).

mod acceptance;

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;

/// One configuration of a synthetic collected sweep: per metric, the repeats' values.
pub struct Config<'a> {
    pub cell: &'a str,
    pub users: u32,
    pub model: &'a str,
    pub tps: &'a [f64],
    pub tpot: &'a [f64],
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Writes what `kvsweep collect` would for `configs` into `dir` (summary.csv, and repeats.csv
/// for repeated cells) and returns `dir`.
pub fn collected(dir: &Path, configs: &[Config]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut summary = String::from(
        "cell,runner,model,engine,precision,tp,ep,users,offload,simulated,measured_by,status,repeats,total_tps_per_gpu,tpot_p50_ms\n",
    );
    let mut repeats = String::from("cell,metric,n,mean,sd,ci95_low,ci95_high\n");
    for c in configs {
        let (tps, tps_sd) = mean_sd(c.tps);
        let (tpot, tpot_sd) = mean_sd(c.tpot);
        summary.push_str(&format!(
            "{},h100,{},sim,,1,1,{},on,true,kvsweep,ok,{},{tps},{tpot}\n",
            c.cell,
            c.model,
            c.users,
            c.tps.len()
        ));
        if c.tps.len() > 1 {
            for (metric, n, m, sd) in [
                ("total_tps_per_gpu", c.tps.len(), tps, tps_sd),
                ("tpot_p50_ms", c.tpot.len(), tpot, tpot_sd),
            ] {
                repeats.push_str(&format!("{},{metric},{n},{m},{sd},,\n", c.cell));
            }
        }
    }
    common::write(dir, "summary.csv", &summary);
    if configs.iter().any(|c| c.tps.len() > 1) {
        common::write(dir, "repeats.csv", &repeats);
    }
    dir.to_path_buf()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn kvsweep(args: &[&str], step_summary: Option<&Path>) -> Output {
    let mut cmd = common::kvsweep();
    cmd.args(args)
        .env_remove("KVSWEEP_DB")
        .env_remove("GITHUB_SHA")
        .env_remove("GITHUB_RUN_ID");
    match step_summary {
        Some(p) => cmd.env("GITHUB_STEP_SUMMARY", p),
        None => cmd.env_remove("GITHUB_STEP_SUMMARY"),
    };
    common::run(&mut cmd)
}

fn ok(args: &[&str]) -> String {
    let out = kvsweep(args, None);
    assert!(
        out.status.success(),
        "kvsweep {args:?} failed:\n{}",
        common::stderr(&out)
    );
    common::stdout(&out)
}

fn err(args: &[&str]) -> String {
    let out = kvsweep(args, None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "kvsweep {args:?} should have failed with 1; stdout:\n{}\nstderr:\n{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    common::stderr(&out)
}

const STEADY: &[f64] = &[1000.0, 1010.0, 990.0];
const QUICK: &[f64] = &[10.0, 10.1, 9.9];

/// A baseline of two configurations, three repeats each.
fn baseline(dir: &Path) -> PathBuf {
    collected(
        dir,
        &[
            Config {
                cell: "u8",
                users: 8,
                model: "llama-3.1-8b",
                tps: STEADY,
                tpot: QUICK,
            },
            Config {
                cell: "u16",
                users: 16,
                model: "llama-3.1-8b",
                tps: STEADY,
                tpot: QUICK,
            },
        ],
    )
}

/// Adds, lists, shows, refuses the same sweep twice, and gates against `db:LABEL` and
/// `db:latest` in the database at `db` (a SQLite path or a PostgreSQL URL).
pub fn add_show_and_gate(db: &str, work: &Path) {
    let base = baseline(&work.join("base"));
    let out = ok(&[
        "history",
        "add",
        s(&base),
        "--db",
        db,
        "--label",
        "main",
        "--commit",
        "abc123def456",
        "--image",
        "vllm/vllm-openai:v0.11.0",
        "--engine-version",
        "0.11.0",
    ]);
    let first: i64 = out.trim().parse().expect("the run id on stdout");
    let again = err(&["history", "add", s(&base), "--db", db, "--label", "main"]);
    assert!(
        again.contains("already stored") && again.contains(&format!("run {first}")),
        "{again}"
    );

    let list = ok(&["history", "list", "--db", db]);
    assert_eq!(list.matches("abc123def456").count(), 1, "one run: {list}");
    assert!(
        list.contains("users=8") && list.contains("users=16"),
        "{list}"
    );
    let show = ok(&["history", "show", "users=8", "--db", db]);
    assert!(
        show.contains("users=8") && !show.contains("users=16"),
        "{show}"
    );
    assert!(
        show.contains("1000.0000 ±"),
        "the mean and its interval: {show}"
    );

    // A slower candidate fails against the stored baseline; the same figures pass.
    let slow = collected(
        &work.join("slow"),
        &[Config {
            cell: "u8",
            users: 8,
            model: "llama-3.1-8b",
            tps: &[880.0, 890.0, 870.0],
            tpot: &[11.0, 11.1, 10.9],
        }],
    );
    let failed = err(&[
        "gate",
        s(&slow),
        "--baseline",
        "db:main",
        "--db",
        db,
        "--out",
        s(&work.join("g1")),
    ]);
    assert!(
        failed.contains("REGRESSION")
            && failed.contains("users=8")
            && failed.contains("tpot_p50_ms"),
        "{failed}"
    );
    assert!(
        failed.contains("run 1") || failed.contains(&format!("run {first}")),
        "names the stored baseline: {failed}"
    );
    let same = collected(
        &work.join("same"),
        &[Config {
            cell: "u8",
            users: 8,
            model: "llama-3.1-8b",
            tps: STEADY,
            tpot: QUICK,
        }],
    );
    ok(&[
        "gate",
        s(&same),
        "--baseline",
        "db:latest",
        "--db",
        db,
        "--out",
        s(&work.join("g2")),
    ]);
    let missing = err(&[
        "gate",
        s(&same),
        "--baseline",
        "db:release",
        "--db",
        db,
        "--out",
        s(&work.join("g3")),
    ]);
    assert!(missing.contains("no run labelled `release`"), "{missing}");
}

#[test]
fn sqlite_history_add_list_show_and_gate_against_stored_baselines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("kvsweep.db");
    add_show_and_gate(s(&db), dir.path());
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs a running PostgreSQL")]
fn postgres_history_add_list_show_and_gate_against_stored_baselines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_postgres_database("add_show_gate");
    add_show_and_gate(&url, dir.path());
}

/// A database of its own for one test on the PostgreSQL of $KVSWEEP_TEST_POSTGRES_URL
/// (scripts/start-postgres.sh), dropped and created afresh.
pub fn fresh_postgres_database(name: &str) -> String {
    let url = std::env::var("KVSWEEP_TEST_POSTGRES_URL")
        .expect("KVSWEEP_TEST_POSTGRES_URL (scripts/start-postgres.sh prints it)");
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("PostgreSQL answers");
    let db = format!("kvsweep_it_{name}");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .expect("drop");
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .expect("create");
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{db}")
}

#[test]
fn the_gate_names_each_regression_and_writes_the_step_summary_and_pr_comment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = baseline(&dir.path().join("base"));
    let cand = collected(
        &dir.path().join("cand"),
        &[
            // Slower by 10 %: a regression of both metrics.
            Config {
                cell: "u8",
                users: 8,
                model: "llama-3.1-8b",
                tps: &[900.0, 905.0, 895.0],
                tpot: &[11.0, 11.1, 10.9],
            },
            // Faster by 10 %: an improvement, reported, not failed.
            Config {
                cell: "u16",
                users: 16,
                model: "llama-3.1-8b",
                tps: &[1100.0, 1110.0, 1090.0],
                tpot: QUICK,
            },
            Config {
                cell: "u32",
                users: 32,
                model: "llama-3.1-8b",
                tps: STEADY,
                tpot: QUICK,
            },
        ],
    );
    let out_dir = dir.path().join("gate");
    let step = dir.path().join("step-summary.md");
    std::fs::write(&step, "earlier step\n").expect("write");
    let out = kvsweep(
        &[
            "gate",
            s(&cand),
            "--baseline",
            s(&base),
            "--db",
            s(&dir.path().join("none.db")),
            "--out",
            s(&out_dir),
        ],
        Some(&step),
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    let stderr = common::stderr(&out);
    let regression = stderr
        .lines()
        .find(|l| l.starts_with("REGRESSION") && l.contains("total_tps_per_gpu"))
        .unwrap_or_else(|| panic!("{stderr}"));
    for part in [
        "users=8",
        "baseline 1000.0000",
        "candidate 900.0000",
        "-10.0 %",
        "p = 0.0",
    ] {
        assert!(regression.contains(part), "`{part}` in {regression}");
    }
    assert!(
        !stderr.contains(
            "REGRESSION runner=h100 model=llama-3.1-8b engine=sim precision= tp=1 ep=1 users=16"
        ),
        "{stderr}"
    );
    assert!(
        !dir.path().join("none.db").exists(),
        "a directory baseline creates no database"
    );

    let summary = std::fs::read_to_string(out_dir.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("gate failed: 2 regression(s)"),
        "{summary}"
    );
    assert!(summary.contains("| configuration | metric |"), "{summary}");
    assert!(
        summary.contains("🟢 improvement") && summary.contains("⚪ within margin"),
        "{summary}"
    );
    assert!(summary.contains("users=32"), "{summary}");
    let step_text = std::fs::read_to_string(&step).expect("step summary");
    assert!(
        step_text.starts_with("earlier step\n") && step_text.ends_with(&summary),
        "appended: {step_text}"
    );
    let comment = std::fs::read_to_string(out_dir.join("pr-comment.md")).expect("pr-comment.md");
    assert!(comment.starts_with("<!-- kvsweep-gate -->"), "{comment}");
    assert!(
        comment.contains("🔴 regression") && !comment.contains("within margin"),
        "{comment}"
    );
    let rows = common::csv_rows(&out_dir.join("gate.csv"));
    assert_eq!(
        rows.len(),
        4,
        "two metrics of the two configurations both sides have (users=32 is new, listed in summary.md): {rows:?}"
    );

    // Against itself: no regression, exit 0.
    ok(&[
        "gate",
        s(&base),
        "--baseline",
        s(&base),
        "--db",
        s(&dir.path().join("none.db")),
        "--out",
        s(&dir.path().join("self")),
    ]);
}

#[test]
fn single_runs_are_judged_against_the_configurations_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    // Five stored single runs, 1 % apart.
    for (k, tps) in [1000.0, 1010.0, 990.0, 1005.0, 995.0]
        .into_iter()
        .enumerate()
    {
        let run = collected(
            &dir.path().join(format!("run{k}")),
            &[Config {
                cell: "u8",
                users: 8,
                model: "llama-3.1-8b",
                tps: &[tps],
                tpot: &[10.0],
            }],
        );
        ok(&[
            "history",
            "add",
            s(&run),
            "--db",
            s(&db),
            "--label",
            "main",
            "--date",
            &format!("2026-12-0{}T00:00:00Z", k + 1),
        ]);
    }
    let single = |name: &str, tps: f64| {
        collected(
            &dir.path().join(name),
            &[Config {
                cell: "u8",
                users: 8,
                model: "llama-3.1-8b",
                tps: &[tps],
                tpot: &[10.0],
            }],
        )
    };
    let gate = |cand: &Path, out: &str| {
        kvsweep(
            &[
                "gate",
                s(cand),
                "--baseline",
                "db:main",
                "--db",
                s(&db),
                "--out",
                s(&dir.path().join(out)),
            ],
            None,
        )
    };
    let slow = gate(&single("slow", 850.0), "g-slow");
    assert_eq!(
        slow.status.code(),
        Some(1),
        "15 % below a 1 %-noisy history: {}",
        common::stderr(&slow)
    );
    assert!(common::stderr(&slow).contains("total_tps_per_gpu"));
    let noise = gate(&single("noise", 990.0), "g-noise");
    assert!(noise.status.success(), "{}", common::stderr(&noise));
    // The newest run (dated 2026-12-05) is the baseline.
    let rows = common::csv_rows(&dir.path().join("g-noise/gate.csv"));
    let tps = rows
        .iter()
        .find(|r| r["metric"] == "total_tps_per_gpu")
        .expect("row");
    assert_eq!(tps["baseline"], "995");

    // Without a history a single run cannot be tested: reported, not failed.
    let base = single("base", 1000.0);
    let out = kvsweep(
        &[
            "gate",
            s(&single("slow2", 850.0)),
            "--baseline",
            s(&base),
            "--db",
            s(&dir.path().join("none.db")),
            "--out",
            s(&dir.path().join("g-none")),
        ],
        None,
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let rows = common::csv_rows(&dir.path().join("g-none/gate.csv"));
    assert!(
        rows.iter()
            .any(|r| r["outcome"] == "untested (no noise estimate)"),
        "{rows:?}"
    );
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_the_database_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = baseline(&dir.path().join("base"));

    // A corrupt database file.
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(
        &corrupt,
        b"this is not a database, just forty-odd bytes of text\n".repeat(40),
    )
    .expect("write");
    let before = bytes(&corrupt);
    let e = err(&["history", "add", s(&base), "--db", s(&corrupt)]);
    assert!(
        e.contains("corrupt.db is not a SQLite database, or is corrupt"),
        "{e}"
    );
    let e = err(&[
        "gate",
        s(&base),
        "--baseline",
        "db:latest",
        "--db",
        s(&corrupt),
        "--out",
        s(&dir.path().join("g0")),
    ]);
    assert!(e.contains("not a SQLite database"), "{e}");
    assert_eq!(bytes(&corrupt), before);

    // A database of a newer schema.
    let newer = dir.path().join("newer.db");
    ok(&[
        "history",
        "add",
        s(&base),
        "--db",
        s(&newer),
        "--label",
        "main",
    ]);
    rusqlite::Connection::open(&newer)
        .expect("open")
        .execute_batch(
            "INSERT INTO kvsweep_migrations VALUES (99, 'from the future', '2030-01-01T00:00:00Z')",
        )
        .expect("insert");
    let before = bytes(&newer);
    let other = collected(
        &dir.path().join("other"),
        &[Config {
            cell: "u8",
            users: 8,
            model: "llama-3.1-8b",
            tps: &[1.0, 2.0],
            tpot: &[1.0, 2.0],
        }],
    );
    let e = err(&["history", "add", s(&other), "--db", s(&newer)]);
    assert!(
        e.contains("schema version 99, newer than this kvsweep knows (1)"),
        "{e}"
    );
    let e = err(&["history", "list", "--db", s(&newer)]);
    assert!(e.contains("newer"), "{e}");
    assert_eq!(bytes(&newer), before);

    // A good database stays as it is through the gate's refusals.
    let db = dir.path().join("good.db");
    ok(&[
        "history",
        "add",
        s(&base),
        "--db",
        s(&db),
        "--label",
        "main",
    ]);
    let before = bytes(&db);
    let unmatched = collected(
        &dir.path().join("unmatched"),
        &[Config {
            cell: "u64",
            users: 64,
            model: "llama-3.1-8b",
            tps: STEADY,
            tpot: QUICK,
        }],
    );
    let e = err(&[
        "gate",
        s(&unmatched),
        "--baseline",
        "db:main",
        "--db",
        s(&db),
        "--out",
        s(&dir.path().join("g1")),
    ]);
    assert!(
        e.contains("no configuration of the candidate")
            && e.contains("users=64")
            && e.contains("users=8"),
        "{e}"
    );
    let other_model = collected(
        &dir.path().join("other-model"),
        &[Config {
            cell: "u8",
            users: 8,
            model: "qwen3-32b",
            tps: STEADY,
            tpot: QUICK,
        }],
    );
    let e = err(&[
        "gate",
        s(&other_model),
        "--baseline",
        "db:main",
        "--db",
        s(&db),
        "--out",
        s(&dir.path().join("g2")),
    ]);
    assert!(
        e.contains("\"llama-3.1-8b\"") && e.contains("\"qwen3-32b\"") && e.contains("same model"),
        "{e}"
    );
    let e = err(&[
        "history",
        "add",
        s(&dir.path().join("nowhere")),
        "--db",
        s(&db),
    ]);
    assert!(e.contains("nowhere/summary.csv"), "{e}");
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    common::write(&broken, "summary.csv", "cell,runner\nx,h100\n");
    let e = err(&["history", "add", s(&broken), "--db", s(&db)]);
    assert!(e.contains("summary.csv: no column `model`"), "{e}");
    // A column collect never writes, and a configuration value that is not one, name the file.
    let header =
        "cell,runner,model,engine,precision,tp,ep,users,offload,simulated,measured_by,repeats";
    common::write(
        &broken,
        "summary.csv",
        &format!("{header},colour\nx,h100,m,vllm,,1,0,2,on,false,kvsweep,1,red\n"),
    );
    let e = err(&["history", "add", s(&broken), "--db", s(&db)]);
    assert!(e.contains("summary.csv: unknown column `colour`"), "{e}");
    common::write(
        &broken,
        "summary.csv",
        &format!("{header}\nx,h100,m,vllm,,1,0,2,sideways,false,kvsweep,1\n"),
    );
    let e = err(&["history", "add", s(&broken), "--db", s(&db)]);
    assert!(
        e.contains("summary.csv: line 2") && e.contains("`sideways` is not on, off or noprefix"),
        "{e}"
    );
    assert_eq!(bytes(&db), before);
    let e = err(&["history", "list", "--db", s(&dir.path().join("absent.db"))]);
    assert!(e.contains("no history database at"), "{e}");
    assert!(!dir.path().join("absent.db").exists());
}

#[test]
fn a_killed_add_stores_the_whole_sweep_or_none_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    let small = baseline(&dir.path().join("small"));
    ok(&["history", "add", s(&small), "--db", s(&db)]);
    let configs: Vec<(String, u32)> = (1..=20_000).map(|u| (format!("c{u}"), u)).collect();
    let many: Vec<Config> = configs
        .iter()
        .map(|(name, u)| Config {
            cell: name,
            users: *u,
            model: "llama-3.1-8b",
            tps: STEADY,
            tpot: QUICK,
        })
        .collect();
    let big = collected(&dir.path().join("big"), &many);
    let journal = dir.path().join("h.db-journal");
    let mut child = common::kvsweep()
        .args(["history", "add", s(&big), "--db", s(&db)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // The rollback journal exists while the transaction writes: kill it then.
    let mut seen = false;
    while child.try_wait().expect("wait").is_none() {
        if journal.exists() {
            seen = true;
            child.kill().expect("kill");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let status = child.wait().expect("wait");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    let runs: i64 = conn
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .expect("runs");
    let cells: i64 = conn
        .query_row("SELECT count(*) FROM cells", [], |r| r.get(0))
        .expect("cells");
    if status.success() {
        assert_eq!((runs, cells), (2, 20_002), "finished before the kill");
    } else {
        assert!(seen, "killed only once the transaction had begun writing");
        assert_eq!(
            (runs, cells),
            (1, 2),
            "a killed add leaves the database as before"
        );
    }
}

#[test]
fn trend_plots_each_configuration_with_its_runs_intervals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("h.db");
    for (k, shift) in [0.0, 20.0, -10.0].into_iter().enumerate() {
        let tps: Vec<f64> = STEADY.iter().map(|v| v + shift).collect();
        let run = collected(
            &dir.path().join(format!("run{k}")),
            &[
                Config {
                    cell: "u8",
                    users: 8,
                    model: "llama-3.1-8b",
                    tps: &tps,
                    tpot: QUICK,
                },
                Config {
                    cell: "u16",
                    users: 16,
                    model: "llama-3.1-8b",
                    tps: &tps,
                    tpot: QUICK,
                },
            ],
        );
        ok(&[
            "history",
            "add",
            s(&run),
            "--db",
            s(&db),
            "--commit",
            &format!("c0mmit{k}"),
        ]);
    }
    let out = dir.path().join("trend");
    ok(&[
        "history",
        "trend",
        "--metric",
        "total_tps_per_gpu",
        "--out",
        s(&out),
        "--db",
        s(&db),
    ]);
    for k in 0..2 {
        for ext in ["png", "svg"] {
            let p = out.join(format!("trend_total_tps_per_gpu_{k}.{ext}"));
            assert!(
                std::fs::metadata(&p)
                    .map(|m| m.len() > 1000)
                    .unwrap_or(false),
                "{}",
                p.display()
            );
        }
    }
    let rows = common::csv_rows(&out.join("trend.csv"));
    assert_eq!(rows.len(), 6);
    let u8_rows: Vec<_> = rows
        .iter()
        .filter(|r| r["config"].contains("users=8 "))
        .collect();
    let means: Vec<f64> = u8_rows
        .iter()
        .map(|r| r["mean"].parse().expect("mean"))
        .collect();
    assert_eq!(means, [1000.0, 1020.0, 990.0], "oldest to newest");
    assert!(
        u8_rows
            .iter()
            .all(|r| r["ci95_low"].parse::<f64>().expect("low")
                < r["mean"].parse::<f64>().expect("mean"))
    );
    let html = std::fs::read_to_string(out.join("trend.html")).expect("html");
    assert!(
        html.contains("c0mmit2") && html.contains("trend_total_tps_per_gpu_1.svg"),
        "{html}"
    );
    let e = err(&[
        "history",
        "trend",
        "--metric",
        "total_tps_per_gpu",
        "--config",
        "users=99",
        "--out",
        s(&out),
        "--db",
        s(&db),
    ]);
    assert!(
        e.contains("no stored configuration matches `users=99`"),
        "{e}"
    );
}
