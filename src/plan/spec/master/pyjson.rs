//! JSON text exactly as Python's `json.dumps` prints it with its defaults (`, ` and `: `
//! separators, non-ASCII escaped as `\uXXXX`, floats as `repr`), so a job list compares
//! byte for byte with the InferenceX generator's.

use std::fmt::Write as _;

use super::yaml11::{Node, Value};

/// `json.dumps(value)`.
pub(crate) fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// `json.dumps(list)` for a list of values.
pub fn dumps_list<'a>(items: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_value(&mut out, item);
    }
    out.push(']');
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => write_float(out, *f),
        Value::Str(s) => write_str(out, s),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, &item.value);
            }
            out.push(']');
        }
        Value::Map(entries) => write_map(
            out,
            entries.iter().map(|(k, v): (&String, &Node)| (k, &v.value)),
        ),
    }
}

fn write_map<'a>(out: &mut String, entries: impl Iterator<Item = (&'a String, &'a Value)>) {
    out.push('{');
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, key);
        out.push_str(": ");
        write_value(out, value);
    }
    out.push('}');
}

/// Python's `float.__repr__`: shortest round-trip digits, exponent form outside 1e-4..1e16.
fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust's `{:e}` gives `1.5e-7`; Python writes `1.5e-07` and `1e+16`.
        let text = format!("{f:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
    } else {
        let text = format!("{f:?}");
        out.push_str(&text);
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;

    fn node(value: Value) -> Node {
        Node {
            value,
            line: 1,
            column: 1,
        }
    }

    #[test]
    fn prints_as_python_json_dumps() {
        let mut m = IndexMap::new();
        m.insert("b".to_owned(), node(Value::Int(2)));
        m.insert(
            "a".to_owned(),
            node(Value::Seq(vec![node(Value::Bool(true)), node(Value::Null)])),
        );
        m.insert(
            "é".to_owned(),
            node(Value::Str("x\"\u{1F600}\u{7f}".into())),
        );
        assert_eq!(
            dumps(&Value::Map(m)),
            r#"{"b": 2, "a": [true, null], "\u00e9": "x\"\ud83d\ude00\u007f"}"#
        );
        let floats = [0.8, 1.0, 1e-5, 1.5e16, 123456.0, -0.0001];
        let printed: Vec<String> = floats.iter().map(|f| dumps(&Value::Float(*f))).collect();
        assert_eq!(
            printed,
            ["0.8", "1.0", "1e-05", "1.5e+16", "123456.0", "-0.0001"]
        );
    }
}
