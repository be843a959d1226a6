//! Short human formats for numbers on a cramped screen.

/// `950ms`, `12.3s`, `2m03s`, `1h02m`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1e3),
        60_000..=3_599_999 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `12,345,678`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `512 B`, `3.4 MB`, `1.2 GB` (decimal, as download sizes are quoted).
pub fn bytes(n: u64) -> String {
    let f = n as f64;
    match n {
        0..=999 => format!("{n} B"),
        1_000..=999_999 => format!("{:.1} kB", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", f / 1e6),
        _ => format!("{:.2} GB", f / 1e9),
    }
}

/// `87.12%` from a 0..1 fraction.
pub fn pct(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

/// Cuts `s` to `width` characters, marking the cut with `…`.
pub fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration(950), "950ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(123_000), "2m03s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(count(0), "0");
        assert_eq!(count(12_345_678), "12,345,678");
        assert_eq!(bytes(170_498_071), "170.5 MB");
        assert_eq!(pct(0.87123), "87.12%");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
