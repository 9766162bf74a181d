//! [`Window`]: fixed windows aligned to UTC, and when each renews.

use std::str::FromStr;

/// How long an allowance lasts before it renews. Windows are fixed and
/// aligned to UTC: an hour from :00, a day from 00:00, a calendar month
/// from its first day; [`Ever`](Self::Ever) never renews.
///
/// ```
/// use figma_paywall::credits::Window;
///
/// assert_eq!("month".parse::<Window>(), Ok(Window::Month));
/// assert_eq!(Window::Day.as_str(), "day");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Window {
    /// An hour, from each hour's start (UTC).
    Hour,
    /// A day, from 00:00 UTC.
    Day,
    /// A calendar month (28 to 31 days), from its first day at 00:00 UTC.
    Month,
    /// For all time: the allowance never renews ("5 tries, ever").
    Ever,
}

impl Window {
    /// Its name: `hour`, `day`, `month` or `ever`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
            Self::Ever => "ever",
        }
    }

    /// The window that holds `now` (Unix seconds).
    pub(crate) fn span(self, now: i64) -> Span {
        match self {
            Self::Hour => fixed(now, 3_600),
            Self::Day => fixed(now, 86_400),
            Self::Month => month(now),
            Self::Ever => Span {
                start: 0,
                end: None,
            },
        }
    }
}

impl FromStr for Window {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            "month" => Ok(Self::Month),
            "ever" => Ok(Self::Ever),
            _ => Err("the window is not hour, day, month or ever"),
        }
    }
}

/// One window: when it started and when it renews (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: i64,
    pub(crate) end: Option<i64>,
}

impl Span {
    /// Seconds until it renews, at `now`.
    pub(crate) fn renews_in(&self, now: i64) -> Option<u64> {
        self.end.map(|end| end.saturating_sub(now).max(0) as u64)
    }

    /// When it renews, as a person reads it: "at 15:00 UTC",
    /// "on 1 January", "never".
    pub(crate) fn renewal(&self, window: Window) -> String {
        let Some((_, month, day, hour)) = self.end.and_then(civil) else {
            return "never".to_owned();
        };
        let month = MONTHS[month as usize - 1];
        match window {
            Window::Hour => format!("at {hour:02}:00 UTC"),
            Window::Day => format!("at 00:00 UTC on {day} {month}"),
            _ => format!("on {day} {month}"),
        }
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The years a window may fall in: beyond them a day stands in for a
/// month, and a renewal reads "never" (no panic, no overflow).
const YEARS: std::ops::RangeInclusive<i64> = 1..=9_999;

fn fixed(now: i64, len: i64) -> Span {
    let start = now.saturating_sub(now.rem_euclid(len));
    Span {
        start,
        end: Some(start.saturating_add(len)),
    }
}

fn month(now: i64) -> Span {
    let Some((year, month, _, _)) = civil(now) else {
        return fixed(now, 86_400);
    };
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Span {
        start: days_from_civil(year, month, 1) * 86_400,
        end: Some(days_from_civil(next_year, next_month, 1) * 86_400),
    }
}

/// The UTC year, month, day and hour of Unix second `at`, within [`YEARS`].
fn civil(at: i64) -> Option<(i64, u32, u32, u32)> {
    let (days, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    // Civil from days (the proleptic Gregorian calendar, as Howard
    // Hinnant's `civil_from_days`), on days kept far from overflow.
    if !(-1_000_000_000..=1_000_000_000).contains(&days) {
        return None;
    }
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    YEARS
        .contains(&year)
        .then_some((year, month, day, (secs / 3_600) as u32))
}

/// Days since the Unix epoch of a UTC date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time, from the calendar above; the
    /// first test pins it to timestamps worked out elsewhere.
    fn at(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
        days_from_civil(y, m, d) * 86_400 + h * 3_600 + min * 60
    }

    #[test]
    fn the_calendar_agrees_with_known_timestamps() {
        for (date, unix) in [
            (at(2027, 1, 31, 23, 59), 1_801_439_940),
            (at(2027, 4, 15, 0, 0), 1_807_747_200),
            (at(2100, 2, 28, 12, 0), 4_107_499_200),
            (at(2028, 2, 1, 0, 0), 1_832_976_000),
            (at(2026, 12, 31, 23, 59), 1_798_761_540),
            (at(1970, 1, 1, 0, 0), 0),
        ] {
            assert_eq!(date, unix);
        }
        assert_eq!(civil(1_804_083_900), Some((2027, 3, 3, 14)));
        assert_eq!(civil(-1), Some((1969, 12, 31, 23)));
    }

    #[test]
    fn months_of_31_30_and_28_days_and_the_years_end() {
        let cases = [
            (at(2027, 1, 31, 23, 59), 31),
            (at(2027, 4, 15, 0, 0), 30),
            (at(2100, 2, 28, 12, 0), 28), // 2100 is no leap year
            (at(2028, 2, 1, 0, 0), 29),
            (at(2026, 12, 31, 23, 59), 31),
        ];
        for (now, days) in cases {
            let span = Window::Month.span(now);
            assert_eq!(span.end.unwrap() - span.start, days * 86_400, "{now}");
            assert!(span.start <= now && now < span.end.unwrap());
        }
        let december = Window::Month.span(at(2026, 12, 31, 23, 59));
        assert_eq!(december.end, Some(at(2027, 1, 1, 0, 0)));
        assert_eq!(december.renewal(Window::Month), "on 1 January");
    }

    #[test]
    fn hours_and_days_start_on_the_hour_and_at_midnight_utc() {
        let now = at(2027, 3, 3, 14, 25);
        assert_eq!(Window::Hour.span(now).start, at(2027, 3, 3, 14, 0));
        assert_eq!(Window::Hour.span(now).renews_in(now), Some(35 * 60));
        assert_eq!(Window::Hour.span(now).renewal(Window::Hour), "at 15:00 UTC");
        assert_eq!(Window::Day.span(now).start, at(2027, 3, 3, 0, 0));
        assert_eq!(
            Window::Day.span(now).renewal(Window::Day),
            "at 00:00 UTC on 4 March"
        );
        assert_eq!(Window::Ever.span(now).renews_in(now), None);
        assert_eq!(Window::Ever.span(now).renewal(Window::Ever), "never");
    }

    #[test]
    fn times_out_of_range_do_not_panic() {
        for now in [i64::MIN, i64::MAX, -1, 253_402_300_800] {
            for w in [Window::Hour, Window::Day, Window::Month, Window::Ever] {
                let _ = w.span(now).renewal(w);
            }
        }
    }
}
