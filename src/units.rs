//! Durations as people write them in settings and read them in messages:
//! `500ms`, `8s`, `1.5s`, `2m`, `1h`. A leaf: it imports nothing from the
//! crate, so every layer can print a duration without depending on the
//! configuration.

use std::time::Duration;

/// A duration as people write it, in a form [`parse_duration`] reads back:
/// `250ms`, `8s`, `1.5s`, `2m`, `1h`, to three significant digits (a
/// deadline 7.9996s away is `8s`, never `7999ms` or `7.999s`).
pub fn human_duration(d: Duration) -> String {
    let trimmed = |n: f64| {
        let text = format!("{n:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    let ms = d.as_nanos() as f64 / 1e6;
    if ms == 0.0 {
        return "0s".to_string();
    }
    // Three significant digits.
    let scale = 10f64.powi(3 - ms.log10().ceil() as i32);
    let ms = (ms * scale).round() / scale;
    if ms < 1000.0 {
        return format!("{}ms", trimmed(ms));
    }
    let secs = ms / 1000.0;
    if secs % 3600.0 == 0.0 {
        format!("{}h", secs / 3600.0)
    } else if secs % 60.0 == 0.0 {
        format!("{}m", secs / 60.0)
    } else {
        format!("{}s", trimmed(secs))
    }
}

/// Parses `500ms`, `8s`, `1.5s`, `2m`, `1h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let secs = number * scale;
    (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8"), Some(Duration::from_secs(8)));
        assert_eq!(parse_duration("8s"), Some(Duration::from_secs(8)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1d"), None);
        assert_eq!(parse_duration("1e99"), None);
    }

    #[test]
    fn durations_are_printed_as_people_write_them() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(500), "0.5ms"),
            (Duration::from_secs(8), "8s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(8000), "8s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(61_500), "61.5s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "90m"),
        ] {
            assert_eq!(human_duration(d), text, "{d:?}");
            assert_eq!(parse_duration(text), Some(d), "{text}");
        }
        // What is left of a deadline: rounded as people would say it.
        for (d, text) in [
            (Duration::from_millis(7999), "8s"),
            (Duration::from_micros(7_999_600), "8s"),
            (Duration::from_micros(999_700), "1s"),
            (Duration::from_millis(1234), "1.23s"),
            (Duration::from_micros(1_234), "1.23ms"),
        ] {
            assert_eq!(human_duration(d), text, "{d:?}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn durations_never_panic_and_read_back(text in any::<String>(), n in 0u64..1_000_000) {
            let _ = parse_duration(&text);
            prop_assert_eq!(parse_duration(&format!("{n}ms")), Some(Duration::from_millis(n)));
            prop_assert_eq!(parse_duration(&format!(" {n}s ")), Some(Duration::from_secs(n)));
            prop_assert_eq!(parse_duration(&format!("{n}m")), Some(Duration::from_secs(n * 60)));
        }
    }
}
