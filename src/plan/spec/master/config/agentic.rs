//! The agentic-coding scenario: its configs (`dram-utilization`) and points, single-node with
//! KV offloading or prefill/decode workers; apart because their rules (offloading, backend,
//! tp or workers) are their own, while the parts they share with fixed-seq-len points come
//! from `point`.

use super::component::metadata;
use super::point::{hardware_pair, point, single_topology, worker};
use super::{Agentic, Point, Topology};
use crate::base::yaml::SpecError;
use crate::plan::spec::master::check::Fields;
use crate::plan::spec::master::yaml11::{Document, Node, Value};

pub(super) fn agentic_config(
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
