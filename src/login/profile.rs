//! Who the signed-in visitor is to a person: their Figma handle and avatar,
//! asked of Figma once, at sign-in.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{FigmaUser, UserId};

/// A handle longer than this is not kept (Figma's are short).
const MAX_HANDLE: usize = 100;
/// An avatar URL longer than this is not kept.
const MAX_IMG_URL: usize = 1024;
/// `GET /v1/me` answers a few hundred bytes.
pub(super) const MAX_ANSWER: usize = 16 * 1024;
/// How long a sign-in waits for the profile.
pub(super) const PROFILE_TIMEOUT: Duration = Duration::from_secs(2);

/// The signed-in visitor's Figma handle and avatar, as Figma's `GET /v1/me`
/// gave them at sign-in: on each request of a signed-in visitor, beside
/// their [`UserId`], for a page to greet them by. For display only: the
/// [`UserId`] is who they are. A sign-in goes on without one when Figma
/// does not answer (then only the [`UserId`] is there).
///
/// ```
/// use axum::{routing::get, Extension, Router};
/// use figma_paywall::{login::Profile, UserId};
///
/// let app: Router = Router::new().route(
///     "/",
///     get(|user: Option<Extension<UserId>>, profile: Option<Extension<Profile>>| async move {
///         match (user, profile) {
///             (_, Some(Extension(profile))) => format!("Hello, {}", profile.handle),
///             (Some(Extension(user)), None) => format!("Hello, Figma user {user}"),
///             (None, None) => "Hello".to_owned(),
///         }
///     }),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Profile {
    /// Whose profile this is: the signed-in visitor. Show it beside a
    /// payment answer only if the answer is about this user (a request may
    /// carry another user's plugin payment token).
    pub user_id: UserId,
    /// The visitor's Figma handle (their name on Figma), as text: escape
    /// it where it goes into HTML.
    pub handle: String,
    /// Their avatar, an `https://` URL, if Figma gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img_url: Option<String>,
}

impl Profile {
    /// `me`'s handle and avatar, if `me` is `user` and the handle is
    /// usable; an avatar only at an `https://` URL.
    pub(super) fn of(me: FigmaUser, user: &UserId) -> Option<Self> {
        let handle = me.handle.trim();
        if me.id != *user || handle.is_empty() || handle.chars().count() > MAX_HANDLE {
            return None;
        }
        // Kept as the URL parser writes it: quotes and control characters
        // percent-encoded, so the session cookie stays small.
        let img_url = me
            .img_url
            .and_then(|url| Url::parse(&url).ok())
            .filter(|u| u.scheme() == "https" && u.host().is_some())
            .map(String::from)
            .filter(|url| url.len() <= MAX_IMG_URL);
        Some(Self {
            user_id: me.id,
            handle: handle.to_owned(),
            img_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(id: &str, handle: &str, img_url: Option<&str>) -> FigmaUser {
        serde_json::from_value(serde_json::json!({
            "id": id, "handle": handle, "img_url": img_url,
        }))
        .unwrap()
    }

    #[test]
    fn only_the_user_s_own_usable_profile_is_kept() {
        let user = UserId::new("42").unwrap();
        let kept = Profile::of(me("42", " Ada ", Some("https://s3.example/a.png")), &user);
        assert_eq!(
            kept,
            Some(Profile {
                user_id: user.clone(),
                handle: "Ada".into(),
                img_url: Some("https://s3.example/a.png".into()),
            })
        );
        // Written as the parser writes it: a quote is percent-encoded.
        let quoted = Profile::of(me("42", "Ada", Some("https://s3.example/a\".png")), &user);
        assert_eq!(
            quoted.unwrap().img_url.as_deref(),
            Some("https://s3.example/a%22.png")
        );
        assert_eq!(Profile::of(me("43", "Ada", None), &user), None);
        assert_eq!(Profile::of(me("42", "  ", None), &user), None);
        assert_eq!(Profile::of(me("42", &"a".repeat(101), None), &user), None);
        for url in [
            "javascript:alert(1)",
            "http://s3.example/a.png",
            "data:image/png;base64,AA",
        ] {
            let profile = Profile::of(me("42", "Ada", Some(url)), &user).unwrap();
            assert_eq!(profile.img_url, None, "{url}");
        }
    }
}
