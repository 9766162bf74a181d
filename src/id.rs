//! Figma IDs: users, plugins, widgets and Community files.
//!
//! Figma's IDs are strings of ASCII digits. They look numeric but may not fit
//! a JavaScript number or an `f64`, so this crate never turns them into
//! numbers: it checks them and keeps them as text.
//!
//! # Example
//!
//! ```
//! use figma_paywall::{Resource, ResourceType, UserId};
//!
//! let user = UserId::new("1234567890")?;
//! let plugin = Resource::plugin("1122334455")?;
//! assert_eq!(plugin.kind(), &ResourceType::Plugin);
//! assert_eq!(plugin.id().as_str(), "1122334455");
//!
//! // Full-width digits, signs and spaces are refused before anything is sent.
//! assert!(UserId::new("１２３").is_err());
//! assert!(UserId::new("-1").is_err());
//! # Ok::<(), figma_paywall::InvalidId>(())
//! ```

use std::{
    borrow::Borrow,
    cmp::Ordering,
    fmt,
    hash::{Hash, Hasher},
};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The longest ID this crate accepts, in digits.
///
/// Figma's IDs are about 19 digits today; the bound leaves room to grow while
/// keeping hostile input from costing memory or a request to Figma.
pub(crate) const MAX_ID_LEN: usize = 32;

/// Why a string is not a valid Figma ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// The ID is the empty string.
    #[error("the {what} is empty: a Figma ID is a string of ASCII digits such as \"1122334455\"")]
    Empty {
        /// Which ID was being checked.
        what: &'static str,
    },
    /// The ID is longer than [`UserId::MAX_LEN`] digits.
    #[error("the {what} is {len} characters long: Figma IDs have at most {MAX_ID_LEN} digits")]
    TooLong {
        /// Which ID was being checked.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The ID holds something other than the ASCII digits `0`-`9`.
    #[error("the {what} must be ASCII digits only (no signs, spaces or full-width digits); found a character at byte {position} that is not `0`-`9`")]
    NotDigits {
        /// Which ID was being checked.
        what: &'static str,
        /// Byte offset of the first offending character.
        position: usize,
    },
}

fn check(what: &'static str, s: &str) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(InvalidId::Empty { what });
    }
    if s.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong { what, len: s.len() });
    }
    if let Some(position) = s.bytes().position(|b| !b.is_ascii_digit()) {
        return Err(InvalidId::NotDigits { what, position });
    }
    Ok(())
}

/// A short string held inline: an ID's digits, or a date of purchase.
/// Copying one (into a cached answer, or from it into a request) touches
/// no heap and no shared counter. Compared, hashed and ordered as the text
/// it holds, as `Borrow<str>` requires.
#[derive(Clone, Copy)]
pub(crate) struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// `text`, if it fits (at most `N` bytes, and `N` at most 255).
    pub(crate) fn new(text: &str) -> Option<Self> {
        let len = u8::try_from(text.len())
            .ok()
            .filter(|&l| usize::from(l) <= N)?;
        let mut bytes = [0; N];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Self { len, bytes })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Copied whole from a `&str` (see `new`), so this never falls back.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl<const N: usize> PartialEq for InlineStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for InlineStr<N> {}

impl<const N: usize> Hash for InlineStr<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl<const N: usize> PartialOrd for InlineStr<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for InlineStr<N> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// A checked ID's digits.
type Digits = InlineStr<MAX_ID_LEN>;

