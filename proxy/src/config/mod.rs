//! Configuration input: the resource types Gantry reads, the sources that read them, and the
//! store they fill.

pub mod annotations;
pub mod crd;
pub mod folder;
pub mod gateway;
pub mod kube;
pub mod object;
pub mod store;

pub use annotations::Annotations;
pub use object::{DEFAULT_NAMESPACE, Kind, Object, ObjectRef, TLS_SECRET_TYPE};
pub use store::{NamespacedName, Store, Stored};
