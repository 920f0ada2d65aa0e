//! Hostnames as the Gateway API matches them: `*.example.com` covers any name ending in
//! `.example.com` (one label or more, unlike Ingress), and a route's hostnames serve on a
//! listener only where the two intersect (HTTPRoute's `hostnames` documentation).

/// Whether `pattern` (exact or `*.` wildcard) covers the exact name `name`.
pub fn covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
        None => pattern == name,
    }
}

/// The hostnames a route with `route` hostnames serves on a listener with `listener`'s: the
/// more specific of each intersecting pair (`None` for any host). Empty when none intersect.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<Option<String>> {
    let Some(listener) = listener else {
        if route.is_empty() {
            return vec![None];
        }
        return route.iter().map(|h| Some(h.clone())).collect();
    };
    if route.is_empty() {
        return vec![Some(listener.to_owned())];
    }
    let mut served = Vec::new();
    for hostname in route {
        let narrower = match (listener.starts_with("*."), hostname.starts_with("*.")) {
            (false, false) => (listener == hostname).then_some(listener),
            (true, false) => covers(listener, hostname).then_some(hostname.as_str()),
            (false, true) => covers(hostname, listener).then_some(listener),
            (true, true) => {
                if hostname.ends_with(&listener[1..]) {
                    Some(hostname.as_str())
                } else if listener.ends_with(&hostname[1..]) {
                    Some(listener)
                } else {
                    None
                }
            }
        };
        if let Some(name) = narrower {
            let name = Some(name.to_owned());
            if !served.contains(&name) {
                served.push(name);
            }
        }
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(listener: Option<&str>, route: &[&str]) -> Vec<String> {
        let route: Vec<String> = route.iter().map(|h| h.to_string()).collect();
        intersect(listener, &route)
            .into_iter()
            .map(|h| h.unwrap_or_else(|| "(any)".to_owned()))
            .collect()
    }

    /// The cases of the conformance suite's HTTPRouteHostnameIntersection manifests.
    #[test]
    fn hostnames_intersect_as_the_spec_says() {
        let specific = Some("very.specific.com");
        let wildcard = Some("*.wildcard.io");
        assert_eq!(
            names(
                specific,
                &[
                    "non.matching.com",
                    "*.nonmatchingwildcard.io",
                    "very.specific.com"
                ]
            ),
            ["very.specific.com"]
        );
        assert_eq!(
            names(
                wildcard,
                &[
                    "non.matching.com",
                    "wildcard.io",
                    "foo.wildcard.io",
                    "foo.bar.wildcard.io"
                ]
            ),
            ["foo.wildcard.io", "foo.bar.wildcard.io"]
        );
        assert_eq!(
            names(specific, &["non.matching.com", "*.specific.com"]),
            ["very.specific.com"]
        );
        assert_eq!(
            names(wildcard, &["*.bar.wildcard.io"]),
            ["*.bar.wildcard.io"]
        );
        assert_eq!(
            names(Some("*.anotherwildcard.io"), &["*.wildcard.io"]),
            Vec::<String>::new()
        );
        assert_eq!(names(None, &[]), ["(any)"]);
        assert_eq!(names(wildcard, &[]), ["*.wildcard.io"]);
        assert!(!covers("*.wildcard.io", "wildcard.io"));
        assert!(covers("*.wildcard.io", "a.b.wildcard.io"));
    }
}
