//! Traces named by URL: `kvsweep traces fetch` downloads them once into the trace cache, checked
//! and unpacked; a cut download, a checksum mismatch or a hostile archive is an error that caches
//! nothing; `render` makes the runner script fetch first and `run-cell` fetches before it replays.
//! Every download comes from a small HTTP server on the loopback address that can also cut its
//! answers short.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use common::{json, kvsweep_ok, repo_root, require_tool, stderr, stdout, write};
use sha2::{Digest, Sha256};

/// How the server answers one path.
#[derive(Clone)]
enum Answer {
    Whole(Vec<u8>),
    /// Announces the whole length, sends this many bytes and closes the connection.
    Short(Vec<u8>, usize),
    /// Sends this many bytes as one chunk of a chunked body, then closes without ending it.
    Dropped(Vec<u8>, usize),
    /// Answers in whole once the gate opens.
    Gated(Vec<u8>, Arc<Gate>),
}

/// A gate an answer waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().expect("lock") = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().expect("lock");
        while !*open {
            open = self.opened.wait(open).expect("wait");
        }
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that answers GETs from a table and counts them.
struct Server {
    base: String,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (a, h) = (answers.clone(), hits.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (a, h) = (a.clone(), h.clone());
                std::thread::spawn(move || answer(conn, &a, &h));
            }
        });
        Server {
            base,
            answers,
            hits,
        }
    }

    fn serve(&self, path: &str, answer: Answer) -> String {
        self.answers
            .lock()
            .expect("lock")
            .insert(path.to_owned(), answer);
        format!("{}{path}", self.base)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn answer(
    conn: TcpStream,
    answers: &Mutex<HashMap<String, Answer>>,
    hits: &Mutex<HashMap<String, usize>>,
) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut request = String::new();
    reader.read_line(&mut request).expect("request line");
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    *hits.lock().expect("lock").entry(path.clone()).or_default() += 1;
    let mut found = answers.lock().expect("lock").get(&path).cloned();
    if let Some(Answer::Gated(body, gate)) = found {
        gate.wait();
        found = Some(Answer::Whole(body));
    }
    let mut conn = conn;
    let head = |extra: &str| format!("HTTP/1.1 200 OK\r\nConnection: close\r\n{extra}\r\n");
    // A client that gave up early may have closed its end: write errors are not the test's.
    let _ = match found {
        Some(Answer::Gated(..)) => unreachable!("a gated answer is whole once open"),
        None => conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(Answer::Whole(body)) => conn
            .write_all(head(&format!("Content-Length: {}\r\n", body.len())).as_bytes())
            .and_then(|()| conn.write_all(&body)),
        Some(Answer::Short(body, sent)) => conn
            .write_all(head(&format!("Content-Length: {}\r\n", body.len())).as_bytes())
            .and_then(|()| conn.write_all(&body[..sent])),
        Some(Answer::Dropped(body, sent)) => conn
            .write_all(head("Transfer-Encoding: chunked\r\n").as_bytes())
            .and_then(|()| conn.write_all(format!("{sent:x}\r\n").as_bytes()))
            .and_then(|()| conn.write_all(&body[..sent]))
            .and_then(|()| conn.write_all(b"\r\n")),
    };
    let _ = conn.flush();
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        repo_root()
            .join("traces/samples/kv-cache-tester")
            .join(name),
    )
    .expect("sample")
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

const MOONCAKE: &str = "{\"timestamp\": 0, \"input_length\": 1024, \"output_length\": 8, \"hash_ids\": [1, 2]}\n\
                        {\"timestamp\": 500, \"input_length\": 1536, \"output_length\": 8, \"hash_ids\": [1, 2, 3]}\n";

/// An archive entry: name (written raw, `..` included), bytes, and whether it is a symbolic link
/// to `bytes`.
type Entry<'a> = (&'a str, &'a [u8], bool);