/// The digits of `id`, which has passed [`check`]: 1 to [`MAX_ID_LEN`]
/// ASCII digits, so they always fit.
fn digits(checked: &str) -> Digits {
    Digits::new(checked).unwrap_or(InlineStr {
        len: 0,
        bytes: [0; MAX_ID_LEN],
    })
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// Held inline (no heap): cloning one is a copy of 33 bytes.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Digits);

        impl $name {
            /// The longest ID this crate accepts, in digits: Figma's are
            /// about 19 today; the bound leaves room to grow while keeping
            /// hostile input from costing memory or a request to Figma.
            pub const MAX_LEN: usize = MAX_ID_LEN;

            /// Checks `id` (ASCII digits only, 1 to [`MAX_LEN`](Self::MAX_LEN) of them) and wraps it.
            pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidId> {
                let id = id.as_ref();
                check($what, id)?;
                Ok(Self(digits(id)))
            }

            /// The ID as Figma writes it.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.as_str()).finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            /// Accepts a string of digits, as every version of Figma's spec
            /// declares answers' IDs, and also a non-negative integer (a
            /// deprecated numeric field, such as OAuth's `user_id`, or a
            /// proxy that rewrote the JSON). Spec 0.28.0 changed only the
            /// *query parameters* from numbers to strings.
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(IdVisitor($what)).map(Self)
            }
        }
    };
}

struct IdVisitor(&'static str);

impl<'de> de::Visitor<'de> for IdVisitor {
    type Value = Digits;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} as a string of ASCII digits", self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Digits, E> {
        check(self.0, v).map_err(E::custom)?;
        Ok(digits(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Digits, E> {
        Ok(digits(&v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Digits, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("a {} cannot be negative", self.0)))
            .and_then(|v| self.visit_u64(v))
    }
}

id_type!(
    /// The ID of a Figma user, as OAuth's `user_id_string` and
    /// `PaymentInformation::user_id` give it.
    UserId,
    "user ID"
);

id_type!(
    /// The ID of a plugin, a widget or a Community file: the number after
    /// `plugin/`, `widget/` or `file/` in its Community URL, or the `id` of a
    /// plugin's manifest.
    ResourceId,
    "resource ID"
);

/// The kind of thing Figma sells: a plugin, a widget or a Community file.
///
/// Any other value Figma may add later is kept as [`ResourceType::Other`]
/// rather than failing the whole answer; the gate never matches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceType {
    /// `PLUGIN`
    Plugin,
    /// `WIDGET`
    Widget,
    /// `COMMUNITY_FILE`
    CommunityFile,
    /// A value this version of the crate does not know, kept as sent.
    Other(String),
}

impl ResourceType {
    /// The name Figma uses in JSON (`PLUGIN`, `WIDGET`, `COMMUNITY_FILE`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Plugin => "PLUGIN",
            Self::Widget => "WIDGET",
            Self::CommunityFile => "COMMUNITY_FILE",
            Self::Other(s) => s,
        }
    }

    /// The query parameter that names a resource of this kind on `GET /v1/payments`.
    pub(crate) fn query_param(&self) -> Option<&'static str> {
        match self {
            Self::Plugin => Some("plugin_id"),
            Self::Widget => Some("widget_id"),
            Self::CommunityFile => Some("community_file_id"),
            Self::Other(_) => None,
        }
    }

    fn from_name(s: &str) -> Self {
        match s {
            "PLUGIN" => Self::Plugin,
            "WIDGET" => Self::Widget,
            "COMMUNITY_FILE" => Self::CommunityFile,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ResourceType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::from_name(&s))
    }
}

/// A thing sold on Figma: its kind paired with its ID.
///
/// # Example
///
/// ```
/// use figma_paywall::Resource;
///
/// let file = Resource::community_file("9876543210")?;
/// assert_eq!(file.to_string(), "COMMUNITY_FILE 9876543210");
/// # Ok::<(), figma_paywall::InvalidId>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    kind: ResourceType,
    id: ResourceId,
}

impl Resource {
    /// A plugin, by the ID in its manifest or Community URL.
    pub fn plugin(id: impl AsRef<str>) -> Result<Self, InvalidId> {
        Ok(Self::new(ResourceType::Plugin, ResourceId::new(id)?))
    }

    /// A widget, by the ID in its manifest or Community URL.
    pub fn widget(id: impl AsRef<str>) -> Result<Self, InvalidId> {
        Ok(Self::new(ResourceType::Widget, ResourceId::new(id)?))
    }

    /// A Community file, by the number after `file/` in its Community URL.
    pub fn community_file(id: impl AsRef<str>) -> Result<Self, InvalidId> {
        Ok(Self::new(ResourceType::CommunityFile, ResourceId::new(id)?))
    }

