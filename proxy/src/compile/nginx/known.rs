//! Every annotation ingress-nginx v1.15 reads, by what Gantry does with it: refuses (raw nginx
//! configuration), honours (see the parent module), or reports as not honoured.

/// Raw nginx configuration: nothing in Gantry can run it.
pub(super) const SNIPPETS: [&str; 5] = [
    "configuration-snippet",
    "server-snippet",
    "auth-snippet",
    "modsecurity-snippet",
    "stream-snippet",
];

/// Honoured (see the module's comment).
pub(crate) const HONOURED: [&str; 82] = [
    "limit-rps",
    "limit-rpm",
    "limit-burst-multiplier",
    "limit-whitelist",
    "limit-allowlist",
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "rewrite-target",
    "use-regex",
    "ssl-redirect",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "load-balance",
    "upstream-hash-by",
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-samesite",
    "session-cookie-secure",
    "session-cookie-change-on-failure",
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
    "proxy-body-size",
    "proxy-next-upstream",
    "proxy-next-upstream-timeout",
    "proxy-next-upstream-tries",
    "limit-connections",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "app-root",
    "from-to-www-redirect",
    "proxy-send-timeout",
    "upstream-vhost",
    "x-forwarded-prefix",
    "server-alias",
    "service-upstream",
    "custom-http-errors",
    "default-backend",
    "auth-url",
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "mirror-target",
    "mirror-host",
    "mirror-request-body",
    "ssl-passthrough",
    "backend-protocol",
    "proxy-ssl-secret",
    "proxy-ssl-verify",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-protocols",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
];

/// Every other annotation ingress-nginx v1.15 reads (from its annotation parsers).
pub(super) const NOT_HONOURED: [&str; 51] = [
    "affinity-canary-behavior",
    "auth-always-set-cookie",
    "auth-cache-duration",
    "auth-cache-key",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-share-vars",
    "auth-keepalive-timeout",
    "auth-proxy-set-headers",
    "auth-tls-match-cn",
    "client-body-buffer-size",
    "connection-proxy-header",
    "custom-headers",
    "disable-proxy-intercept-errors",
    "enable-access-log",
    "enable-global-auth",
    "enable-modsecurity",
    "enable-opentelemetry",
    "enable-owasp-core-rules",
    "enable-rewrite-log",
    "fastcgi-index",
    "fastcgi-params-configmap",
    "force-ssl-redirect",
    "http2-push-preload",
    "limit-rate",
    "limit-rate-after",
    "modsecurity-transaction-id",
    "opentelemetry-operation-name",
    "opentelemetry-trust-incoming-span",
    "preserve-trailing-slash",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-buffers-number",
    "proxy-busy-buffers-size",
    "proxy-cookie-domain",
    "proxy-cookie-path",
    "proxy-http-version",
    "proxy-max-temp-file-size",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-request-buffering",
    "proxy-ssl-ciphers",
    "proxy-ssl-verify-depth",
    "relative-redirects",
    "satisfy",
    "session-cookie-conditional-samesite-none",
    "ssl-ciphers",
    "ssl-prefer-server-ciphers",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "use-port-in-redirects",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_annotation_is_classified_once() {
        let mut all: Vec<&str> = SNIPPETS
            .iter()
            .chain(&HONOURED)
            .chain(&NOT_HONOURED)
            .copied()
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "an annotation is in two lists");
        // ingress-nginx v1.15 reads 136 annotations, and two aliases.
        assert_eq!(count, 138);
    }
}
