//! The `heuristic_multi_agent` block of an oracle config: the scenario the trace-free estimates
//! work from (see `heuristic`). Its own module so that the config can hold one without
//! importing the estimator that reads the config.

use serde::{Deserialize, Serialize};

/// How the share of private reuse grows with the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CurveMode {
    Linear,
    #[default]
    PowerLawFit,
    ZipfHarmonic,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyEfficiency {
    pub(crate) lru_like: f64,
}

impl Default for PolicyEfficiency {
    fn default() -> Self {
        Self { lru_like: 0.85 }
    }
}

/// The `heuristic_multi_agent` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub concurrent_agents: f64,
    pub shared_prefix_tokens: f64,
    pub(crate) avg_new_tokens_per_turn: f64,
    pub avg_turns_per_session: f64,
    pub(crate) private_window_tokens: f64,
    #[serde(default)]
    pub(crate) curve_mode: CurveMode,
    #[serde(default = "default_zipf")]
    pub zipf_s: f64,
    #[serde(default)]
    pub(crate) policy_efficiency: PolicyEfficiency,
}

fn default_zipf() -> f64 {
    0.8
}

impl Scenario {
    pub fn check(&self) -> anyhow::Result<()> {
        let fields = [
            ("concurrent_agents", self.concurrent_agents),
            ("avg_turns_per_session", self.avg_turns_per_session),
        ];
        for (name, v) in fields {
            if v.is_nan() || v < 1.0 {
                anyhow::bail!("heuristic_multi_agent.{name} must be at least 1 (got {v})");
            }
        }
        for (name, v) in [
            ("shared_prefix_tokens", self.shared_prefix_tokens),
            ("avg_new_tokens_per_turn", self.avg_new_tokens_per_turn),
            ("private_window_tokens", self.private_window_tokens),
            ("zipf_s", self.zipf_s),
        ] {
            if v.is_nan() || v < 0.0 {
                anyhow::bail!("heuristic_multi_agent.{name} must be non-negative (got {v})");
            }
        }
        let lru = self.policy_efficiency.lru_like;
        if !(0.0..=1.0).contains(&lru) {
            anyhow::bail!("heuristic_multi_agent.policy_efficiency.lru_like must be in [0, 1]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Scenario {
        serde_json::from_value(serde_json::json!({
            "concurrent_agents": 4.0,
            "shared_prefix_tokens": 1000.0,
            "avg_new_tokens_per_turn": 200.0,
            "avg_turns_per_session": 10.0,
            "private_window_tokens": 8000.0,
        }))
        .expect("a minimal block")
    }

    #[test]
    fn defaults_fill_the_optional_fields() {
        let s = valid();
        assert_eq!(s.curve_mode, CurveMode::PowerLawFit);
        assert_eq!(s.zipf_s, 0.8);
        assert_eq!(s.policy_efficiency.lru_like, 0.85);
        assert!(s.check().is_ok());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let mut s = valid();
        s.concurrent_agents = 0.5;
        assert!(
            s.check()
                .expect_err("below 1")
                .to_string()
                .contains("concurrent_agents")
        );
        let mut s = valid();
        s.zipf_s = f64::NAN;
        assert!(s.check().expect_err("NaN").to_string().contains("zipf_s"));
        let mut s = valid();
        s.policy_efficiency.lru_like = 1.5;
        assert!(
            s.check()
                .expect_err("above 1")
                .to_string()
                .contains("lru_like")
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<Scenario, _> = serde_json::from_value(serde_json::json!({
            "concurrent_agents": 4.0, "shared_prefix_tokens": 0.0, "avg_new_tokens_per_turn": 1.0,
            "avg_turns_per_session": 1.0, "private_window_tokens": 1.0, "agents": 3,
        }));
        assert!(r.is_err());
    }
}
