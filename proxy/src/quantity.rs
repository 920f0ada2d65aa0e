//! Quantities of bytes as Kubernetes writes them: `64Mi`, `1Gi`, `500Ki`, `2k`, `1000000`.

/// `64Mi`, `1Gi`, `500Ki`, `1000000`, as Kubernetes quantities of bytes.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let scale: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(format!("{text:?} is not a quantity of bytes (like 64Mi)")),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a quantity of bytes (like 64Mi)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_bytes("64Mi"), Ok(64 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("2k"), Ok(2000));
        assert!(parse_bytes("64MB").is_err());
        assert!(parse_bytes("Mi").is_err());
    }
}
