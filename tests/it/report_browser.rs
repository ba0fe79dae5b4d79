//! `report.html` opened in headless Chromium (Debian `chromium`): it renders with no console
//! messages, every chart is an inline SVG, and a screenshot is saved beside it.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::cells::SyntheticCell;

/// Loads `page` in headless Chromium; returns the rendered DOM and the console messages.
fn open_in_chromium(page: &Path, screenshot: Option<&Path>) -> (String, Vec<String>) {
    let chromium = common::require_tool("chromium");
    let profile = tempfile::tempdir().expect("profile");
    let mut cmd = Command::new(chromium);
    // The flags this machine's closed network needs (no background connections), as root.
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,3000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match screenshot {
        Some(png) => cmd.arg(format!("--screenshot={}", png.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let console = common::stderr(&out)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (common::stdout(&out), console)
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs Chromium")]
fn the_console_check_catches_a_page_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = common::write(
        dir.path(),
        "broken.html",
        "<html><body><script>missingFunction();</script></body></html>",
    );
    let (_, console) = open_in_chromium(&page, None);
    assert!(
        console.iter().any(|l| l.contains("missingFunction")),
        "{console:?}"
    );
}

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs Chromium")]
fn the_report_renders_in_chromium_without_console_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cells = dir.path().join("cells");
    for (users, offload) in [(2, "on"), (8, "on"), (2, "off"), (8, "off")] {
        SyntheticCell::new("h200", 2, users, offload).write(&cells);
    }
    let out = dir.path().join("out");
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let report = out.join("report.html");
    let (dom, console) = open_in_chromium(&report, None);
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(
        dom.contains("s_h200_tp2_users8_offloadoff"),
        "cell table rendered"
    );
    assert!(
        dom.matches("<svg").count() >= 4 + 4 * 5,
        "four panels and five charts per cell"
    );
    let screenshot = out.join("report.png");
    let (_, console) = open_in_chromium(&report, Some(&screenshot));
    assert!(console.is_empty(), "{console:?}");
    assert!(
        screenshot.metadata().expect("screenshot").len() > 50_000,
        "a page with charts, not a blank one"
    );
}
