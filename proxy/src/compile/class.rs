//! Which Ingresses are Gantry's: by `spec.ingressClassName` and the IngressClass it names, by the
//! legacy `kubernetes.io/ingress.class` annotation, or, for an Ingress naming no class, by the
//! default IngressClass.
//!
//! An Ingress that names no class is Gantry's when Gantry's IngressClass is the default, and also
//! when no IngressClass at all is marked default: then no other controller claims it either, and a
//! folder of plain Ingresses just works.

use std::collections::HashSet;

use k8s_openapi::api::networking::v1::Ingress;

use crate::config::{Annotations, Store};

/// The `spec.controller` value of Gantry's IngressClasses.
pub const CONTROLLER: &str = "gantry.dev/ingress-controller";
/// The class name that the legacy annotation may use even with no IngressClass object.
pub const DEFAULT_CLASS_NAME: &str = "gantry";
const LEGACY_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The IngressClasses that matter to Gantry.
#[derive(Debug)]
pub struct Classes {
    ours: HashSet<String>,
    /// The class name the legacy annotation may use.
    legacy_name: String,
    any_default: bool,
    default_is_ours: bool,
}

impl Classes {
    /// `only`: with `--ingress-class`, the one class of Gantry's this instance serves (so that
    /// two Gantry deployments can split a cluster's Ingresses); else every IngressClass with
    /// Gantry's controller.
    pub fn new(store: &Store, only: Option<&str>) -> Self {
        let mut ours = HashSet::new();
        let mut any_default = false;
        let mut default_is_ours = false;
        for (name, class) in &store.ingress_classes {
            let controller = class
                .object
                .spec
                .as_ref()
                .and_then(|s| s.controller.as_deref());
            let is_ours =
                controller == Some(CONTROLLER) && only.is_none_or(|only| only == name.as_str());
            let is_default = Annotations::of(&class.object.metadata)
                .get(DEFAULT_CLASS_ANNOTATION)
                .is_some_and(|v| v == "true");
            if is_ours {
                ours.insert(name.clone());
            }
            any_default |= is_default;
            default_is_ours |= is_default && is_ours;
        }
        Classes {
            ours,
            legacy_name: only.unwrap_or(DEFAULT_CLASS_NAME).to_owned(),
            any_default,
            default_is_ours,
        }
    }

    /// `Ok` when the Ingress is Gantry's, else why not.
    pub fn claim(&self, ingress: &Ingress) -> Result<(), String> {
        let legacy = Annotations::of(&ingress.metadata).get(LEGACY_ANNOTATION);
        if let Some(class) = legacy {
            return if self.ours.contains(class) || *class == self.legacy_name {
                Ok(())
            } else {
                Err(format!(
                    "annotation {LEGACY_ANNOTATION} is {class:?}, not one of Gantry's classes"
                ))
            };
        }
        match ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
        {
            Some(class) if self.ours.contains(class) => Ok(()),
            Some(class) => Err(format!(
                "ingressClassName {class:?} is not an IngressClass with controller {CONTROLLER}"
            )),
            None if self.default_is_ours || !self.any_default => Ok(()),
            None => Err("no class, and the default IngressClass is another controller's".into()),
        }
    }
}
