//! YAML loading with source locations.
//!
//! `serde_norway` reports where a *syntax* or *type* error is, but once a document has been
//! deserialized the positions are gone, and most of what makes a sweep spec wrong (a tp that does not
//! divide the runner's GPUs, a duplicate cell) is only known afterwards. So every document is also
//! walked once with `yaml-rust2`'s event parser to build a path → position index, and semantic
//! errors look their field up there.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// An error in a YAML input file, pointing at the line, column and field that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (an unreadable file).
    pub line: usize,
    /// 1-based; 0 when the problem has no position.
    pub column: usize,
    /// Dotted path of the field (`h200.tp4.users[2]`); empty for the document as a whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A position in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// A YAML file's text plus the position of every field in it.
pub(crate) struct YamlDoc {
    path: PathBuf,
    text: String,
    positions: HashMap<String, Location>,
}

impl SpecError {
    /// A file that cannot be read at all: the error has no position.
    pub(crate) fn unreadable(path: &Path, e: &std::io::Error) -> Self {
        SpecError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read file: {e}"),
        }
    }
}

impl YamlDoc {
    /// Reads and indexes a file.
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::unreadable(path, &e))?;
        Self::from_text(path, text)
    }

    /// Indexes text that came from `path` (used for embedded files too).
    pub(crate) fn from_text(path: &Path, text: String) -> Result<Self, SpecError> {
        let mut index = PositionIndex::default();
        Parser::new_from_str(&text)
            .load(&mut index, false)
            .map_err(|e| SpecError {
                file: path.to_path_buf(),
                line: e.marker().line(),
                column: e.marker().col() + 1,
                field: String::new(),
                message: format!("invalid YAML: {}", e.info()),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
            positions: index.positions,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deserializes the whole document, turning serde's error into a located [`SpecError`].
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, SpecError> {
        serde_norway::from_str(&self.text).map_err(|e| self.serde_error(&e))
    }

    /// The position of `field` (a dotted path), or of its nearest ancestor that has one.
    pub(crate) fn locate(&self, field: &str) -> Location {
        let mut probe = field;
        loop {
            if let Some(loc) = self.positions.get(probe) {
                return *loc;
            }
            match probe.rfind(['.', '[']) {
                Some(cut) => probe = &probe[..cut],
                None => return Location { line: 1, column: 1 },
            }
        }
    }

    /// A semantic error at `field`.
    pub fn error(&self, field: &str, message: impl Into<String>) -> SpecError {
        let loc = self.locate(field);
        SpecError {
            file: self.path.clone(),
            line: loc.line,
            column: loc.column,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn serde_error(&self, err: &serde_norway::Error) -> SpecError {
        let (line, column) = err
            .location()
            .map_or((0, 0), |loc| (loc.line(), loc.column()));
        let text = err.to_string();
        let text = match text.rfind(" at line ") {
            Some(cut) if line > 0 => &text[..cut],
            _ => &text,
        };
        // serde_norway prefixes the message with the field path ("h200.tp4: unknown field ...").
        let (mut field, message) = match text.split_once(": ") {
            Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
            _ => (String::new(), text.to_owned()),
        };
        // For an unknown field, the field to point at is the unknown one, not its parent.
        if let Some(name) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            field = join_key(&field, name);
        }
        SpecError {
            file: self.path.clone(),
            line,
            column,
            field,
            message,
        }
    }
}

/// Builds the path → position map from parser events.
#[derive(Default)]
struct PositionIndex {
    positions: HashMap<String, Location>,
    stack: Vec<Frame>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl PositionIndex {
    /// Path of the value that the next node fills, or `None` when the next node is a mapping key.
    fn next_value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map {
                path,
                key: Some(key),
            }) => Some(join_key(path, key)),
            Some(Frame::Seq { path, next }) => {
                let child = format!("{path}[{next}]");
                *next += 1;
                Some(child)
            }
        }
    }

    fn value_done(&mut self) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        // The document itself is reported at 1:1; the parser marks its root after the first key.
        if path.is_empty() {
            return;
        }
        self.positions.entry(path.to_owned()).or_insert(Location {
            line: mark.line(),
            column: mark.col() + 1,
        });
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() || parent == "." {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for PositionIndex {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => match self.next_value_path() {
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let child = join_key(path, &value);
                        *key = Some(value);
                        self.record(&child, mark);
                    }
                }
                Some(path) => {
                    self.record(&path, mark);
                    self.value_done();
                }
            },
            Event::Alias(_) => {
                if let Some(path) = self.next_value_path() {
                    self.record(&path, mark);
                }
                self.value_done();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A collection used as a mapping key has no dotted path; index it under "?".
                let path = self.next_value_path().unwrap_or_else(|| "?".to_owned());
                self.record(&path, mark);
                let frame = if matches!(event, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> YamlDoc {
        YamlDoc::from_text(Path::new("t.yaml"), text.to_owned()).expect("valid yaml")
    }

    #[test]
    fn indexes_block_and_flow_fields() {
        let d = doc("a:\n  tp4:\n    users: [1, 2, 8]\n  tp8: {users: [4], ep: 8}\nb: x\n");
        assert_eq!(d.locate("a.tp4"), Location { line: 2, column: 3 });
        assert_eq!(d.locate("a.tp4.users"), Location { line: 3, column: 5 });
        assert_eq!(
            d.locate("a.tp4.users[2]"),
            Location {
                line: 3,
                column: 19
            }
        );
        assert_eq!(
            d.locate("a.tp8.ep"),
            Location {
                line: 4,
                column: 21
            }
        );
        assert_eq!(d.locate("b"), Location { line: 5, column: 1 });
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let d = doc("a:\n  tp4:\n    users: [1]\n");
        assert_eq!(d.locate("a.tp4.offload"), Location { line: 2, column: 3 });
        assert_eq!(d.locate("zzz"), Location { line: 1, column: 1 });
    }

    #[test]
    fn block_sequences_of_mappings_are_indexed() {
        let d = doc("exclude:\n  - tp: 2\n    users: 4\n  - tp: 8\n");
        assert_eq!(d.locate("exclude[1].tp"), Location { line: 4, column: 5 });
        assert_eq!(
            d.locate("exclude[0].users"),
            Location { line: 3, column: 5 }
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = YamlDoc::from_text(Path::new("bad.yaml"), "a: [1, 2\nb: 3\n".to_owned())
            .err()
            .expect("must fail");
        assert_eq!(err.file, PathBuf::from("bad.yaml"));
        assert!(err.line >= 1, "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }
}
