//! An object's annotations, read one way by every pass: a value by key, the first of several
//! aliases, a comma-separated list, those under a prefix, and the field path a problem names.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotations of one object (none when it has none).
#[derive(Clone, Copy, Debug)]
pub struct Annotations<'a>(Option<&'a BTreeMap<String, String>>);

impl<'a> Annotations<'a> {
    pub fn of(metadata: &'a ObjectMeta) -> Self {
        Annotations(metadata.annotations.as_ref())
    }

    /// The value of `key`, as written.
    pub fn get(self, key: &str) -> Option<&'a str> {
        self.0?.get(key).map(String::as_str)
    }

    pub fn has(self, key: &str) -> bool {
        self.0.is_some_and(|a| a.contains_key(key))
    }

    /// The first of `keys` that is set, and its value: for an annotation known by several names
    /// (Gantry's and cert-manager's), the first name wins.
    pub fn first(self, keys: &[&'static str]) -> Option<(&'static str, &'a str)> {
        keys.iter()
            .find_map(|&key| self.get(key).map(|value| (key, value)))
    }

    /// The items of a comma-separated value, trimmed, without empty ones.
    pub fn list(self, key: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        self.get(key)
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty())
    }

    /// Every annotation, in key order.
    pub fn iter(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The annotations whose key starts with `prefix`, keyed by the rest of it.
    pub fn with_prefix(self, prefix: &str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.iter()
            .filter_map(move |(key, value)| Some((key.strip_prefix(prefix)?, value)))
    }
}

/// The field path of annotation `key`, as kubectl spells it.
pub fn field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn the_first_alias_set_wins_and_lists_drop_empty_items() {
        let meta = metadata(&[
            ("cert-manager.io/issuer", "theirs"),
            ("gantry.dev/issuer", "ours"),
            ("hosts", " a.example , ,b.example,"),
        ]);
        let a = Annotations::of(&meta);
        assert_eq!(
            a.first(&["gantry.dev/issuer", "cert-manager.io/issuer"]),
            Some(("gantry.dev/issuer", "ours"))
        );
        assert_eq!(
            a.first(&["x", "cert-manager.io/issuer"]),
            Some(("cert-manager.io/issuer", "theirs"))
        );
        assert_eq!(
            a.list("hosts").collect::<Vec<_>>(),
            ["a.example", "b.example"]
        );
        assert_eq!(a.list("absent").count(), 0);
        assert_eq!(
            a.with_prefix("gantry.dev/").collect::<Vec<_>>(),
            [("issuer", "ours")]
        );
    }

    #[test]
    fn an_object_without_annotations_has_none() {
        let meta = ObjectMeta::default();
        let a = Annotations::of(&meta);
        assert!(!a.has("x"));
        assert_eq!(a.get("x"), None);
        assert_eq!(a.iter().count(), 0);
    }
}