/// A tar.gz shaped like GitHub's: a pax global header first, then the entries.
fn tar_gz(entries: &[Entry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let comment = "52 comment=94f6046000000000000000000000000000000000\n";
    let mut pax = tar::Header::new_ustar();
    pax.set_path("pax_global_header").expect("name");
    pax.set_entry_type(tar::EntryType::XGlobalHeader);
    pax.set_size(comment.len() as u64);
    pax.set_cksum();
    tar.append(&pax, comment.as_bytes()).expect("pax header");
    for (name, bytes, link) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_mode(0o644);
        if *link {
            header.set_entry_type(tar::EntryType::Symlink);
            header.as_old_mut().linkname[..bytes.len()].copy_from_slice(bytes);
            header.set_size(0);
            header.set_cksum();
            tar.append(&header, std::io::empty()).expect("link");
        } else {
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            tar.append(&header, *bytes).expect("entry");
        }
    }
    tar.into_inner().expect("tar").finish().expect("gzip")
}

fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, link) in entries {
        let options = zip::write::SimpleFileOptions::default();
        if *link {
            zip.add_symlink(*name, std::str::from_utf8(bytes).expect("utf-8"), options)
                .expect("link");
        } else {
            zip.start_file(*name, options).expect("entry");
            zip.write_all(bytes).expect("write");
        }
    }
    zip.finish().expect("zip").into_inner()
}

/// `kvsweep traces fetch ARGS` with the trace cache at `cache`.
fn fetch(cache: &Path, args: &[&str]) -> Output {
    common::kvsweep()
        .env("KVSWEEP_CACHE", cache)
        .args(["traces", "fetch"])
        .args(args)
        .output()
        .expect("kvsweep runs")
}

fn fetched(cache: &Path, args: &[&str]) -> PathBuf {
    let out = fetch(cache, args);
    assert!(out.status.success(), "fetch {args:?}: {}", stderr(&out));
    let path = PathBuf::from(stdout(&out).trim_end());
    assert!(
        path.starts_with(cache),
        "{} is outside the cache",
        path.display()
    );
    path
}

fn refused(cache: &Path, args: &[&str]) -> String {
    let out = fetch(cache, args);
    assert!(!out.status.success(), "fetch {args:?} should have failed");
    stderr(&out)
}

/// The cache's entries: what a later run would take as complete. Lock files are hidden, and
/// scratch folders must be gone.
fn entries(cache: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let names: Vec<String> = dir
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".partial-")),
        "a scratch folder was left behind: {names:?}"
    );
    names.into_iter().filter(|n| !n.starts_with('.')).collect()
}

#[test]
fn each_kind_is_downloaded_once_and_found_in_the_cache_after() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let trace = sample("trace_0538.json");
    let other = sample("trace_0012.json");

    let json = server.serve("/t/trace_0538.json", Answer::Whole(trace.clone()));
    let path = fetched(&cache, &[&json]);
    assert_eq!(path.file_name().expect("name"), "trace_0538.json");
    assert_eq!(std::fs::read(&path).expect("read"), trace);

    let jsonl = server.serve("/t/mini.jsonl", Answer::Whole(MOONCAKE.into()));
    let path = fetched(&cache, &[&jsonl]);
    assert!(path.ends_with("mini.jsonl"), "{}", path.display());
    assert_eq!(std::fs::read_to_string(&path).expect("read"), MOONCAKE);

    let zip_url = server.serve(
        "/t/corpus.zip",
        Answer::Whole(zip(&[
            ("corpus/traces/trace_0538.json", &trace, false),
            ("corpus/traces/trace_0012.json", &other, false),
            ("corpus/README.md", b"about", false),
        ])),
    );
    let path = fetched(&cache, &[&zip_url, "--path", "corpus/traces"]);
    assert_eq!(
        std::fs::read(path.join("trace_0012.json")).expect("read"),
        other
    );
    let whole = fetched(&cache, &[&zip_url]);
    assert!(whole.join("corpus/README.md").is_file());

    let archive = tar_gz(&[
        (
            "kv-cache-tester-94f6046/traces/trace_0538.json",
            &trace,
            false,
        ),
        ("kv-cache-tester-94f6046/LICENSE", b"Apache-2.0", false),
    ]);
    let tar_url = server.serve("/archive/94f6046.tar.gz", Answer::Whole(archive.clone()));
    let sha = sha256_hex(&archive);
    let args = [
        tar_url.as_str(),
        "--sha256",
        &sha,
        "--path",
        "kv-cache-tester-*/traces",
    ];
    let path = fetched(&cache, &args);
    assert!(
        path.ends_with("kv-cache-tester-94f6046/traces"),
        "{}",
        path.display()
    );
    assert_eq!(
        std::fs::read(path.join("trace_0538.json")).expect("read"),
        trace
    );
    assert!(
        !path
            .parent()
            .expect("top")
            .join("pax_global_header")
            .exists()
    );

    // Again: the same paths, and the server sees no second request.
    assert_eq!(fetched(&cache, &args), path);
    assert_eq!(
        fetched(&cache, &[&json]).file_name().expect("name"),
        "trace_0538.json"
    );
    for p in [
        "/t/trace_0538.json",
        "/t/mini.jsonl",
        "/t/corpus.zip",
        "/archive/94f6046.tar.gz",
    ] {
        assert_eq!(server.hits(p), 1, "{p} was downloaded again");
    }
    assert_eq!(entries(&cache).len(), 4, "{:?}", entries(&cache));

    // An inner path that matches nothing says what the archive holds.
    let err = refused(&cache, &[&tar_url, "--sha256", &sha, "--path", "traces"]);
    assert!(
        err.contains("holds no `traces`; its top level holds: kv-cache-tester-94f6046"),
        "{err}"
    );
}

