//! Event timestamps: parsing the ISO 8601 / RFC 3339 text clients send, and the one
//! output format the API answers with.
//!
//! Clients of the original service sent timestamps both with and without an offset; a
//! timestamp without one is taken as UTC. Everything is normalised to UTC on the way in,
//! rounded to the microsecond PostgreSQL stores, and limited to years 0000 to 9999 in
//! UTC so that every stored value can be rendered back as RFC 3339.

use std::fmt;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The length of every timestamp the API returns: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC,
/// always six fraction digits.
pub const FORMATTED_LEN: usize = 27;

/// A point in time, in UTC, with microsecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTimestamp(OffsetDateTime);

/// Why a timestamp was refused; the message is written for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error(
        "expected an ISO 8601 date-time such as 2023-12-05T12:55:52.805022Z or 2023-12-05T14:55:52+02:00"
    )]
    Malformed,
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    #[error("the date-time is outside the supported years 0000 to 9999 (UTC)")]
    YearOutOfRange,
}

impl EventTimestamp {
    /// Parses `YYYY-MM-DD(T| )HH:MM:SS[.fraction][Z|±HH:MM|±HHMM|±HH]`.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let mut cursor = Cursor::new(text.as_bytes());
        let year: i32 = cursor.digits(4)?;
        cursor.expect(b'-')?;
        let month: u8 = cursor.digits(2)?;
        cursor.expect(b'-')?;
        let day: u8 = cursor.digits(2)?;
        match cursor.next() {
            Some(b'T' | b't' | b' ') => {}
            _ => return Err(TimestampError::Malformed),
        }
        let hour: u8 = cursor.digits(2)?;
        cursor.expect(b':')?;
        let minute: u8 = cursor.digits(2)?;
        cursor.expect(b':')?;
        let second: u8 = cursor.digits(2)?;
        let microseconds = cursor.fraction_as_microseconds()?;
        let offset = cursor.offset()?;
        if !cursor.at_end() {
            return Err(TimestampError::Malformed);
        }

        let month = Month::try_from(month).map_err(|_| TimestampError::OutOfRange("month"))?;
        let date = Date::from_calendar_date(year, month, day)
            .map_err(|_| TimestampError::OutOfRange("day"))?;
        if hour > 23 {
            return Err(TimestampError::OutOfRange("hour"));
        }
        if minute > 59 {
            return Err(TimestampError::OutOfRange("minute"));
        }
        if second > 59 {
            return Err(TimestampError::OutOfRange("second"));
        }
        let time =
            Time::from_hms(hour, minute, second).map_err(|_| TimestampError::OutOfRange("time"))?;
        let local = PrimitiveDateTime::new(date, time).assume_offset(offset);
        let rounded = add_microseconds(local, microseconds)?;
        Self::from_offset_date_time(rounded)
    }

    /// Wraps a value read from the database or made by the generator, normalising it to
    /// UTC and to microseconds.
    pub fn from_offset_date_time(value: OffsetDateTime) -> Result<Self, TimestampError> {
        let utc = value
            .checked_to_offset(UtcOffset::UTC)
            .ok_or(TimestampError::YearOutOfRange)?;
        if !(0..=9999).contains(&utc.year()) {
            return Err(TimestampError::YearOutOfRange);
        }
        let micros = utc.nanosecond() / 1_000 * 1_000;
        let truncated = utc
            .replace_nanosecond(micros)
            .map_err(|_| TimestampError::OutOfRange("fraction"))?;
        Ok(Self(truncated))
    }

    /// The current time, as a valid event timestamp.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        let micros = now.nanosecond() / 1_000 * 1_000;
        Self(now.replace_nanosecond(micros).unwrap_or(now))
    }

    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }
}

impl EventTimestamp {
    /// The API's text form, written digit by digit: a page writes one per event, and
    /// the general formatting machinery (with two allocations) cost a page of 100
    /// events tens of microseconds.
    pub fn formatted(&self) -> [u8; FORMATTED_LEN] {
        const DIGITS: &[u8; 10] = b"0123456789";
        let put = |field: &mut [u8], mut value: u32| {
            for slot in field.iter_mut().rev() {
                *slot = DIGITS[(value % 10) as usize];
                value /= 10;
            }
        };
        let value = self.0;
        let (hour, minute, second, micro) = value.to_hms_micro();
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        // Years 0000 to 9999, in UTC, are guaranteed by construction.
        put(&mut out[0..4], u32::try_from(value.year()).unwrap_or(0));
        put(&mut out[5..7], u32::from(u8::from(value.month())));
        put(&mut out[8..10], u32::from(value.day()));
        put(&mut out[11..13], u32::from(hour));
        put(&mut out[14..16], u32::from(minute));
        put(&mut out[17..19], u32::from(second));
        put(&mut out[20..26], micro);
        out
    }
}

