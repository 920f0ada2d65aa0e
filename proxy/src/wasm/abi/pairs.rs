//! The ABI's serialization of header maps: a u32 count, then a (u32 key length, u32 value length)
//! pair for each entry, then each key and value followed by a NUL byte; little-endian.

/// Serializes `(name, value)` pairs.
pub fn serialize<'a, I>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let count = pairs.clone().into_iter().count();
    let data: usize = pairs
        .clone()
        .into_iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + count * 8 + data);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// A map's entries as bytes, in order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a serialized map could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed header map: {0}")]
pub struct MalformedPairs(&'static str);

/// Reads serialized pairs back. Tolerates a missing NUL after the last value, as some SDKs omit
/// it.
pub fn deserialize(bytes: &[u8]) -> Result<Pairs, MalformedPairs> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> Result<usize, MalformedPairs> {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
            .ok_or(MalformedPairs("truncated sizes"))
    };
    let count = word(0)?;
    if count > bytes.len() / 8 {
        return Err(MalformedPairs("count larger than the data"));
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((word(4 + i * 8)?, word(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut take = |len: usize| -> Result<Vec<u8>, MalformedPairs> {
        let value = bytes
            .get(at..at + len)
            .ok_or(MalformedPairs("truncated data"))?
            .to_vec();
        at += len + 1;
        Ok(value)
    };
    let mut pairs = Vec::with_capacity(count);
    for (key_len, value_len) in sizes {
        let key = take(key_len)?;
        let value = take(value_len)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b":path", b"/"), (b"x-a", b""), (b"k", b"value")];
        let bytes = serialize(pairs.iter().copied());
        let back = deserialize(&bytes).unwrap();
        let back: Vec<(&[u8], &[u8])> = back.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(back, pairs);
    }

    #[test]
    fn layout_matches_the_abi() {
        let bytes = serialize([(&b"a"[..], &b"bc"[..])]);
        assert_eq!(bytes, b"\x01\0\0\0\x01\0\0\0\x02\0\0\0a\0bc\0");
    }

    #[test]
    fn refuses_truncated_input() {
        assert!(deserialize(b"\x05\0\0\0").is_err());
        assert!(deserialize(b"\x01\0\0\0\x09\0\0\0\x00\0\0\0ab").is_err());
    }
}
