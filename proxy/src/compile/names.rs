//! Validation of the names and paths the Ingress API constrains, with the API server's rules, so
//! that the folder mode refuses what `kubectl apply` would.

/// Checks an Ingress rule host: a lower-case DNS name, optionally starting with `*.`; never an IP.
pub fn check_host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{host:?} is an IP address; a host must be a DNS name"
        ));
    }
    if name.contains('*') {
        return Err(format!(
            "{host:?}: a wildcard is only allowed as the whole first label (*.example.com)"
        ));
    }
    check_dns_subdomain(name).map_err(|reason| format!("{host:?} is not a valid host: {reason}"))
}

/// RFC 1123 subdomain as Kubernetes checks it: lower-case alphanumerics, `-` and `.`, labels of
/// at most 63 characters starting and ending alphanumeric, 253 characters in all.
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        let bytes = label.as_bytes();
        let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !bytes.iter().all(|&b| edge_ok(b) || b == b'-') {
            return Err(format!(
                "label {label:?} may hold only lower-case letters, digits and '-'"
            ));
        }
        if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
            return Err(format!(
                "label {label:?} must start and end with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// Checks an Exact or Prefix path as the API server does.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} must be an absolute path (start with '/')"
        ));
    }
    for bad in ["//", "/./", "/../", "%2f", "%2F", "#"] {
        if path.contains(bad) {
            return Err(format!("{path:?} must not contain {bad:?}"));
        }
    }
    for bad in ["/..", "/."] {
        if path.ends_with(bad) {
            return Err(format!("{path:?} must not end with {bad:?}"));
        }
    }
    Ok(())
}

/// The key a Prefix path is stored under: without its trailing `/`, the root staying `/`.
pub fn prefix_key(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(check_host("foo.example.com").is_ok());
        assert!(check_host("*.example.com").is_ok());
        assert!(check_host("localhost").is_ok());
        assert!(check_host("Foo.example.com").is_err());
        assert!(check_host("foo.*.com").is_err());
        assert!(check_host("*foo.com").is_err());
        assert!(check_host("10.0.0.1").is_err());
        assert!(check_host("-a.com").is_err());
        assert!(check_host("a..com").is_err());
        assert!(check_host("a_b.com").is_err());
    }

    #[test]
    fn paths() {
        assert!(check_path("/").is_ok());
        assert!(check_path("/foo/bar/").is_ok());
        assert!(check_path("foo").is_err());
        assert!(check_path("/foo//bar").is_err());
        assert!(check_path("/foo/../bar").is_err());
        assert!(check_path("/foo/..").is_err());
        assert!(check_path("/a%2Fb").is_err());
    }

    #[test]
    fn prefix_keys() {
        assert_eq!(prefix_key("/"), "/");
        assert_eq!(prefix_key("/foo/"), "/foo");
        assert_eq!(prefix_key("/foo"), "/foo");
    }
}
