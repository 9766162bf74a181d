//! [`Window`]: fixed windows aligned to UTC, and when each renews.

use std::str::FromStr;

use time::{Date, Month, OffsetDateTime, Time};

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
        let Some(end) = self
            .end
            .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok())
        else {
            return "never".to_owned();
        };
        match window {
            Window::Hour => format!("at {:02}:00 UTC", end.hour()),
            Window::Day => format!("at 00:00 UTC on {} {}", end.day(), end.month()),
            _ => format!("on {} {}", end.day(), end.month()),
        }
    }
}

fn fixed(now: i64, len: i64) -> Span {
    let start = now.saturating_sub(now.rem_euclid(len));
    Span {
        start,
        end: Some(start.saturating_add(len)),
    }
}

fn month(now: i64) -> Span {
    let Ok(at) = OffsetDateTime::from_unix_timestamp(now) else {
        // Out of time's range: a day stands in, never a panic.
        return fixed(now, 86_400);
    };
    let first = |year: i32, month: Month| {
        Date::from_calendar_date(year, month, 1)
            .map(|d| d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp())
    };
    let (year, m) = (at.year(), at.month());
    let next = if m == Month::December {
        first(year + 1, Month::January)
    } else {
        first(year, m.next())
    };
    match (first(year, m), next) {
        (Ok(start), Ok(end)) => Span {
            start,
            end: Some(end),
        },
        _ => fixed(now, 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time.
    fn at(y: i32, m: Month, d: u8, h: u8, min: u8) -> i64 {
        Date::from_calendar_date(y, m, d)
            .unwrap()
            .with_hms(h, min, 0)
            .unwrap()
            .assume_utc()
            .unix_timestamp()
    }

    #[test]
    fn months_of_31_30_and_28_days_and_the_years_end() {
        let cases = [
            (at(2027, Month::January, 31, 23, 59), 31),
            (at(2027, Month::April, 15, 0, 0), 30),
            (at(2100, Month::February, 28, 12, 0), 28), // 2100 is no leap year
            (at(2028, Month::February, 1, 0, 0), 29),
            (at(2026, Month::December, 31, 23, 59), 31),
        ];
        for (now, days) in cases {
            let span = Window::Month.span(now);
            assert_eq!(span.end.unwrap() - span.start, days * 86_400, "{now}");
            assert!(span.start <= now && now < span.end.unwrap());
        }
        let december = Window::Month.span(at(2026, Month::December, 31, 23, 59));
        assert_eq!(december.end, Some(at(2027, Month::January, 1, 0, 0)));
        assert_eq!(december.renewal(Window::Month), "on 1 January");
    }

    #[test]
    fn hours_and_days_start_on_the_hour_and_at_midnight_utc() {
        let now = at(2027, Month::March, 3, 14, 25);
        assert_eq!(
            Window::Hour.span(now).start,
            at(2027, Month::March, 3, 14, 0)
        );
        assert_eq!(Window::Hour.span(now).renews_in(now), Some(35 * 60));
        assert_eq!(Window::Hour.span(now).renewal(Window::Hour), "at 15:00 UTC");
        assert_eq!(Window::Day.span(now).start, at(2027, Month::March, 3, 0, 0));
        assert_eq!(
            Window::Day.span(now).renewal(Window::Day),
            "at 00:00 UTC on 4 March"
        );
        assert_eq!(Window::Ever.span(now).renews_in(now), None);
        assert_eq!(Window::Ever.span(now).renewal(Window::Ever), "never");
    }

    #[test]
    fn times_out_of_range_do_not_panic() {
        for now in [i64::MIN, i64::MAX, -1] {
            for w in [Window::Hour, Window::Day, Window::Month, Window::Ever] {
                let _ = w.span(now).renewal(w);
            }
        }
    }
}
