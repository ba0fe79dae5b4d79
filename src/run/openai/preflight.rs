//! The preflight the replay and the synthetic testers share: the client, the endpoint URLs, how
//! prompts are encoded, and the checks (`/v1/models`, one-token test requests, an optional cache
//! reset) that stop a run at its start, with advice, instead of failing every request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::base::tokenizer::Tokenizer;
use crate::data::trace::prompt::{ChatWords, TokenRange};

use super::Api;
use super::client::{self, Outcome, PromptBody, PromptEncoding};
use super::vocabulary;

/// One server a run sends to.
pub struct Endpoint {
    pub base: String,
    /// `/v1/completions` or `/v1/chat/completions` under `base`.
    pub url: String,
}

impl Endpoint {
    /// The endpoint at `path` of the server `base_url` (a trailing `/` is dropped).
    pub fn new(base_url: &str, path: &str) -> Self {
        let base = base_url.trim_end_matches('/').to_owned();
        Self {
            url: format!("{base}{path}"),
            base,
        }
    }
}

/// Tries of the one-token test request on a 429 or 5xx answer.
const PREFLIGHT_ATTEMPTS: u32 = 8;

/// How an API's prompts are sent.
pub struct Prompts {
    /// `/v1/completions` or `/v1/chat/completions`.
    pub path: &'static str,
    pub(crate) encoding: PromptEncoding,
    /// The ids prompts are built from: for completions, inside the vocabulary of `--tokenizer`
    /// where one is given; for chat, indices into the tokenizer's words.
    pub range: TokenRange,
    /// The `--tokenizer` the range came from, named in the preflight's advice.
    tokenizer: Option<PathBuf>,
}

impl Prompts {
    pub fn new(api: Api, tokenizer: Option<&Path>) -> Result<Self> {
        let default = TokenRange::default();
        let (path, encoding, range) = match api {
            Api::Completions => {
                let range = match tokenizer {
                    Some(path) => vocabulary::ids_within(Tokenizer::load(Some(path))?.vocab_size())
                        .with_context(|| format!("--tokenizer {}", path.display()))?,
                    None => default,
                };
                ("/v1/completions", PromptEncoding::Ids, range)
            }
            Api::Chat => {
                let words = ChatWords::from_tokenizer(&Tokenizer::load(tokenizer)?, default)?;
                (
                    "/v1/chat/completions",
                    PromptEncoding::Words(Arc::new(words)),
                    default,
                )
            }
        };
        Ok(Self {
            path,
            encoding,
            range,
            tokenizer: tokenizer.map(Path::to_owned),
        })
    }
}

/// A server checked and ready for prompts: what the synthetic testers share with the replay.
pub struct Target {
    pub client: reqwest::Client,
    /// `/v1/completions` or `/v1/chat/completions` of the server.
    pub url: String,
    pub base: String,
    pub(crate) encoding: PromptEncoding,
    pub model: String,
    /// Prompt tokens the chat template adds (0 for completions).
    pub template_tokens: u32,
    pub range: TokenRange,
}

/// Builds a client for up to `connections` concurrent requests and runs the preflight
/// (`/v1/models`, then a one-token request) against `base_url`.
pub async fn connect(
    base_url: &str,
    model: Option<&str>,
    api: Api,
    tokenizer: Option<&Path>,
    connections: usize,
) -> Result<Target> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections * 2 + 8)
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    let prompts = Prompts::new(api, tokenizer)?;
    let endpoint = Endpoint::new(base_url, prompts.path);
    let pre = preflight(&client, model, &endpoint, &prompts).await?;
    Ok(Target {
        client,
        url: endpoint.url,
        base: endpoint.base,
        encoding: prompts.encoding,
        model: pre.model,
        template_tokens: pre.template_tokens,
        range: prompts.range,
    })
}

/// What the preflight learned about the server.
pub struct Preflight {
    pub model: String,
    pub models: Value,
    /// Prompt tokens the chat template adds (0 for completions).
    pub template_tokens: u32,
}

/// `GET /v1/models`, then one tiny request: a wrong URL or a refusing server is one clear error.
/// For chat, the tiny request is one word, so its `prompt_tokens` minus one is what the chat
/// template adds to every prompt. For completions, a second one sends the highest token id the
/// prompts will use: a server whose vocabulary is smaller stops the run here, with what to pass,
/// instead of failing every request.
pub async fn preflight(
    client: &reqwest::Client,
    model: Option<&str>,
    endpoint: &Endpoint,
    prompts: &Prompts,
) -> Result<Preflight> {
    let base = endpoint.base.as_str();
    let models_url = format!("{base}/v1/models");
    let resp = client
        .get(&models_url)
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {base}"))?;
    let status = resp.status();
    let models: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{models_url} answered HTTP {status}: {models}");
    }
    let model = match model {
        Some(m) => m.to_owned(),
        None => models["data"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{models_url} lists no model; give --model"))?,
    };
    let range = prompts.range;
    let m = test_request(client, endpoint, &model, prompts, range.lo).await;
    if m.outcome() != Outcome::Ok {
        let error = m.error.unwrap_or_default();
        let advice = match prompts.encoding {
            PromptEncoding::Ids if vocabulary::blames_vocabulary(&error) => {
                format!("\n{}", vocabulary_advice(prompts))
            }
            _ => String::new(),
        };
        bail!("the server at {base} refused a one-token test request: {error}{advice}");
    }
    if let PromptEncoding::Ids = prompts.encoding {
        let top = vocabulary::highest(range);
        let m = test_request(client, endpoint, &model, prompts, top).await;
        if m.is_transient() {
            bail!(
                "the server at {base} failed a test request {PREFLIGHT_ATTEMPTS} times: {}",
                m.error.unwrap_or_default()
            );
        }
        if m.outcome() != Outcome::Ok {
            bail!(
                "the server at {base} took token id {} but refused token id {top}, the highest that completions prompts use: {}\n{}",
                range.lo,
                m.error.unwrap_or_default(),
                vocabulary_advice(prompts)
            );
        }
    }
    let template_tokens = match prompts.encoding {
        PromptEncoding::Ids => 0,
        PromptEncoding::Words(_) => m
            .usage
            .map(|u| u.prompt_tokens.saturating_sub(1))
            .context("the server's answer to the test request has no usage: its chat prompts cannot be sized")?,
    };
    Ok(Preflight {
        model,
        models,
        template_tokens,
    })
}

