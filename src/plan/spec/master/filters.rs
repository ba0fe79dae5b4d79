//! The generator's `full-sweep` filters (`--model-prefix`, `--max-conc`, ...) and the
//! concurrency lists they shape, with the same rules per scenario and node type.

use super::config::Conc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioType {
    #[value(name = "fixed-seq-len")]
    FixedSeqLen,
    #[value(name = "agentic-coding")]
    AgenticCoding,
}

/// The fixed sequence-length pairs the generator names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeqLens {
    #[value(name = "1k1k")]
    OneKOneK,
    #[value(name = "8k1k")]
    EightKOneK,
}

impl SeqLens {
    pub(crate) fn isl_osl(self) -> (i64, i64) {
        match self {
            SeqLens::OneKOneK => (1024, 1024),
            SeqLens::EightKOneK => (8192, 1024),
        }
    }
}

/// The short name of a sequence-length pair in an exp-name (`8k1k`, else `ISL_OSL`).
pub(crate) fn seq_len_name(isl: i64, osl: i64) -> String {
    match (isl, osl) {
        (1024, 1024) => "1k1k".into(),
        (8192, 1024) => "8k1k".into(),
        _ => format!("{isl}_{osl}"),
    }
}

/// Filters of InferenceX's `generate_sweep_configs.py full-sweep`, for master configs only.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filters {
    /// Master configs: the InferenceX runner file (labels and hardware).
    #[arg(long, value_name = "FILE", default_value = "configs/runners.yaml")]
    pub runner_config: std::path::PathBuf,
    /// Master configs: only these scenario types.
    #[arg(long, value_enum, num_args = 1.., value_name = "TYPE")]
    pub scenario_type: Vec<ScenarioType>,
    /// Master configs: only entries whose key starts with one of these.
    #[arg(long, num_args = 1.., value_name = "PREFIX")]
    pub model_prefix: Vec<String>,
    /// Master configs: only these precisions (fp4, fp8, ...).
    #[arg(long, num_args = 1..)]
    pub precision: Vec<String>,
    /// Master configs: only these frameworks (vllm, sglang, ...).
    #[arg(long, num_args = 1..)]
    pub framework: Vec<String>,
    /// Master configs: only entries whose runner label is one of these.
    #[arg(long, num_args = 1.., value_name = "LABEL")]
    pub runner_type: Vec<String>,
    /// Master configs: one entry per runner node whose name contains this.
    #[arg(long, value_name = "SUBSTRING")]
    pub runner_node_filter: Option<String>,
    /// Master configs: only these fixed sequence lengths.
    #[arg(long, value_enum, num_args = 1..)]
    pub seq_lens: Vec<SeqLens>,
    /// Master configs: the factor between steps of a conc-start..conc-end range.
    #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
    pub step_size: i64,
    /// Master configs: drop concurrencies below this.
    #[arg(long, allow_negative_numbers = true)]
    pub min_conc: Option<i64>,
    /// Master configs: drop concurrencies above this.
    #[arg(long, allow_negative_numbers = true)]
    pub max_conc: Option<i64>,
    /// Master configs: drop fixed-seq-len single-node points with a larger tp.
    #[arg(long, allow_negative_numbers = true)]
    pub max_tp: Option<i64>,
    /// Master configs: cap fixed-seq-len single-node ep at this.
    #[arg(long, allow_negative_numbers = true)]
    pub max_ep: Option<i64>,
    /// Master configs: only single-node entries (default: both kinds).
    #[arg(long)]
    pub single_node: bool,
    /// Master configs: only multi-node entries (default: both kinds).
    #[arg(long)]
    pub multi_node: bool,
}

impl Filters {
    /// Whether any filter differs from its default (they only apply to master configs).
    pub(crate) fn any_set(&self) -> bool {
        !self.scenario_type.is_empty()
            || !self.model_prefix.is_empty()
            || !self.precision.is_empty()
            || !self.framework.is_empty()
            || !self.runner_type.is_empty()
            || self.runner_node_filter.is_some()
            || !self.seq_lens.is_empty()
            || self.step_size != 2
            || self.min_conc.is_some()
            || self.max_conc.is_some()
            || self.max_tp.is_some()
            || self.max_ep.is_some()
            || self.single_node
            || self.multi_node
    }

    /// Neither `--single-node` nor `--multi-node` means both.
    pub(crate) fn wants_node_kind(&self, multinode: bool) -> bool {
        let both = !self.single_node && !self.multi_node;
        both || if multinode {
            self.multi_node
        } else {
            self.single_node
        }
    }

    pub(crate) fn wants_scenario(&self, s: ScenarioType) -> bool {
        self.scenario_type.is_empty() || self.scenario_type.contains(&s)
    }

