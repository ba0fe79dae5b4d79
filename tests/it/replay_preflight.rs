//! The replay's preflight against servers with a small vocabulary: completions prompts keep to
//! the ids of `--tokenizer`; without one, a server that refuses the highest id stops the run
//! before it starts, saying what to pass, whether the refusal is an HTTP 400 (kvsweep's
//! simulator) or an error event inside an HTTP 200 stream (vLLM, mocked here with wiremock).

use crate::common;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

use common::json;
use common::sim::SimServer;

/// Token ids a vocabulary of this size holds: 0..VOCAB.
const VOCAB: u32 = 2048;

/// A word-level tokenizer.json of `size` tokens, as `dir/NAME`: only its vocabulary size matters.
fn word_tokenizer(dir: &Path, name: &str, size: u32) -> PathBuf {
    let vocab: serde_json::Map<String, Value> = std::iter::once(("[UNK]".to_owned(), json!(0)))
        .chain((1..size).map(|i| (format!("w{i}"), json!(i))))
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    });
    common::write(dir, name, &tokenizer.to_string())
}

/// The served model's tokenizer: `VOCAB` tokens.
fn small_tokenizer(dir: &Path) -> PathBuf {
    word_tokenizer(dir, "tokenizer.json", VOCAB)
}

/// `kvsweep replay --api completions` of one short sample session, with no waits.
fn replay(base: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let trace = common::repo_root().join("traces/samples/kv-cache-tester/trace_0538.json");
    common::run(
        common::kvsweep()
            .args(["replay", "--api", "completions", "--url", base, "--traces"])
            .arg(trace)
            .args(["--time-scale", "0", "--max-context", "16000", "--out"])
            .arg(out)
            .args(extra),
    )
}

#[test]
fn the_simulator_with_a_small_vocabulary_stops_the_run_in_its_preflight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = small_tokenizer(dir.path());
    let sim = SimServer::start(&[
        "--instant",
        "--tokenizer",
        tokenizer.to_str().expect("utf-8"),
    ]);

    let out = dir.path().join("no-tokenizer");
    let run = replay(&sim.base, &out, &[]);
    let stderr = common::stderr(&run);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("took token id 1000 but refused token id 29999")
            && stderr.contains("out of vocabulary")
            && stderr.contains("give --tokenizer"),
        "{stderr}"
    );
    let status = json(&out.join("status.json"));
    assert_eq!(status["status"], "failed");
    assert!(
        status["reason"]
            .as_str()
            .is_some_and(|r| r.contains("give --tokenizer")),
        "{status}"
    );
    assert!(
        !out.join("requests.csv").exists(),
        "no request of the trace was sent"
    );

    let out = dir.path().join("tokenizer");
    let run = replay(
        &sim.base,
        &out,
        &["--tokenizer", tokenizer.to_str().expect("utf-8")],
    );
    assert!(run.status.success(), "{}", common::stderr(&run));
    let rows = common::csv_rows(&out.join("requests.csv"));
    assert_eq!(rows.len(), 5, "every request of the session");
    for r in &rows {
        assert_eq!(r["status"], "ok", "{r:?}");
        assert_eq!(r["prompt_tokens"], r["trace_input_tokens"], "{r:?}");
    }
    let meta = json(&out.join("metadata.json"));
    assert_eq!(meta["prompt_token_ids"], json!([512, VOCAB - 1]));
}

/// Whether a completions request's prompt holds an id at or above `VOCAB`.
struct OutOfVocabulary;

impl Match for OutOfVocabulary {
    fn matches(&self, request: &Request) -> bool {
        serde_json::from_slice::<Value>(&request.body).is_ok_and(|body| {
            body["prompt"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|id| id.as_u64() >= Some(u64::from(VOCAB))))
        })
    }
}

/// An SSE body of `events`, each a `data:` line, then `[DONE]`.
fn stream(events: &[Value]) -> ResponseTemplate {
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(body)
}

/// vLLM's answer to a token id it does not know: the error inside an HTTP 200 stream, written
/// as vLLM 0.32 writes it.
fn in_stream_error(message: &str) -> ResponseTemplate {
    stream(&[
        json!({"error": {"message": message, "type": "BadRequestError", "param": null, "code": 400}}),
    ])
}

