//! Kubernetes label selectors: `matchLabels` and `matchExpressions`, ANDed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{InvalidKind, ValidationError};

/// Labels of a namespace or a pod.
pub type Labels = BTreeMap<String, String>;

/// A Kubernetes `LabelSelector`. Every `matchLabels` pair and every
/// `matchExpressions` requirement must hold; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    /// Requirements that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// The label key the requirement is about.
    pub key: String,
    /// How the key's value is compared with `values`.
    pub operator: SelectorOperator,
    /// Non-empty for `In` and `NotIn`, empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operator of a [`LabelSelectorRequirement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SelectorOperator {
    /// The key is present and its value is one of `values`.
    In,
    /// The key is absent, or its value is none of `values`.
    NotIn,
    /// The key is present, whatever its value.
    Exists,
    /// The key is absent.
    DoesNotExist,
}

impl std::fmt::Display for SelectorOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        })
    }
}

impl LabelSelector {
    /// The empty selector `{}`: matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector requiring the single label `key=value`.
    pub fn with_label(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::default().and_label(key, value)
    }

    /// Adds a `matchLabels` pair.
    #[must_use]
    pub fn and_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.match_labels.insert(key.into(), value.into());
        self
    }

    /// Adds a `matchExpressions` requirement.
    #[must_use]
    pub fn and_expression<V: Into<String>>(
        mut self,
        key: impl Into<String>,
        operator: SelectorOperator,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.match_expressions.push(LabelSelectorRequirement {
            key: key.into(),
            operator,
            values: values.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// True for `{}`, the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether an object carrying `labels` is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Appends what is wrong with this selector to `errors`.
    pub(crate) fn validate(&self, object: &str, field: &str, errors: &mut Vec<ValidationError>) {
        for (i, requirement) in self.match_expressions.iter().enumerate() {
            let kind = match requirement.operator {
                SelectorOperator::In | SelectorOperator::NotIn if requirement.values.is_empty() => {
                    Some(InvalidKind::SelectorValuesMissing {
                        operator: requirement.operator,
                    })
                }
                SelectorOperator::Exists | SelectorOperator::DoesNotExist
                    if !requirement.values.is_empty() =>
                {
                    Some(InvalidKind::SelectorValuesUnexpected {
                        operator: requirement.operator,
                    })
                }
                _ => None,
            };
            if let Some(kind) = kind {
                errors.push(ValidationError::new(
                    object,
                    format!("{field}.matchExpressions[{i}]"),
                    kind,
                ));
            }
        }
    }
}

impl LabelSelectorRequirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}
