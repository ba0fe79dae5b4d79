//! The replay's side of the preflight: every `--url` checked (the first names the model), the
//! caches emptied when asked, and the engine's name for the results.

use anyhow::Result;

use crate::base::workload::replay::ReplayArgs;
use crate::run::openai::preflight::{
    Endpoint, Preflight, Prompts, lists_simulator, preflight, reset_cache,
};

/// The engine's name in the results: `--engine-label`, else `sim` for the simulator (whose
/// /v1/models are owned by `kvsweep-sim`), so that a simulated run is marked as one even when
/// nobody said so.
pub(super) fn engine_label(args: &ReplayArgs, pre: &Preflight) -> String {
    match &args.engine_label {
        Some(label) => label.clone(),
        None if lists_simulator(&pre.models) => "sim".to_owned(),
        None => "unknown".to_owned(),
    }
}

/// Preflights every endpoint (the first names the model), then empties the caches if asked.
pub(super) async fn prepare(
    client: &reqwest::Client,
    args: &ReplayArgs,
    endpoints: &[Endpoint],
    prompts: &Prompts,
) -> Result<Preflight> {
    let first = preflight(client, args.model.as_deref(), &endpoints[0], prompts).await?;
    for e in &endpoints[1..] {
        preflight(client, Some(&first.model), e, prompts).await?;
    }
    if args.control.reset_cache {
        for e in endpoints {
            reset_cache(client, &e.base, &engine_label(args, &first)).await?;
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn preflight_of(owner: &str) -> Preflight {
        Preflight {
            model: "m".into(),
            models: json!({"data": [{"id": "m", "owned_by": owner}]}),
            template_tokens: 0,
        }
    }

    #[test]
    fn the_engine_label_is_given_or_read_off_the_simulator() {
        let parse = |extra: &[&str]| crate::base::workload::replay::parse(extra).expect("parses");
        assert_eq!(
            engine_label(&parse(&[]), &preflight_of("kvsweep-sim")),
            "sim"
        );
        assert_eq!(engine_label(&parse(&[]), &preflight_of("vllm")), "unknown");
        let named = parse(&["--engine-label", "sglang"]);
        assert_eq!(engine_label(&named, &preflight_of("kvsweep-sim")), "sglang");
    }
}
