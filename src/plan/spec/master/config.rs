//! The InferenceX master config (`configs/*-master.yaml`) as typed entries, checked by the rules
//! of InferenceX's `validation.py` at commit 843c6254f. Values the generator copies into job
//! entries as they are (worker maps, router and backend metadata) are kept as YAML nodes.

use indexmap::IndexMap;

use super::check::Fields;
use super::yaml11::{Document, Node, Value};
use crate::base::yaml::SpecError;

/// The label prefix every agentic config's runner must have (one exact hardware fleet).
pub const CLUSTER_LABEL_PREFIX: &str = "cluster:";
const SPEC_DECODING: &[&str] = &["mtp", "draft_model", "none"];

/// Where a search-space point came from, for errors found while expanding it.
#[derive(Debug, Clone)]
pub struct Origin {
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
pub struct Worker {
    pub map: IndexMap<String, Node>,
    pub num_worker: i64,
    pub tp: i64,
    pub pp: i64,
    pub pcp: i64,
    pub ep: i64,
    pub dp_attn: bool,
    pub hardware: Option<String>,
}

/// Single-node parallelism of a point.
#[derive(Debug, Clone)]
pub struct SingleTopology {
    pub tp: i64,
    pub pp: i64,
    pub dcp: i64,
    pub pcp: i64,
    pub ep: Option<i64>,
    pub dp_attn: Option<bool>,
}

#[derive(Debug, Clone)]
pub enum Topology {
    Single(SingleTopology),
    Multi {
        prefill: Box<Worker>,
        decode: Box<Worker>,
    },
}

/// One search-space point of either scenario.
#[derive(Debug, Clone)]
pub struct Point {
    pub topology: Topology,
    pub spec_decoding: String,
    pub conc: Conc,
    /// `router` / `kv-p2p-transfer` as written (a null here hides the top-level value).
    pub router: Option<Node>,
    pub kv_p2p_transfer: Option<Node>,
    /// Agentic only: `kv-offloading` as written, and the backend when not null.
    pub kv_offloading: Option<Node>,
    pub kv_offload_backend: Option<Node>,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct SeqLen {
    pub isl: i64,
    pub osl: i64,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone)]
pub struct Agentic {
    /// `dram-utilization` as Python's `str(float)` prints it (the generator computes on that text).
    pub dram_utilization: Option<String>,
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
    pub multinode: bool,
    pub disagg: bool,
    pub router: Option<Node>,
    pub kv_p2p_transfer: Option<Node>,
    pub fixed_seq_len: Vec<SeqLen>,
    pub agentic: Vec<Agentic>,
}

/// Does this parsed file have the master-config shape (entries with `scenarios`)?
pub fn is_master(doc: &Document) -> bool {
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

fn non_empty_str(f: &Fields<'_>, key: &str, node: &Node) -> Result<(), SpecError> {
    if f.str_of(key, node)?.is_empty() {
        return Err(f.error(key, "must not be empty"));
    }
    Ok(())
}

/// `{name, version}` metadata (`router`); `version_required` is false for `kv-offload-backend`.
fn metadata(
    doc: &Document,
    node: &Node,
    path: &str,
    version_required: bool,
) -> Result<(), SpecError> {
    let f = Fields::new(doc, node, path.to_owned(), &["name", "version"])?;
    non_empty_str(&f, "name", f.required("name")?)?;
    let version = if version_required {
        Some(f.required("version")?)
    } else {
        f.present("version")
    };
    if let Some(v) = version {
        non_empty_str(&f, "version", v)?;
        if f.str_of("version", v)?.starts_with("image:") {
            return Err(f.error("version", "component version must be a release, package version, or source commit, not an image reference"));
        }
    }
    Ok(())
}

fn component(doc: &Document, node: &Node, path: &str) -> Result<(), SpecError> {
    metadata(doc, node, path, true)
}

fn seq_len(
    doc: &Document,
    node: &Node,
    path: String,
    multinode: bool,
) -> Result<SeqLen, SpecError> {
    let f = Fields::new(doc, node, path, &["isl", "osl", "search-space"])?;
    let isl = f.req_int("isl")?;
    let osl = f.req_int("osl")?;
    if f.required("search-space")?.is_null() {
        return Err(f.error("search-space", "expected a list of points, found null"));
    }
    let mut points = Vec::new();
    for (n, path) in f.list("search-space")? {
        points.push(if multinode {
            fixed_multi(doc, n, path)?
        } else {
            fixed_single(doc, n, path)?
        });
    }
    Ok(SeqLen { isl, osl, points })
}

fn conc(f: &Fields<'_>) -> Result<Conc, SpecError> {
    let start = f.opt_int("conc-start")?;
    let end = f.opt_int("conc-end")?;
    let list = f.int_list("conc-list")?.filter(|l| !l.is_empty());
    match (start.zip(end), list) {
        (Some(_), Some(_)) => Err(f.error(
            "conc-list",
            "give either conc-list or conc-start/conc-end, not both",
        )),
        (None, None) => Err(f.error_here("give either conc-list or both conc-start and conc-end")),
        (Some((start, end)), None) => {
            if start <= 0 || end <= 0 {
                return Err(f.error(
                    "conc-start",
                    "conc-start and conc-end must be greater than 0",
                ));
            }
            if start > end {
                return Err(f.error(
                    "conc-start",
                    format!("conc-start ({start}) must be <= conc-end ({end})"),
                ));
            }
            Ok(Conc::Range { start, end })
        }
        (None, Some(list)) => {
            if let Some(i) = list.iter().position(|&c| c <= 0) {
                return Err(f.doc.error(
                    f.present("conc-list").unwrap_or(f.node),
                    &format!("{}[{i}]", f.field("conc-list")),
                    "conc-list entries must be greater than 0",
                ));
            }
            Ok(Conc::List(list))
        }
    }
}

fn tp_divides_dcp(f: &Fields<'_>, tp: i64, dcp: i64) -> Result<(), SpecError> {
    if tp % dcp != 0 {
        return Err(f.error(
            "dcp-size",
            format!("'tp' ({tp}) must be divisible by 'dcp-size' ({dcp})"),
        ));
    }
    Ok(())
}

fn single_topology(f: &Fields<'_>, tp: i64) -> Result<SingleTopology, SpecError> {
    let t = SingleTopology {
        tp,
        pp: f.positive_or_one("pp")?,
        dcp: f.positive_or_one("dcp-size")?,
        pcp: f.positive_or_one("pcp-size")?,
        ep: f.opt_int("ep")?,
        dp_attn: f.opt_bool("dp-attn")?,
    };
    tp_divides_dcp(f, t.tp, t.dcp)?;
    Ok(t)
}

fn point(f: &Fields<'_>, topology: Topology) -> Result<Point, SpecError> {
    let router = f.raw("router");
    if let Some(r) = router.filter(|r| !r.is_null()) {
        component(f.doc, r, &f.field("router"))?;
    }
    let kv_p2p_transfer = f.raw("kv-p2p-transfer");
    if let Some(t) = kv_p2p_transfer.filter(|t| !t.is_null()) {
        non_empty_str(f, "kv-p2p-transfer", t)?;
    }
    Ok(Point {
        topology,
        spec_decoding: f.choice("spec-decoding", SPEC_DECODING, "none")?.to_owned(),
        conc: conc(f)?,
        router: router.cloned(),
        kv_p2p_transfer: kv_p2p_transfer.cloned(),
        kv_offloading: None,
        kv_offload_backend: None,
        origin: Origin::of(f.doc, f.node, &f.path),
    })
}

fn fixed_single(doc: &Document, node: &Node, path: String) -> Result<Point, SpecError> {
    let f = Fields::new(
        doc,
        node,
        path,
        &[
            "tp",
            "pp",
            "dcp-size",
            "pcp-size",
            "ep",
            "spec-decoding",
            "dp-attn",
            "router",
            "conc-start",
            "conc-end",
            "conc-list",
        ],
    )?;
    let topology = single_topology(&f, f.req_int("tp")?)?;
    point(&f, Topology::Single(topology))
}

fn fixed_multi(doc: &Document, node: &Node, path: String) -> Result<Point, SpecError> {
    let f = Fields::new(
        doc,
        node,
        path,
        &[
            "spec-decoding",
            "prefill",
            "decode",
            "router",
            "kv-p2p-transfer",
            "conc-start",
            "conc-end",
            "conc-list",
        ],
    )?;
    let prefill = worker(doc, f.required("prefill")?, f.field("prefill"))?;
    let decode = worker(doc, f.required("decode")?, f.field("decode"))?;
    hardware_pair(&f, &prefill, &decode)?;
    point(
        &f,
        Topology::Multi {
            prefill: Box::new(prefill),
            decode: Box::new(decode),
        },
    )
}

fn hardware_pair(f: &Fields<'_>, prefill: &Worker, decode: &Worker) -> Result<(), SpecError> {
    if prefill.hardware.is_some() != decode.hardware.is_some() {
        return Err(f.error(
            "prefill",
            "'hardware' must be specified for both 'prefill' and 'decode', or neither",
        ));
    }
    Ok(())
}

fn worker(doc: &Document, node: &Node, path: String) -> Result<Worker, SpecError> {
    let f = Fields::new(
        doc,
        node,
        path,
        &[
            "num-worker",
            "tp",
            "pp",
            "dcp-size",
            "pcp-size",
            "ep",
            "dp-attn",
            "hardware",
            "additional-settings",
        ],
    )?;
    let hardware = f.opt_str("hardware")?;
    if hardware.is_some_and(str::is_empty) {
        return Err(f.error("hardware", "must not be empty"));
    }
    if let Some(settings) = f.present("additional-settings") {
        let Value::Seq(items) = &settings.value else {
            return Err(f.error("additional-settings", "expected a list of strings"));
        };
        for (i, item) in items.iter().enumerate() {
            if !matches!(item.value, Value::Str(_)) {
                return Err(doc.error(
                    item,
                    &format!("{}[{i}]", f.field("additional-settings")),
                    "expected a string",
                ));
            }
        }
    }
    let w = Worker {
        num_worker: f.req_int("num-worker")?,
        tp: f.req_int("tp")?,
        pp: f.positive_or_one("pp")?,
        pcp: f.positive_or_one("pcp-size")?,
        ep: f.req_int("ep")?,
        dp_attn: f.req_bool("dp-attn")?,
        hardware: hardware.map(str::to_owned),
        map: with_parallelism_defaults(f.map),
    };
    tp_divides_dcp(&f, w.tp, f.positive_or_one("dcp-size")?)?;
    Ok(w)
}

/// The worker map with `pp`, `dcp-size`, `pcp-size` appended when missing, as the generator does.
fn with_parallelism_defaults(map: &IndexMap<String, Node>) -> IndexMap<String, Node> {
    let mut map = map.clone();
    for key in ["pp", "dcp-size", "pcp-size"] {
        if !map.contains_key(key) {
            map.insert(
                key.to_owned(),
                Node {
                    value: Value::Int(1),
                    line: 0,
                    column: 0,
                },
            );
        }
    }
    map
}

fn agentic_config(
    doc: &Document,
    node: &Node,
    path: String,
    multinode: bool,
) -> Result<Agentic, SpecError> {
    let f = Fields::new(doc, node, path, &["search-space", "dram-utilization"])?;
    let dram_utilization = match f.present("dram-utilization") {
        None => None,
        Some(n) => {
            let v = match n.value {
                Value::Int(i) => i as f64,
                Value::Float(x) => x,
                _ => {
                    return Err(f.error(
                        "dram-utilization",
                        format!("expected a number, found a {}", n.type_name()),
                    ));
                }
            };
            if !(v > 0.0 && v <= 1.0) {
                return Err(f.error("dram-utilization", "must be greater than 0 and at most 1"));
            }
            Some(match n.value {
                Value::Int(i) => i.to_string(),
                _ => format!("{v}"),
            })
        }
    };
    if f.required("search-space")?.is_null() {
        return Err(f.error("search-space", "expected a list of points, found null"));
    }
    let mut points = Vec::new();
    for (n, path) in f.list("search-space")? {
        let p = agentic_point(doc, n, path, multinode)?;
        let dram = p
            .kv_offloading
            .as_ref()
            .is_some_and(|k| k.value == Value::Str("dram".into()));
        if dram && dram_utilization.is_none() {
            return Err(doc.error(
                n,
                &f.field("dram-utilization"),
                "kv-offloading: dram requires dram-utilization with runner hardware metadata",
            ));
        }
        points.push(p);
    }
    Ok(Agentic {
        dram_utilization,
        points,
    })
}

fn agentic_point(
    doc: &Document,
    node: &Node,
    path: String,
    multinode: bool,
) -> Result<Point, SpecError> {
    let f = Fields::new(
        doc,
        node,
        path,
        &[
            "tp",
            "pp",
            "dcp-size",
            "pcp-size",
            "ep",
            "dp-attn",
            "spec-decoding",
            "prefill",
            "decode",
            "kv-offloading",
            "kv-offload-backend",
            "router",
            "kv-p2p-transfer",
            "conc-start",
            "conc-end",
            "conc-list",
        ],
    )?;
    let kv_offloading = f.raw("kv-offloading");
    let offloading = match kv_offloading.filter(|n| !n.is_null()) {
        None => None,
        Some(_) => Some(f.choice("kv-offloading", &["none", "dram"], "none")?),
    };
    let backend = f.present("kv-offload-backend");
    if let Some(b) = backend {
        metadata(doc, b, &f.field("kv-offload-backend"), false)?;
    }
    match (offloading, backend) {
        (None, Some(_)) => {
            return Err(f.error(
                "kv-offload-backend",
                "kv-offload-backend requires kv-offloading",
            ));
        }
        (Some("none"), Some(_)) => {
            return Err(f.error(
                "kv-offload-backend",
                "kv-offload-backend can only be set when kv-offloading is not 'none'",
            ));
        }
        (Some(o), None) if o != "none" => {
            return Err(f.error(
                "kv-offloading",
                format!("kv-offload-backend is required when kv-offloading is '{o}'"),
            ));
        }
        _ => {}
    }
    let tp = f.opt_int("tp")?;
    let (prefill, decode) = (f.present("prefill"), f.present("decode"));
    let valid = match tp {
        Some(_) => prefill.is_none() && decode.is_none(),
        None => prefill.is_some() && decode.is_some(),
    };
    if !valid {
        return Err(f.error_here(
            "agentic search-space entries must specify either tp or both prefill and decode",
        ));
    }
    let topology = match (tp, prefill.zip(decode)) {
        (Some(tp), _) => {
            if offloading.is_none() {
                return Err(f.error_here(
                    "single-node agentic search-space entries must specify kv-offloading",
                ));
            }
            if multinode {
                return Err(f.error(
                    "tp",
                    "a multinode entry's agentic points need prefill and decode workers, not tp",
                ));
            }
            Topology::Single(single_topology(&f, tp)?)
        }
        (None, Some((p, d))) => {
            if let Some(key) = ["pp", "dcp-size", "pcp-size"]
                .into_iter()
                .find(|k| f.raw(k).is_some())
            {
                return Err(f.error(key, "multinode agentic search-space entries cannot specify 'pp', 'dcp-size', 'pcp-size'"));
            }
            if !multinode {
                return Err(f.error(
                    "prefill",
                    "a single-node entry's agentic points need tp, not prefill and decode workers",
                ));
            }
            let prefill = worker(doc, p, f.field("prefill"))?;
            let decode = worker(doc, d, f.field("decode"))?;
            hardware_pair(&f, &prefill, &decode)?;
            Topology::Multi {
                prefill: Box::new(prefill),
                decode: Box::new(decode),
            }
        }
        (None, None) => {
            return Err(f.error_here(
                "agentic search-space entries must specify either tp or both prefill and decode",
            ));
        }
    };
    let mut p = point(&f, topology)?;
    p.kv_offloading = kv_offloading.cloned();
    p.kv_offload_backend = backend.cloned();
    Ok(p)
}

/// `router` and `kv-p2p-transfer` are declared at the top level or in the points, not both;
/// `kv-p2p-transfer` is multinode only, and `disagg` needs one.
fn component_scope(f: &Fields<'_>, e: &MasterEntry) -> Result<(), SpecError> {
    let points: Vec<&Point> = e
        .fixed_seq_len
        .iter()
        .flat_map(|s| &s.points)
        .chain(e.agentic.iter().flat_map(|a| &a.points))
        .collect();
    let set = |n: &Option<Node>| n.as_ref().is_some_and(|n| !n.is_null());
    for (key, top, in_point) in [
        (
            "router",
            set(&e.router),
            points.iter().find(|p| set(&p.router)),
        ),
        (
            "kv-p2p-transfer",
            set(&e.kv_p2p_transfer),
            points.iter().find(|p| set(&p.kv_p2p_transfer)),
        ),
    ] {
        if let Some(p) = in_point.filter(|_| top) {
            return Err(p.origin.error(format!("{key} must be declared either at the top level or in search-space entries, not both")));
        }
        if key == "kv-p2p-transfer"
            && !e.multinode
            && let Some(p) = in_point
        {
            return Err(p
                .origin
                .error("kv-p2p-transfer is only valid when multinode=true"));
        }
    }
    if e.disagg
        && !set(&e.kv_p2p_transfer)
        && (points.is_empty() || points.iter().any(|p| !set(&p.kv_p2p_transfer)))
    {
        return Err(f.error(
            "disagg",
            "disagg=true requires kv-p2p-transfer at the top level or in every search-space entry",
        ));
    }
    Ok(())
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
