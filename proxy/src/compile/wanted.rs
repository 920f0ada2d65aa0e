//! The plugins to load, worked out from the store before the loader compiles them: every
//! WasmPlugin (with the Secret a `builtin:acl` names read into its configuration), every
//! plugin an Ingress's ingress-nginx annotations ask for and every HTTPRoute CORS filter.
//! Pure, like the rest of `compile`.

use serde_json::Value;

use super::class::Classes;
use super::nginx::{HtpasswdForm, htpasswd, nginx_settings};
use crate::config::crd::WasmPluginSpec;
use crate::config::{Kind, NamespacedName, ObjectRef, Store};
use crate::problem::FieldError;
use crate::wasm::WantedPlugin;

pub fn wanted_plugins(store: &Store) -> Vec<WantedPlugin> {
    let mut wanted = Vec::new();
    for (key, stored) in &store.wasm_plugins {
        let mut spec = stored.object.spec.clone();
        let problem = resolve_secrets(store, key, &mut spec).err();
        wanted.push(WantedPlugin {
            key: key.clone(),
            spec,
            file: stored.file.clone(),
            object: ObjectRef::new(Kind::WasmPlugin, key),
            field: None,
            problem,
        });
    }
    // Every class of Gantry's: loading a module that ends up unused costs little.
    let classes = Classes::new(store, None);
    for (key, stored) in &store.ingresses {
        if classes.claim(&stored.object).is_err() {
            continue;
        }
        for derived in nginx_settings(key, &stored.object, store).plugins {
            wanted.push(WantedPlugin {
                key: derived.key,
                spec: derived.spec,
                file: stored.file.clone(),
                object: ObjectRef::new(Kind::Ingress, key),
                field: Some(derived.field),
                problem: None,
            });
        }
    }
    for (key, stored) in &store.http_routes {
        for (plugin, spec, field) in super::gateway::cors::wanted(key, &stored.object) {
            wanted.push(WantedPlugin {
                key: plugin,
                spec,
                file: stored.file.clone(),
                object: ObjectRef::new(Kind::HttpRoute, key),
                field: Some(field),
                problem: None,
            });
        }
    }
    wanted
}

/// `builtin:acl` may name a Secret (`basicAuth.secretName`, with `secretType` `auth-file`, the
/// default, or `auth-map`) instead of giving htpasswd lines: they are read from it here, so the
/// plugin never needs to reach the Secret itself.
fn resolve_secrets(
    store: &Store,
    key: &NamespacedName,
    spec: &mut WasmPluginSpec,
) -> Result<(), FieldError> {
    if spec.module != "builtin:acl" {
        return Ok(());
    }
    let Some(Value::Object(auth)) = spec.config.as_mut().and_then(|c| c.get_mut("basicAuth"))
    else {
        return Ok(());
    };
    let Some(name) = auth.remove("secretName") else {
        return Ok(());
    };
    let field = |f: &str| format!("spec.config.basicAuth.{f}");
    let Value::String(name) = name else {
        return Err(FieldError::new(
            field("secretName"),
            "must be a Secret's name",
        ));
    };
    let form = match auth.remove("secretType") {
        None => HtpasswdForm::File,
        Some(Value::String(t)) if t == "auth-file" => HtpasswdForm::File,
        Some(Value::String(t)) if t == "auth-map" => HtpasswdForm::Map,
        Some(other) => {
            return Err(FieldError::new(
                field("secretType"),
                format!("{other} is not \"auth-file\" or \"auth-map\""),
            ));
        }
    };
    if auth.contains_key("htpasswd") {
        return Err(FieldError::new(
            field("secretName"),
            "give htpasswd or secretName, not both",
        ));
    }
    let lines = htpasswd(store, &NamespacedName::new(&key.namespace, &name), form)
        .map_err(|reason| FieldError::new(field("secretName"), reason))?;
    auth.insert("htpasswd".to_owned(), Value::String(lines));
    Ok(())
}