impl fmt::Display for EventTimestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.formatted();
        formatter.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// The whole seconds of `value` plus the rounded fraction (which may be a whole second).
fn add_microseconds(value: OffsetDateTime, micros: u32) -> Result<OffsetDateTime, TimestampError> {
    let whole_seconds = value
        .replace_nanosecond(0)
        .map_err(|_| TimestampError::Malformed)?;
    whole_seconds
        .checked_add(time::Duration::microseconds(i64::from(micros)))
        .ok_or(TimestampError::YearOutOfRange)
}

/// A byte cursor over the timestamp text; every failure is `Malformed`.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.position += 1;
        Some(byte)
    }

    fn at_end(&self) -> bool {
        self.position == self.bytes.len()
    }

    fn expect(&mut self, wanted: u8) -> Result<(), TimestampError> {
        match self.next() {
            Some(byte) if byte == wanted => Ok(()),
            _ => Err(TimestampError::Malformed),
        }
    }

    /// Exactly `count` decimal digits, as the field's type.
    fn digits<T: TryFrom<u32>>(&mut self, count: usize) -> Result<T, TimestampError> {
        let mut value = 0u32;
        for _ in 0..count {
            match self.next() {
                Some(byte @ b'0'..=b'9') => value = value * 10 + u32::from(byte - b'0'),
                _ => return Err(TimestampError::Malformed),
            }
        }
        T::try_from(value).map_err(|_| TimestampError::Malformed)
    }

    /// Reads an optional `.fraction` of any number of digits (RFC 3339 sets no limit)
    /// as microseconds, rounded exactly as PostgreSQL rounds text input: the fraction
    /// read as a double, times 10^6, rounded half to even (its `strtod` and `rint`).
    /// So `.8050225` is 805022 through the API and through psql alike. The result may
    /// be 1,000,000: a fraction that rounds up to the next second.
    fn fraction_as_microseconds(&mut self) -> Result<u32, TimestampError> {
        if !matches!(self.peek(), Some(b'.' | b',')) {
            return Ok(0);
        }
        self.position += 1;
        let start = self.position;
        while let Some(b'0'..=b'9') = self.peek() {
            self.position += 1;
        }
        let digits = &self.bytes[start..self.position];
        if digits.is_empty() {
            return Err(TimestampError::Malformed);
        }
        if digits.len() <= 6 {
            // Up to six digits the double's product is within far less than 0.5 of
            // the whole number, so PostgreSQL's rounding gives exactly the digits:
            // integer arithmetic, no float and no allocation on the common path.
            let value = digits
                .iter()
                .fold(0u32, |value, &digit| value * 10 + u32::from(digit - b'0'));
            let scale = [100_000, 10_000, 1_000, 100, 10, 1][digits.len() - 1];
            return Ok(value * scale);
        }
        let mut text = String::with_capacity(digits.len() + 2);
        text.push_str("0.");
        text.extend(digits.iter().map(|&digit| char::from(digit)));
        let fraction: f64 = text.parse().map_err(|_| TimestampError::Malformed)?;
        let micros = (fraction * 1_000_000.0).round_ties_even();
        // A fraction in [0, 1) gives a whole number in 0..=1_000_000, which u32 holds
        // exactly: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok((micros as u32).min(1_000_000))
    }

    /// Reads an optional offset; none means UTC.
    fn offset(&mut self) -> Result<UtcOffset, TimestampError> {
        let sign = match self.peek() {
            None => return Ok(UtcOffset::UTC),
            Some(b'Z' | b'z') => {
                self.position += 1;
                return Ok(UtcOffset::UTC);
            }
            Some(b'+') => 1,
            Some(b'-') => -1,
            Some(_) => return Err(TimestampError::Malformed),
        };
        self.position += 1;
        let hours: i8 = self.digits(2)?;
        let minutes = match self.peek() {
            None => 0,
            Some(b':') => {
                self.position += 1;
                self.digits(2)?
            }
            Some(_) => self.digits(2)?,
        };
        if hours > 23 || minutes > 59 {
            return Err(TimestampError::OutOfRange("offset"));
        }
        UtcOffset::from_hms(sign * hours, sign * minutes, 0)
            .map_err(|_| TimestampError::OutOfRange("offset"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::format_description::FormatItem;
    use time::macros::format_description;

    use super::*;

    /// The format `formatted` writes by hand, as the time crate writes it.
    const OUTPUT_FORMAT: &[FormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

    proptest! {
        #[test]
        fn formatted_by_hand_is_what_the_time_crate_writes(
            micros in 0i64..253_402_300_800_000_000,
        ) {
            let value = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                .unwrap();
            let timestamp = EventTimestamp::from_offset_date_time(value).unwrap();
            prop_assert_eq!(timestamp.to_string(), value.format(OUTPUT_FORMAT).unwrap());
        }
    }

    fn formatted(text: &str) -> String {
        EventTimestamp::parse(text).unwrap().to_string()
    }

    #[test]
    fn utc_with_z_keeps_its_microseconds() {
        assert_eq!(
            formatted("2023-12-05T12:55:52.805022Z"),
            "2023-12-05T12:55:52.805022Z"
        );
    }

    #[test]
    fn an_offset_is_converted_to_utc() {
        assert_eq!(
            formatted("2023-12-05T14:55:52.5+02:00"),
            "2023-12-05T12:55:52.500000Z"
        );
        assert_eq!(
            formatted("2023-12-31T23:30:00-01:00"),
            "2024-01-01T00:30:00.000000Z"
        );
    }

    #[test]
    fn no_offset_is_taken_as_utc() {
        assert_eq!(
            formatted("2023-12-05T12:55:52"),
            "2023-12-05T12:55:52.000000Z"
        );
        assert_eq!(
            formatted("2023-12-05 12:55:52.1"),
            "2023-12-05T12:55:52.100000Z"
        );
    }

    #[test]
    fn fractions_round_to_microseconds_as_postgresql_rounds_them() {
        // PostgreSQL 15: '2023-12-05 12:55:52.8050225'::timestamp is .805022, and
        // .8050235 is .805024 (the double nearest each decides, then half to even).
        assert_eq!(
            formatted("2023-12-05T12:55:52.8050225Z"),
            "2023-12-05T12:55:52.805022Z"
        );
        assert_eq!(
            formatted("2023-12-05T12:55:52.8050235Z"),
            "2023-12-05T12:55:52.805024Z"
        );
        assert_eq!(
            formatted("2023-12-05T12:55:52.12345678901234567890Z"),
            "2023-12-05T12:55:52.123457Z"
        );
    }

    #[test]
    fn up_to_six_fraction_digits_give_what_the_float_rounding_gives() {
        for value in (0..1_000_000u32).step_by(7) {
            for digits in [6usize, 3] {
                let text = format!("{value:06}");
                let text = &text[..digits];
                let mut cursor = Cursor::new(format!(".{text}").into_bytes().leak());
                let fraction: f64 = format!("0.{text}").parse().unwrap();
                let expected = (fraction * 1_000_000.0).round_ties_even();
                assert_eq!(
                    f64::from(cursor.fraction_as_microseconds().unwrap()),
                    expected,
                    ".{text}"
                );
            }
        }
    }

    #[test]
    fn nanoseconds_round_half_up_to_microseconds() {
        assert_eq!(
            formatted("2023-12-05T12:55:52.0000015Z"),
            "2023-12-05T12:55:52.000002Z"
        );
        assert_eq!(
            formatted("2023-12-05T23:59:59.9999996Z"),
            "2023-12-06T00:00:00.000000Z"
        );
    }

    #[test]
    fn garbage_bare_dates_and_impossible_values_are_rejected() {
        for text in [
            "",
            "yesterday",
            "2023-12-05",
            "2023-12-05T12:55",
            "2023-12-05T12:55:52Zjunk",
            "2023-02-30T00:00:00Z",
            "2023-12-05T24:00:00Z",
            "2023-12-05T23:59:60Z",
            "2023-12-05T12:55:52+25:00",
            "2023-12-05T12:55:52.Z",
            "+12023-12-05T12:55:52Z",
            "2023-12-05T12:55:52\u{0}",
        ] {
            assert!(
                EventTimestamp::parse(text).is_err(),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn years_that_leave_0000_to_9999_in_utc_are_rejected() {
        assert_eq!(
            EventTimestamp::parse("9999-12-31T23:30:00-01:00"),
            Err(TimestampError::YearOutOfRange)
        );
        assert_eq!(
            EventTimestamp::parse("0000-01-01T00:30:00+01:00"),
            Err(TimestampError::YearOutOfRange)
        );
        assert_eq!(
            formatted("0000-01-01T00:00:00Z"),
            "0000-01-01T00:00:00.000000Z"
        );
    }
}
