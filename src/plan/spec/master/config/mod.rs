//! The InferenceX master config (`configs/*-master.yaml`) as typed entries, checked by the rules
//! of InferenceX's `validation.py` at commit 843c6254f. Values the generator copies into job
//! entries as they are (worker maps, router and backend metadata) are kept as YAML nodes.
//!
//! The entry and its checks are here; the points of each scenario and the component metadata
//! they share are read in the children:
//! - `point`: fixed-seq-len points, their workers, parallelism and concurrencies;
//! - `agentic`: agentic-coding configs and their points (KV offloading, workers or tp);
//! - `component`: `router` / `kv-offload-backend` metadata and where components may be declared.

mod agentic;
mod component;
mod point;

use indexmap::IndexMap;

use super::check::Fields;
use super::yaml11::{Document, Node, Value};
use crate::base::yaml::SpecError;
use agentic::agentic_config;
use component::{component, component_scope, non_empty_str};
use point::seq_len;

/// The label prefix every agentic config's runner must have (one exact hardware fleet).
pub(crate) const CLUSTER_LABEL_PREFIX: &str = "cluster:";

/// Where a search-space point came from, for errors found while expanding it.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub file: std::path::PathBuf,
    pub line: usize,
    pub column: usize,
    pub field: String,
}

impl Origin {
    fn of(doc: &Document, node: &Node, field: &str) -> Self {
        Self {
            file: doc.path.clone(),
            line: node.line,
            column: node.column,
            field: field.to_owned(),
        }
    }

    pub fn error(&self, message: impl Into<String>) -> SpecError {
        SpecError {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            field: self.field.clone(),
            message: message.into(),
        }
    }
}

/// Concurrencies: an explicit list, or a geometric range the generator steps through.
#[derive(Debug, Clone, PartialEq)]
pub enum Conc {
    List(Vec<i64>),
    Range { start: i64, end: i64 },
}

/// A prefill or decode worker: the map as written plus the parallelism defaults the generator
/// appends (`pp`, `dcp-size`, `pcp-size`), and the typed fields it reads.
#[derive(Debug, Clone)]
pub(crate) struct Worker {
    pub map: IndexMap<String, Node>,
    pub(crate) num_worker: i64,
    pub tp: i64,
    pub pp: i64,
    pub(crate) pcp: i64,
    pub ep: i64,
    pub(crate) dp_attn: bool,
    pub hardware: Option<String>,
}

/// Single-node parallelism of a point.
#[derive(Debug, Clone)]
pub(crate) struct SingleTopology {
    pub tp: i64,
    pub pp: i64,
    pub dcp: i64,
    pub(crate) pcp: i64,
    pub ep: Option<i64>,
    pub(crate) dp_attn: Option<bool>,
}

#[derive(Debug, Clone)]
pub(crate) enum Topology {
    Single(SingleTopology),
    Multi {
        prefill: Box<Worker>,
        decode: Box<Worker>,
    },
}

/// One search-space point of either scenario.
#[derive(Debug, Clone)]
pub struct Point {
    pub(crate) topology: Topology,
    pub(crate) spec_decoding: String,
    pub conc: Conc,
    /// `router` / `kv-p2p-transfer` as written (a null here hides the top-level value).
    pub router: Option<Node>,
    pub(crate) kv_p2p_transfer: Option<Node>,
    /// Agentic only: `kv-offloading` as written, and the backend when not null.
    pub kv_offloading: Option<Node>,
    pub kv_offload_backend: Option<Node>,
    pub(crate) origin: Origin,
}

#[derive(Debug, Clone)]
pub(crate) struct SeqLen {
    pub isl: i64,
    pub osl: i64,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone)]
pub struct Agentic {
    /// `dram-utilization` as Python's `str(float)` prints it (the generator computes on that text).
    pub(crate) dram_utilization: Option<String>,
    pub points: Vec<Point>,
}

/// One top-level key of a master config.
#[derive(Debug, Clone)]
pub struct MasterEntry {
    pub key: String,
    pub image: String,
    pub model: String,
    pub model_prefix: String,
    pub precision: String,
    pub framework: String,
    pub runner: String,
    pub(crate) multinode: bool,
    pub(crate) disagg: bool,
    pub router: Option<Node>,
    pub(crate) kv_p2p_transfer: Option<Node>,
    pub(crate) fixed_seq_len: Vec<SeqLen>,
    pub agentic: Vec<Agentic>,
}

/// Does this parsed file have the master-config shape (entries with `scenarios`)?
pub(crate) fn is_master(doc: &Document) -> bool {
    doc.root.as_map().is_some_and(|top| {
        top.values()
            .any(|v| v.as_map().is_some_and(|m| m.contains_key("scenarios")))
    })
}

/// Reads and checks every entry of several master configs, in file order then key order.
pub fn load(docs: &[Document]) -> Result<Vec<MasterEntry>, SpecError> {
    let mut entries: Vec<MasterEntry> = Vec::new();
    for doc in docs {
        let Some(top) = doc.root.as_map() else {
            return Err(doc.error(
                &doc.root,
                "",
                "a master config must be a mapping of entries",
            ));
        };
        for (key, node) in top {
            if key.contains('*') {
                return Err(doc.error(
                    node,
                    key,
                    "`*` is not allowed in master config keys (it is reserved for key patterns)",
                ));
            }
            if entries.iter().any(|e| &e.key == key) {
                return Err(doc.error(
                    node,
                    key,
                    format!(
                        "duplicate configuration key `{key}` (already defined in an earlier file)"
                    ),
                ));
            }
            entries.push(entry(doc, key, node)?);
        }
    }
    Ok(entries)
}

