//! UTC times as people type and read them (`2026-12-04T15:30`), for the audit timeline's filter.
//! Civil-date arithmetic after Howard Hinnant's `days_from_civil`; no time zones, no leap seconds.

/// `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` (a space may stand for the `T`) to Unix seconds.
pub fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_ascii() || !(16..=19).contains(&text.len()) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let sep = |at: usize, allowed: &[u8]| text.as_bytes().get(at).is_some_and(|b| allowed.contains(b));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"T ") && sep(13, b":")) {
        return None;
    }
    let (y, m, d, hh, mm) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?);
    let ss = match text.len() {
        16 => 0,
        19 if sep(16, b":") => num(17, 19)?,
        _ => return None,
    };
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok()
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format(t: u64) -> String {
    let days = i64::try_from(t / 86_400).unwrap_or(0);
    let rest = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
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
        assert_eq!(format(951_825_601), "2000-02-29 12:00:01 UTC");
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
            "２０２６-12-04T10:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