#[test]
fn a_sha256_mismatch_is_an_error_that_caches_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let trace = sample("trace_0012.json");
    let url = server.serve("/t/trace_0012.json", Answer::Whole(trace.clone()));
    let wrong = "0".repeat(64);
    let err = refused(&cache, &[&url, "--sha256", &wrong]);
    assert!(err.contains("sha256 mismatch: expected 0000"), "{err}");
    assert!(
        err.contains(&sha256_hex(&trace)),
        "the error names the download's sha256: {err}"
    );
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));

    let right = sha256_hex(&trace).to_ascii_uppercase();
    let out = fetch(&cache, &[&url, "--sha256", &right]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("sha256 {}", sha256_hex(&trace))));
    assert_eq!(server.hits("/t/trace_0012.json"), 2);
}

#[test]
fn a_cut_download_is_an_error_and_the_next_run_downloads_again() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let trace = sample("trace_0024.json");
    let half = trace.len() / 2;
    for (path, cut, says) in [
        (
            "/short/trace_0024.json",
            Answer::Short(trace.clone(), half),
            format!("was cut after {half} of {} bytes", trace.len()),
        ),
        (
            "/dropped/trace_0024.json",
            Answer::Dropped(trace.clone(), half),
            format!("was cut after {half} bytes"),
        ),
    ] {
        let url = server.serve(path, cut);
        let err = refused(&cache, &[&url]);
        assert!(err.contains(&says), "{path}: {err}");
        assert!(entries(&cache).is_empty(), "{path}: {:?}", entries(&cache));

        server.serve(path, Answer::Whole(trace.clone()));
        let local = fetched(&cache, &[&url]);
        assert_eq!(std::fs::read(local).expect("read"), trace, "{path}");
        assert_eq!(server.hits(path), 2, "{path}");
        std::fs::remove_dir_all(&cache).expect("clear the cache");
    }
    let missing = format!("{}/nothing.json", server.base);
    let err = refused(&cache, &[&missing]);
    assert!(err.contains("the server answered 404 Not Found"), "{err}");
}

