//! A problem found in the configuration: where it is (file, object, field) and why it is one.
//!
//! Every part of Gantry that rejects input reports it as a [`Problem`], so that `gantry validate`,
//! the logs and `/config` all say the same thing in the same words.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::config::ObjectRef;

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// The file the object was read from (folder mode).
    #[serde(
        serialize_with = "serialize_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub file: Option<Arc<Path>>,
    /// The object at fault; `None` when the file as a whole is (it does not parse, say).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// The field path inside the object, as kubectl spells it (`spec.rules[0].host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

impl Problem {
    /// A problem with the whole file, not one object in it.
    pub fn file(file: Option<Arc<Path>>, reason: impl Into<String>) -> Self {
        Problem {
            file,
            object: None,
            field: None,
            reason: reason.into(),
        }
    }

    /// A problem with one object, at the field `error` names.
    pub fn at(file: Option<Arc<Path>>, object: ObjectRef, error: FieldError) -> Self {
        Self::field(file, object, error.field, error.reason)
    }

    /// A problem with one field of one object.
    pub fn field(
        file: Option<Arc<Path>>,
        object: ObjectRef,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let field = field.into();
        Problem {
            file,
            object: Some(object),
            field: (!field.is_empty()).then_some(field),
            reason: reason.into(),
        }
    }
}

/// What is wrong with one field of an object not yet named: the checks of one part of a
/// resource return it, and the caller, who knows the object, makes it a [`Problem`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field path, as kubectl spells it; empty for the object as a whole.
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error, its field seen from `parent` (`spec.privateKey` + `size`).
    pub fn under(self, parent: &str) -> Self {
        let field = match (parent.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => parent.to_owned(),
            (false, false) => format!("{parent}.{}", self.field),
        };
        FieldError { field, ..self }
    }
}

/// `FILE: KIND NAMESPACE/NAME: FIELD.PATH: reason`, leaving out the parts that do not apply.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.reason)
    }
}

fn serialize_path<S: Serializer>(path: &Option<Arc<Path>>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => s.serialize_str(&path.to_string_lossy()),
        None => s.serialize_none(),
    }
}
