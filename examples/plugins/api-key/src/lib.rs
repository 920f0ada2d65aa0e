//! An example plugin: requests must carry a known API key (`x-api-key`); the upstream gets the
//! key's consumer name (`x-consumer`) instead of the key, and every answer says which consumer
//! it was for. Written with gantry-sdk; see README.md beside it.

use std::collections::BTreeMap;

use gantry_sdk::metrics::Counter;
use gantry_sdk::{ConfigError, Filter, Flow, LocalResponse, Request, Response, export_filter};
use serde::Deserialize;

/// The WasmPlugin's `spec.config`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    /// Consumer name by key.
    keys: BTreeMap<String, String>,
    /// The header that carries the key.
    #[serde(default = "default_header")]
    header: String,
}

fn default_header() -> String {
    "x-api-key".to_owned()
}

struct ApiKey {
    keys: BTreeMap<String, String>,
    header: String,
    refused: Counter,
}

/// What a request keeps for its response: the consumer it was for.
#[derive(Default)]
struct Consumer(Option<String>);

impl Filter for ApiKey {
    type Config = Config;
    type State = Consumer;

    fn configure(config: Config) -> Result<Self, ConfigError> {
        if config.keys.is_empty() {
            return Err(ConfigError::new("keys", "at least one key is required"));
        }
        Ok(ApiKey {
            keys: config.keys,
            header: config.header.to_ascii_lowercase(),
            refused: Counter::define("api_key_refused"),
        })
    }

    fn on_request(&self, request: &mut Request, consumer: &mut Consumer) -> Flow {
        let name = request
            .header(&self.header)
            .and_then(|key| self.keys.get(&key).cloned());
        let Some(name) = name else {
            self.refused.inc();
            return Flow::Respond(
                LocalResponse::new(401)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body("a valid API key is required\n"),
            );
        };
        request.remove_header(&self.header);
        request.set_header("x-consumer", &name);
        consumer.0 = Some(name);
        Flow::Continue
    }

    fn on_response(&self, response: &mut Response, consumer: &mut Consumer) -> Flow {
        if let Some(name) = consumer.0.take() {
            response.set_header("x-consumer", &name);
        }
        Flow::Continue
    }
}

export_filter!(ApiKey);