#[test]
fn archives_that_escape_or_hold_links_are_refused() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let escape = dir.path().join("escaped.json");
    let cases = [
        (
            "/a/parent.tar.gz",
            tar_gz(&[("top/../../../escaped.json", b"{}", false)]),
            "would be written outside the extraction folder",
        ),
        (
            "/a/link.tar.gz",
            tar_gz(&[("top/traces", b"/etc", true)]),
            "is a link",
        ),
        (
            "/a/link.zip",
            zip(&[("traces", b"/etc", true)]),
            "is a symbolic link",
        ),
        (
            "/a/parent.zip",
            zip(&[("../escaped.json", b"{}", false)]),
            "would be written outside the extraction folder",
        ),
    ];
    for (path, body, says) in cases {
        let url = server.serve(path, Answer::Whole(body));
        let err = refused(&cache, &[&url]);
        assert!(err.contains(says), "{path}: {err}");
        assert!(entries(&cache).is_empty(), "{path}: {:?}", entries(&cache));
    }
    assert!(!escape.exists(), "an entry escaped the cache");
}

#[test]
fn spec_errors_in_traces_point_at_their_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = "name: t\nmodel: {name: m, preset: llama-3.1-8b}\nengine: sim\nrunners: [cpu]\n\
                traces:\nTRACES\ntp: [1]\nusers: [1]\noffload: [\"off\"]\n";
    let cases = [
        ("  format: kvct", "5:1: field `traces`", "give `path:`"),
        (
            "  path: t\n  sha256: abc",
            "7:3: field `traces.sha256`",
            "give the traces' `url:` with it",
        ),
        (
            "  url: https://example.com/traces/",
            "6:3: field `traces.url`",
            "must name a .json or .jsonl trace file",
        ),
        (
            "  url: https://example.com/t.tar.gz\n  sha256: xyz",
            "7:3: field `traces.sha256`",
            "not a sha256: expected 64 hex digits",
        ),
        (
            "  url: https://example.com/t.tar.gz\n  path: ../up",
            "7:3: field `traces.path`",
            "must be a relative path inside the archive",
        ),
        (
            "  url: https://example.com/t.json\n  path: inner",
            "7:3: field `traces.path`",
            "the URL names a single trace file",
        ),
    ];
    for (traces, location, message) in cases {
        let spec = write(dir.path(), "spec.yaml", &base.replace("TRACES", traces));
        let spec = spec.to_str().expect("utf-8");
        let err = common::kvsweep_err(&["matrix", spec]);
        let expected = format!("{spec}:{location}: ");
        assert!(
            err.contains(&expected) && err.contains(message),
            "{traces}: expected `{expected}…{message}`, got `{}`",
            err.trim()
        );
    }
}

/// A one-cell sweep against the simulator whose traces come from `traces_yaml`, and a runners
/// folder whose `cpu` runner makes the simulator answer at once.
fn sim_spec(dir: &Path, traces_yaml: &str) -> (PathBuf, PathBuf) {
    let spec = write(
        dir,
        "spec.yaml",
        &format!(
            "name: u\nmodel: {{name: llama-3.1-8b, preset: llama-3.1-8b}}\nengine: sim\n\
             runners: [cpu]\nduration_s: 3\ntraces:\n{traces_yaml}\n\
             replay: {{time_scale: 0.05, drain: 2, recycle: true}}\n\
             tp: [1]\nusers: [2]\noffload: [\"off\"]\n"
        ),
    );
    let runners = dir.join("runners");
    std::fs::create_dir_all(&runners).expect("mkdir");
    std::fs::copy(
        repo_root().join("runners/h100.yaml"),
        runners.join("h100.yaml"),
    )
    .expect("copy h100.yaml");
    let cpu = std::fs::read_to_string(repo_root().join("runners/cpu.yaml")).expect("cpu.yaml");
    let cpu = cpu.replacen(
        "args: [--runner, h100]",
        "args: [--runner, h100, --instant]",
        1,
    );
    assert!(cpu.contains("--instant"), "the cpu runner changed shape");
    write(&runners, "cpu.yaml", &cpu);
    (spec, runners)
}

const CELL: &str = "u_cpu_tp1_users2_offloadoff";

