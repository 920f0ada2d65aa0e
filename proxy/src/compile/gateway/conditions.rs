//! Conditions as the Gateway API writes them: type, status, reason, message and the generation
//! they describe. `lastTransitionTime` is left to the status writer, which knows the clock and
//! what the cluster holds.

use serde_json::{Value, json};

/// One condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub holds: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    pub fn yes(kind: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Condition {
            kind,
            holds: true,
            reason,
            message: message.into(),
        }
    }

    pub fn no(kind: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Condition {
            kind,
            holds: false,
            reason,
            message: message.into(),
        }
    }

    pub fn to_json(&self, generation: Option<i64>) -> Value {
        let mut value = json!({
            "type": self.kind,
            "status": if self.holds { "True" } else { "False" },
            "reason": self.reason,
            "message": self.message,
        });
        if let Some(generation) = generation {
            value["observedGeneration"] = json!(generation);
        }
        value
    }
}

/// A list of conditions as JSON.
pub fn list(conditions: &[Condition], generation: Option<i64>) -> Value {
    Value::Array(conditions.iter().map(|c| c.to_json(generation)).collect())
}