/// A vLLM-like server with a `VOCAB`-token model: in-vocabulary prompts get one token of text
/// and usage; others the error vLLM streams.
async fn small_vocabulary_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [{"id": "tiny", "object": "model", "owned_by": "vllm", "max_model_len": 16384}],
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/completions"))
        .and(OutOfVocabulary)
        .respond_with(in_stream_error(&format!(
            "Token id {} is out of vocabulary",
            29_999
        )))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/completions"))
        .respond_with(stream(&[
            json!({"object": "text_completion", "choices": [{"index": 0, "text": " hi", "finish_reason": null}]}),
            json!({"object": "text_completion", "choices": [],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
        ]))
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

/// The highest token id of every completions prompt the server received.
async fn highest_ids(server: &MockServer) -> Vec<u64> {
    server
        .received_requests()
        .await
        .expect("request recording")
        .iter()
        .filter(|r| r.url.path() == "/v1/completions")
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
            body["prompt"]
                .as_array()
                .expect("token ids")
                .iter()
                .filter_map(Value::as_u64)
                .max()
                .expect("a non-empty prompt")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_inside_a_200_stream_stops_the_run_in_its_preflight() {
    let server = small_vocabulary_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("no-tokenizer");
    let run = replay(&server.uri(), &out, &[]);
    let stderr = common::stderr(&run);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "refused token id 29999, the highest that completions prompts use: error event in the stream: Token id 29999 is out of vocabulary"
        ) && stderr.contains("give --tokenizer"),
        "{stderr}"
    );
    assert_eq!(
        highest_ids(&server).await,
        [1000, 29_999],
        "the two test requests, and nothing after them"
    );
    assert_eq!(json(&out.join("status.json"))["status"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_tokenizer_every_prompt_keeps_to_its_vocabulary() {
    let server = small_vocabulary_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = small_tokenizer(dir.path());
    let out = dir.path().join("tokenizer");
    let run = replay(
        &server.uri(),
        &out,
        &["--tokenizer", tokenizer.to_str().expect("utf-8")],
    );
    assert!(run.status.success(), "{}", common::stderr(&run));
    let ids = highest_ids(&server).await;
    assert_eq!(ids.len(), 2 + 5, "two test requests and the session's five");
    assert!(ids.iter().all(|&id| id < u64::from(VOCAB)), "{ids:?}");
    assert_eq!(
        ids[1],
        u64::from(VOCAB) - 1,
        "the preflight tried the top id"
    );
    let rows = common::csv_rows(&out.join("requests.csv"));
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_stream_error_on_the_first_test_request_is_reported_as_it_is() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": "m"}]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/completions"))
        .respond_with(in_stream_error("the engine is sleeping"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = replay(&server.uri(), &dir.path().join("out"), &[]);
    let stderr = common::stderr(&run);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "refused a one-token test request: error event in the stream: the engine is sleeping"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("--tokenizer"),
        "no vocabulary advice for an error that is not about it: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vocabulary_smaller_than_the_lowest_id_gets_the_advice_too() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": "m"}]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/completions"))
        .respond_with(in_stream_error("Token id 1000 is out of vocabulary"))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = replay(&server.uri(), &dir.path().join("out"), &[]);
    let stderr = common::stderr(&run);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused a one-token test request")
            && stderr.contains("Token id 1000 is out of vocabulary")
            && stderr.contains("give --tokenizer"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tokenizer_larger_than_the_served_vocabulary_is_named() {
    let server = small_vocabulary_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let other = word_tokenizer(dir.path(), "other.json", 4096);
    let run = replay(
        &server.uri(),
        &dir.path().join("out"),
        &["--tokenizer", other.to_str().expect("utf-8")],
    );
    let stderr = common::stderr(&run);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused token id 4095")
            && stderr.contains(&format!(
                "smaller than that of --tokenizer {} (ids up to 4095): give the served model's own tokenizer.json",
                other.display()
            )),
        "{stderr}"
    );
}
