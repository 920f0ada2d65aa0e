//! The `gantry` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use gantry::cli::{
    Cli, Command, ConvertCommand, EndpointsCommand, LogArgs, LogFormat, PluginCommand,
};

/// Pingora allocates many small objects per request; mimalloc serves them faster than glibc's
/// malloc and hands memory back after load (see bench/README.md for the measurements). It is
/// built without transparent huge pages (`no_thp`): advised huge pages over its arenas were split
/// by every purge and faulted in afresh, 2 MiB zeroed by the kernel at a time, which was most of
/// the CPU of new TLS connections.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => match gantry::cmd::crds::render() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gantry crds: {e}");
                ExitCode::from(2)
            }
        },
        Command::CliReference => {
            print!("{}", gantry::cmd::cli_reference::render());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("gantry {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Validate(args) => {
            let quiet = LogArgs {
                log_format: LogFormat::Text,
                log: "warn".to_owned(),
            };
            let _ = gantry::logging::init(&quiet);
            match gantry::cmd::validate::validate(&args.dir, &mut std::io::stdout()) {
                Ok(0) => {
                    eprintln!("{}: no problems", args.dir.display());
                    ExitCode::SUCCESS
                }
                Ok(n) => {
                    eprintln!("{}: {n} problem(s)", args.dir.display());
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("gantry validate: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Status(args) => {
            match gantry::cmd::status::status(args.admin_addr, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gantry status: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Endpoints(args) => {
            let result = match &args.command {
                None => gantry::cmd::endpoints::list(args.admin_addr, &mut std::io::stdout()),
                Some(EndpointsCommand::Set(set)) => gantry::cmd::endpoints::set(
                    args.admin_addr,
                    set.token.as_deref(),
                    &set.upstream,
                    &set.endpoint,
                    set.state.as_deref(),
                    set.weight,
                    &mut std::io::stdout(),
                ),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gantry endpoints: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Convert(ConvertCommand::Ingress(args)) => {
            let options = gantry::convert::Options {
                gateway_class: args.gateway_class.clone(),
                gateway_name: args.gateway_name.clone(),
            };
            let mut out = std::io::stdout();
            let mut err = std::io::stderr();
            match gantry::cmd::convert::ingress(&args.dir, &options, &mut out, &mut err) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("gantry convert ingress: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Plugin(PluginCommand::Test(args)) => {
            let quiet = LogArgs {
                log_format: LogFormat::Text,
                log: "warn".to_owned(),
            };
            let _ = gantry::logging::init(&quiet);
            match gantry::cmd::plugin_test::plugin_test(
                &args.plugin,
                &args.cases,
                &mut std::io::stdout(),
            ) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("gantry plugin test: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run(args) => {
            if let Err(e) = gantry::logging::init(&args.log) {
                eprintln!("gantry: {e}");
                return ExitCode::from(2);
            }
            match gantry::cmd::run::run(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("gantry: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
