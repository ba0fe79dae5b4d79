//! The numeric figures of a cell that are averaged over its repeats, plotted and gated: each
//! with its `summary.csv` column name and its accessor into [`CellResult`], so that the Pareto
//! panels, the repeats' intervals and the report read a cell's figure by what it is, not by a
//! column name looked up at run time.

use super::CellResult;

/// Declares [`Metric`] from one list: variant, column, how to read it, how to set it (a
/// repeated cell's mean).
macro_rules! metrics {
    ($($m:ident $col:literal |$c:ident| $get:expr, |$s:ident, $v:ident| $set:expr;)*) => {
        /// A numeric figure of a cell.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Metric {
            $($m,)*
        }

        impl Metric {
            /// Every metric, in `repeats.csv`'s order.
            pub(crate) const ALL: &'static [Metric] = &[$(Metric::$m,)*];

            /// Its `summary.csv` column (and `repeats.csv` metric) name.
            pub fn column(self) -> &'static str {
                match self {
                    $(Metric::$m => $col,)*
                }
            }

            /// Its value for `cell`; `None` where the cell lacks the figure.
            pub fn of(self, cell: &CellResult) -> Option<f64> {
                match self {
                    $(Metric::$m => {
                        let $c = cell;
                        $get
                    })*
                }
            }

            /// Sets it on `cell` (a repeated cell's mean over its repeats).
            pub fn set(self, cell: &mut CellResult, value: f64) {
                match self {
                    $(Metric::$m => {
                        let $s = cell;
                        let $v = value;
                        $set
                    })*
                }
            }
        }
    };
}

