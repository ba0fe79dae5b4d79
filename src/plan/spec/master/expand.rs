//! Master config entries → the generator's job list: one JSON object per job, keys in the
//! generator's order, values as the config wrote them.

use indexmap::IndexMap;

use super::config::{Agentic, MasterEntry, Point, SeqLen, SingleTopology, Topology, Worker};
use super::dram::dram_offload_gb;
use super::filters::{Filters, ScenarioType, seq_len_name};
use super::runners::RunnerConfig;
use super::yaml11::{Node, Value};
use crate::base::yaml::SpecError;

/// Seconds each agentic job runs, as the generator sets it.
pub const AGENTIC_DURATION_S: i64 = 3600;

/// An ordered JSON object under construction.
struct Obj(IndexMap<String, Node>);

impl Obj {
    fn new() -> Self {
        Self(IndexMap::new())
    }

    fn set(&mut self, key: &str, value: Value) {
        self.0.insert(key.to_owned(), node(value));
    }

    fn set_node(&mut self, key: &str, value: &Node) {
        self.0.insert(key.to_owned(), value.clone());
    }

    fn into_value(self) -> Value {
        Value::Map(self.0)
    }
}

fn node(value: Value) -> Node {
    Node {
        value,
        line: 0,
        column: 0,
    }
}

fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

fn ints(values: &[i64]) -> Value {
    Value::Seq(values.iter().map(|&v| node(Value::Int(v))).collect())
}

/// The job list for `entries`, as `generate_sweep_configs.py full-sweep --no-evals` prints it.
pub fn generate(
    entries: &[MasterEntry],
    runners: &RunnerConfig,
    filters: &Filters,
) -> anyhow::Result<Vec<Value>> {
    if filters.step_size <= 1 {
        anyhow::bail!("--step-size must be greater than 1");
    }
    if let (Some(min), Some(max)) = (filters.min_conc, filters.max_conc)
        && min > max
    {
        anyhow::bail!("--min-conc must be less than or equal to --max-conc");
    }
    let unknown: Vec<&String> = filters
        .runner_type
        .iter()
        .filter(|r| !runners.labels.contains_key(r.as_str()))
        .collect();
    if !unknown.is_empty() {
        let mut valid: Vec<&String> = runners.labels.keys().collect();
        valid.sort();
        anyhow::bail!(
            "invalid runner type(s): {}; valid runner types are: {}",
            join(&unknown),
            join(&valid)
        );
    }
    let mut jobs = Vec::new();
    for e in entries {
        if !selected(e, filters) {
            continue;
        }
        let runners_for_entry: Vec<String> = match &filters.runner_node_filter {
            None => vec![e.runner.clone()],
            Some(sub) => {
                let nodes: Vec<String> = runners
                    .nodes(&e.runner)
                    .iter()
                    .filter(|n| n.contains(sub.as_str()))
                    .cloned()
                    .collect();
                if nodes.is_empty() {
                    continue;
                }
                nodes
            }
        };
        let wanted = filters.wants_node_kind(e.multinode);
        if filters.wants_scenario(ScenarioType::FixedSeqLen) && wanted {
            for seq in &e.fixed_seq_len {
                fixed_seq_len(e, seq, &runners_for_entry, filters, &mut jobs)?;
            }
        }
        if filters.wants_scenario(ScenarioType::AgenticCoding) && wanted {
            for a in &e.agentic {
                agentic(e, a, runners, &runners_for_entry, filters, &mut jobs)?;
            }
        }
    }
    Ok(jobs)
}

fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn selected(e: &MasterEntry, f: &Filters) -> bool {
    (f.model_prefix.is_empty() || f.model_prefix.iter().any(|p| e.key.starts_with(p.as_str())))
        && (f.precision.is_empty() || f.precision.contains(&e.precision))
        && (f.framework.is_empty() || f.framework.contains(&e.framework))
        && (f.runner_type.is_empty() || f.runner_type.contains(&e.runner))
}

/// The fields every job starts with.
fn head(e: &MasterEntry, runner: &str) -> Obj {
    let mut o = Obj::new();
    o.set("image", s(&e.image));
    o.set("model", s(&e.model));
    o.set("model-prefix", s(&e.model_prefix));
    o.set("precision", s(&e.precision));
    o.set("framework", s(&e.framework));
    o.set("runner", s(runner));
    o
}

