//! Reading input: files, multi-document files and directories into spanned YAML nodes.
//!
//! The YAML parser runs with budgets (alias bombs, nesting depth, event counts), YAML 1.2
//! booleans only (`on`/`no` stay strings), duplicate keys rejected and no custom tags.
//! Each file is capped at [`MAX_FILE_BYTES`]; directories are walked in name order,
//! following symlinks but refusing loops.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Spanned};

use crate::diag::{Diagnostic, Diagnostics, Pos};

/// Largest input file accepted. Specs are small; a bigger file is a mistake or an attack.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Deepest nesting accepted in one document.
pub const MAX_DEPTH: usize = 32;

/// One input text with the name to report it under.
#[derive(Clone, Debug)]
pub struct Source {
    /// The name used in diagnostics (a path as given, or `<stdin>`).
    pub name: Arc<str>,
    /// The UTF-8 text.
    pub text: String,
}

/// A YAML value with the place it came from.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl NodeKind {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// What serde-saphyr hands us: a value tree where each node knows its location.
#[derive(Debug)]
enum RawKind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawKind>>),
    Map(Vec<(Spanned<RawKind>, Spanned<RawKind>)>),
}

impl<'de> Deserialize<'de> for RawKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<RawKind, E> {
                Ok(RawKind::Null)
            }
            fn visit_none<E>(self) -> Result<RawKind, E> {
                Ok(RawKind::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawKind, E> {
                Ok(RawKind::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawKind, E> {
                Ok(RawKind::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawKind, E> {
                Ok(RawKind::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<RawKind, E> {
                Ok(RawKind::Int(v))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<RawKind, E> {
                i128::try_from(v)
                    .map(RawKind::Int)
                    .map_err(|_| E::custom("integer is too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawKind, E> {
                Ok(RawKind::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawKind, E> {
                Ok(RawKind::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawKind, E> {
                Ok(RawKind::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<RawKind, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = access.next_element()? {
                    items.push(item);
                }
                Ok(RawKind::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<RawKind, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawKind::Map(entries))
            }
        }
        deserializer.deserialize_any(RawVisitor)
    }
}

fn convert(file: &Arc<str>, raw: Spanned<RawKind>, depth: usize) -> Result<Node, Diagnostic> {
    let pos = Pos {
        file: Arc::clone(file),
        line: raw.referenced.line(),
        column: raw.referenced.column(),
    };
    if depth > MAX_DEPTH {
        return Err(Diagnostic::new(
            pos,
            "",
            format!(
                "nesting is deeper than {MAX_DEPTH} levels (expected a bulkhead object, which is much flatter)"
            ),
        ));
    }
    let kind = match raw.value {
        RawKind::Null => NodeKind::Null,
        RawKind::Bool(v) => NodeKind::Bool(v),
        RawKind::Int(v) => NodeKind::Int(v),
        RawKind::Float(v) => NodeKind::Float(v),
        RawKind::Str(v) => NodeKind::Str(v),
        RawKind::Seq(items) => NodeKind::Seq(
            items
                .into_iter()
                .map(|item| convert(file, item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        RawKind::Map(entries) => NodeKind::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((convert(file, k, depth + 1)?, convert(file, v, depth + 1)?)))
                .collect::<Result<_, Diagnostic>>()?,
        ),
    };
    Ok(Node { kind, pos })
}

fn parser_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 100_000;
    budget.max_documents = 10_000;
    serde_saphyr::options! {
        budget: Some(budget),
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        duplicate_keys: DuplicateKeyPolicy::Error,
        reject_unsupported_tags: true,
        with_snippet: false,
    }
}

/// Parses every YAML document of one source. Syntax errors end the file (the parser cannot
/// resynchronise); they are reported with their position.
pub(crate) fn parse_documents(source: &Source) -> Result<Vec<Node>, Diagnostic> {
    let raw: Vec<Spanned<RawKind>> =
        serde_saphyr::from_multiple_with_options(&source.text, parser_options()).map_err(
            |error| {
                let (line, column) = error
                    .location()
                    .map_or((0, 0), |location| (location.line(), location.column()));
                Diagnostic::new(
                    Pos {
                        file: Arc::clone(&source.name),
                        line,
                        column,
                    },
                    "",
                    format!("invalid YAML: {}", first_line(&error.to_string())),
                )
            },
        )?;
    raw.into_iter()
        .map(|document| convert(&source.name, document, 0))
        .collect()
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    // The position is already in front of the message; drop the parser's own copy of it.
    let line = line.split(" at line ").next().unwrap_or(line);
    let mut line = line.to_owned();
    if let Some(first) = line.get(..1) {
        let lowered = first.to_ascii_lowercase();
        line.replace_range(..1, &lowered);
    }
    line.trim_end_matches('.').to_owned()
}

/// Reads the given files and directories (recursively, `*.yaml` and `*.yml`, in name order).
/// `-` reads standard input. Problems with the files themselves become diagnostics.
pub fn read_sources(paths: &[PathBuf]) -> (Vec<Source>, Diagnostics) {
    let mut sources = Vec::new();
    let mut diagnostics = Diagnostics::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            let name: Arc<str> = Arc::from("<stdin>");
            match std::io::Read::read_to_string(
                &mut std::io::Read::take(std::io::stdin(), MAX_FILE_BYTES + 1),
                &mut text,
            ) {
                Ok(n) if n as u64 > MAX_FILE_BYTES => diagnostics.push(too_large(&name)),
                Ok(_) => sources.push(Source { name, text }),
                Err(error) => diagnostics.push(Diagnostic::new(
                    Pos::file(&name),
                    "",
                    format!("cannot read: {error} (expected UTF-8 YAML text)"),
                )),
            }
            continue;
        }
        let mut seen = BTreeSet::new();
        walk(path, true, &mut seen, &mut sources, &mut diagnostics);
    }
    (sources, diagnostics)
}

fn too_large(name: &Arc<str>) -> Diagnostic {
    Diagnostic::new(
        Pos::file(name),
        "",
        format!("file is larger than {MAX_FILE_BYTES} bytes (expected a small YAML spec)"),
    )
}

fn display(path: &Path) -> Arc<str> {
    Arc::from(path.display().to_string())
}

fn walk(
    path: &Path,
    named_by_user: bool,
    seen: &mut BTreeSet<PathBuf>,
    sources: &mut Vec<Source>,
    diagnostics: &mut Diagnostics,
) {
    let name = display(path);
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            let message = if error.raw_os_error() == Some(libc_eloop()) {
                "symlink loop (expected a file or directory)".to_owned()
            } else {
                format!("cannot read: {error}")
            };
            diagnostics.push(Diagnostic::new(Pos::file(&name), "", message));
            return;
        }
    };
    if metadata.is_dir() {
        let canonical = match std::fs::canonicalize(path) {
            Ok(canonical) => canonical,
            Err(error) => {
                diagnostics.push(Diagnostic::new(
                    Pos::file(&name),
                    "",
                    format!("cannot read: {error}"),
                ));
                return;
            }
        };
        if !seen.insert(canonical) {
            diagnostics.push(Diagnostic::new(
                Pos::file(&name),
                "",
                "symlink loop: this directory was already read through another path (expected a tree without cycles)",
            ));
            return;
        }
        let mut entries = match std::fs::read_dir(path) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .collect::<Vec<_>>(),
            Err(error) => {
                diagnostics.push(Diagnostic::new(
                    Pos::file(&name),
                    "",
                    format!("cannot read: {error}"),
                ));
                return;
            }
        };
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            walk(&entry, false, seen, sources, diagnostics);
        }
        return;
    }
    let is_yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    if !named_by_user && !is_yaml {
        return;
    }
    if !metadata.is_file() {
        diagnostics.push(Diagnostic::new(
            Pos::file(&name),
            "",
            "not a regular file (expected a YAML file or a directory)",
        ));
        return;
    }
    if metadata.len() > MAX_FILE_BYTES {
        diagnostics.push(too_large(&name));
        return;
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => sources.push(Source { name, text }),
            Err(error) => {
                let offset = error.utf8_error().valid_up_to();
                let bytes = error.as_bytes();
                let line = bytes[..offset].iter().filter(|b| **b == b'\n').count() as u64 + 1;
                let column = bytes[..offset]
                    .iter()
                    .rev()
                    .take_while(|b| **b != b'\n')
                    .count() as u64
                    + 1;
                diagnostics.push(Diagnostic::new(
                    Pos {
                        file: name,
                        line,
                        column,
                    },
                    "",
                    "invalid UTF-8 byte sequence (expected UTF-8 text)",
                ));
            }
        },
        Err(error) => diagnostics.push(Diagnostic::new(
            Pos::file(&name),
            "",
            format!("cannot read: {error}"),
        )),
    }
}

/// ELOOP on Linux; spelled out to keep this crate free of libc.
const fn libc_eloop() -> i32 {
    40
}