    /// The range `start, start*step, ...` capped at `end`, which is always included.
    fn steps(&self, start: i64, end: i64) -> Vec<i64> {
        let mut values = Vec::new();
        let mut conc = start;
        while conc <= end {
            values.push(conc);
            if conc == end {
                break;
            }
            conc = conc.checked_mul(self.step_size).map_or(end, |c| c.min(end));
        }
        values
    }

    fn listed_or_stepped(&self, conc: &Conc) -> Vec<i64> {
        match conc {
            Conc::List(list) => list.clone(),
            Conc::Range { start, end } => self.steps(*start, *end),
        }
    }

    /// Fixed-seq-len single-node concurrencies; `None` skips the point. A range is clipped to
    /// the bounds before stepping; a list falls back to `[max-conc]` when nothing is below it.
    pub(crate) fn fixed_single_conc(&self, conc: &Conc) -> Option<Vec<i64>> {
        match conc {
            Conc::List(list) => {
                let mut values = list.clone();
                if let Some(min) = self.min_conc {
                    if min <= 0 {
                        return None;
                    }
                    values.retain(|&c| c >= min);
                    if values.is_empty() {
                        return None;
                    }
                }
                if let Some(max) = self.max_conc {
                    if max <= 0 {
                        return None;
                    }
                    values.retain(|&c| c <= max);
                    if values.is_empty() {
                        values = vec![max];
                    }
                }
                Some(values)
            }
            &Conc::Range { mut start, mut end } => {
                if let Some(min) = self.min_conc {
                    if min <= 0 || end < min {
                        return None;
                    }
                    start = start.max(min);
                }
                if let Some(max) = self.max_conc {
                    if max <= 0 {
                        return None;
                    }
                    if start > max {
                        (start, end) = (max, max);
                    } else {
                        end = end.min(max);
                    }
                }
                Some(self.steps(start, end))
            }
        }
    }

    /// Fixed-seq-len multi-node concurrencies: stepped first, then filtered, `[max-conc]` when
    /// nothing is below it.
    pub(crate) fn fixed_multi_conc(&self, conc: &Conc) -> Option<Vec<i64>> {
        let mut values = self.listed_or_stepped(conc);
        if let Some(min) = self.min_conc {
            if min <= 0 {
                return None;
            }
            values.retain(|&c| c >= min);
            if values.is_empty() {
                return None;
            }
        }
        if let Some(max) = self.max_conc {
            let below: Vec<i64> = values.iter().copied().filter(|&c| c <= max).collect();
            values = match (below.is_empty(), max > 0) {
                (false, _) => below,
                (true, true) => vec![max],
                (true, false) => return None,
            };
        }
        Some(values)
    }

    /// Agentic concurrencies: stepped, then plainly filtered; `None` when none are left.
    pub(crate) fn agentic_conc(&self, conc: &Conc) -> Option<Vec<i64>> {
        let mut values = self.listed_or_stepped(conc);
        if let Some(min) = self.min_conc {
            values.retain(|&c| c >= min);
        }
        if let Some(max) = self.max_conc {
            values.retain(|&c| c <= max);
        }
        (!values.is_empty()).then_some(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(min: Option<i64>, max: Option<i64>, step: i64) -> Filters {
        Filters {
            min_conc: min,
            max_conc: max,
            step_size: step,
            ..Filters::default()
        }
    }

    #[test]
    fn ranges_step_geometrically_and_keep_the_end() {
        let f = filters(None, None, 2);
        assert_eq!(
            f.agentic_conc(&Conc::Range { start: 4, end: 100 }),
            Some(vec![4, 8, 16, 32, 64, 100])
        );
        let f = filters(None, None, 3);
        assert_eq!(
            f.agentic_conc(&Conc::Range { start: 1, end: 9 }),
            Some(vec![1, 3, 9])
        );
        assert_eq!(
            f.agentic_conc(&Conc::Range { start: 5, end: 5 }),
            Some(vec![5])
        );
    }

    #[test]
    fn each_scenario_clips_concurrency_its_own_way() {
        let range = Conc::Range { start: 4, end: 64 };
        let f = filters(Some(10), Some(40), 2);
        // Single-node fixed clips the range before stepping; the others step, then filter.
        assert_eq!(f.fixed_single_conc(&range), Some(vec![10, 20, 40]));
        assert_eq!(f.fixed_multi_conc(&range), Some(vec![16, 32]));
        assert_eq!(f.agentic_conc(&range), Some(vec![16, 32]));
        let list = Conc::List(vec![64, 128]);
        let f = filters(None, Some(8), 2);
        assert_eq!(f.fixed_single_conc(&list), Some(vec![8]));
        assert_eq!(f.fixed_multi_conc(&list), Some(vec![8]));
        assert_eq!(f.agentic_conc(&list), None);
        let f = filters(Some(0), None, 2);
        assert_eq!(f.fixed_single_conc(&list), None);
        assert_eq!(f.agentic_conc(&list), Some(vec![64, 128]));
    }
}
