//! Session affinity by cookie, as ingress-nginx defines it (`affinity: cookie` and the
//! `affinity-mode` and `session-cookie-*` annotations). In `balanced` mode (the default) the
//! cookie holds a session key that is hashed onto the group's ring, so that scaling up moves a
//! share of the sessions to the new endpoints; in `persistent` mode it names the endpoint
//! itself (by a hash of its address, never the address), and a session stays there for as long
//! as the endpoint does. A cookie naming an endpoint that is gone is rebalanced: the request
//! goes elsewhere and gets a new cookie, never an error.

use std::net::SocketAddr;

/// How sessions follow endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Balanced,
    Persistent,
}

/// The cookie's `SameSite` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    None,
    Lax,
    Strict,
}

/// A route's sticky sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affinity {
    /// `session-cookie-name`, `INGRESSCOOKIE` by default.
    pub name: String,
    pub mode: Mode,
    /// `session-cookie-path`; the route's path when unset.
    pub path: Option<String>,
    pub domain: Option<String>,
    /// `session-cookie-max-age`, seconds.
    pub max_age: Option<u64>,
    /// `session-cookie-expires`, seconds from now.
    pub expires: Option<u64>,
    pub same_site: Option<SameSite>,
    pub secure: bool,
    /// `session-cookie-change-on-failure`: a session whose endpoint failed moves to the one that
    /// answered instead.
    pub change_on_failure: bool,
}

impl Default for Affinity {
    fn default() -> Self {
        Affinity {
            name: "INGRESSCOOKIE".to_owned(),
            mode: Mode::Balanced,
            path: None,
            domain: None,
            max_age: None,
            expires: None,
            same_site: None,
            secure: false,
            change_on_failure: false,
        }
    }
}

/// What names an endpoint in a persistent cookie: a hash of its address.
pub fn endpoint_id(addr: &SocketAddr) -> u64 {
    xxhash_rust::xxh3::xxh3_64(addr.to_string().as_bytes())
}

/// The ring position of a balanced cookie's session key.
pub fn session_hash(value: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(value)
}

impl Affinity {
    /// The request's cookie value, if it sent one.
    pub fn value<'r>(&self, cookie_field: Option<&'r [u8]>) -> Option<&'r [u8]> {
        cookie_field?.split(|b| *b == b';').find_map(|pair| {
            let value = pair
                .trim_ascii()
                .strip_prefix(self.name.as_bytes())?
                .strip_prefix(b"=")?;
            (!value.is_empty()).then_some(value)
        })
    }

    /// The request's key: in persistent mode the endpoint its cookie names, in balanced mode
    /// the ring position of its session. `None` without a usable cookie.
    pub fn key(&self, cookie_field: Option<&[u8]>) -> Option<u64> {
        let value = self.value(cookie_field)?;
        match self.mode {
            Mode::Persistent => {
                let text = std::str::from_utf8(value).ok()?;
                u64::from_str_radix(text, 16).ok()
            }
            Mode::Balanced => Some(session_hash(value)),
        }
    }

    /// The `Set-Cookie` value for `value` on a route whose path is `route_path`. `now` is the
    /// time since the Unix epoch, for `Expires`.
    pub fn set_cookie(&self, value: &str, route_path: &str, now: std::time::Duration) -> String {
        use std::fmt::Write;
        let path = self.path.as_deref().unwrap_or(route_path);
        let mut cookie = format!("{}={value}; Path={path}", self.name);
        if let Some(domain) = &self.domain {
            let _ = write!(cookie, "; Domain={domain}");
        }
        if let Some(seconds) = self.expires {
            let at = std::time::UNIX_EPOCH + now + std::time::Duration::from_secs(seconds);
            let _ = write!(cookie, "; Expires={}", httpdate(at));
        }
        if let Some(seconds) = self.max_age {
            let _ = write!(cookie, "; Max-Age={seconds}");
        }
        match self.same_site {
            Some(SameSite::None) => cookie.push_str("; SameSite=None"),
            Some(SameSite::Lax) => cookie.push_str("; SameSite=Lax"),
            Some(SameSite::Strict) => cookie.push_str("; SameSite=Strict"),
            None => {}
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        cookie.push_str("; HttpOnly");
        cookie
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate(at: std::time::SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_read_by_mode() {
        let persistent = Affinity {
            mode: Mode::Persistent,
            ..Affinity::default()
        };
        let field = Some(&b"a=1; INGRESSCOOKIE=ff; b=2"[..]);
        assert_eq!(persistent.key(field), Some(0xff));
        assert_eq!(persistent.key(Some(b"INGRESSCOOKIE=zz")), None);
        assert_eq!(persistent.key(Some(b"INGRESSCOOKIE2=ff")), None);
        let balanced = Affinity::default();
        assert_eq!(balanced.key(field), Some(session_hash(b"ff")));
        assert_eq!(balanced.key(None), None);
    }

    #[test]
    fn set_cookie_carries_the_attributes_asked_for() {
        let affinity = Affinity {
            name: "route".to_owned(),
            max_age: Some(172800),
            expires: Some(60),
            same_site: Some(SameSite::None),
            secure: true,
            domain: Some("example.test".to_owned()),
            ..Affinity::default()
        };
        let cookie = affinity.set_cookie("abc", "/app", std::time::Duration::from_secs(0));
        assert_eq!(
            cookie,
            "route=abc; Path=/app; Domain=example.test; Expires=Thu, 01 Jan 1970 00:01:00 GMT; \
             Max-Age=172800; SameSite=None; Secure; HttpOnly"
        );
    }
}
