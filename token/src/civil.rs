//! Calendar dates of Unix days (proleptic Gregorian, after the epoch), Howard Hinnant's algorithms:
//! shared by the engine's audit timestamps and the sidecar console's time filter.

/// Days since 1970-01-01 to (year, month, day).
pub fn from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01; `None` before the epoch or for an impossible date.
pub fn to_days(y: u64, m: u64, d: u64) -> Option<u64> {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if y < 1970 || d == 0 || d > month_days {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let (era, yoe) = (y / 400, y % 400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(from_days(0), (1970, 1, 1));
        assert_eq!(to_days(2000, 2, 29), Some(11_016));
        for days in [0, 59, 365, 11_016, 20_791, 47_482] {
            let (y, m, d) = from_days(days);
            assert_eq!(to_days(y, m, d), Some(days));
        }
        assert_eq!(to_days(1969, 12, 31), None);
        assert_eq!(to_days(2026, 2, 29), None);
        assert_eq!(to_days(2026, 13, 1), None);
    }
}