metrics! {
    ErrorRate "error_rate" |c| Some(c.figures.error_rate), |c, v| c.figures.error_rate = v;
    DurationS "duration_s" |c| Some(c.figures.duration_s), |c, v| c.figures.duration_s = v;
    InputTps "input_tps" |c| Some(c.figures.input_tps), |c, v| c.figures.input_tps = v;
    OutputTps "output_tps" |c| Some(c.figures.output_tps), |c, v| c.figures.output_tps = v;
    TotalTps "total_tps" |c| Some(c.figures.total_tps), |c, v| c.figures.total_tps = v;
    InputTpsPerGpu "input_tps_per_gpu"
        |c| Some(c.figures.input_tps_per_gpu), |c, v| c.figures.input_tps_per_gpu = v;
    OutputTpsPerGpu "output_tps_per_gpu"
        |c| Some(c.figures.output_tps_per_gpu), |c, v| c.figures.output_tps_per_gpu = v;
    TotalTpsPerGpu "total_tps_per_gpu"
        |c| Some(c.figures.total_tps_per_gpu), |c, v| c.figures.total_tps_per_gpu = v;
    TtftP50Ms "ttft_p50_ms" |c| c.figures.ttft_p50_ms, |c, v| c.figures.ttft_p50_ms = Some(v);
    TtftP90Ms "ttft_p90_ms" |c| c.figures.ttft_p90_ms, |c, v| c.figures.ttft_p90_ms = Some(v);
    TtftP99Ms "ttft_p99_ms" |c| c.figures.ttft_p99_ms, |c, v| c.figures.ttft_p99_ms = Some(v);
    TpotP50Ms "tpot_p50_ms" |c| c.figures.tpot_p50_ms, |c, v| c.figures.tpot_p50_ms = Some(v);
    TpotP90Ms "tpot_p90_ms" |c| c.figures.tpot_p90_ms, |c, v| c.figures.tpot_p90_ms = Some(v);
    TpotP99Ms "tpot_p99_ms" |c| c.figures.tpot_p99_ms, |c, v| c.figures.tpot_p99_ms = Some(v);
    ItlP50Ms "itl_p50_ms" |c| c.figures.itl_p50_ms, |c, v| c.figures.itl_p50_ms = Some(v);
    ItlP90Ms "itl_p90_ms" |c| c.figures.itl_p90_ms, |c, v| c.figures.itl_p90_ms = Some(v);
    ItlP99Ms "itl_p99_ms" |c| c.figures.itl_p99_ms, |c, v| c.figures.itl_p99_ms = Some(v);
    E2eP50Ms "e2e_p50_ms" |c| c.figures.e2e_p50_ms, |c, v| c.figures.e2e_p50_ms = Some(v);
    E2eP90Ms "e2e_p90_ms" |c| c.figures.e2e_p90_ms, |c, v| c.figures.e2e_p90_ms = Some(v);
    E2eP99Ms "e2e_p99_ms" |c| c.figures.e2e_p99_ms, |c, v| c.figures.e2e_p99_ms = Some(v);
    Interactivity "interactivity"
        |c| c.figures.interactivity, |c, v| c.figures.interactivity = Some(v);
    E2eNormIntvtyP50 "e2e_norm_intvty_p50"
        |c| c.agentx.e2e_norm_intvty_p50, |c, v| c.agentx.e2e_norm_intvty_p50 = Some(v);
    E2eNormIntvtyP90 "e2e_norm_intvty_p90"
        |c| c.agentx.e2e_norm_intvty_p90, |c, v| c.agentx.e2e_norm_intvty_p90 = Some(v);
    E2eNormIntvtyP99 "e2e_norm_intvty_p99"
        |c| c.agentx.e2e_norm_intvty_p99, |c, v| c.agentx.e2e_norm_intvty_p99 = Some(v);
    AgentxInputTpsPerGpu "agentx_input_tps_per_gpu"
        |c| c.agentx.input_tps_per_gpu, |c, v| c.agentx.input_tps_per_gpu = Some(v);
    AgentxOutputTpsPerGpu "agentx_output_tps_per_gpu"
        |c| c.agentx.output_tps_per_gpu, |c, v| c.agentx.output_tps_per_gpu = Some(v);
    AgentxTotalTpsPerGpu "agentx_total_tps_per_gpu"
        |c| c.agentx.total_tps_per_gpu, |c, v| c.agentx.total_tps_per_gpu = Some(v);
    ClientHitRate "client_hit_rate"
        |c| c.figures.client_hit_rate, |c, v| c.figures.client_hit_rate = Some(v);
    ServerHitRate "server_hit_rate"
        |c| c.figures.server_hit_rate, |c, v| c.figures.server_hit_rate = Some(v);
    OffloadBytes "offload_bytes"
        |c| c.figures.offload_bytes, |c, v| c.figures.offload_bytes = Some(v);
    OracleHitRate "oracle_hit_rate"
        |c| c.oracle.map(|o| o.hit_rate),
        |c, v| if let Some(o) = c.oracle.as_mut() { o.hit_rate = v };
    UsdPerMtokTotalHyperscaler "usd_per_mtok_total_hyperscaler"
        |c| usd(c, 0, 0), |c, v| set_usd(c, 0, 0, v);
    UsdPerMtokTotalNeocloud "usd_per_mtok_total_neocloud"
        |c| usd(c, 1, 0), |c, v| set_usd(c, 1, 0, v);
    UsdPerMtokTotalRental3y "usd_per_mtok_total_rental_3y"
        |c| usd(c, 2, 0), |c, v| set_usd(c, 2, 0, v);
    TpsPerMw "tps_per_mw"
        |c| c.cost.as_ref().and_then(|p| p.cost.tps_per_mw),
        |c, v| if let Some(p) = c.cost.as_mut() { p.cost.tps_per_mw = Some(v) };
    JoulesPerOutputToken "joules_per_output_token"
        |c| c.cost.as_ref().and_then(|p| p.cost.joules_per_output_token),
        |c, v| if let Some(p) = c.cost.as_mut() { p.cost.joules_per_output_token = Some(v) };
    JoulesPerTotalToken "joules_per_total_token"
        |c| c.cost.as_ref().and_then(|p| p.cost.joules_per_total_token),
        |c, v| if let Some(p) = c.cost.as_mut() { p.cost.joules_per_total_token = Some(v) };
}

/// $ per million tokens under price `kind` ([`crate::base::economics::PriceKind::ALL`] order) of
/// `tokens` (0 total, 1 input, 2 output).
pub(crate) fn usd(c: &CellResult, kind: usize, tokens: usize) -> Option<f64> {
    c.cost
        .as_ref()
        .and_then(|p| p.cost.usd_per_mtok[kind][tokens])
}

fn set_usd(c: &mut CellResult, kind: usize, tokens: usize, v: f64) {
    if let Some(p) = c.cost.as_mut() {
        p.cost.usd_per_mtok[kind][tokens] = Some(v);
    }
}
