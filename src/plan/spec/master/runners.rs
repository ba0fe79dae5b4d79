//! InferenceX's `configs/runners.yaml`: scheduling labels (label → runner nodes) and per-label
//! hardware facts the agentic DRAM budget is computed from.

use indexmap::IndexMap;

use super::check::Fields;
use super::yaml11::{Document, Value};
use crate::base::yaml::SpecError;

/// Hardware facts of one runner label.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hardware {
    pub(crate) available_cpu_dram_mib: i64,
    pub gpus_per_node: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct RunnerConfig {
    pub labels: IndexMap<String, Vec<String>>,
    pub hardware: IndexMap<String, Hardware>,
}

impl RunnerConfig {
    pub fn load(doc: &Document) -> Result<Self, SpecError> {
        let top = Fields::new(doc, &doc.root, String::new(), &["labels", "hardware"])?;
        let labels_node = top.required("labels")?;
        let Some(map) = labels_node.as_map() else {
            return Err(top.error("labels", "runner config must define a labels mapping"));
        };
        let labels_map = Fields {
            doc,
            node: labels_node,
            map,
            path: "labels".into(),
        };
        let mut labels = IndexMap::new();
        for (label, node) in labels_map.map {
            let field = labels_map.field(label);
            let Value::Seq(items) = &node.value else {
                return Err(doc.error(
                    node,
                    &field,
                    format!("runner label `{label}` must be a list of runner names"),
                ));
            };
            if items.is_empty() {
                return Err(doc.error(
                    node,
                    &field,
                    format!("runner label `{label}` cannot be an empty list"),
                ));
            }
            let names = items
                .iter()
                .map(|n| match &n.value {
                    Value::Str(s) => Ok(s.clone()),
                    _ => Err(doc.error(
                        n,
                        &field,
                        format!("runner label `{label}` must contain only strings"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            labels.insert(label.clone(), names);
        }
        let mut hardware = IndexMap::new();
        if let Some(node) = top.raw("hardware") {
            let Some(map) = node.as_map() else {
                return Err(top.error(
                    "hardware",
                    "expected a mapping of runner label to hardware facts",
                ));
            };
            for (label, node) in map {
                let f = Fields::new(
                    doc,
                    node,
                    format!("hardware.{label}"),
                    &["available-cpu-dram-mib", "gpus-per-node"],
                )?;
                let positive = |key: &str| -> Result<i64, SpecError> {
                    let v = f.req_int(key)?;
                    if v <= 0 {
                        return Err(f.error(key, format!("must be greater than 0, got {v}")));
                    }
                    Ok(v)
                };
                hardware.insert(
                    label.clone(),
                    Hardware {
                        available_cpu_dram_mib: positive("available-cpu-dram-mib")?,
                        gpus_per_node: positive("gpus-per-node")?,
                    },
                );
            }
        }
        Ok(Self { labels, hardware })
    }

    /// The runner nodes of a label (none when the label is unknown).
    pub(crate) fn nodes(&self, label: &str) -> &[String] {
        self.labels.get(label).map_or(&[], Vec::as_slice)
    }
}