/// `router` and `kv-p2p-transfer`: the point's when it names the key (even as null), else the
/// entry's; added when not null.
fn components(o: &mut Obj, e: &MasterEntry, p: &Point) {
    for (key, own, top) in [
        ("router", &p.router, &e.router),
        ("kv-p2p-transfer", &p.kv_p2p_transfer, &e.kv_p2p_transfer),
    ] {
        if let Some(v) = own.as_ref().or(top.as_ref()).filter(|v| !v.is_null()) {
            o.set_node(key, v);
        }
    }
}

/// The generator re-validates every multinode job: disaggregated ones need a transfer backend.
fn check_disagg(o: &Obj, e: &MasterEntry, p: &Point) -> Result<(), SpecError> {
    if e.disagg && !o.0.contains_key("kv-p2p-transfer") {
        return Err(p
            .origin
            .error("disagg=true requires kv-p2p-transfer, and this point sets it to null"));
    }
    Ok(())
}

fn worker_map(w: &Worker) -> Value {
    Value::Map(w.map.clone())
}

fn fixed_seq_len(
    e: &MasterEntry,
    seq: &SeqLen,
    runners: &[String],
    f: &Filters,
    jobs: &mut Vec<Value>,
) -> Result<(), SpecError> {
    if !f.seq_lens.is_empty() && !f.seq_lens.iter().any(|l| l.isl_osl() == (seq.isl, seq.osl)) {
        return Ok(());
    }
    let exp_name = format!("{}_{}", e.model_prefix, seq_len_name(seq.isl, seq.osl));
    let max_model_len = seq.isl + seq.osl + 256;
    for p in &seq.points {
        match &p.topology {
            Topology::Multi { prefill, decode } => {
                let Some(conc) = f.fixed_multi_conc(&p.conc) else {
                    continue;
                };
                for runner in runners {
                    let mut o = head(e, runner);
                    o.set("isl", Value::Int(seq.isl));
                    o.set("osl", Value::Int(seq.osl));
                    o.set("spec-decoding", s(&p.spec_decoding));
                    o.set("prefill", worker_map(prefill));
                    o.set("decode", worker_map(decode));
                    o.set("conc", ints(&conc));
                    o.set("max-model-len", Value::Int(max_model_len));
                    o.set("exp-name", s(&exp_name));
                    o.set("disagg", Value::Bool(e.disagg));
                    o.set("run-eval", Value::Bool(false));
                    components(&mut o, e, p);
                    check_disagg(&o, e, p)?;
                    jobs.push(o.into_value());
                }
            }
            Topology::Single(t) => {
                if let Some(max_tp) = f.max_tp
                    && (max_tp <= 0 || t.tp > max_tp)
                {
                    continue;
                }
                let mut ep = t.ep;
                if let Some(max_ep) = f.max_ep {
                    if max_ep <= 0 {
                        continue;
                    }
                    ep = ep.map(|ep| ep.min(max_ep));
                }
                let Some(conc) = f.fixed_single_conc(&p.conc) else {
                    continue;
                };
                for &c in &conc {
                    for runner in runners {
                        let mut o = head(e, runner);
                        o.set("isl", Value::Int(seq.isl));
                        o.set("osl", Value::Int(seq.osl));
                        parallelism(&mut o, t);
                        o.set("conc", Value::Int(c));
                        o.set("max-model-len", Value::Int(max_model_len));
                        o.set("ep", Value::Int(ep.unwrap_or(1)));
                        o.set("dp-attn", Value::Bool(t.dp_attn.unwrap_or(false)));
                        o.set("spec-decoding", s(&p.spec_decoding));
                        o.set("exp-name", s(&exp_name));
                        o.set("disagg", Value::Bool(false));
                        o.set("run-eval", Value::Bool(false));
                        components(&mut o, e, p);
                        jobs.push(o.into_value());
                    }
                }
            }
        }
    }
    Ok(())
}

fn parallelism(o: &mut Obj, t: &SingleTopology) {
    o.set("tp", Value::Int(t.tp));
    o.set("pp", Value::Int(t.pp));
    o.set("dcp-size", Value::Int(t.dcp));
    o.set("pcp-size", Value::Int(t.pcp));
}

