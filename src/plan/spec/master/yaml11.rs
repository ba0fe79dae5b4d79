//! InferenceX's configs read as PyYAML's `safe_load` reads them (YAML 1.1 plain-scalar typing:
//! `2_063_837` is an int, `yes` a bool, `1e3` a string), into a tree that keeps every node's line
//! and column, so the generator's values and our located errors come from one parse.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::base::yaml::SpecError;

/// A YAML value as Python sees it after `yaml.safe_load`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(IndexMap<String, Node>),
}

/// A value and where it starts (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub column: usize,
}

impl Node {
    pub(crate) fn as_map(&self) -> Option<&IndexMap<String, Node>> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Python's type name for the value, for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
        }
    }
}

/// A parsed file: its path (for errors) and its root node.
#[derive(Debug, Clone)]
pub struct Document {
    pub path: PathBuf,
    pub root: Node,
}

impl Document {
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::unreadable(path, &e))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, SpecError> {
        let mut builder = Builder::default();
        let located = |line: usize, column: usize, message: String| SpecError {
            file: path.to_path_buf(),
            line,
            column,
            field: String::new(),
            message,
        };
        Parser::new_from_str(text)
            .load(&mut builder, false)
            .map_err(|e| {
                located(
                    e.marker().line(),
                    e.marker().col() + 1,
                    format!("invalid YAML: {}", e.info()),
                )
            })?;
        if let Some((mark, message)) = builder.error {
            return Err(located(mark.line(), mark.col() + 1, message));
        }
        let root = builder.root.unwrap_or(Node {
            value: Value::Null,
            line: 1,
            column: 1,
        });
        Ok(Self {
            path: path.to_path_buf(),
            root,
        })
    }

    /// An error at `node`, naming `field`.
    pub fn error(&self, node: &Node, field: &str, message: impl Into<String>) -> SpecError {
        SpecError {
            file: self.path.clone(),
            line: node.line,
            column: node.column,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

enum Open {
    Seq(Node),
    Map { node: Node, key: Option<Node> },
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Open, usize)>,
    anchors: IndexMap<usize, Node>,
    root: Option<Node>,
    error: Option<(Marker, String)>,
}

impl Builder {
    fn fail(&mut self, mark: Marker, message: String) {
        if self.error.is_none() {
            self.error = Some((mark, message));
        }
    }

    /// Places a finished node into its parent (or as the root), remembering its anchor.
    fn push(&mut self, node: Node, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((Open::Seq(seq), _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some((
                Open::Map {
                    key: slot @ None, ..
                },
                _,
            )) => *slot = Some(node),
            Some((Open::Map { node: map, key }, _)) => {
                let Some(key) = key.take() else { return };
                let name = match &key.value {
                    Value::Str(s) => s.clone(),
                    _ => {
                        let what = key.type_name();
                        return self.fail(
                            mark,
                            format!("mapping keys must be strings, found a {what} key"),
                        );
                    }
                };
                if name == "<<" {
                    return self.fail(mark, "YAML merge keys (`<<`) are not supported".into());
                }
                // A block collection is marked where its first item starts and an empty value
                // where the next token does; errors about them read better at their key.
                let node = match node.value {
                    Value::Map(_) | Value::Seq(_) | Value::Null => Node {
                        line: key.line,
                        column: key.column,
                        ..node
                    },
                    _ => node,
                };
                if let Value::Map(entries) = &mut map.value {
                    // As a Python dict: a repeated key keeps its first position, takes the last value.
                    entries.insert(name, node);
                }
            }
        }
    }
}

fn at(mark: Marker, value: Value) -> Node {
    Node {
        value,
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => match resolve(text, style, tag.as_ref()) {
                Ok(value) => self.push(at(mark, value), anchor, mark),
                Err(message) => self.fail(mark, message),
            },
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = Node {
                        line: mark.line(),
                        column: mark.col() + 1,
                        ..node.clone()
                    };
                    self.push(node, 0, mark);
                }
                None => self.fail(mark, "alias to an unknown anchor".into()),
            },
            Event::SequenceStart(anchor, _) => self
                .stack
                .push((Open::Seq(at(mark, Value::Seq(Vec::new()))), anchor)),
            Event::MappingStart(anchor, _) => self.stack.push((
                Open::Map {
                    node: at(mark, Value::Map(IndexMap::new())),
                    key: None,
                },
                anchor,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((open, anchor)) = self.stack.pop() {
                    let node = match open {
                        Open::Seq(node) | Open::Map { node, .. } => node,
                    };
                    self.push(node, anchor, mark);
                }
            }
            _ => {}
        }
    }
}

/// Types a scalar as PyYAML's SafeLoader does: quoted and block scalars are strings, plain ones
/// go through the YAML 1.1 resolvers (null, bool, int, float), explicit core tags are honoured.
fn resolve(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        let suffix = tag.suffix.as_str();
        return match suffix {
            "tag:yaml.org,2002:str" | "str" => Ok(Value::Str(text)),
            "tag:yaml.org,2002:int" | "int" => int(&text)
                .map(Value::Int)
                .ok_or_else(|| format!("`{text}` is not an int")),
            "tag:yaml.org,2002:float" | "float" => float(&text)
                .map(Value::Float)
                .ok_or_else(|| format!("`{text}` is not a float")),
            "tag:yaml.org,2002:bool" | "bool" => bool(&text)
                .map(Value::Bool)
                .ok_or_else(|| format!("`{text}` is not a bool")),
            "tag:yaml.org,2002:null" | "null" => Ok(Value::Null),
            other => Err(format!("unsupported YAML tag `{}{other}`", tag.handle)),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::Str(text));
    }
    if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = bool(&text) {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = int(&text) {
        return Ok(Value::Int(i));
    }
    if let Some(f) = float(&text) {
        return Ok(Value::Float(f));
    }
    if is_timestamp(&text) {
        return Err(format!(
            "`{text}` reads as a YAML timestamp, which has no JSON form; quote it"
        ));
    }
    Ok(Value::Str(text))
}

