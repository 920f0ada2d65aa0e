//! Process logging: tracing to stderr, as text or JSON lines. Pingora logs through the `log`
//! crate; those records are bridged into the same output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("logging could not start: {e}"))
}
