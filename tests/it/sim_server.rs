//! `kvsweep sim-server` over real HTTP: the prefix cache, the offload tier, metrics, the OpenAI
//! request and response shapes, bad requests and every injected fault.

use crate::common;

use std::time::{Duration, Instant};

use common::sim::{SimServer, sample};
use serde_json::{Value, json};

/// Llama 3.1 8B in BF16 takes 2 MiB per 16-token block; this holds exactly 8 blocks.
const EIGHT_BLOCKS_GB: &str = "0.0168";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn ids(start: u32, len: u32) -> Vec<u32> {
    (start..start + len).collect()
}

async fn complete(sim: &SimServer, body: Value) -> (u16, Value) {
    let resp = client()
        .post(sim.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

/// Cached prompt tokens the server reports for a token-id prompt.
async fn cached(sim: &SimServer, prompt: &[u32]) -> u64 {
    let (status, body) = complete(sim, json!({"prompt": prompt, "max_tokens": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], prompt.len());
    body["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached_tokens")
}

async fn scrape(sim: &SimServer) -> String {
    client()
        .get(sim.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_prompt_hits_its_shared_full_blocks() {
    let sim = SimServer::start(&["--instant"]);
    let p = ids(1000, 100);
    assert_eq!(cached(&sim, &p).await, 0);
    // 100 tokens: 6 full 16-token blocks; the last token is always computed.
    assert_eq!(cached(&sim, &p).await, 96);
    // Exactly 6 blocks: the 6th holds the last token, so 5 blocks hit.
    let q = ids(5000, 96);
    cached(&sim, &q).await;
    assert_eq!(cached(&sim, &q).await, 80);
    // A prompt that extends p shares p's full blocks.
    let mut longer = p.clone();
    longer.extend(ids(9000, 50));
    assert_eq!(cached(&sim, &longer).await, 96);
    // One changed token in block 2 keeps blocks 0-1 only.
    let mut changed = p.clone();
    changed[40] = 7;
    assert_eq!(cached(&sim, &changed).await, 32);
}

#[tokio::test(flavor = "multi_thread")]
async fn eviction_takes_least_recently_used_blocks_tail_first() {
    let sim = SimServer::start(&["--instant", "--kv-cache-gb", EIGHT_BLOCKS_GB]);
    let (a, b, c) = (ids(1000, 33), ids(2000, 33), ids(3000, 65));
    cached(&sim, &a).await;
    cached(&sim, &b).await;
    assert_eq!(
        cached(&sim, &a).await,
        32,
        "a is cached and now most recent"
    );
    // c needs 5 of the 8 blocks: the 4 free ones, then the least recently used cached block,
    // which is b's tail (a request's blocks are released tail first).
    cached(&sim, &c).await;
    assert_eq!(cached(&sim, &a).await, 32, "a survived");
    assert_eq!(cached(&sim, &b).await, 16, "b lost its tail block only");
}

#[tokio::test(flavor = "multi_thread")]
async fn offload_hits_are_counted_and_cost_transfer_time() {
    // Llama 3.1 70B on 8 × H100, KV cache cut to ~2300 blocks (36k tokens), 64 GiB host tier.
    let sim = SimServer::start(&[
        "--model",
        "llama-3.1-70b",
        "--tp",
        "8",
        "--kv-cache-gb",
        "12",
        "--offload-gb",
        "64",
        // Half speed doubles every modelled time, keeping the margins wide on a busy machine.
        "--speed",
        "0.5",
    ]);
    let p = ids(1000, 32_000);
    let q = ids(60_000, 32_000);
    let latency = |prompt: Vec<u32>| {
        let sim = &sim;
        async move {
            let start = Instant::now();
            let (status, body) = complete(sim, json!({"prompt": prompt, "max_tokens": 1})).await;
            assert_eq!(status, 200, "{body}");
            (
                start.elapsed(),
                body["usage"]["prompt_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .expect("cached"),
            )
        }
    };
    let (miss, c0) = latency(p.clone()).await;
    assert_eq!(c0, 0);
    latency(q).await; // pushes p out of HBM into the host tier
    let copy_time = |m: &str| sample(m, "vllm:kv_offload_time_seconds_total", "cpu_to_gpu");
    let (from_host, c1) = latency(p.clone()).await;
    let after_host = scrape(&sim).await;
    let (_, c2) = latency(p.clone()).await;
    assert_eq!(c1, 31_984, "offload hits count as cached tokens");
    assert_eq!(c2, 31_984);
    // The host hit is charged its copy on the simulator's modelled clock (the one its steps
    // sleep by), not measured against a busy machine's: its bytes over 8 × 50 GB/s, about
    // 26 ms for 32k tokens × 320 KiB. An HBM hit copies nothing. Recomputing them takes seconds.
    let copied = copy_time(&after_host);
    let bytes = sample(&after_host, "vllm:kv_offload_bytes_total", "cpu_to_gpu");
    assert!(
        copied > 0.02 && (copied - bytes / (8.0 * 50e9)).abs() < 1e-9,
        "{copied} s to copy {bytes} bytes"
    );
    assert_eq!(copy_time(&scrape(&sim).await), copied, "an HBM hit copies");
    assert!(from_host * 4 < miss, "host {from_host:?} vs miss {miss:?}");

    // q pushed out p's blocks tail first, so p's head stayed in HBM and the rest came from host.
    let m = scrape(&sim).await;
    let from_tier = sample(&m, "vllm:external_prefix_cache_hits_total", "");
    let in_hbm = sample(&m, "vllm:prefix_cache_hits_total", "");
    assert!(from_tier >= 1600.0 * 16.0, "{from_tier}");
    // The same split under vLLM 0.32's by-tier names, which collect's cache-tier views read.
    let by_source = |tier: &str| {
        sample(
            &m,
            "vllm:prompt_tokens_cached_by_source_total",
            &format!("source=\"{tier}\""),
        )
    };
    assert_eq!(by_source("host"), from_tier);
    assert_eq!(by_source("device"), in_hbm);
    assert_eq!(
        from_tier + in_hbm,
        2.0 * 31_984.0,
        "hits of the last two requests"
    );
    assert!(sample(&m, "vllm:kv_offload_bytes_total", "gpu_to_cpu") >= from_tier * 327_680.0);
    assert_eq!(
        sample(&m, "vllm:kv_offload_bytes_total", "cpu_to_gpu"),
        from_tier * 327_680.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_caching_off_never_hits() {
    let sim = SimServer::start(&["--instant", "--prefix-caching", "off"]);
    let p = ids(1000, 200);
    assert_eq!(cached(&sim, &p).await, 0);
    assert_eq!(cached(&sim, &p).await, 0);
    let m = scrape(&sim).await;
    assert_eq!(sample(&m, "vllm:prefix_cache_hits_total", ""), 0.0);
    assert_eq!(sample(&m, "vllm:prefix_cache_queries_total", ""), 400.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_agree_with_the_usage_of_the_requests_served() {
    let sim = SimServer::start(&["--instant"]);
    let (mut prompt, mut completion, mut cached_sum) = (0u64, 0u64, 0u64);
    let prompts = [
        ids(1, 300),
        ids(1, 300),
        ids(1, 500),
        ids(7000, 64),
        ids(1, 300),
    ];
    for (i, p) in prompts.iter().enumerate() {
        let (status, body) = complete(&sim, json!({"prompt": p, "max_tokens": 5 + i})).await;
        assert_eq!(status, 200);
        prompt += body["usage"]["prompt_tokens"].as_u64().expect("u64");
        completion += body["usage"]["completion_tokens"].as_u64().expect("u64");
        cached_sum += body["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("u64");
    }
    let m = scrape(&sim).await;
    assert_eq!(sample(&m, "vllm:prompt_tokens_total", "") as u64, prompt);
    assert_eq!(
        sample(&m, "vllm:generation_tokens_total", "") as u64,
        completion
    );
    let hits = sample(&m, "vllm:prefix_cache_hits_total", "")
        + sample(&m, "vllm:external_prefix_cache_hits_total", "");
    assert_eq!(hits as u64, cached_sum);
    assert!(cached_sum > 0);
    assert_eq!(sample(&m, "vllm:request_success_total", "length") as u64, 5);
    assert_eq!(
        sample(&m, "vllm:time_to_first_token_seconds_count", "") as u64,
        5
    );
    assert_eq!(
        sample(&m, "vllm:e2e_request_latency_seconds_count", "") as u64,
        5
    );
    assert_eq!(sample(&m, "vllm:num_requests_running", ""), 0.0);
    let by_source = sample(&m, "vllm:prompt_tokens_by_source_total", "local_compute")
        + sample(&m, "vllm:prompt_tokens_by_source_total", "local_cache_hit")
        + sample(
            &m,
            "vllm:prompt_tokens_by_source_total",
            "external_kv_transfer",
        );
    assert_eq!(by_source as u64, prompt);
}

#[tokio::test(flavor = "multi_thread")]
async fn sglang_flavor_exposes_sglang_names() {
    let sim = SimServer::start(&["--instant", "--metrics-flavor", "sglang"]);
    let p = ids(1, 100);
    cached(&sim, &p).await;
    cached(&sim, &p).await;
    let m = scrape(&sim).await;
    assert!(!m.contains("vllm:"));
    assert_eq!(sample(&m, "sglang:prompt_tokens_total", ""), 200.0);
    assert!((sample(&m, "sglang:cache_hit_rate", "") - 0.48).abs() < 1e-9);
    assert_eq!(sample(&m, "sglang:num_running_reqs", ""), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_prefix_cache_forgets_cached_blocks() {
    let sim = SimServer::start(&["--instant"]);
    let p = ids(1, 100);
    cached(&sim, &p).await;
    for path in ["/reset_prefix_cache", "/flush_cache"] {
        let resp = client().post(sim.url(path)).send().await.expect("reset");
        assert_eq!(resp.status(), 200);
        assert_eq!(cached(&sim, &p).await, 0, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn output_length_honours_max_min_tokens_and_ignore_eos() {
    let sim = SimServer::start(&["--instant", "--seed", "3"]);
    let p = ids(1, 20);
    let (_, body) = complete(&sim, json!({"prompt": p, "max_tokens": 3})).await;
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    let (_, body) = complete(
        &sim,
        json!({"prompt": p, "max_tokens": 2000, "ignore_eos": true}),
    )
    .await;
    assert_eq!(body["usage"]["completion_tokens"], 2000);
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    let (_, body) = complete(&sim, json!({"prompt": p, "max_tokens": 2000})).await;
    let natural = body["usage"]["completion_tokens"].as_u64().expect("u64");
    assert!((16..=512).contains(&natural), "{natural}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let (_, body) = complete(
        &sim,
        json!({"prompt": p, "max_tokens": 2000, "min_tokens": 900}),
    )
    .await;
    assert_eq!(body["usage"]["completion_tokens"], 900);
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    let (_, again) = complete(&sim, json!({"prompt": p, "max_tokens": 2000})).await;
    assert_eq!(
        again["choices"][0]["text"],
        complete(&sim, json!({"prompt": p, "max_tokens": 2000}))
            .await
            .1["choices"][0]["text"]
    );
    let text = again["choices"][0]["text"].as_str().expect("text");
    assert_eq!(
        text.split(' ').filter(|w| !w.is_empty()).count() as u64,
        natural,
        "one word per token"
    );
}

/// Reads an SSE body into its `data:` payloads; `None` when the stream broke off.
async fn sse(resp: reqwest::Response) -> Option<Vec<String>> {
    let text = resp.text().await.ok()?;
    Some(
        text.split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(str::to_owned)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_follow_the_openai_shape() {
    let sim = SimServer::start(&["--instant"]);
    let p = ids(1, 40);
    let plain = complete(&sim, json!({"prompt": p, "max_tokens": 7}))
        .await
        .1;
    let resp = client()
        .post(sim.url("/v1/completions"))
        .json(&json!({"prompt": p, "max_tokens": 7, "stream": true, "stream_options": {"include_usage": true}}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse(resp).await.expect("complete stream");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("json chunk"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(
        text,
        plain["choices"][0]["text"].as_str().expect("text"),
        "same tokens streamed or not"
    );
    assert_eq!(
        chunks
            .iter()
            .filter(|c| c["choices"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()))
            .count(),
        7
    );
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(usage["completion_tokens"], 7);
    assert_eq!(usage["prompt_tokens"], 40);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "length"
    );

    let resp = client()
        .post(sim.url("/v1/chat/completions"))
        .json(&json!({"model": "llama-3.1-8b", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 3, "stream": true}))
        .send()
        .await
        .expect("send");
    let events = sse(resp).await.expect("complete stream");
    let first: Value = serde_json::from_str(&events[0]).expect("json");
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert!(
        events.iter().all(|e| !e.contains("\"usage\"")),
        "no usage chunk unless asked"
    );
    assert_eq!(events.len(), 1 + 3 + 1 + 1);

    let (status, body) = {
        let resp = client()
            .post(sim.url("/v1/chat/completions"))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": null, "tools": null}))
            .send()
            .await
            .expect("send");
        (
            resp.status().as_u16(),
            resp.json::<Value>().await.expect("json"),
        )
    };
    assert_eq!(status, 200, "explicit nulls are accepted: {body}");
    assert_eq!(body["object"], "chat.completion");
    // "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" under o200k_base.
    let tok = kvsweep::base::tokenizer::Tokenizer::load(None).expect("o200k");
    let expected = tok
        .encode(&kvsweep::base::tokenizer::render_chat(&[
            kvsweep::base::tokenizer::ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            },
        ]))
        .expect("encode")
        .len();
    assert_eq!(body["usage"]["prompt_tokens"], expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_openai_style_errors() {
    let sim = SimServer::start(&["--instant", "--max-model-len", "1000", "--max-body-mb", "1"]);
    let c = client();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "bad JSON",
            c.post(sim.url("/v1/completions")).body("{\"prompt\": [1,"),
            400,
            "invalid request body",
        ),
        (
            "wrong type",
            c.post(sim.url("/v1/completions")).body(r#"{"prompt": 5}"#),
            422,
            "invalid request body",
        ),
        (
            "missing prompt",
            c.post(sim.url("/v1/completions"))
                .body(r#"{"max_tokens": 5}"#),
            422,
            "missing field `prompt`",
        ),
        (
            "unknown model",
            c.post(sim.url("/v1/completions"))
                .body(r#"{"model": "gpt-9", "prompt": "hi"}"#),
            404,
            "The model `gpt-9` does not exist.",
        ),
        (
            "unknown path",
            c.post(sim.url("/v1/embeddings")).body("{}"),
            404,
            "no such endpoint",
        ),
        (
            "empty prompt",
            c.post(sim.url("/v1/completions")).body(r#"{"prompt": ""}"#),
            400,
            "the prompt is empty",
        ),
        (
            "max_tokens 0",
            c.post(sim.url("/v1/completions"))
                .body(r#"{"prompt": "hi", "max_tokens": 0}"#),
            400,
            "max_tokens must be at least 1",
        ),
        (
            "min > max",
            c.post(sim.url("/v1/completions"))
                .body(r#"{"prompt": "hi", "max_tokens": 2, "min_tokens": 3}"#),
            400,
            "must not exceed max_tokens",
        ),
        (
            "too long",
            c.post(sim.url("/v1/completions"))
                .json(&json!({"prompt": ids(1, 990), "max_tokens": 20})),
            400,
            "maximum context length is 1000 tokens",
        ),
        (
            "out of vocabulary",
            c.post(sim.url("/v1/completions"))
                .body(r#"{"prompt": [1, 4000000000]}"#),
            400,
            "out of vocabulary",
        ),
        (
            "batch",
            c.post(sim.url("/v1/completions"))
                .body(r#"{"prompt": ["a", "b"]}"#),
            400,
            "a batch of 2 prompts",
        ),
        (
            "empty messages",
            c.post(sim.url("/v1/chat/completions"))
                .body(r#"{"messages": []}"#),
            400,
            "messages must not be empty",
        ),
        (
            "image part",
            c.post(sim.url("/v1/chat/completions"))
                .body(r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#),
            400,
            "not supported",
        ),
        (
            "too large",
            c.post(sim.url("/v1/completions"))
                .body(vec![b' '; 2 * 1024 * 1024]),
            413,
            "",
        ),
    ];
    for (what, req, status, message) in cases {
        let resp = req
            .header("content-type", "application/json")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON: {e}"));
        assert_eq!(body["error"]["code"], status, "{what}: {body}");
        let text = body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{what}: `{text}` lacks `{message}`");
        assert!(body["error"]["type"].is_string(), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_failures_with_retry_after() {
    let sim = SimServer::start(&["--instant", "--fail-rate", "1", "--fail-status", "429"]);
    let resp = client()
        .post(sim.url("/v1/completions"))
        .json(&json!({"prompt": "hi", "max_tokens": 2}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    drop(sim);

    let sim = SimServer::start(&[
        "--instant",
        "--fail-rate",
        "0.5",
        "--fail-status",
        "503",
        "--seed",
        "9",
    ]);
    let mut failed = 0;
    for i in 0..200u32 {
        let (status, _) = complete(&sim, json!({"prompt": [i + 1], "max_tokens": 1})).await;
        assert!(status == 200 || status == 503, "{status}");
        failed += u32::from(status == 503);
    }
    assert!(
        (70..130).contains(&failed),
        "{failed} of 200 failed at rate 0.5"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalls_pause_after_the_first_token() {
    let sim = SimServer::start(&["--instant", "--stall-ms", "400"]);
    let mut resp = client()
        .post(sim.url("/v1/completions"))
        .json(&json!({"prompt": "hi", "max_tokens": 5, "stream": true}))
        .send()
        .await
        .expect("send");
    let start = Instant::now();
    let first = resp.chunk().await.expect("chunk").expect("first chunk");
    let first_at = start.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("\"text\""));
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.expect("chunk") {
        rest.extend_from_slice(&c);
    }
    let gap = start.elapsed() - first_at;
    assert!(gap >= Duration::from_millis(380), "{gap:?}");
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));

    let start = Instant::now();
    let (status, _) = complete(&sim, json!({"prompt": "hi", "max_tokens": 2})).await;
    assert_eq!(status, 200);
    assert!(start.elapsed() >= Duration::from_millis(380));
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_streams_end_without_done() {
    let sim = SimServer::start(&["--instant", "--drop-stream-rate", "1"]);
    let resp = client()
        .post(sim.url("/v1/completions"))
        .json(&json!({"prompt": "hi", "max_tokens": 40, "stream": true}))
        .send()
        .await
        .expect("send");
    match sse(resp).await {
        None => {}
        Some(events) => panic!(
            "the stream should break off, got {} events ending {:?}",
            events.len(),
            events.last()
        ),
    }
    // Non-streamed requests are unaffected.
    assert_eq!(
        complete(&sim, json!({"prompt": "hi", "max_tokens": 4}))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_delay_answers_503_until_ready() {
    let sim = SimServer::start(&["--instant", "--startup-delay-s", "1.5"]);
    let health = client()
        .get(sim.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 503);
    assert_eq!(complete(&sim, json!({"prompt": "hi"})).await.0, 503);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let health = client()
        .get(sim.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let models: Value = client()
        .get(sim.url("/v1/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"][0]["id"], "llama-3.1-8b");
    // The hardware it models, which collect prices and powers the cell as.
    assert_eq!(models["data"][0]["sim_runner"], "h100");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let sim = SimServer::start(&["--instant"]);
    let start = Instant::now();
    let status = sim.terminate();
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_model_that_does_not_fit_is_refused_at_start() {
    let out = common::run(common::kvsweep().args([
        "sim-server",
        "--port",
        "0",
        "--model",
        "deepseek-r1",
        "--tp",
        "1",
    ]));
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("leaves no room for a KV cache"),
        "{}",
        common::stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_blocks_preempts_the_newest_request_which_still_finishes() {
    // 8 blocks of 16 tokens. Each request, 33 prompt tokens and 60 generated, needs 6 blocks by
    // its end: one alone fits, two cannot. Both are sent at once; the later to arrive is admitted
    // beside the other as long as it arrives before that one holds 6 blocks (about 45 of its
    // decode steps: 2.5 s at a tenth of modelled speed, so a loaded machine's late send still
    // lands inside it); then, as both grow, the older needs a block and the newer is preempted,
    // recomputed later, and still completes.
    let sim = SimServer::start(&["--kv-cache-gb", EIGHT_BLOCKS_GB, "--speed", "0.1"]);
    let body = |start: u32| json!({"prompt": ids(start, 33), "max_tokens": 60, "ignore_eos": true});
    let (a, b) = tokio::join!(complete(&sim, body(1000)), complete(&sim, body(2000)));
    for (status, body) in [a, b] {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["usage"]["completion_tokens"], 60);
    }
    let m = scrape(&sim).await;
    assert!(
        sample(&m, "vllm:num_preemptions_total", "") >= 1.0,
        "no preemption happened"
    );
    assert_eq!(
        sample(&m, "vllm:kv_cache_usage_perc", ""),
        0.0,
        "every block was released"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hugging_face_tokenizer_counts_its_own_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = common::write(
        dir.path(),
        "tokenizer.json",
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"hello":0,"world":1,"[UNK]":2},"unk_token":"[UNK]"}}"#,
    );
    let sim = SimServer::start(&[
        "--instant",
        "--tokenizer",
        tokenizer.to_str().expect("utf-8"),
    ]);
    let (status, body) = complete(
        &sim,
        json!({"prompt": "hello world hello", "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    let (status, body) = complete(&sim, json!({"prompt": [0, 1, 3], "max_tokens": 2})).await;
    assert_eq!(status, 400, "id 3 is outside a 3-token vocabulary: {body}");
}
