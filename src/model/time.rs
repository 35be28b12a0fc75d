//! Durations as users write them ("30d", "1d12h").

/// Parses a duration made of one or more `<number><unit>` parts, units y (365 days), w (7 days),
/// d, h, m (minutes) and s, e.g. "30d", "12h", "90m", "2w", "1d12h"; returns seconds. The parts
/// add up. Errors, with a message naming the input, on anything else: an empty string, a number
/// without a unit, an unknown unit (units are lower case; "M" is not months), signs, spaces,
/// fractions, or a total that does not fit in a u64.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = |why: String| {
        format!(
            "invalid duration {s:?}: {why}; expected <number><unit>... with units y, w, d, h, m \
             (minutes), s, e.g. \"30d\" or \"1d12h\""
        )
    };
    if s.is_empty() {
        return Err(bad("it is empty".to_string()));
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(format!("expected a number at {rest:?}")));
        }
        let (number, after) = rest.split_at(digits);
        let Some(unit) = after.chars().next() else {
            return Err(bad(format!("{number} has no unit")));
        };
        let size: u64 = match unit {
            'y' => 365 * 86_400,
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            other => return Err(bad(format!("unknown unit {other:?}"))),
        };
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(size))
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| bad("it is more seconds than a u64 holds".to_string()))?;
        rest = &after[unit.len_utf8()..];
    }
    Ok(total)
}

/// A replication interval: "1s", "250ms", "2m" (a bare number is seconds), at least 10 ms.
pub fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not an interval (e.g. 1s, 500ms, 1m)"))?;
    let d = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" | "" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{text:?}: the unit is ms, s or m")),
    };
    if d < std::time::Duration::from_millis(10) {
        return Err("the interval is at least 10ms".into());
    }
    Ok(d)
}
