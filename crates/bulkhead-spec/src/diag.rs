//! Diagnostics: every input error carries its file, line, column and field path.

use std::fmt;
use std::sync::Arc;

/// A place in an input file. Lines and columns count from 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// The file as the user named it (or `<stdin>`, `<inline>`).
    pub file: Arc<str>,
    /// 1-based line; 0 when the error concerns the whole file.
    pub line: u64,
    /// 1-based column; 0 when the error concerns the whole file.
    pub column: u64,
}

impl Pos {
    /// A position that stands for a whole file.
    pub fn file(file: &Arc<str>) -> Self {
        Pos {
            file: Arc::clone(file),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// One problem in the input: where, which field, what is wrong and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// Where the offending value (or the object missing a field) starts.
    pub pos: Pos,
    /// Dotted field path inside the document (`spec.quota.memory`), empty for the document.
    pub path: String,
    /// Lowercase message, saying what was expected.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.pos, self.message)
        } else {
            write!(f, "{}: {}: {}", self.pos, self.path, self.message)
        }
    }
}

/// Every problem found in one validation run, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True when nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, sorted by file, line and column.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub(crate) fn sorted(mut self) -> Self {
        self.0.sort();
        self.0.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// Edit distance, for "did you mean" hints on misspelt fields and names.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The closest candidate within a small edit distance, compared case-insensitively.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|candidate| {
            (
                levenshtein(&lower, &candidate.to_ascii_lowercase()),
                *candidate,
            )
        })
        .map(|(distance, candidate)| {
            let lowered = candidate.to_ascii_lowercase();
            let related =
                lower.len() >= 3 && (lowered.contains(&lower) || lower.contains(&lowered));
            (if related { distance.min(1) } else { distance }, candidate)
        })
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_field_names() {
        assert_eq!(
            did_you_mean("memroy", &["cpu", "memory", "pids"]),
            Some("memory")
        );
        assert_eq!(
            did_you_mean("cpuweight", &["cpu", "cpuWeight"]),
            Some("cpuWeight")
        );
        assert_eq!(did_you_mean("zzz", &["cpu", "memory"]), None);
    }
}
