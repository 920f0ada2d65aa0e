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
