//! Typed reads of a YAML node with the generator's validation rules (its pydantic models are
//! strict about unknown keys and types), each failure located at the node and named by field.

use indexmap::IndexMap;

use super::yaml11::{Document, Node, Value};
use crate::base::yaml::SpecError;

/// A mapping being read: its keys, the document for errors, and its dotted path.
pub(crate) struct Fields<'a> {
    pub(crate) doc: &'a Document,
    pub node: &'a Node,
    pub map: &'a IndexMap<String, Node>,
    pub path: String,
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Fields<'a> {
    /// Reads `node` as a mapping that may only hold `allowed` keys.
    pub fn new(
        doc: &'a Document,
        node: &'a Node,
        path: String,
        allowed: &[&str],
    ) -> Result<Self, SpecError> {
        let Some(map) = node.as_map() else {
            return Err(doc.error(
                node,
                &path,
                format!("expected a mapping, found a {}", node.type_name()),
            ));
        };
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(doc.error(
                &map[key],
                &join(&path, key),
                format!(
                    "unknown field `{key}`; expected one of: {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Self {
            doc,
            node,
            map,
            path,
        })
    }

    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw node, as Python's `dict.get` sees it (present even when null).
    pub fn raw(&self, key: &str) -> Option<&'a Node> {
        self.map.get(key)
    }

    /// The node when present and not null (pydantic's `Optional` reads null as absent).
    pub fn present(&self, key: &str) -> Option<&'a Node> {
        self.map.get(key).filter(|n| !n.is_null())
    }

    pub fn error(&self, key: &str, message: impl Into<String>) -> SpecError {
        let node = self.map.get(key).unwrap_or(self.node);
        self.doc.error(node, &self.field(key), message)
    }

    /// An error about the mapping as a whole.
    pub(crate) fn error_here(&self, message: impl Into<String>) -> SpecError {
        self.doc.error(self.node, &self.path, message)
    }

    fn wrong(&self, key: &str, node: &Node, expected: &str) -> SpecError {
        self.doc.error(
            node,
            &self.field(key),
            format!("expected {expected}, found a {}", node.type_name()),
        )
    }

    pub fn required(&self, key: &str) -> Result<&'a Node, SpecError> {
        self.map
            .get(key)
            .ok_or_else(|| self.error_here(format!("missing required field `{key}`")))
    }

    pub(crate) fn str_of(&self, key: &str, node: &'a Node) -> Result<&'a str, SpecError> {
        match &node.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.wrong(key, node, "a string")),
        }
    }

    fn int_of(&self, key: &str, node: &Node) -> Result<i64, SpecError> {
        match node.value {
            Value::Int(i) => Ok(i),
            _ => Err(self.wrong(key, node, "an integer")),
        }
    }

    pub(crate) fn bool_of(&self, key: &str, node: &Node) -> Result<bool, SpecError> {
        match node.value {
            Value::Bool(b) => Ok(b),
            _ => Err(self.wrong(key, node, "true or false")),
        }
    }

    pub(crate) fn req_str(&self, key: &str) -> Result<&'a str, SpecError> {
        self.str_of(key, self.required(key)?)
    }

    pub(crate) fn req_int(&self, key: &str) -> Result<i64, SpecError> {
        self.int_of(key, self.required(key)?)
    }

    pub(crate) fn req_bool(&self, key: &str) -> Result<bool, SpecError> {
        self.bool_of(key, self.required(key)?)
    }

    pub(crate) fn opt_int(&self, key: &str) -> Result<Option<i64>, SpecError> {
        self.present(key).map(|n| self.int_of(key, n)).transpose()
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, SpecError> {
        self.present(key).map(|n| self.bool_of(key, n)).transpose()
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, SpecError> {
        self.present(key).map(|n| self.str_of(key, n)).transpose()
    }

    /// A strictly positive int with a default (`pp`, `dcp-size`, `pcp-size`): null is refused.
    pub(crate) fn positive_or_one(&self, key: &str) -> Result<i64, SpecError> {
        match self.raw(key) {
            None => Ok(1),
            Some(n) => {
                let v = self.int_of(key, n)?;
                if v <= 0 {
                    return Err(self.error(key, format!("must be greater than 0, got {v}")));
                }
                Ok(v)
            }
        }
    }

    /// One of `choices`, with a default when absent; null is refused.
    pub(crate) fn choice(
        &self,
        key: &str,
        choices: &[&str],
        default: &'a str,
    ) -> Result<&'a str, SpecError> {
        let Some(node) = self.raw(key) else {
            return Ok(default);
        };
        let v = self.str_of(key, node).ok().filter(|v| choices.contains(v));
        v.ok_or_else(|| self.error(key, format!("expected one of {}", choices.join(", "))))
    }

    /// A list of the mappings under `key` with their paths (`key[i]`); a missing or null list is empty.
    pub fn list(&self, key: &str) -> Result<Vec<(&'a Node, String)>, SpecError> {
        match self.present(key) {
            None => Ok(Vec::new()),
            Some(node) => match &node.value {
                Value::Seq(items) => Ok(items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n, format!("{}[{i}]", self.field(key))))
                    .collect()),
                _ => Err(self.wrong(key, node, "a list")),
            },
        }
    }

    /// A list of ints (`conc-list`); null reads as absent.
    pub(crate) fn int_list(&self, key: &str) -> Result<Option<Vec<i64>>, SpecError> {
        let Some(node) = self.present(key) else {
            return Ok(None);
        };
        let Value::Seq(items) = &node.value else {
            return Err(self.wrong(key, node, "a list of integers"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, n)| match n.value {
                Value::Int(v) => Ok(v),
                _ => Err(self.doc.error(
                    n,
                    &format!("{}[{i}]", self.field(key)),
                    format!("expected an integer, found a {}", n.type_name()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