#[test]
#[cfg_attr(not(feature = "external-tools"), ignore = "needs shellcheck and curl")]
fn the_rendered_script_fetches_the_traces_then_replays_them() {
    require_tool("shellcheck");
    require_tool("curl");
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = tar_gz(&[(
        "corpus-1/traces/trace_0538.json",
        &sample("trace_0538.json"),
        false,
    )]);
    let sha = sha256_hex(&archive);
    let url = server.serve("/corpus.tar.gz", Answer::Whole(archive));
    let (spec, runners) = sim_spec(
        dir.path(),
        &format!("  url: {url}\n  sha256: {sha}\n  path: corpus-*/traces"),
    );
    let out = dir.path().join("cell");
    kvsweep_ok(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--cell",
        CELL,
        "--out",
        out.to_str().expect("utf-8"),
        "--runners-dir",
        runners.to_str().expect("utf-8"),
        "--port",
        &kvsweep::run::run_cell::free_port()
            .expect("a free port")
            .to_string(),
    ]);
    let script = out.join("run.sh");
    let text = std::fs::read_to_string(&script).expect("script");
    let step = format!(
        "TRACES=$(\"$KVSWEEP\" traces fetch {url} --sha256 {sha} --path 'corpus-*/traces') || {{"
    );
    assert!(text.contains(&step), "no fetch step in:\n{text}");
    assert!(
        text.contains(r#"replay --plan "$OUT_DIR/cell.json" --traces "$TRACES" --url"#),
        "{text}"
    );
    let shellcheck = common::run(
        Command::new("shellcheck")
            .args(["--shell=bash", "--severity=style"])
            .arg(&script),
    );
    assert!(shellcheck.status.success(), "{}", stdout(&shellcheck));

    let cache = dir.path().join("cache");
    let run = Command::new("bash")
        .arg(&script)
        .env("KVSWEEP_BIN", env!("CARGO_BIN_EXE_kvsweep"))
        .env("KVSWEEP_CACHE", &cache)
        .env("KVSWEEP_RUNNERS_DIR", &runners)
        .output()
        .expect("bash runs");
    assert!(run.status.success(), "{}", stderr(&run));
    let results = out.join("results");
    assert_eq!(json(&results.join("status.json"))["status"], "ok");
    let commands = std::fs::read_to_string(results.join("commands.txt")).expect("commands");
    let fetch_line = commands.lines().next().expect("a first command");
    assert!(
        fetch_line.ends_with(&format!(
            "traces fetch {url} --sha256 {sha} --path corpus-\\*/traces"
        )),
        "{commands}"
    );
    let local = cache.to_str().expect("utf-8");
    assert!(
        commands.contains(&format!("--traces {local}/")),
        "{commands}"
    );
    assert!(common::csv_rows(&results.join("requests.csv")).len() > 1);
    assert_eq!(server.hits("/corpus.tar.gz"), 1);
}

fn run_cell(spec: &Path, runners: &Path, cache: &Path, out: &Path) -> Output {
    common::kvsweep()
        .env("KVSWEEP_RUNNERS_DIR", runners)
        .env("KVSWEEP_CACHE", cache)
        .arg("run-cell")
        .arg(spec)
        .args(["--cell", CELL, "--port", "0", "--out"])
        .arg(out)
        .output()
        .expect("run-cell starts")
}

#[test]
fn run_cell_fetches_url_traces_once_and_replays_them() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let trace = sample("trace_0538.json");
    let url = server.serve("/t/trace_0538.json", Answer::Whole(trace.clone()));
    let (spec, runners) = sim_spec(dir.path(), &format!("  url: {url}\n  format: kvct"));

    for run in ["first", "second"] {
        let out = dir.path().join(run);
        let done = run_cell(&spec, &runners, &cache, &out);
        assert!(done.status.success(), "{run}: {}", stderr(&done));
        let cell = json(&out.join("cell.json"));
        let local = PathBuf::from(cell["traces"].as_str().expect("the local path is recorded"));
        assert!(local.starts_with(&cache), "{run}: {}", local.display());
        assert_eq!(std::fs::read(&local).expect("read"), trace);
        assert_eq!(cell["trace_url"]["url"], url.as_str());
        assert!(
            common::csv_rows(&out.join("requests.csv")).len() > 1,
            "{run}"
        );
    }
    assert_eq!(
        server.hits("/t/trace_0538.json"),
        1,
        "the second cell downloaded again"
    );

    // A download that fails its check fails the cell, with the reason in its status.
    let (spec, _) = sim_spec(
        dir.path(),
        &format!(
            "  url: {}\n  sha256: {}",
            server.serve("/t/other.json", Answer::Whole(trace)),
            "1".repeat(64)
        ),
    );
    let out = dir.path().join("mismatch");
    let done = run_cell(&spec, &runners, &cache, &out);
    assert!(!done.status.success());
    let status = json(&out.join("status.json"));
    assert_eq!(status["status"], "failed");
    assert!(
        status["reason"]
            .as_str()
            .expect("reason")
            .contains("sha256 mismatch"),
        "{status}"
    );
}