/// `kv-offloading` as the job carries it: the point's, `none` when absent.
fn offloading(p: &Point) -> Result<String, SpecError> {
    match p.kv_offloading.as_ref().map(|n| &n.value) {
        None => Ok("none".into()),
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(_) => Err(p.origin.error("kv-offloading is null; give none or dram")),
    }
}

/// `none` → `kvnone`; otherwise `kv<mode>-<backend name>`.
fn offload_suffix(kv: &str, p: &Point) -> String {
    if kv == "none" {
        return "kvnone".into();
    }
    let name = p
        .kv_offload_backend
        .as_ref()
        .and_then(Node::as_map)
        .and_then(|m| m.get("name"))
        .map_or(String::new(), |n| match &n.value {
            Value::Str(s) => s.clone(),
            _ => String::new(),
        });
    format!("kv{kv}-{name}")
}

fn worker_tag(w: &Worker, role: char) -> String {
    let mut tag = format!("{role}{}x{}", w.num_worker, w.tp);
    if w.ep != 1 {
        tag.push_str(&format!("ep{}", w.ep));
    }
    if w.dp_attn {
        tag.push_str("dpa");
    }
    tag
}

fn agentic(
    e: &MasterEntry,
    a: &Agentic,
    hardware: &RunnerConfig,
    runners: &[String],
    f: &Filters,
    jobs: &mut Vec<Value>,
) -> Result<(), SpecError> {
    for p in &a.points {
        let dram_gb = dram_offload_gb(a, p, &e.runner, hardware)?;
        let Some(conc) = f.agentic_conc(&p.conc) else {
            continue;
        };
        let kv = offloading(p)?;
        let suffix = offload_suffix(&kv, p);
        let tail = |o: &mut Obj| {
            if let Some(b) = p.kv_offload_backend.as_ref() {
                o.set_node("kv-offload-backend", b);
            }
            components(o, e, p);
        };
        match &p.topology {
            Topology::Multi { prefill, decode } => {
                let offload = if kv == "none" {
                    String::new()
                } else {
                    format!("_{suffix}")
                };
                for runner in runners {
                    // One allocation per concurrency.
                    for batch in conc.chunks(1) {
                        let mut o = head(e, runner);
                        o.set("spec-decoding", s(&p.spec_decoding));
                        o.set("prefill", worker_map(prefill));
                        o.set("decode", worker_map(decode));
                        o.set("conc", ints(batch));
                        o.set("kv-offloading", s(&kv));
                        o.set("total-cpu-dram-gb", Value::Int(dram_gb));
                        o.set("duration", Value::Int(AGENTIC_DURATION_S));
                        let concs: Vec<String> = batch.iter().map(i64::to_string).collect();
                        o.set(
                            "exp-name",
                            Value::Str(format!(
                                "{}_{}_{}_conc{}{offload}",
                                e.model_prefix,
                                worker_tag(prefill, 'p'),
                                worker_tag(decode, 'd'),
                                concs.join("x")
                            )),
                        );
                        o.set("disagg", Value::Bool(e.disagg));
                        o.set("scenario-type", s("agentic-coding"));
                        tail(&mut o);
                        check_disagg(&o, e, p)?;
                        jobs.push(o.into_value());
                    }
                }
            }
            Topology::Single(t) => {
                let spec = if p.spec_decoding == "none" {
                    String::new()
                } else {
                    format!("_spec-{}", p.spec_decoding)
                };
                for &c in &conc {
                    for runner in runners {
                        let mut o = head(e, runner);
                        parallelism(&mut o, t);
                        o.set("ep", Value::Int(t.ep.unwrap_or(1)));
                        o.set("dp-attn", Value::Bool(t.dp_attn.unwrap_or(false)));
                        o.set("spec-decoding", s(&p.spec_decoding));
                        o.set("conc", Value::Int(c));
                        o.set("kv-offloading", s(&kv));
                        o.set("total-cpu-dram-gb", Value::Int(dram_gb));
                        o.set("duration", Value::Int(AGENTIC_DURATION_S));
                        o.set(
                            "exp-name",
                            Value::Str(format!(
                                "{}_tp{}_conc{c}_{suffix}{spec}",
                                e.model_prefix, t.tp
                            )),
                        );
                        o.set("scenario-type", s("agentic-coding"));
                        tail(&mut o);
                        jobs.push(o.into_value());
                    }
                }
            }
        }
    }
    Ok(())
}
