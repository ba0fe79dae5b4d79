//! Benchmark: `kvsweep sim-server --instant` on one core (taskset -c 0), loaded by wrk on the
//! other core (Debian package `wrk`). Targets (issue #4): ≥ 20,000 small non-streamed requests/s,
//! ≥ 1,000,000 streamed tokens/s, 1,000 concurrent streams with 32k-token prompts served without
//! stalls, and memory bounded by the cache capacity rather than by the requests served.
//!
//! The same-run peer is the server's own HTTP stack: `GET /health` under the same load shows how
//! much of the ceiling the completion path keeps.
//!
//! `cargo bench --bench sim_server` measures; under `cargo test` it only starts the server and
//! serves one request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut cmd = if has("taskset") {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", env!("CARGO_BIN_EXE_kvsweep")]);
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_kvsweep"))
        };
        let mut child = cmd
            .args(["sim-server", "--port", "0", "--instant"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("sim-server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("address");
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        Server { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A plain HTTP/1.1 request (no client library needed).
fn http(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// The upper bound of the histogram bucket holding quantile `q` of a vLLM histogram.
fn histogram_quantile(metrics: &str, name: &str, q: f64) -> String {
    let buckets: Vec<(String, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.to_owned();
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map_or_else(|| "?".to_owned(), |(le, _)| format!("≤ {le} s"))
}

struct WrkResult {
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
}

/// Runs wrk on core 1 with a Lua script and parses its summary (the script prints it as JSON).
fn wrk(url: &str, connections: u32, seconds: u32, script: &Path) -> WrkResult {
    let mut cmd = if has("taskset") {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "wrk"]);
        c
    } else {
        Command::new("wrk")
    };
    let out = cmd
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "30s",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("wrk output:\n{text}"));
    let v: serde_json::Value = serde_json::from_str(json).expect("result json");
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    WrkResult {
        requests_per_s: f("rps"),
        p50_ms: f("p50") / 1000.0,
        p99_ms: f("p99") / 1000.0,
        max_ms: f("max") / 1000.0,
        errors: f("errors") as u64,
    }
}

/// A wrk script: `body` builds each request body in Lua (`n` counts requests).
fn script(dir: &Path, name: &str, init: &str, body: &str, method: &str) -> PathBuf {
    let path = dir.join(format!("{name}.lua"));
    let text = format!(
        r#"local n = 0
{init}
request = function()
  n = n + 1
  return wrk.format("{method}", nil, {{["Content-Type"] = "application/json"}}, {body})
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format('RESULT {{"rps": %f, "p50": %f, "p99": %f, "max": %f, "errors": %d}}\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), latency.max, errors))
end
"#
    );
    std::fs::write(&path, text).expect("write script");
    path
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    if !measuring {
        let server = Server::start(&[]);
        let reply = http(
            server.port,
            "POST",
            "/v1/completions",
            r#"{"prompt":[1,2,3],"max_tokens":2}"#,
        );
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        return;
    }
    assert!(has("wrk"), "the benchmark needs wrk: apt-get install wrk");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ids32 =
        "'1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32'";

    println!("sim-server --instant on core 0, wrk on core 1");
    let server = Server::start(&[]);
    let small = script(
        d,
        "small",
        &format!("local ids = {ids32}"),
        r#"'{"prompt":[' .. ids .. '],"max_tokens":1}'"#,
        "POST",
    );
    let health = script(d, "health", "", "nil", "GET");
    let s = wrk(&server.url("/v1/completions"), 64, 10, &small);
    let h = wrk(&server.url("/health"), 64, 10, &health);
    println!(
        "  small non-streamed (32-token prompt, 1 token): {:>9.0} req/s  p99 {:.2} ms  errors {}  (target 20,000: {:.1}x; GET /health {:.0} req/s, ratio {:.2})",
        s.requests_per_s,
        s.p99_ms,
        s.errors,
        s.requests_per_s / 20_000.0,
        h.requests_per_s,
        s.requests_per_s / h.requests_per_s
    );

    let stream = script(
        d,
        "stream",
        "",
        r#"'{"prompt":[' .. n .. ',2,3,4,5,6,7,8],"max_tokens":1000,"ignore_eos":true,"stream":true}'"#,
        "POST",
    );
    let st = wrk(&server.url("/v1/completions"), 64, 10, &stream);
    let tokens = st.requests_per_s * 1000.0;
    println!(
        "  streamed, 64 streams × 1,000 tokens:           {:>9.0} tokens/s  errors {}  (target 1,000,000: {:.2}x)",
        tokens,
        st.errors,
        tokens / 1_000_000.0
    );

    // Distinct small prompts for a long while: memory must not grow with requests served.
    let distinct = script(
        d,
        "distinct",
        "",
        r#"'{"prompt":[' .. n .. ',7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7],"max_tokens":4}'"#,
        "POST",
    );
    wrk(&server.url("/v1/completions"), 64, 5, &distinct);
    let warm = server.rss_mib();
    let long = wrk(&server.url("/v1/completions"), 64, 30, &distinct);
    let after = server.rss_mib();
    println!(
        "  memory: RSS {warm:.0} MiB after 5 s, {after:.0} MiB after 30 s more ({:.0} more requests, distinct prompts)",
        long.requests_per_s * 30.0
    );
    drop(server);

    // 1,000 concurrent streams of 32k-token prompts, all distinct, 100 output tokens each. The
    // simulated cache is sized to hold them all (5 TB of KV) so that none has to wait.
    let server = Server::start(&["--max-num-seqs", "1024", "--kv-cache-gb", "5000"]);
    let init = "local parts = {} for i = 1, 32000 do parts[i] = tostring(i + 100) end local base = table.concat(parts, ',')";
    let big = script(
        d,
        "big",
        init,
        r#"'{"prompt":[' .. n .. ',' .. base .. '],"max_tokens":100,"ignore_eos":true,"stream":true}'"#,
        "POST",
    );
    let b = wrk(&server.url("/v1/completions"), 1000, 30, &big);
    let metrics = http(server.port, "GET", "/metrics", "");
    println!(
        "  1,000 concurrent streams, 32k-token prompts:   {:>9.0} req/s  {:.1}M prompt tokens/s  latency p50 {:.0} ms p99 {:.0} ms max {:.0} ms  errors {}  RSS {:.0} MiB",
        b.requests_per_s,
        b.requests_per_s * 32_001.0 / 1e6,
        b.p50_ms,
        b.p99_ms,
        b.max_ms,
        b.errors,
        server.rss_mib()
    );
    println!(
        "    server-side: inter-token latency p99 {}, p99.9 {}; queue time p99 {}",
        histogram_quantile(&metrics, "vllm:inter_token_latency_seconds", 0.99),
        histogram_quantile(&metrics, "vllm:inter_token_latency_seconds", 0.999),
        histogram_quantile(&metrics, "vllm:request_queue_time_seconds", 0.99),
    );
}
