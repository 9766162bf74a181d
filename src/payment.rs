//! What Figma answers: [`PaymentInformation`], [`PaymentStatus`] and
//! [`PurchaseDate`].
//!
//! # Example
//!
//! ```
//! use figma_paywall::{PaymentInformation, PaymentStatus};
//!
//! // The official spec's shape…
//! let info: PaymentInformation = serde_json::from_str(r#"{
//!     "user_id": "1234567890", "resource_id": "1122334455",
//!     "resource_type": "PLUGIN", "payment_status": {"type": "PAID"},
//!     "date_of_purchase": "2024-06-15T14:30:00Z"
//! }"#)?;
//! assert_eq!(info.payment_status, PaymentStatus::Paid);
//!
//! // …and the bare string of the seed OpenAPI file reads the same.
//! let info: PaymentInformation = serde_json::from_str(r#"{
//!     "user_id": "1234567890", "resource_id": "1122334455",
//!     "resource_type": "PLUGIN", "payment_status": "UNPAID"
//! }"#)?;
//! assert_eq!(info.payment_status, PaymentStatus::Unpaid);
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::{borrow::Cow, fmt, ops::Deref, sync::Arc};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::{id::InlineStr, Resource, ResourceId, ResourceType, UserId};

/// A user's payment information for one plugin, widget or Community file,
/// as `GET /v1/payments` answers it in `meta`.
///
/// Fields are named as Figma names them. Serializing writes Figma's official
/// shape (`"payment_status": {"type": "PAID"}`), so an answer parsed from
/// Figma serializes back to the same JSON. Figma may add fields, so this
/// struct is `#[non_exhaustive]`: build one with [`new`](Self::new).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PaymentInformation {
    /// The user whose payment information was asked for.
    pub user_id: UserId,
    /// The plugin, widget or Community file that was asked about.
    pub resource_id: ResourceId,
    /// What kind of resource `resource_id` is.
    pub resource_type: ResourceType,
    /// Whether the user has paid.
    pub payment_status: PaymentStatus,
    /// When the user bought the resource (UTC, ISO 8601), if ever.
    ///
    /// Still present after a refund or an ended subscription: it does not
    /// mean access. Only [`payment_status`](Self::payment_status) does.
    ///
    /// Read it with `as_deref()`. Held inline, like the IDs: handing an
    /// answer to a handler touches no heap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_purchase: Option<PurchaseDate>,
}

impl PaymentInformation {
    /// An answer about `user` and `resource`, as Figma gives it: for tests,
    /// benches and fakes of your own.
    ///
    /// ```
    /// use figma_paywall::{PaymentInformation, PaymentStatus, Resource, UserId};
    ///
    /// let info = PaymentInformation::new(
    ///     UserId::new("2001")?,
    ///     &Resource::plugin("1122334455")?,
    ///     PaymentStatus::Paid,
    /// )
    /// .with_date_of_purchase("2026-01-15T10:30:00Z");
    /// assert_eq!(info.resource_id, "1122334455");
    /// # Ok::<(), figma_paywall::InvalidId>(())
    /// ```
    pub fn new(user_id: UserId, resource: &Resource, payment_status: PaymentStatus) -> Self {
        Self {
            user_id,
            resource_id: resource.id().clone(),
            resource_type: resource.kind().clone(),
            payment_status,
            date_of_purchase: None,
        }
    }

    /// Sets when the user bought the resource (UTC, ISO 8601).
    pub fn with_date_of_purchase(mut self, date: impl Into<PurchaseDate>) -> Self {
        self.date_of_purchase = Some(date.into());
        self
    }
}

/// When a user bought a resource, as Figma writes it (UTC, ISO 8601, such
/// as `2026-01-15T10:30:00Z`), kept as sent.
///
/// It reads as a `&str` (it derefs to one). Dates of up to 30 bytes, every
/// form of ISO 8601 Figma writes, are held inline, so copying one touches
/// no heap; a longer string is shared.
///
/// ```
/// use figma_paywall::PurchaseDate;
///
/// let date = PurchaseDate::from("2026-01-15T10:30:00Z");
/// assert_eq!(date, "2026-01-15T10:30:00Z");
/// assert!(date.starts_with("2026-01"));
/// ```
#[derive(Clone)]
pub struct PurchaseDate(DateText);

/// The longest date held inline.
const INLINE_DATE: usize = 30;

#[derive(Clone)]
enum DateText {
    Inline(InlineStr<INLINE_DATE>),
    Shared(Arc<str>),
}

impl PurchaseDate {
    /// The date as Figma wrote it.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            DateText::Inline(text) => text.as_str(),
            DateText::Shared(text) => text,
        }
    }
}

impl From<&str> for PurchaseDate {
    fn from(date: &str) -> Self {
        Self(
            InlineStr::new(date)
                .map_or_else(|| DateText::Shared(Arc::from(date)), DateText::Inline),
        )
    }
}

impl From<String> for PurchaseDate {
    fn from(date: String) -> Self {
        Self::from(date.as_str())
    }
}

