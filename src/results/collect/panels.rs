//! The InferenceX panels the Pareto frontiers are drawn on: each puts a throughput per GPU on
//! x (more is better) and a latency or interactivity on y (the cost and energy panels:
//! interactivity on x, cost or tok/s per MW on y), each axis a [`Metric`] of the cells.

use super::result::Metric;
use crate::results::pareto::Better;

/// One of the InferenceX panels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Panel {
    pub id: &'static str,
    pub title: &'static str,
    pub(crate) x_label: &'static str,
    pub(crate) y_label: &'static str,
    /// The figures plotted.
    pub x: Metric,
    pub y: Metric,
    pub better: Better,
}

pub(crate) const PANELS: [Panel; 7] = [
    // InferenceX's AgentX default view (collect::inferencex): E2E-normalized interactivity P90
    // on x, the North Star frontier every other panel's frontier is gated by.
    Panel {
        id: "agentx_tput_vs_e2e_norm_intvty",
        title: "Throughput vs E2E-normalized interactivity",
        x_label: "E2E-normalized interactivity P90 (output tokens/s per user)",
        y_label: "total tokens/s per GPU",
        x: Metric::E2eNormIntvtyP90,
        y: Metric::TotalTpsPerGpu,
        better: Better::Higher,
    },
    Panel {
        id: "ttft_vs_input_tput",
        title: "TTFT vs input throughput",
        x_label: "input tokens/s per GPU",
        y_label: "TTFT p50 (ms)",
        x: Metric::InputTpsPerGpu,
        y: Metric::TtftP50Ms,
        better: Better::Lower,
    },
    Panel {
        id: "interactivity_vs_output_tput",
        title: "Interactivity vs output throughput",
        x_label: "output tokens/s per GPU",
        y_label: "interactivity (tokens/s per user, 1000 / TPOT p50)",
        x: Metric::OutputTpsPerGpu,
        y: Metric::Interactivity,
        better: Better::Higher,
    },
    Panel {
        id: "interactivity_vs_total_tput",
        title: "Interactivity vs total throughput",
        x_label: "total tokens/s per GPU",
        y_label: "interactivity (tokens/s per user, 1000 / TPOT p50)",
        x: Metric::TotalTpsPerGpu,
        y: Metric::Interactivity,
        better: Better::Higher,
    },
    Panel {
        id: "e2e_vs_total_tput",
        title: "End-to-end latency vs total throughput",
        x_label: "total tokens/s per GPU",
        y_label: "E2E latency p50 (ms)",
        x: Metric::TotalTpsPerGpu,
        y: Metric::E2eP50Ms,
        better: Better::Lower,
    },
    // What a buyer compares (collect::cost): interactivity on x, more is better.
    Panel {
        id: "cost_vs_interactivity",
        title: "Cost per million tokens vs interactivity",
        x_label: "interactivity (tokens/s per user, 1000 / TPOT p50)",
        y_label: "$ per million total tokens (hyperscaler price)",
        x: Metric::Interactivity,
        y: Metric::UsdPerMtokTotalHyperscaler,
        better: Better::Lower,
    },
    Panel {
        id: "tps_per_mw_vs_interactivity",
        title: "Tokens/s per MW vs interactivity",
        x_label: "interactivity (tokens/s per user, 1000 / TPOT p50)",
        y_label: "total tokens/s per MW",
        x: Metric::Interactivity,
        y: Metric::TpsPerMw,
        better: Better::Higher,
    },
];
