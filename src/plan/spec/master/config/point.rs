//! The points of a fixed-seq-len scenario (single-node parallelism or prefill/decode workers)
//! and the parts every point has (concurrencies, spec decoding, router): apart from the entry,
//! which only lists scenarios, and shared with the agentic points, which read the same parts.

use indexmap::IndexMap;

use super::component::{component, non_empty_str};
use super::{Conc, Origin, Point, SeqLen, SingleTopology, Topology, Worker};
use crate::base::yaml::SpecError;
use crate::plan::spec::master::check::Fields;
use crate::plan::spec::master::yaml11::{Document, Node, Value};

const SPEC_DECODING: &[&str] = &["mtp", "draft_model", "none"];

pub(super) fn seq_len(
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

pub(super) fn single_topology(f: &Fields<'_>, tp: i64) -> Result<SingleTopology, SpecError> {
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

pub(super) fn point(f: &Fields<'_>, topology: Topology) -> Result<Point, SpecError> {
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

pub(super) fn hardware_pair(
    f: &Fields<'_>,
    prefill: &Worker,
    decode: &Worker,
) -> Result<(), SpecError> {
    if prefill.hardware.is_some() != decode.hardware.is_some() {
        return Err(f.error(
            "prefill",
            "'hardware' must be specified for both 'prefill' and 'decode', or neither",
        ));
    }
    Ok(())
}

pub(super) fn worker(doc: &Document, node: &Node, path: String) -> Result<Worker, SpecError> {
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
