//! Timestamps as the ledger stores them: UTC RFC 3339 with milliseconds, fixed width, so
//! that text order is time order on every backend.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// A point in time, kept as its stored text (`2026-01-02T03:04:05.678Z`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp(String);

impl Timestamp {
    /// The current time.
    pub(crate) fn now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    /// This time plus `duration` (saturating at the end of the representable range).
    pub(crate) fn after(duration: Duration) -> Timestamp {
        let now = OffsetDateTime::now_utc();
        let later = time::Duration::try_from(duration)
            .ok()
            .and_then(|delta| now.checked_add(delta))
            .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59.999 UTC));
        Timestamp::from_datetime(later)
    }

    fn from_datetime(at: OffsetDateTime) -> Timestamp {
        let at = at.to_offset(time::UtcOffset::UTC);
        // The format has no fallible component for years 0..=9999.
        Timestamp(
            at.format(FORMAT)
                .unwrap_or_else(|_| "9999-12-31T23:59:59.999Z".to_owned()),
        )
    }

    /// An RFC 3339 time from outside (any offset, any precision), in the stored form, so
    /// that it compares with stored times as text; `None` when it is not RFC 3339.
    pub(crate) fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(Timestamp::from_datetime)
    }

    /// The stored text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored text, owned.
    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

/// Now, as the ledger writes its timestamps (`2026-01-02T03:04:05.678Z`), for callers that
/// show times beside the ledger's, such as a server's submission times.
pub fn now_timestamp() -> String {
    Timestamp::now().into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_utc_with_millis() {
        let at = Timestamp::from_datetime(time::macros::datetime!(2026-01-02 03:04:05.6789 +02:00));
        assert_eq!(at.as_str(), "2026-01-02T01:04:05.678Z");
        assert_eq!(Timestamp::now().as_str().len(), 24);
    }

    #[test]
    fn rfc3339_from_outside_takes_the_stored_form() {
        let at = Timestamp::parse_rfc3339("2026-01-02T03:04:05+02:00").unwrap();
        assert_eq!(at.as_str(), "2026-01-02T01:04:05.000Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2026-01-02T03:04:05.123456Z")
                .unwrap()
                .as_str(),
            "2026-01-02T03:04:05.123Z"
        );
        for bad in ["", "2026-01-02", "yesterday", "2026-01-02T03:04:05"] {
            assert!(Timestamp::parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn later_sorts_after() {
        let now = Timestamp::now();
        let later = Timestamp::after(Duration::from_secs(3600));
        assert!(later > now);
        assert!(Timestamp::after(Duration::MAX) > now);
    }
}
