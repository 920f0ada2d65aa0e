//! The subcommands, one file each, as `main` dispatches them: [`run`] (with its drain on
//! SIGTERM, [`drain`]), [`validate`], [`status`], [`endpoints`], [`plugin_test`], [`convert`],
//! [`crds`] and [`cli_reference`]; [`admin_client`] is how `status` and `endpoints` ask a
//! running Gantry.

pub mod admin_client;
pub mod cli_reference;
pub mod convert;
pub mod crds;
pub mod drain;
pub mod endpoints;
pub mod plugin_test;
pub mod run;
pub mod status;
pub mod validate;