impl Deref for PurchaseDate {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for PurchaseDate {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for PurchaseDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PurchaseDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for PurchaseDate {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for PurchaseDate {}

impl std::hash::Hash for PurchaseDate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for PurchaseDate {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PurchaseDate {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for PurchaseDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PurchaseDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DateVisitor;
        impl de::Visitor<'_> for DateVisitor {
            type Value = PurchaseDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date of purchase as a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PurchaseDate, E> {
                Ok(PurchaseDate::from(v))
            }
        }
        d.deserialize_str(DateVisitor)
    }
}

/// A user's payment status on a resource.
///
/// Figma's official spec writes it `{"type": "PAID"}`, its docs page
/// `{"status": "PAID"}`, and the seed OpenAPI file of this project a bare
/// `"PAID"`; real traffic may show any of them.
/// All three parse. A status this crate does not know is kept in
/// [`PaymentStatus::Other`], never a parse failure, and never grants access.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PaymentStatus {
    /// `PAID`: the user has an active purchase.
    Paid,
    /// `TRIAL`: the user is in the trial period of a subscription.
    Trial,
    /// `UNPAID`: the user has not paid, or no longer has access.
    Unpaid,
    /// `NOT_SUPPORTED`: payments are not available here; Figma says to treat
    /// it as an error, not as access.
    NotSupported,
    /// Any other value, kept as sent.
    Other(String),
}

impl PaymentStatus {
    /// Whether this answer lets its user in: `PAID` or `TRIAL`.
    pub(crate) fn grants(&self) -> bool {
        matches!(self, Self::Paid | Self::Trial)
    }

    /// The name Figma uses (`PAID`, `TRIAL`, `UNPAID`, `NOT_SUPPORTED`, …).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Paid => "PAID",
            Self::Trial => "TRIAL",
            Self::Unpaid => "UNPAID",
            Self::NotSupported => "NOT_SUPPORTED",
            Self::Other(s) => s,
        }
    }

    /// Reads a status name; unknown names become [`PaymentStatus::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "PAID" => Self::Paid,
            "TRIAL" => Self::Trial,
            "UNPAID" => Self::Unpaid,
            "NOT_SUPPORTED" => Self::NotSupported,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PaymentStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Typed<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
        }
        Typed {
            kind: self.as_str(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PaymentStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StatusVisitor)
    }
}

struct StatusVisitor;

impl<'de> de::Visitor<'de> for StatusVisitor {
    type Value = PaymentStatus;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a payment status: "PAID", {"type": "PAID"} or {"status": "PAID"}"#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PaymentStatus, E> {
        Ok(PaymentStatus::from_name(v))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<PaymentStatus, A::Error> {
        let mut found: Option<PaymentStatus> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "type" | "status" => {
                    let name = map.next_value::<Cow<'de, str>>()?;
                    let status = PaymentStatus::from_name(&name);
                    match &found {
                        Some(previous) if *previous != status => {
                            return Err(de::Error::custom(
                                "payment_status names two different statuses",
                            ))
                        }
                        _ => found = Some(status),
                    }
                }
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        found.ok_or_else(|| de::Error::custom("payment_status has neither `type` nor `status`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFICIAL: &str = r#"{"user_id":"1234567890","resource_id":"1122334455","resource_type":"PLUGIN","payment_status":{"type":"PAID"},"date_of_purchase":"2024-06-15T14:30:00Z"}"#;

    #[test]
    fn official_json_round_trips_byte_for_byte() {
        let info: PaymentInformation = serde_json::from_str(OFFICIAL).unwrap();
        assert_eq!(info.payment_status, PaymentStatus::Paid);
        assert_eq!(serde_json::to_string(&info).unwrap(), OFFICIAL);
    }

    #[test]
    fn every_status_shape_parses() {
        for (json, want) in [
            (r#""PAID""#, PaymentStatus::Paid),
            (r#"{"type":"TRIAL"}"#, PaymentStatus::Trial),
            (r#"{"status":"UNPAID"}"#, PaymentStatus::Unpaid),
            (r#""NOT_SUPPORTED""#, PaymentStatus::NotSupported),
            (
                r#"{"type":"PAID","status":"PAID","extra":[1]}"#,
                PaymentStatus::Paid,
            ),
            (
                r#"{"type":"REFUNDED"}"#,
                PaymentStatus::Other("REFUNDED".into()),
            ),
            (r#""""#, PaymentStatus::Other(String::new())),
        ] {
            let got: PaymentStatus = serde_json::from_str(json).unwrap();
            assert_eq!(got, want, "{json}");
        }
    }

    #[test]
    fn contradictory_or_empty_status_objects_are_errors() {
        for json in [
            r#"{"type":"PAID","status":"UNPAID"}"#,
            "{}",
            "3",
            "null",
            "[]",
        ] {
            assert!(
                serde_json::from_str::<PaymentStatus>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn dates_of_any_length_round_trip() {
        let long = format!("2026-01-15T10:30:00.{}+00:00", "1".repeat(40));
        for text in [
            "",
            "2026-01-15T10:30:00Z",
            "2026-01-15T10:30:00.123456+00:00",
            &long,
        ] {
            let date = PurchaseDate::from(text);
            assert_eq!(date.as_str(), text);
            assert_eq!(&*date, text);
            assert_eq!(date, PurchaseDate::from(text.to_owned()));
            let json = serde_json::to_string(&date).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<PurchaseDate>(&json).unwrap(), text);
        }
        // Held inline up to 30 bytes.
        assert!(matches!(
            PurchaseDate::from("2026-01-15T10:30:00.123456789Z").0,
            DateText::Inline { .. }
        ));
        assert!(matches!(
            PurchaseDate::from(long.as_str()).0,
            DateText::Shared(_)
        ));
    }

    #[test]
    fn missing_date_is_none_and_not_written() {
        let json = r#"{"user_id":"1","resource_id":"2","resource_type":"WIDGET","payment_status":{"type":"UNPAID"}}"#;
        let info: PaymentInformation = serde_json::from_str(json).unwrap();
        assert_eq!(info.date_of_purchase, None);
        assert_eq!(serde_json::to_string(&info).unwrap(), json);
    }
}
