//! Timestamps: RFC 3339, UTC, fixed width (microseconds), so they sort as text.

use time::OffsetDateTime;
use time::macros::format_description;

/// The current time as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub(crate) fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

pub(crate) fn format_rfc3339(t: OffsetDateTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    let utc = t.to_offset(time::UtcOffset::UTC);
    // Formatting a well-formed UTC date with this description only fails for
    // years outside 0..=9999; fall back to the library's RFC 3339 rendering.
    utc.format(&fmt).unwrap_or_else(|_| {
        utc.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| utc.unix_timestamp().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_width_utc() {
        assert_eq!(
            format_rfc3339(datetime!(2026-11-23 12:13:18.5 +02:00)),
            "2026-11-23T10:13:18.500000Z"
        );
        let now = now_rfc3339();
        assert_eq!(now.len(), 27, "{now}");
        assert!(
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339)
                .is_ok()
        );
    }
}
