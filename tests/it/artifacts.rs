//! `kvsweep artifacts download` against a local mock of the GitHub REST API (wiremock): a
//! paginated listing, a transient server error, redirects to the zip, a pattern, and an
//! artifact whose zip tries to escape its folder; then `collect` over what came down.

use crate::common;

use std::io::Write;
use std::path::Path;

use common::cells::SyntheticCell;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn artifact(id: u64, name: &str, base: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "node_id": format!("MDg{id}"), "name": name, "size_in_bytes": 2048,
        "url": format!("{base}/repos/o/r/actions/artifacts/{id}"),
        "archive_download_url": format!("{base}/repos/o/r/actions/artifacts/{id}/zip"),
        "expired": false, "created_at": "2026-11-20T10:00:00Z",
        "updated_at": "2026-11-20T10:00:00Z", "expires_at": "2027-02-18T10:00:00Z",
    })
}

/// A zip of a cell's files at its root, as upload-artifact stores them.
fn cell_zip(cell: &SyntheticCell) -> Vec<u8> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = cell.write(tmp.path());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for entry in std::fs::read_dir(&dir).expect("dir") {
        let entry = entry.expect("entry");
        zip.start_file(
            entry.file_name().to_string_lossy(),
            zip::write::SimpleFileOptions::default(),
        )
        .expect("start");
        zip.write_all(&std::fs::read(entry.path()).expect("read"))
            .expect("write");
    }
    zip.finish().expect("finish").into_inner()
}

fn evil_zip() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "../../outside.txt",
        zip::write::SimpleFileOptions::default(),
    )
    .expect("start");
    zip.write_all(b"gotcha").expect("write");
    zip.finish().expect("finish").into_inner()
}

async fn serve_zip(server: &MockServer, id: u64, body: Vec<u8>) {
    Mock::given(method("GET"))
        .and(path(format!("/repos/o/r/actions/artifacts/{id}/zip")))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "Location",
            format!("{}/blob/{id}.zip", server.uri()).as_str(),
        ))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/blob/{id}.zip")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Content-Type", "application/zip")
                .set_body_bytes(body),
        )
        .mount(server)
        .await;
}

fn download(server: &str, out: &Path, pattern: &str) -> std::process::Output {
    common::run(
        common::kvsweep()
            .env("GITHUB_TOKEN", "test-token")
            .env("GITHUB_API_URL", server)
            .args(["artifacts", "download", "--repo", "o/r", "--run", "7"])
            .args(["--pattern", pattern, "--out"])
            .arg(out),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_are_listed_page_by_page_downloaded_and_extracted_safely() {
    let server = MockServer::start().await;
    let base = server.uri();
    let cells = [
        SyntheticCell::new("h100", 1, 2, "on"),
        SyntheticCell::new("h100", 1, 8, "on"),
    ];
    // The first listing request meets a transient 502.
    Mock::given(method("GET"))
        .and(path("/repos/o/r/actions/runs/7/artifacts"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/actions/runs/7/artifacts"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "total_count": 4,
            "artifacts": [artifact(3, &cells[1].name, &base), artifact(4, "kvsweep-bin", &base)],
        })))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/actions/runs/7/artifacts"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "Link",
                    format!(
                        "<{base}/repos/o/r/actions/runs/7/artifacts?per_page=100&page=2>; rel=\"next\""
                    )
                    .as_str(),
                )
                .set_body_json(serde_json::json!({
                    "total_count": 4,
                    "artifacts": [artifact(1, &cells[0].name, &base), artifact(2, "s_evil", &base)],
                })),
        )
        .with_priority(3)
        .mount(&server)
        .await;
    serve_zip(&server, 1, cell_zip(&cells[0])).await;
    serve_zip(&server, 2, evil_zip()).await;
    serve_zip(&server, 3, cell_zip(&cells[1])).await;

    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("artifacts");
    let (out2, base2) = (out.clone(), base.clone());
    let result = tokio::task::spawn_blocking(move || download(&base2, &out2, "s_*"))
        .await
        .expect("join");
    assert!(
        !result.status.success(),
        "the evil artifact fails the command"
    );
    let err = common::stderr(&result);
    assert!(err.contains("outside the extraction folder"), "{err}");
    assert!(
        err.contains("failed") && err.contains("retrying in"),
        "{err}"
    );
    assert!(err.contains("2 of 3 downloaded"), "{err}");
    assert!(!tmp.path().join("outside.txt").exists());
    let listing_calls = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path() == "/repos/o/r/actions/runs/7/artifacts")
        .count();
    assert_eq!(listing_calls, 3, "the 502, then both pages");
    assert!(!out.join("kvsweep-bin").exists(), "filtered by --pattern");
    for c in &cells {
        assert!(
            out.join(&c.name).join("summary.json").exists(),
            "{}",
            c.name
        );
    }

    let collected = tmp.path().join("collected");
    common::kvsweep_ok(&[
        "collect",
        out.to_str().expect("utf-8"),
        "--out",
        collected.to_str().expect("utf-8"),
    ]);
    let summary = std::fs::read_to_string(collected.join("summary.csv")).expect("summary");
    assert_eq!(summary.lines().count(), 3, "{summary}");

    let missing = tokio::task::spawn_blocking(move || download(&base, &out, "nothing-*"))
        .await
        .expect("join");
    assert!(common::stderr(&missing).contains("none matches `nothing-*`"));
}

#[test]
fn a_missing_token_or_a_bad_repo_is_a_clear_error() {
    let err = common::kvsweep_err(&[
        "artifacts",
        "download",
        "--repo",
        "just-a-name",
        "--run",
        "1",
        "--out",
        "x",
    ]);
    assert!(err.contains("--repo must be OWNER/NAME"), "{err}");
    let out = common::run(common::kvsweep().env_remove("GITHUB_TOKEN").args([
        "artifacts",
        "download",
        "--repo",
        "o/r",
        "--run",
        "1",
        "--out",
        "x",
    ]));
    assert!(common::stderr(&out).contains("set GITHUB_TOKEN"));
}
