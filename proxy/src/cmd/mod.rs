//! The subcommands, one file each, as `main` dispatches them: [`run`] (with its drain on
//! SIGTERM, [`drain`]), [`validate`], [`status`], [`plugin_test`], [`crds`] and
//! [`cli_reference`].

pub mod cli_reference;
pub mod crds;
pub mod drain;
pub mod plugin_test;
pub mod run;
pub mod status;
pub mod validate;
