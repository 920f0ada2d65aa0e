//! htpasswd files, as `htpasswd` writes them and ingress-nginx reads them from a Secret:
//! `user:hash` lines with bcrypt (`$2y$`, `htpasswd -B`), Apache MD5 (`$apr1$`, htpasswd's
//! default) or SHA-1 (`{SHA}`, `htpasswd -s`) hashes.

use std::collections::HashMap;

use base64::Engine;
use md5::{Digest, Md5};
use sha1::Sha1;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hash {
    Bcrypt(String),
    /// Salt and the 22-character digest.
    AprMd5 {
        salt: String,
        digest: String,
    },
    Sha1([u8; 20]),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Htpasswd {
    users: HashMap<String, Hash>,
}

impl Htpasswd {
    /// Parses the file; an error names the line (from 1) and why.
    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = || format!("line {}", n + 1);
            let Some((user, rest)) = line.split_once(':') else {
                return Err(format!("{}: not USER:HASH", at()));
            };
            // Anything after a second colon is a comment.
            let hash = rest.split(':').next().unwrap_or_default();
            let hash = parse_hash(hash)
                .ok_or_else(|| format!(
                    "{}: user {user:?}: the hash is not bcrypt ($2y$, htpasswd -B), Apache MD5 ($apr1$) or SHA-1 ({{SHA}})",
                    at()
                ))?;
            users.insert(user.to_owned(), hash);
        }
        Ok(Htpasswd { users })
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(Hash::Bcrypt(hash)) => bcrypt::verify(password, hash).unwrap_or(false),
            Some(Hash::AprMd5 { salt, digest }) => apr1(password, salt) == *digest,
            Some(Hash::Sha1(digest)) => Sha1::digest(password.as_bytes()).as_slice() == digest,
            None => false,
        }
    }
}

fn parse_hash(hash: &str) -> Option<Hash> {
    if ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        // Checked here so that a damaged hash is refused at configuration, not at login.
        hash.parse::<bcrypt::HashParts>().ok()?;
        return Some(Hash::Bcrypt(hash.to_owned()));
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let (salt, digest) = rest.split_once('$')?;
        if salt.len() > 8 || digest.len() != 22 {
            return None;
        }
        return Some(Hash::AprMd5 {
            salt: salt.to_owned(),
            digest: digest.to_owned(),
        });
    }
    if let Some(encoded) = hash.strip_prefix("{SHA}") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        return Some(Hash::Sha1(bytes.try_into().ok()?));
    }
    None
}

/// The crypt alphabet of MD5-based password hashes.
const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 22-character digest of Apache's MD5 scheme (Poul-Henning Kamp's md5crypt with the magic
/// `$apr1$`): 1,000 rounds of MD5 over the password, the salt and earlier digests.
fn apr1(password: &str, salt: &str) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let pw = password.as_bytes();
    let salt = salt.as_bytes();

    let alternate = Md5::new()
        .chain_update(pw)
        .chain_update(salt)
        .chain_update(pw)
        .finalize();
    let mut context = Md5::new()
        .chain_update(pw)
        .chain_update(MAGIC)
        .chain_update(salt);
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        context.update(&alternate[..n]);
        left -= n;
    }
    let mut bits = pw.len();
    while bits > 0 {
        if bits & 1 == 1 {
            context.update([0u8]);
        } else {
            context.update(&pw[..1]);
        }
        bits >>= 1;
    }
    let mut digest = context.finalize();
    for round in 0..1000 {
        let mut step = Md5::new();
        if round & 1 == 1 {
            step.update(pw);
        } else {
            step.update(digest);
        }
        if round % 3 != 0 {
            step.update(salt);
        }
        if round % 7 != 0 {
            step.update(pw);
        }
        if round & 1 == 1 {
            step.update(digest);
        } else {
            step.update(pw);
        }
        digest = step.finalize();
    }

    let d = digest.as_slice();
    let mut out = String::with_capacity(22);
    let mut put = |value: u32, chars: usize| {
        let mut v = value;
        for _ in 0..chars {
            out.push(char::from(CRYPT64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            (u32::from(d[a]) << 16) | (u32::from(d[b]) << 8) | u32::from(d[c]),
            4,
        );
    }
    put(u32::from(d[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl passwd -apr1 -salt ...`, `htpasswd -bnB` and `htpasswd -bns`.
    const FILE: &str = "\
# users
alice:$apr1$HnKP2iX3$FJCdmMy9esq0Lts7RLg491
bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
";

    #[test]
    fn apache_md5_and_sha1_entries_verify() {
        let file = Htpasswd::parse(FILE).unwrap();
        assert!(file.verify("alice", "wonderland"));
        assert!(!file.verify("alice", "Wonderland"));
        assert!(file.verify("bob", "password"));
        assert!(!file.verify("bob", "passwordx"));
        assert!(!file.verify("carol", "password"));
    }

    #[test]
    fn bcrypt_entries_verify() {
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let file = Htpasswd::parse(&format!("dave:{hash}\n")).unwrap();
        assert!(file.verify("dave", "s3cret"));
        assert!(!file.verify("dave", "s3cre"));
    }

    #[test]
    fn unsupported_or_damaged_lines_are_named() {
        let error =
            Htpasswd::parse("ok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\neve:plaintext\n").unwrap_err();
        assert!(error.starts_with("line 2: user \"eve\""), "{error}");
        assert!(
            Htpasswd::parse("nocolon")
                .unwrap_err()
                .starts_with("line 1")
        );
        assert!(Htpasswd::parse("x:$2y$05$short").is_err());
    }
}