#[test]
fn a_sweep_fetches_url_traces_before_its_first_cell() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = server.serve(
        "/t/trace_0538.json",
        Answer::Whole(sample("trace_0538.json")),
    );
    let (spec, runners) = sim_spec(
        dir.path(),
        &format!("  url: {url}\n  sha256: {}", "2".repeat(64)),
    );
    let spec_text = std::fs::read_to_string(&spec).expect("spec");
    write(
        dir.path(),
        "spec.yaml",
        &spec_text.replace("users: [2]", "users: [2, 4]"),
    );
    let out = dir.path().join("sweep");
    let done = common::kvsweep()
        .env("KVSWEEP_RUNNERS_DIR", &runners)
        .env("KVSWEEP_CACHE", dir.path().join("cache"))
        .args(["sweep", "--local", "--out"])
        .arg(&out)
        .arg(&spec)
        .output()
        .expect("sweep starts");
    assert!(!done.status.success());
    assert!(
        stderr(&done).contains("sha256 mismatch"),
        "{}",
        stderr(&done)
    );
    let cells: Vec<_> = std::fs::read_dir(out.join("cells"))
        .expect("cells")
        .collect();
    assert!(
        cells.is_empty(),
        "a cell ran before the traces were fetched"
    );
    assert_eq!(
        server.hits("/t/trace_0538.json"),
        1,
        "each cell downloaded again"
    );
}