const SINGLE_KEYS: &[&str] = &[
    "image",
    "model",
    "model-prefix",
    "precision",
    "framework",
    "runner",
    "multinode",
    "disagg",
    "router",
    "scenarios",
];
const MULTI_KEYS: &[&str] = &[
    "image",
    "model",
    "model-prefix",
    "precision",
    "framework",
    "runner",
    "multinode",
    "disagg",
    "router",
    "kv-p2p-transfer",
    "scenarios",
];

fn entry(doc: &Document, key: &str, node: &Node) -> Result<MasterEntry, SpecError> {
    // As the generator: a truthy `multinode` picks the multinode schema.
    let multinode = node
        .as_map()
        .and_then(|m| m.get("multinode"))
        .is_some_and(|n| truthy(&n.value));
    let f = Fields::new(
        doc,
        node,
        key.to_owned(),
        if multinode { MULTI_KEYS } else { SINGLE_KEYS },
    )?;
    let runner = f.req_str("runner")?.to_owned();
    let multinode_value = f.req_bool("multinode")?;
    if multinode_value != multinode {
        return Err(f.error("multinode", "expected true or false"));
    }
    let disagg = match f.raw("disagg") {
        None => false,
        Some(n) => f.bool_of("disagg", n)?,
    };
    if disagg && !multinode {
        return Err(f.error(
            "disagg",
            "a single-node entry cannot be disaggregated (disagg must be false)",
        ));
    }
    let router = f.present("router");
    if let Some(r) = router {
        component(doc, r, &f.field("router"))?;
    }
    let kv_p2p_transfer = f.present("kv-p2p-transfer");
    if let Some(t) = kv_p2p_transfer {
        non_empty_str(&f, "kv-p2p-transfer", t)?;
    }
    let scenarios = Fields::new(
        doc,
        f.required("scenarios")?,
        f.field("scenarios"),
        &["fixed-seq-len", "agentic-coding"],
    )?;
    for name in ["fixed-seq-len", "agentic-coding"] {
        if scenarios.raw(name).is_some_and(Node::is_null) {
            return Err(scenarios.error(
                name,
                "a scenario must be a list (remove the key instead of leaving it empty)",
            ));
        }
    }
    let mut fixed_seq_len = Vec::new();
    for (n, path) in scenarios.list("fixed-seq-len")? {
        fixed_seq_len.push(seq_len(doc, n, path, multinode)?);
    }
    let mut agentic = Vec::new();
    for (n, path) in scenarios.list("agentic-coding")? {
        agentic.push(agentic_config(doc, n, path, multinode)?);
    }
    if fixed_seq_len.is_empty() && agentic.is_empty() {
        return Err(scenarios.error_here(
            "at least one scenario type (fixed-seq-len or agentic-coding) must be given",
        ));
    }
    if !agentic.is_empty() && !runner.starts_with(CLUSTER_LABEL_PREFIX) {
        return Err(f.error("runner", format!("agentic master configs must use a '{CLUSTER_LABEL_PREFIX}<name>' runner so every point runs on one exact hardware fleet")));
    }
    let e = MasterEntry {
        key: key.to_owned(),
        image: f.req_str("image")?.to_owned(),
        model: f.req_str("model")?.to_owned(),
        model_prefix: f.req_str("model-prefix")?.to_owned(),
        precision: f.req_str("precision")?.to_owned(),
        framework: f.req_str("framework")?.to_owned(),
        runner,
        multinode,
        disagg,
        router: router.cloned(),
        kv_p2p_transfer: kv_p2p_transfer.cloned(),
        fixed_seq_len,
        agentic,
    };
    component_scope(&f, &e)?;
    Ok(e)
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Seq(s) => !s.is_empty(),
        Value::Map(m) => !m.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn doc(text: &str) -> Document {
        Document::parse(Path::new("m.yaml"), text).expect("yaml")
    }

    const ENTRY: &str = "k:\n  image: i\n  model: m\n  model-prefix: p\n  runner: r\n  precision: fp8\n  framework: vllm\n  multinode: false\n  scenarios:\n    fixed-seq-len:\n    - isl: 1024\n      osl: 1024\n      search-space: SS\n";

    #[test]
    fn master_configs_are_told_apart_by_scenarios() {
        assert!(is_master(&doc(&ENTRY.replace("SS", "[]"))));
        assert!(!is_master(&doc("b200-fp4-dsr1:\n  tp4: {users: [1]}\n")));
        assert!(!is_master(&doc("name: x\ntp: [1]\n")));
    }

    #[test]
    fn a_null_search_space_is_refused_where_it_is() {
        let err = load(&[doc(&ENTRY.replace("SS", ""))]).expect_err("null search-space");
        assert_eq!(err.field, "k.scenarios.fixed-seq-len[0].search-space");
        assert_eq!(err.line, 13, "{err}");
        let ok = load(&[doc(&ENTRY.replace("SS", "[{tp: 1, conc-list: [4]}]"))]).expect("valid");
        assert_eq!(ok[0].fixed_seq_len[0].points.len(), 1);
    }
}
