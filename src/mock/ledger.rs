//! What the mock knows: purchases, issued tokens and demo users, and the
//! JSON ledger the standalone mock is seeded from.

use serde::{Deserialize, Serialize};

use crate::{PaymentStatus, ResourceId, ResourceType, UserId};

/// Which shape `payment_status` takes in the mock's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusShape {
    /// `{"type": "PAID"}`, as Figma's official spec says (the default).
    #[default]
    TypeObject,
    /// `{"status": "PAID"}`, as Figma's docs page shows.
    StatusObject,
    /// `"PAID"`, as the seed OpenAPI file of this project says (no version
    /// of Figma's official spec has this shape).
    BareString,
}

/// A purchase in the mock's ledger, as the standalone mock's JSON file writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Purchase {
    /// The buyer.
    pub user_id: UserId,
    /// `PLUGIN`, `WIDGET` or `COMMUNITY_FILE`.
    pub resource_type: ResourceType,
    /// The resource bought.
    pub resource_id: ResourceId,
    /// `PAID`, `TRIAL`, `UNPAID`, …
    #[serde(with = "status_name")]
    pub status: PaymentStatus,
    /// When it was bought.
    #[serde(default)]
    pub date_of_purchase: Option<String>,
}

/// A plugin payment token the mock will accept, as its JSON file writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The token.
    pub token: String,
    /// The user it names.
    pub user_id: UserId,
    /// `PLUGIN` or `WIDGET`.
    pub resource_type: ResourceType,
    /// The plugin or widget it was made for.
    pub resource_id: ResourceId,
}

/// A demo user: shown on the mock's OAuth page, answered by `/v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoUser {
    /// The user's ID.
    pub id: UserId,
    /// The user's handle.
    pub handle: String,
}

/// The whole ledger the standalone mock is seeded from (`examples/mock_figma.rs`).
///
/// ```
/// let ledger: figma_paywall::mock::Ledger = serde_json::from_str(r#"{
///   "purchases": [{"user_id": "2001", "resource_type": "PLUGIN",
///                  "resource_id": "1122334455", "status": "PAID"}],
///   "tokens": [{"token": "ppt_demo", "user_id": "2001",
///               "resource_type": "PLUGIN", "resource_id": "1122334455"}]
/// }"#)?;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// The access token to accept; default [`MOCK_ACCESS_TOKEN`](super::MOCK_ACCESS_TOKEN).
    #[serde(default)]
    pub access_token: Option<String>,
    /// The users known to the mock.
    #[serde(default)]
    pub users: Vec<DemoUser>,
    /// Purchases.
    #[serde(default)]
    pub purchases: Vec<Purchase>,
    /// Plugin payment tokens.
    #[serde(default)]
    pub tokens: Vec<IssuedToken>,
    /// How `payment_status` is written.
    #[serde(default)]
    pub status_shape: StatusShape,
}

mod status_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::PaymentStatus;

    pub(super) fn serialize<S: Serializer>(s: &PaymentStatus, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PaymentStatus, D::Error> {
        PaymentStatus::deserialize(d)
    }
}
