//! Response compression on a route: which codings Gantry offers, in its order of preference
//! (zstd, then brotli, then gzip unless the policy says), the smallest response worth
//! compressing, and the media types compressed. The coding is the first of Gantry's that the
//! client's `Accept-Encoding` accepts (RFC 9110 section 12.5.3: a coding with `q=0` is refused,
//! `*` stands for any not listed); the streaming itself is Pingora's.

use serde::Serialize;

/// A content coding Gantry compresses with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Coding {
    #[serde(rename = "zstd")]
    Zstd,
    #[serde(rename = "br")]
    Brotli,
    #[serde(rename = "gzip")]
    Gzip,
}

impl Coding {
    /// Its name in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The level it compresses at: fast ones, as nginx's and ingress-nginx's defaults are
    /// (gzip 1 there; brotli 4; zstd 3, its own default).
    pub fn level(self) -> u32 {
        match self {
            Coding::Zstd => 3,
            Coding::Brotli => 4,
            Coding::Gzip => 1,
        }
    }
}

/// A route's compression.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compression {
    /// Offered in this order of preference.
    pub codings: Vec<Coding>,
    /// Responses whose `Content-Length` is below this are sent as they are.
    pub min_length: u64,
    /// Media types compressed (`text/html`, or `text/*` for a whole type); empty: any text-like
    /// type Pingora's compressor takes.
    pub content_types: Vec<String>,
}

impl Compression {
    /// The coding for a request with this `Accept-Encoding`, if any.
    pub fn choose(&self, accept_encoding: Option<&[u8]>) -> Option<Coding> {
        let accepted = std::str::from_utf8(accept_encoding?).ok()?;
        let mut wildcard = None;
        let mut listed: Vec<(&str, bool)> = Vec::new();
        for item in accepted.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if name == "*" {
                wildcard = Some(!refused);
            } else if !name.is_empty() {
                listed.push((name, !refused));
            }
        }
        self.codings.iter().copied().find(|coding| {
            match listed
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(coding.token()))
            {
                Some((_, accepted)) => *accepted,
                None => wildcard.unwrap_or(false),
            }
        })
    }

    /// Whether a response of this type and length is compressed.
    pub fn applies(&self, content_type: Option<&str>, length: Option<u64>) -> bool {
        if length.is_some_and(|l| l < self.min_length) {
            return false;
        }
        if self.content_types.is_empty() {
            return true;
        }
        let Some(media) = content_type.map(|t| t.split(';').next().unwrap_or("").trim()) else {
            return false;
        };
        self.content_types
            .iter()
            .any(|wanted| match wanted.strip_suffix("/*") {
                Some(kind) => media
                    .split_once('/')
                    .is_some_and(|(k, _)| k.eq_ignore_ascii_case(kind)),
                None => media.eq_ignore_ascii_case(wanted),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Compression {
        Compression {
            codings: vec![Coding::Zstd, Coding::Brotli, Coding::Gzip],
            min_length: 256,
            content_types: vec!["text/*".into(), "application/json".into()],
        }
    }

    #[test]
    fn the_first_coding_of_ours_the_client_accepts_wins() {
        let c = all();
        let choose = |ae: &str| c.choose(Some(ae.as_bytes()));
        assert_eq!(choose("gzip, deflate, br"), Some(Coding::Brotli));
        assert_eq!(choose("gzip"), Some(Coding::Gzip));
        assert_eq!(choose("zstd;q=0, br;q=0.5, gzip"), Some(Coding::Brotli));
        assert_eq!(choose("*"), Some(Coding::Zstd));
        assert_eq!(choose("*;q=0, gzip"), Some(Coding::Gzip));
        assert_eq!(choose("identity"), None);
        assert_eq!(choose("GZIP"), Some(Coding::Gzip));
        assert_eq!(c.choose(None), None);
    }

    #[test]
    fn small_responses_and_other_types_are_left_alone() {
        let c = all();
        assert!(c.applies(Some("text/html; charset=utf-8"), Some(1000)));
        assert!(c.applies(Some("application/json"), None));
        assert!(!c.applies(Some("application/json"), Some(100)));
        assert!(!c.applies(Some("image/png"), Some(100_000)));
        assert!(!c.applies(None, Some(100_000)));
    }
}