#[test]
fn fetches_that_start_together_download_once() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let trace = sample("trace_0019.json");
    let gate = Arc::new(Gate::default());
    let url = server.serve(
        "/t/trace_0019.json",
        Answer::Gated(trace.clone(), gate.clone()),
    );
    let spawn = || {
        common::kvsweep()
            .env("KVSWEEP_CACHE", &cache)
            .args(["traces", "fetch", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kvsweep runs")
    };
    let first = spawn();
    while server.hits("/t/trace_0019.json") == 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The first holds the entry's lock while its answer waits at the gate.
    let mut second = spawn();
    let mut says = BufReader::new(second.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("waiting for another kvsweep that is fetching") {
        line.clear();
        assert!(
            says.read_line(&mut line).expect("stderr") > 0,
            "the second fetch did not wait"
        );
        assert!(
            !line.contains("downloading"),
            "the second fetch downloaded too"
        );
    }
    gate.open();
    let first = first.wait_with_output().expect("first");
    let second = second.wait_with_output().expect("second");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success());
    assert_eq!(stdout(&first), stdout(&second));
    assert_eq!(
        std::fs::read(stdout(&first).trim_end()).expect("read"),
        trace
    );
    assert_eq!(server.hits("/t/trace_0019.json"), 1);
}

/// A single-node AgentX job of the fixture master configs (InferenceX's generator output).
fn agentx_job(framework: &str, runner: &str) -> serde_json::Value {
    use std::io::Read as _;
    let path = repo_root().join("tests/fixtures/inferencex/golden/agentic.json.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("golden"))
        .read_to_string(&mut text)
        .expect("gzip");
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
    jobs.into_iter()
        .find(|j| j["framework"] == framework && j["runner"] == runner && j.get("tp").is_some())
        .expect("a job")
}

#[test]
fn an_agentx_job_fetches_inferencexs_corpus_checked_before_its_engine_starts() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let job = agentx_job("vllm", "cluster:b200-dgxc");
    let cell = job["exp-name"].as_str().expect("exp-name").to_owned();
    let spec = write(dir.path(), "job.json", &job.to_string());
    let trace = sample("trace_0012.json");
    // `{dataset}` stands for the dataset InferenceX replays for the model (dsv4: the 1M corpus).
    server.serve(
        "/semianalysisai/cc-traces-weka-062126.json",
        Answer::Short(trace.clone(), trace.len() / 2),
    );
    let url = format!("{}/{{dataset}}.json", server.base);
    let sha = sha256_hex(&trace);
    let run_cell = |sha: &str, out: &Path| {
        common::kvsweep()
            .env("KVSWEEP_AGENTX_TRACES_URL", &url)
            .env("KVSWEEP_AGENTX_TRACES_SHA256", sha)
            .env("KVSWEEP_CACHE", dir.path().join("cache"))
            .arg("run-cell")
            .arg(&spec)
            .args(["--cell", &cell, "--out"])
            .arg(out)
            .output()
            .expect("run-cell starts")
    };
    // A cut download, then a wrong checksum: the cell fails before the engine (docker on b200,
    // not here) is started, and says why.
    let cut = dir.path().join("cut");
    let out = run_cell(&sha, &cut);
    assert!(!out.status.success());
    let status = json(&cut.join("status.json"));
    assert_eq!(status["status"], "failed");
    assert!(
        status["reason"]
            .as_str()
            .expect("reason")
            .contains("was cut after"),
        "{status}"
    );
    assert!(!cut.join("server.log").exists(), "no engine was started");

    server.serve(
        "/semianalysisai/cc-traces-weka-062126.json",
        Answer::Whole(trace.clone()),
    );
    let wrong = dir.path().join("wrong");
    let out = run_cell(&"0".repeat(64), &wrong);
    assert!(!out.status.success());
    let status = json(&wrong.join("status.json"));
    assert!(
        status["reason"]
            .as_str()
            .expect("reason")
            .contains("sha256 mismatch"),
        "{status}"
    );
    assert!(!wrong.join("server.log").exists(), "no engine was started");

    // The rendered script names the corpus by URL and digest and fetches it first; the replay
    // is InferenceX's (AgentX scenario, chat, conc users, the job's duration).
    let rendered = dir.path().join("rendered");
    let out = common::kvsweep()
        .env("KVSWEEP_AGENTX_TRACES_URL", &url)
        .env("KVSWEEP_AGENTX_TRACES_SHA256", &sha)
        .arg("render")
        .arg(&spec)
        .args(["--cell", &cell, "--out"])
        .arg(&rendered)
        .output()
        .expect("render");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(rendered.join("run.sh")).expect("run.sh");
    let fetch = format!(
        "traces fetch {}/semianalysisai/cc-traces-weka-062126.json --sha256 {sha}",
        server.base
    );
    assert!(text.contains(&fetch), "{text}");
    let replay = &common::script_plan(&text)["workload"]["replay"];
    assert_eq!(replay["scenario"], "agentx", "{replay}");
    assert_eq!(replay["api"], "chat", "{replay}");
    assert_eq!(replay["users"], job["conc"], "{replay}");
    assert_eq!(
        replay["duration"].as_f64(),
        job["duration"].as_f64(),
        "{replay}"
    );

    // Without a URL and digest, the job names the corpus it needs.
    let err = common::kvsweep()
        .env_remove("KVSWEEP_AGENTX_TRACES_URL")
        .arg("render")
        .arg(&spec)
        .args(["--cell", &cell, "--out"])
        .arg(dir.path().join("none"))
        .output()
        .expect("render");
    assert!(!err.status.success());
    assert!(
        stderr(&err).contains("semianalysisai/cc-traces-weka-062126 (AIPerf loader semianalysis_cc_traces_weka_062126)"),
        "{}",
        stderr(&err)
    );
}
