//! The thresholds that decide whether a cell's figures are a trustworthy point: shared by the
//! spec (`validity:`), `cell.json` (which carries them to wherever the cell is collected) and
//! collect's verdict (`collect::validity`), none of which imports another for them.

use serde::{Deserialize, Serialize};

/// When a finished cell is too thin, too noisy or too distorted to stand as a point. Every
/// figure has a documented default (sweeps/README.md, "Validity"); a spec overrides any of them
/// under `validity:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidityThresholds {
    /// Fewest completed (successful, past the warm-up) requests a point needs.
    pub(crate) min_requests: u64,
    /// Fewest completed requests per user: with fewer, the point is a handful of users' luck.
    pub(crate) min_requests_per_user: f64,
    /// Largest share of failed requests.
    pub(crate) max_error_rate: f64,
    /// Largest share of requests the server refused for exceeding its context length.
    pub(crate) max_context_overflow_rate: f64,
    /// Largest p99 of the client's schedule delay (sent minus scheduled), ms: past it the client,
    /// not the server, set the pace.
    pub(crate) max_schedule_delay_p99_ms: f64,
    /// Largest share of its cores the replay may want over its run (CPU time plus time waiting
    /// for a core): past it the client was saturated.
    pub(crate) max_client_cpu: f64,
    /// Largest relative change of completed-request throughput from the middle third of the
    /// measured window to the last third (a change also has to be larger than counting noise).
    pub(crate) max_steady_state_change: f64,
    /// Requests in flight in the last third over the middle third, past which the queue is
    /// growing (together with `max_ttft_growth`): the server is over-saturated.
    pub(crate) max_in_flight_growth: f64,
    /// TTFT median in the last third over the middle third, past which the queue is growing
    /// (together with `max_in_flight_growth`).
    pub(crate) max_ttft_growth: f64,
}

impl Default for ValidityThresholds {
    fn default() -> Self {
        Self {
            min_requests: 30,
            min_requests_per_user: 2.0,
            max_error_rate: 0.01,
            max_context_overflow_rate: 0.01,
            max_schedule_delay_p99_ms: 100.0,
            max_client_cpu: 0.9,
            max_steady_state_change: 0.5,
            max_in_flight_growth: 1.25,
            max_ttft_growth: 1.25,
        }
    }
}

/// A spec's `validity:` mapping: any of the thresholds, the others at their defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidityOverrides {
    pub(crate) min_requests: Option<u64>,
    pub(crate) min_requests_per_user: Option<f64>,
    pub(crate) max_error_rate: Option<f64>,
    pub(crate) max_context_overflow_rate: Option<f64>,
    pub(crate) max_schedule_delay_p99_ms: Option<f64>,
    pub(crate) max_client_cpu: Option<f64>,
    pub(crate) max_steady_state_change: Option<f64>,
    pub(crate) max_in_flight_growth: Option<f64>,
    pub(crate) max_ttft_growth: Option<f64>,
}

impl ValidityOverrides {
    /// The thresholds with these overrides applied, or the name of the first field that is not a
    /// finite number at least 0.
    pub(crate) fn resolve(&self) -> Result<ValidityThresholds, &'static str> {
        let d = ValidityThresholds::default();
        let pick = |name: &'static str, v: Option<f64>, default: f64| match v {
            Some(x) if !(x.is_finite() && x >= 0.0) => Err(name),
            Some(x) => Ok(x),
            None => Ok(default),
        };
        Ok(ValidityThresholds {
            min_requests: self.min_requests.unwrap_or(d.min_requests),
            min_requests_per_user: pick(
                "min_requests_per_user",
                self.min_requests_per_user,
                d.min_requests_per_user,
            )?,
            max_error_rate: pick("max_error_rate", self.max_error_rate, d.max_error_rate)?,
            max_context_overflow_rate: pick(
                "max_context_overflow_rate",
                self.max_context_overflow_rate,
                d.max_context_overflow_rate,
            )?,
            max_schedule_delay_p99_ms: pick(
                "max_schedule_delay_p99_ms",
                self.max_schedule_delay_p99_ms,
                d.max_schedule_delay_p99_ms,
            )?,
            max_client_cpu: pick("max_client_cpu", self.max_client_cpu, d.max_client_cpu)?,
            max_steady_state_change: pick(
                "max_steady_state_change",
                self.max_steady_state_change,
                d.max_steady_state_change,
            )?,
            max_in_flight_growth: pick(
                "max_in_flight_growth",
                self.max_in_flight_growth,
                d.max_in_flight_growth,
            )?,
            max_ttft_growth: pick("max_ttft_growth", self.max_ttft_growth, d.max_ttft_growth)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let o = ValidityOverrides {
            min_requests: Some(10),
            max_error_rate: Some(0.05),
            ..ValidityOverrides::default()
        };
        let t = o.resolve().expect("valid overrides");
        assert_eq!(t.min_requests, 10);
        assert_eq!(t.max_error_rate, 0.05);
        assert_eq!(
            t.max_client_cpu,
            ValidityThresholds::default().max_client_cpu
        );
    }

    #[test]
    fn a_negative_or_nan_threshold_names_its_field() {
        let o = ValidityOverrides {
            max_ttft_growth: Some(-1.0),
            ..ValidityOverrides::default()
        };
        assert_eq!(o.resolve(), Err("max_ttft_growth"));
        let o = ValidityOverrides {
            max_client_cpu: Some(f64::NAN),
            ..ValidityOverrides::default()
        };
        assert_eq!(o.resolve(), Err("max_client_cpu"));
    }
}