fn bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// YAML 1.1 ints: decimal, `0b`, `0x`, leading-zero octal, `_` separators, base-60 `1:30`.
fn int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits =
        |s: &str, ok: fn(char) -> bool| !s.is_empty() && s.chars().all(|c| ok(c) || c == '_');
    let parse = |s: &str, radix: u32| i64::from_str_radix(&s.replace('_', ""), radix).ok();
    let magnitude = if let Some(b) = body.strip_prefix("0b") {
        digits(b, |c| matches!(c, '0' | '1')).then(|| parse(b, 2))??
    } else if let Some(h) = body.strip_prefix("0x") {
        digits(h, |c| c.is_ascii_hexdigit()).then(|| parse(h, 16))??
    } else if body == "0" {
        0
    } else if let Some(o) = body.strip_prefix('0') {
        digits(o, |c| matches!(c, '0'..='7')).then(|| parse(o, 8))??
    } else if body.contains(':') {
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| matches!(c, '1'..='9'))
            || !digits(first, |c| c.is_ascii_digit())
        {
            return None;
        }
        let mut total = parse(first, 10)?;
        for part in parts {
            if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let v: i64 = part.parse().ok()?;
            if v > 59 || (part.len() == 2 && !part.starts_with(|c: char| matches!(c, '0'..='5'))) {
                return None;
            }
            total = total.checked_mul(60)?.checked_add(v)?;
        }
        total
    } else if body.starts_with(|c: char| matches!(c, '1'..='9'))
        && digits(body, |c| c.is_ascii_digit())
    {
        parse(body, 10)?
    } else {
        return None;
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// YAML 1.1 floats: a dot is required (`1e3` stays a string), exponents need a sign.
fn float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (whole, frac) = mantissa.split_once('.')?;
    let digits_ok = |s: &str| s.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !digits_ok(whole) || !digits_ok(frac) || whole.contains(':') {
        return None;
    }
    if whole.is_empty() && (frac.is_empty() || text.starts_with(['-', '+'])) {
        return None;
    }
    if whole.starts_with('_') {
        return None;
    }
    if let Some(e) = exponent {
        let digits = e.strip_prefix(['-', '+'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    text.replace('_', "").parse().ok()
}

/// `2026-08-21` or a full ISO timestamp, which PyYAML turns into a date object.
fn is_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5].is_ascii_digit()
        && text[5..].contains('-')
        && text[5..]
            .split(['-', 'T', 't', ' ', ':', '.', '+', 'Z'])
            .next()
            .is_some_and(|m| m.len() <= 2 && m.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        Document::parse(Path::new("t.yaml"), &format!("k: {text}\n"))
            .expect("parses")
            .root
            .as_map()
            .expect("map")["k"]
            .value
            .clone()
    }

    #[test]
    fn plain_scalars_are_typed_as_pyyaml_types_them() {
        assert_eq!(value("2_063_837"), Value::Int(2_063_837));
        assert_eq!(value("010"), Value::Int(8));
        assert_eq!(value("0x1F"), Value::Int(31));
        assert_eq!(value("1:30"), Value::Int(90));
        assert_eq!(value("yes"), Value::Bool(true));
        assert_eq!(value("Off"), Value::Bool(false));
        assert_eq!(value("~"), Value::Null);
        assert_eq!(value(""), Value::Null);
        assert_eq!(value("0.80"), Value::Float(0.8));
        assert_eq!(value("1.5e+3"), Value::Float(1500.0));
        assert_eq!(value("1e3"), Value::Str("1e3".into()));
        assert_eq!(value("\"4\""), Value::Str("4".into()));
        assert_eq!(value("v0.10.0"), Value::Str("v0.10.0".into()));
        assert_eq!(value("0.8.1.post1"), Value::Str("0.8.1.post1".into()));
        assert_eq!(value("!!str 12"), Value::Str("12".into()));
    }

    #[test]
    fn positions_and_python_dict_semantics() {
        let d = Document::parse(Path::new("t.yaml"), "a: 1\nb:\n  - x\n  - {c: 2}\na: 3\n")
            .expect("parses");
        let m = d.root.as_map().expect("map");
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m["a"].value, Value::Int(3));
        let Value::Seq(items) = &m["b"].value else {
            panic!("seq")
        };
        assert_eq!((items[1].line, items[1].column), (4, 5));
    }

    #[test]
    fn refuses_what_has_no_json_form() {
        for text in ["k: 2026-08-21\n", "a: &x {b: 1}\nc:\n  <<: *x\n", "1: x\n"] {
            let e = Document::parse(Path::new("t.yaml"), text).expect_err(text);
            assert!(e.line >= 1, "{e}");
        }
    }
}
