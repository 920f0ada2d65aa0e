//! Process logging: tracing to stderr, as text or JSON lines. Pingora logs through the `log`
//! crate; those records are bridged into the same output.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogArgs, LogFormat};

/// hickory-server logs every DNS query at info; Gantry counts them in metrics instead. A filter
/// that names `hickory_server` itself overrides this.
const QUIET_BY_DEFAULT: &str = "hickory_server=warn";

pub fn init(args: &LogArgs) -> Result<(), String> {
    EnvFilter::try_new(&args.log)
        .map_err(|e| format!("--log {:?} is not a valid filter: {e}", args.log))?;
    let filter = EnvFilter::try_new(format!("{QUIET_BY_DEFAULT},{}", args.log))
        .map_err(|e| format!("--log {:?} is not a valid filter: {e}", args.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match args.log_format {
        LogFormat::Text => builder.finish().with(NotErrors).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(NotErrors)
            .try_init(),
    };
    result.map_err(|e| format!("logging could not start: {e}"))
}

/// Pingora logs this at error level when a pooled upstream connection is picked while the task
/// that watched it idle has not yet let go of it (`Arc::try_unwrap` fails in
/// `TransportConnector::reused_stream`, pingora-core 0.9): that connection is closed and a new one
/// made, and no request fails. Under load it happened dozens of times a benchmark run. There is
/// nothing wrong for an operator to act on, so it is left out of the log.
const NOT_AN_ERROR: &[&str] = &["failed to acquire reusable stream"];

/// Leaves out of the log the messages of [`NOT_AN_ERROR`].
struct NotErrors;

impl<S: Subscriber> Layer<S> for NotErrors {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let mut message = Message(None);
        event.record(&mut message);
        !message
            .0
            .is_some_and(|text| NOT_AN_ERROR.contains(&text.as_str()))
    }
}

/// An event's `message` field.
struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Keeps the messages of the events that reach it.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut message = Message(None);
            event.record(&mut message);
            if let (Some(text), Ok(mut seen)) = (message.0, self.0.lock()) {
                seen.push(text);
            }
        }
    }

    #[test]
    fn pingora_s_benign_reuse_race_is_left_out_and_its_real_errors_are_not() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(seen.clone())
            .with(NotErrors);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
            tracing::error!(target: "pingora_core::connectors", "Fail to connect to 127.0.0.1:1");
        });
        let seen = seen.0.lock().map(|seen| seen.clone()).unwrap_or_default();
        assert_eq!(seen, ["Fail to connect to 127.0.0.1:1"]);
    }
}
