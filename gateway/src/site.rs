//! `--login`: "Sign in with Figma" for a website behind the gateway, as
//! oauth2-proxy does for other providers. Visitors sign in at `/auth/login`;
//! the gate reads the signed-in user; browsers that may not pass get a page
//! (sent to sign in, or the paywall), API clients Figma's envelope.

use axum::{
    http::{header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
};
use figma_paywall::{
    login::{FigmaLogin, Profile},
    Refusal, RefusalReason, Resource, UserId,
};

/// The paywall page's flags.
#[derive(clap::Args, Debug)]
pub(crate) struct PageArgs {
    /// Your product's name, on the paywall page.
    #[arg(long, value_name = "NAME", env = "FIGMA_PAYWALL_PRODUCT_NAME")]
    product_name: Option<String>,

    /// A stylesheet of your own for the paywall page, after its own (an
    /// https:// URL, or a path on the site such as /assets/paywall.css).
    /// The page's parts have ids: buy, refresh, account, avatar, signout.
    #[arg(long, value_name = "URL", env = "FIGMA_PAYWALL_PAGE_STYLESHEET")]
    page_stylesheet: Option<String>,

    /// A logo at the top of the paywall page (an https:// URL, or a path
    /// on the site).
    #[arg(long, value_name = "URL", env = "FIGMA_PAYWALL_PAGE_LOGO")]
    page_logo: Option<String>,
}

/// What the paywall page shows.
#[derive(Clone)]
pub(crate) struct Page {
    pub(crate) product: String,
    pub(crate) buy: Resource,
    /// `<link>` and `<img>` of the creator's own, escaped, or empty.
    extra_head: String,
    logo: String,
}

impl Page {
    /// The page for buyers of `buy`, as `args` dress it.
    pub(crate) fn new(args: &PageArgs, buy: Resource) -> Result<Self, String> {
        let product = args.product_name.clone().unwrap_or_else(|| {
            match buy.kind() {
                figma_paywall::ResourceType::Plugin => "this plugin",
                figma_paywall::ResourceType::Widget => "this widget",
                _ => "this Community file",
            }
            .to_owned()
        });
        let url = |flag: &str, value: &Option<String>| -> Result<Option<String>, String> {
            match value {
                None => Ok(None),
                Some(url)
                    if url.starts_with("https://")
                        || (url.starts_with('/') && !url.starts_with("//")) =>
                {
                    Ok(Some(esc(url)))
                }
                Some(url) => Err(format!(
                    "--{flag} {url:?}: give an https:// URL or a path on the site (/assets/...)"
                )),
            }
        };
        let extra_head = url("page-stylesheet", &args.page_stylesheet)?
            .map(|href| format!("<link rel=\"stylesheet\" href=\"{href}\">"))
            .unwrap_or_default();
        let logo = url("page-logo", &args.page_logo)?
            .map(|src| {
                format!("<p><img id=\"logo\" src=\"{src}\" alt=\"\" style=\"max-height:4em\"></p>")
            })
            .unwrap_or_default();
        Ok(Self {
            product,
            buy,
            extra_head,
            logo,
        })
    }
}

fn wants_html(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// `text` with its first letter a capital, to open a sentence.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Who the visitor is signed in as, in words: the handle and avatar Figma
/// gave at sign-in, else the user ID the login layer read from the session.
fn account(parts: &Parts) -> String {
    if let Some(profile) = parts.extensions.get::<Profile>() {
        let avatar = profile
            .img_url
            .as_deref()
            .map(|src| {
                format!(
                    "<img id=\"avatar\" src=\"{}\" alt=\"\" width=\"28\" height=\"28\" referrerpolicy=\"no-referrer\" style=\"border-radius:50%;vertical-align:middle\"> ",
                    esc(src)
                )
            })
            .unwrap_or_default();
        return format!(" as {avatar}<b id=\"account\">{}</b>", esc(&profile.handle));
    }
    parts
        .extensions
        .get::<UserId>()
        .map(|user| format!(" as user <b id=\"account\">{}</b>", esc(user.as_str())))
        .unwrap_or_default()
}

/// Escapes text for HTML.
pub(crate) fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const HEAD: &str = r#"<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><style>body{font:17px/1.5 system-ui,sans-serif;max-width:34em;margin:0 auto;padding:2em 1.2em;color:#1e1e1e}h1{font-size:1.5em}.buy{display:inline-block;background:#0d99ff;color:#fff;padding:.7em 1.2em;border-radius:.5em;text-decoration:none;font-weight:600}.muted{color:#666}button{font:inherit;background:none;border:1px solid #ccc;border-radius:.4em;padding:.4em .9em}</style>"#;

/// The refusal a website's visitor sees.
pub(crate) fn refuse(refusal: Refusal, parts: &Parts, login: &FigmaLogin, page: &Page) -> Response {
    if !wants_html(parts) {
        return refusal.into_response();
    }
    // A path, never a network-path reference (`//evil.example/x` would
    // send the visitor to another site).
    let asked = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let here = format!("/{}", asked.trim_start_matches(['/', '\\']));
    let here = here.as_str();
    let product = esc(&page.product);
    match refusal.reason {
        RefusalReason::NoIdentity | RefusalReason::InvalidIdentity => {
            Redirect::to(&login.login_path(here)).into_response()
        }
        RefusalReason::NotPaid => (
            refusal.status,
            Html(format!(
                "{HEAD}{head}<title>{title}: for buyers</title>{logo}\
                 <h1>{title} is for buyers</h1>\
                 <p>You are signed in with Figma{account}, but Figma says you have not bought {product} yet.</p>\
                 <p><a class=\"buy\" id=\"buy\" href=\"{url}\">Buy on Figma Community</a></p>\
                 <p class=\"muted\">Already bought? <a id=\"refresh\" href=\"{here}\">Refresh</a> \
                 (a purchase can take a minute to show).</p>\
                 <p class=\"muted\">Bought it with another Figma account? Sign out, then sign in with that one.</p>\
                 <form method=\"post\" action=\"/auth/logout\"><button id=\"signout\">Sign out</button></form>",
                title = capitalized(&product),
                head = page.extra_head,
                logo = page.logo,
                account = account(parts),
                url = page.buy.community_url(),
                here = esc(here),
            )),
        )
            .into_response(),
        _ => (
            refusal.status,
            Html(format!(
                "{HEAD}<title>{product}: try again soon</title>\
                 <h1>We cannot check your purchase right now</h1>\
                 <p>{}</p><p><a href=\"{here}\">Try again</a></p>",
                esc(&refusal.message),
                here = esc(here),
            )),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_with(profile: serde_json::Value) -> Parts {
        let mut parts = http::Request::new(()).into_parts().0;
        parts
            .extensions
            .insert(serde_json::from_value::<Profile>(profile).unwrap());
        parts
    }

    #[test]
    fn the_account_is_escaped_and_an_avatar_only_shown_when_given() {
        let shown = account(&parts_with(serde_json::json!({
            "user_id": "2003",
            "handle": "<script>alert(1)</script>",
            "img_url": "https://s3.example/a.png?\"><script>",
        })));
        assert!(!shown.contains("<script>"), "{shown}");
        assert!(
            shown.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{shown}"
        );
        assert!(
            shown.contains("src=\"https://s3.example/a.png?&quot;&gt;&lt;script&gt;\""),
            "{shown}"
        );
        let plain = account(&parts_with(
            serde_json::json!({"user_id": "2003", "handle": "Bob"}),
        ));
        assert_eq!(plain, " as <b id=\"account\">Bob</b>");
    }
}
