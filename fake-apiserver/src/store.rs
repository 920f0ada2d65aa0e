//! The fake API server's storage: objects by type, namespace and name, one resourceVersion
//! counter for all of them, the history of changes that watches replay from (which
//! [`Objects::compact`] can cut, as etcd's compaction does), and selectors.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

/// Which type: `(group, plural)`. Versions share storage, as in the real server.
pub type TypeKey = (String, String);

/// One change, as a watch delivers it.
#[derive(Clone, Debug)]
pub struct Change {
    pub revision: u64,
    pub kind: TypeKey,
    pub change: &'static str,
    /// For a MODIFIED: the object before, so that a watch with a selector can tell an object
    /// leaving its selection from one changing within it.
    pub before: Option<Value>,
    pub object: Value,
}

pub struct Objects {
    pub revision: u64,
    objects: BTreeMap<TypeKey, BTreeMap<(String, String), Value>>,
    history: Vec<Arc<Change>>,
    /// Watches may resume from this revision or later; older ones get 410 Gone.
    pub oldest: u64,
    pub changes: broadcast::Sender<Arc<Change>>,
    next_uid: u64,
}

impl Default for Objects {
    fn default() -> Self {
        Objects {
            revision: 1,
            objects: BTreeMap::new(),
            history: Vec::new(),
            oldest: 1,
            changes: broadcast::channel(4096).0,
            next_uid: 1,
        }
    }
}

impl Objects {
    pub fn get(&self, kind: &TypeKey, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(kind)?
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Objects of a type, in one namespace or (with `None`) all.
    pub fn list(&self, kind: &TypeKey, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .get(kind)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|((ns, _), _)| namespace.is_none_or(|want| ns == want))
            .map(|(_, v)| v)
            .collect()
    }

    pub fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
    }

    /// Stores `object` (new or changed), stamping its resourceVersion, and tells watches.
    pub fn put(&mut self, kind: &TypeKey, namespace: &str, name: &str, mut object: Value) -> Value {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.revision.to_string());
        let before = self
            .objects
            .entry(kind.clone())
            .or_default()
            .insert((namespace.to_owned(), name.to_owned()), object.clone());
        let change = if before.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(kind, change, before, object.clone());
        object
    }

    pub fn delete(&mut self, kind: &TypeKey, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .get_mut(kind)?
            .remove(&(namespace.to_owned(), name.to_owned()))?;
        self.revision += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.revision.to_string());
        self.record(kind, "DELETED", None, object.clone());
        Some(object)
    }

    fn record(
        &mut self,
        kind: &TypeKey,
        change: &'static str,
        before: Option<Value>,
        object: Value,
    ) {
        let change = Arc::new(Change {
            revision: self.revision,
            kind: kind.clone(),
            change,
            before,
            object,
        });
        self.history.push(change.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }

    /// Changes after `revision`, or `None` when history no longer reaches back that far.
    pub fn since(&self, revision: u64) -> Option<Vec<Arc<Change>>> {
        if revision < self.oldest {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|c| c.revision > revision)
                .cloned()
                .collect(),
        )
    }

    /// Forgets the history, as etcd's compaction does: a watch resuming from before now gets
    /// 410 Gone and must list again.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest = self.revision;
    }
}

/// A label or field selector: terms that must all hold.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    terms: Vec<Term>,
}

#[derive(Clone, Debug)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        for part in split_terms(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let term = if let Some((key, values)) = part.split_once(" notin ") {
                Term::NotIn(key.trim().to_owned(), set(values)?)
            } else if let Some((key, values)) = part.split_once(" in ") {
                Term::In(key.trim().to_owned(), set(values)?)
            } else if let Some((key, value)) = part.split_once("!=") {
                Term::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("==") {
                Term::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once('=') {
                Term::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some(key) = part.strip_prefix('!') {
                Term::Absent(key.trim().to_owned())
            } else {
                Term::Exists(part.to_owned())
            };
            terms.push(term);
        }
        Ok(Selector { terms })
    }

    /// Whether the labels (or fields) `lookup` finds satisfy every term.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Equals(k, v) => lookup(k).as_deref() == Some(v),
            Term::NotEquals(k, v) => lookup(k).as_deref() != Some(v),
            Term::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Term::NotIn(k, vs) => lookup(k).is_none_or(|x| !vs.contains(&x)),
            Term::Exists(k) => lookup(k).is_some(),
            Term::Absent(k) => lookup(k).is_none(),
        })
    }
}

fn set(values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: {values:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = vec![String::new()];
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = terms.last_mut() {
            last.push(c);
        }
    }
    terms
}

/// What a list or watch asks for: labels and fields.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: Selector,
}

impl Filter {
    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        if let Some(ns) = &self.namespace
            && metadata["namespace"].as_str().unwrap_or_default() != ns
        {
            return false;
        }
        let labels = self
            .labels
            .matches(|key| metadata["labels"][key].as_str().map(str::to_owned));
        let fields = self.fields.matches(|path| {
            let mut node = object;
            for part in path.split('.') {
                node = node.get(part)?;
            }
            match node {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        });
        labels && fields
    }
}

impl Objects {
    /// Deletes every namespaced object in `namespace` (the real server does it in the
    /// background after marking the namespace Terminating).
    pub fn delete_namespace(&mut self, namespace: &str) {
        let doomed: Vec<(TypeKey, String)> = self
            .objects
            .iter()
            .flat_map(|(kind, objects)| {
                objects
                    .keys()
                    .filter(|(ns, _)| ns == namespace)
                    .map(move |(_, name)| (kind.clone(), name.clone()))
            })
            .collect();
        for (kind, name) in doomed {
            self.delete(&kind, namespace, &name);
        }
    }
}
