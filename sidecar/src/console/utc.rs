//! UTC times as people type and read them (`2026-12-04T15:30`), for the audit timeline's filter;
//! no time zones, no leap seconds, nothing before 1970.

use jitgate_token::civil;

/// `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` (a space may stand for the `T`) to Unix seconds.
pub fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_ascii() || !(16..=19).contains(&text.len()) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        let part = text.get(from..to)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let sep = |at: usize, allowed: &[u8]| text.as_bytes().get(at).is_some_and(|b| allowed.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"T ") && sep(13, b":")) {
        return None;
    }
    let (hh, mm) = (num(11, 13)?, num(14, 16)?);
    let ss = match text.len() {
        16 => 0,
        19 if sep(16, b":") => num(17, 19)?,
        _ => return None,
    };
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = civil::to_days(num(0, 4)?, num(5, 7)?, num(8, 10)?)?;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format(t: u64) -> String {
    let (y, m, d) = civil::from_days(t / 86_400);
    let rest = t % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_round_trip() {
        assert_eq!(parse("1970-01-01T00:00"), Some(0));
        assert_eq!(parse("2000-02-29 12:00:01"), Some(951_825_601));
        assert_eq!(parse("2026-12-04T15:30"), Some(1_796_398_200));
        assert_eq!(format(1_796_398_200), "2026-12-04 15:30:00 UTC");
        for t in [0, 59, 86_399, 951_825_601, 1_796_398_259, 4_102_444_800] {
            let text = format(t);
            assert_eq!(parse(text.trim_end_matches(" UTC")), Some(t), "{text}");
        }
    }

    #[test]
    fn malformed_or_impossible_times_are_refused() {
        for bad in [
            "",
            "2026-12-04",
            "2026-13-01T00:00",
            "2026-02-29T00:00",
            "2026-12-04T24:00",
            "2026-12-04T10:60",
            "2026-12-04T10:00:60",
            "2026-12-04X10:00",
            "2026-12-04T10:00Z",
            "+026-12-04T10:00",
            "2026-12-04T1a:00",
            "1969-12-31T23:59",
            "２０２６-12-04T10:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
