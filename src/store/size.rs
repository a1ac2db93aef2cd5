//! Byte sizes as people write them in `node.toml` (`store_size = "256MiB"`).

/// Errors from [`parse_size`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("empty size; expected e.g. 1048576, 64KiB, 256MiB, 1 GiB or 10MB")]
    Empty,
    #[error("{0:?} is not a size: expected a number with an optional unit, e.g. 256MiB")]
    BadNumber(String),
    #[error("unknown size unit {0:?}; use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)")]
    UnknownUnit(String),
    #[error("size {0:?} does not fit in 64 bits")]
    Overflow(String),
    #[error("size {0:?} is not a whole number of bytes")]
    Fractional(String),
}

/// Parse a byte size: a decimal number, optionally with a fraction, and an
/// optional unit, with or without a space: `1048576`, `64KiB`, `256MiB`,
/// `1 GiB`, `10MB` (= 10,000,000), `1.5GiB`. Units are case-insensitive;
/// `K`/`M`/`G`/`T` alone mean the binary units.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(SizeError::Empty);
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(SizeError::BadNumber(trimmed.to_string()));
    }
    let unit = unit.trim_start();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(SizeError::UnknownUnit(unit.to_string())),
    };
    let bad = || SizeError::BadNumber(trimmed.to_string());
    let overflow = || SizeError::Overflow(trimmed.to_string());
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (number.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| overflow())?;
    let mut total = whole.checked_mul(multiplier).ok_or_else(overflow)?;
    if !frac.is_empty() {
        // frac / 10^digits * multiplier, exactly, in 128 bits.
        let digits = u32::try_from(frac.len()).map_err(|_| bad())?;
        if digits > 18 {
            return Err(bad());
        }
        let frac_value: u128 = frac.parse().map_err(|_| bad())?;
        let scale = 10u128.pow(digits);
        let scaled = frac_value * u128::from(multiplier);
        if !scaled.is_multiple_of(scale) {
            return Err(SizeError::Fractional(trimmed.to_string()));
        }
        let extra = u64::try_from(scaled / scale).map_err(|_| overflow())?;
        total = total.checked_add(extra).ok_or_else(overflow)?;
    }
    Ok(total)
}
