//! Reading a plugin's configuration: JSON into the filter's type, with errors that name the
//! field (`limits[0].per: unknown variant ...`), so that Gantry can report them on the
//! WasmPlugin.

use serde::de::DeserializeOwned;

/// Why a configuration was refused. `field` is a path into the configuration (`limits[0].per`),
/// empty for the configuration as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error for a field inside `parent` (`rules[2]` + `clients[0]`).
    pub fn within(self, parent: &str) -> Self {
        let field = match (parent.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => parent.to_owned(),
            (false, false) if self.field.starts_with('[') => format!("{parent}{}", self.field),
            (false, false) => format!("{parent}.{}", self.field),
        };
        ConfigError { field, ..self }
    }
}

impl std::fmt::Display for ConfigError {
    /// The form Gantry's host recognises in a refusing plugin's log, to report the field:
    /// ``invalid configuration at `FIELD`: REASON``.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid configuration: {}", self.reason)
        } else {
            write!(
                f,
                "invalid configuration at `{}`: {}",
                self.field, self.reason
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Deserializes `bytes` (JSON; empty means `{}`) into `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ConfigError::new(field, strip_position(&e.into_inner().to_string()))
    })
}

/// serde_json ends its messages with "at line 1 column 57", which means nothing to someone who
/// wrote YAML.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limit {
        #[allow(dead_code)]
        requests: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        #[allow(dead_code)]
        limits: Vec<Limit>,
    }

    #[test]
    fn errors_name_the_field_without_json_positions() {
        let error = parse::<Config>(br#"{"limits": [{"requests": "ten"}]}"#).unwrap_err();
        assert_eq!(error.field, "limits[0].requests");
        assert_eq!(
            error.reason, "invalid type: string \"ten\", expected u32",
            "{error}"
        );
        let error = parse::<Config>(br#"{"limit": []}"#).unwrap_err();
        assert_eq!(error.field, "limit");
        assert!(error.reason.starts_with("unknown field `limit`"), "{error}");
    }

    #[test]
    fn an_empty_configuration_is_an_empty_object() {
        assert!(parse::<Config>(b"").is_ok());
        assert!(parse::<Config>(b" \n").is_ok());
    }

    #[test]
    fn nested_errors_get_their_parent() {
        let e = ConfigError::new("clients[1]", "bad CIDR").within("rules[0]");
        assert_eq!(e.field, "rules[0].clients[1]");
        let e = ConfigError::new("[1]", "bad CIDR").within("clients");
        assert_eq!(e.field, "clients[1]");
        assert_eq!(
            e.to_string(),
            "invalid configuration at `clients[1]`: bad CIDR"
        );
    }
}