/// Sends a one-token prompt of `token` (for chat, the word standing for it), with a few more
/// tries where the failure is transient (busy, rate-limiting, a stalled or cut answer), so that a
/// flaky server is not mistaken for one that refuses the request.
async fn test_request(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    model: &str,
    prompts: &Prompts,
    token: u32,
) -> client::Measured {
    let body = PromptBody::new(
        model,
        Arc::new(vec![token]),
        prompts.encoding.clone(),
        1,
        false,
    );
    let mut attempts = 0;
    loop {
        attempts += 1;
        let m = client::send(
            client,
            &endpoint.url,
            "kvsweep-preflight",
            body.clone(),
            Duration::from_secs(60),
            || {},
        )
        .await;
        if !m.is_transient() || attempts >= PREFLIGHT_ATTEMPTS {
            return m;
        }
        tokio::time::sleep(m.retry_after.unwrap_or(Duration::from_millis(500))).await;
    }
}

/// What to pass when the served model's vocabulary is smaller than the completions prompts' ids.
fn vocabulary_advice(prompts: &Prompts) -> String {
    let top = vocabulary::highest(prompts.range);
    match &prompts.tokenizer {
        None => format!(
            "The served model's vocabulary is smaller than the ids completions prompts use (up to {top}): give --tokenizer with its tokenizer.json, so that they keep to its ids."
        ),
        Some(path) => format!(
            "The served model's vocabulary is smaller than that of --tokenizer {} (ids up to {top}): give the served model's own tokenizer.json.",
            path.display()
        ),
    }
}

/// Empties a server's prefix cache through the engine's endpoint (both known ones when the
/// engine is not named).
pub async fn reset_cache(client: &reqwest::Client, base: &str, engine: &str) -> Result<()> {
    let paths = reset_paths(engine);
    for path in paths {
        if let Ok(r) = client.post(format!("{base}{path}")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
    }
    bail!(
        "--reset-cache: {base} accepted none of {} (llama.cpp has no such endpoint)",
        paths.join(", ")
    )
}
/// Whether a `/v1/models` answer is kvsweep's simulator's (its models are owned by `kvsweep-sim`).
pub(crate) fn lists_simulator(models: &Value) -> bool {
    models["data"]
        .as_array()
        .is_some_and(|d| d.iter().any(|m| m["owned_by"] == "kvsweep-sim"))
}

/// The cache-reset endpoints to try for an engine, in order.
fn reset_paths(engine: &str) -> &'static [&'static str] {
    match engine {
        "vllm" | "sim" => &["/reset_prefix_cache"],
        "sglang" => &["/flush_cache"],
        _ => &["/reset_prefix_cache", "/flush_cache"],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn endpoint_joins_base_and_path_without_a_double_slash() {
        let e = Endpoint::new("http://h:8000/", "/v1/completions");
        assert_eq!(e.base, "http://h:8000");
        assert_eq!(e.url, "http://h:8000/v1/completions");
        let e = Endpoint::new("http://h:8000", "/v1/chat/completions");
        assert_eq!(e.url, "http://h:8000/v1/chat/completions");
    }

    #[test]
    fn the_simulator_is_known_by_its_models_owner() {
        let sim = json!({"data": [{"id": "m", "owned_by": "kvsweep-sim"}]});
        let vllm = json!({"data": [{"id": "m", "owned_by": "vllm"}]});
        assert!(lists_simulator(&sim));
        assert!(!lists_simulator(&vllm));
        assert!(!lists_simulator(&Value::Null));
    }

    #[test]
    fn cache_reset_paths_follow_the_engine() {
        assert_eq!(reset_paths("vllm"), ["/reset_prefix_cache"]);
        assert_eq!(reset_paths("sim"), ["/reset_prefix_cache"]);
        assert_eq!(reset_paths("sglang"), ["/flush_cache"]);
        assert_eq!(
            reset_paths("unknown"),
            ["/reset_prefix_cache", "/flush_cache"]
        );
    }

    #[test]
    fn completions_prompts_use_ids_and_chat_prompts_words() {
        let p = Prompts::new(Api::Completions, None).expect("default range");
        assert_eq!(p.path, "/v1/completions");
        assert!(matches!(p.encoding, PromptEncoding::Ids));
        assert_eq!(p.range.lo, TokenRange::default().lo);
        assert!(p.tokenizer.is_none());
    }

    #[test]
    fn vocabulary_advice_names_what_to_pass() {
        let mut p = Prompts::new(Api::Completions, None).expect("default range");
        let top = vocabulary::highest(p.range);
        let advice = vocabulary_advice(&p);
        assert!(advice.contains("give --tokenizer"), "{advice}");
        assert!(advice.contains(&top.to_string()), "{advice}");
        p.tokenizer = Some(PathBuf::from("/models/x/tokenizer.json"));
        let advice = vocabulary_advice(&p);
        assert!(
            advice.contains("--tokenizer /models/x/tokenizer.json"),
            "{advice}"
        );
        assert!(
            advice.contains("served model's own tokenizer.json"),
            "{advice}"
        );
    }
}
