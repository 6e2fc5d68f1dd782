//! Parsing and printing of the human units used in settings: durations
//! (`500ms`, `10s`, `5m`, `2h`, `1m30s`) and sizes (`64KiB`, `100MiB`).

use std::time::Duration;

/// Parses a duration such as `10s`, `500ms`, `2h` or `1m30s`. A bare
/// number other than 0 is refused: `30` could mean seconds or minutes.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(number) = text.parse::<u64>() {
        if number == 0 {
            return Ok(Duration::ZERO);
        }
        return Err(format!(
            "'{text}' has no unit: write {text}s, {text}ms, {text}m or {text}h"
        ));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("'{text}' is not a duration (use e.g. 500ms, 10s, 5m, 2h)"))?;
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            _ => {
                return Err(format!(
                    "'{text}' is not a duration (use e.g. 500ms, 10s, 5m, 2h)"
                ))
            }
        };
        total += part;
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// Prints a duration the way a person would write it: `2h`, `1m30s`, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// Parses a size such as `100MiB`, `64KiB` or `1048576` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..split]
        .parse()
        .map_err(|_| format!("'{text}' is not a size (use e.g. 512KiB, 100MiB)"))?;
    let factor: u64 = match text[split..].trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("'{text}' is not a size (use e.g. 512KiB, 100MiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Prints a byte count in the largest binary unit that divides it evenly
/// enough to read: `100 MiB`, `64 KiB`, `10 B`.
pub fn format_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_combined() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        let bare = parse_duration("30").unwrap_err();
        assert!(bare.starts_with("'30' has no unit"), "{bare}");
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_print_as_written() {
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn sizes_parse_binary_units() {
        assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("12").unwrap(), 12);
        assert!(parse_size("12 parsecs").is_err());
        assert_eq!(format_size(100 << 20), "100.0 MiB");
    }
}
