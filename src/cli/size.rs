//! Sizes on the command line and in the config file: `10G`, `512M`, `1024` (bytes), with binary K/M/G/T suffixes as `du -h` prints them.

pub fn parse(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let digits = upper.trim_end_matches("IB").trim_end_matches('B');
    let (number, shift) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 10),
        Some('M') => (&digits[..digits.len() - 1], 20),
        Some('G') => (&digits[..digits.len() - 1], 30),
        Some('T') => (&digits[..digits.len() - 1], 40),
        _ => (digits, 0),
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("{text:?} is not a size: write bytes, or a number with K, M, G or T (e.g. 10G)")
    })?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "{text:?} is not a size: it must be a positive number"
        ));
    }
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// `bytes` as a whole number of the largest binary unit that divides it (`10G`), or `None` when no unit does.
pub fn format_exact(bytes: u64) -> Option<String> {
    [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')]
        .into_iter()
        .find(|&(shift, _)| bytes != 0 && bytes % (1u64 << shift) == 0)
        .map(|(shift, unit)| format!("{}{unit}", bytes >> shift))
}

#[cfg(test)]
mod tests {
    use super::{format_exact, parse};

    #[test]
    fn exact_sizes_print_with_their_unit() {
        assert_eq!(format_exact(10 << 30).as_deref(), Some("10G"));
        assert_eq!(format_exact(1536 << 20).as_deref(), Some("1536M"));
        assert_eq!(format_exact(1000), None);
        assert_eq!(format_exact(0), None);
    }

    #[test]
    fn suffixes_are_binary() {
        assert_eq!(parse("1024"), Ok(1024));
        assert_eq!(parse("4K"), Ok(4096));
        assert_eq!(parse("10G"), Ok(10 << 30));
        assert_eq!(parse("1.5M"), Ok(3 << 19));
        assert_eq!(parse("2MiB"), Ok(2 << 20));
        assert!(parse("ten").is_err());
        assert!(parse("-1").is_err());
    }
}