    /// Pairs a kind with an already checked ID.
    pub fn new(kind: ResourceType, id: ResourceId) -> Self {
        Self { kind, id }
    }

    /// What kind of resource this is.
    pub fn kind(&self) -> &ResourceType {
        &self.kind
    }

    /// Its ID.
    pub fn id(&self) -> &ResourceId {
        &self.id
    }

    /// The resource's page on Figma Community, where a visitor can buy it.
    pub fn community_url(&self) -> String {
        let path = match self.kind {
            ResourceType::Widget => "widget",
            ResourceType::CommunityFile => "file",
            _ => "plugin",
        };
        format!("https://www.figma.com/community/{path}/{}", self.id)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_strings_hold_what_fits_whole_and_nothing_longer() {
        assert_eq!(std::mem::size_of::<UserId>(), 1 + MAX_ID_LEN);
        let date = InlineStr::<8>::new("2026年1").unwrap();
        assert_eq!(date.as_str(), "2026年1");
        assert!(InlineStr::<8>::new("2026年01").is_none());
        assert_eq!(InlineStr::<8>::new("").unwrap().as_str(), "");
        assert!(InlineStr::<300>::new(&"1".repeat(256)).is_none());
    }

    #[test]
    fn inline_ids_read_compare_and_hash_as_their_text() {
        use std::collections::{hash_map::DefaultHasher, HashMap};
        let longest = "9".repeat(MAX_ID_LEN);
        for text in ["0", "0012", "1234567890123456789", longest.as_str()] {
            let id = UserId::new(text).unwrap();
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(format!("{id:?}"), format!("UserId({text:?})"));
            // `Borrow<str>`: the same hash and equality as the text.
            let hash = |h: &dyn Fn(&mut DefaultHasher)| {
                let mut hasher = DefaultHasher::new();
                h(&mut hasher);
                hasher.finish()
            };
            assert_eq!(hash(&|h| id.hash(h)), hash(&|h| text.hash(h)));
            let map = HashMap::from([(id.clone(), 1)]);
            assert_eq!(map.get(text), Some(&1));
        }
        // Leading zeros count; order is the text's.
        assert_ne!(UserId::new("012").unwrap(), UserId::new("12").unwrap());
        assert!(UserId::new("12").unwrap() > UserId::new("111").unwrap());
    }

    #[test]
    fn ids_are_ascii_digits_within_bounds() {
        assert!(UserId::new("0").is_ok());
        assert!(UserId::new("1".repeat(MAX_ID_LEN)).is_ok());
        assert_eq!(
            UserId::new("1".repeat(MAX_ID_LEN + 1)),
            Err(InvalidId::TooLong {
                what: "user ID",
                len: MAX_ID_LEN + 1
            })
        );
        assert_eq!(UserId::new(""), Err(InvalidId::Empty { what: "user ID" }));
        for bad in [
            "１２３",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1e3",
            "0x1",
            "12&a=1",
            "1\u{0}",
        ] {
            assert!(
                matches!(UserId::new(bad), Err(InvalidId::NotDigits { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn ids_deserialize_from_strings_and_integers() {
        let id: UserId = serde_json::from_str("\"0042\"").unwrap();
        assert_eq!(id, "0042");
        let id: UserId = serde_json::from_str("1234567890123456789").unwrap();
        assert_eq!(id, "1234567890123456789");
        assert!(serde_json::from_str::<UserId>("-5").is_err());
        assert!(serde_json::from_str::<UserId>("1.5").is_err());
        assert!(serde_json::from_str::<UserId>("\"12a\"").is_err());
    }

    #[test]
    fn resource_types_keep_unknown_names() {
        let t: ResourceType = serde_json::from_str("\"SLIDE_TEMPLATE\"").unwrap();
        assert_eq!(t, ResourceType::Other("SLIDE_TEMPLATE".into()));
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"SLIDE_TEMPLATE\"");
        let t: ResourceType = serde_json::from_str("\"COMMUNITY_FILE\"").unwrap();
        assert_eq!(t, ResourceType::CommunityFile);
    }
}
