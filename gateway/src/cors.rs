//! `--cors`: tower-http's `CorsLayer` for browsers on other origins. `*`
//! for a plugin's UI (its iframe's origin is `null`, and Figma says its
//! calls succeed only against `Access-Control-Allow-Origin: *`), or a list
//! of site origins, which may send cookies.

use std::time::Duration;

use axum::{
    http::{header, HeaderName, HeaderValue},
    response::Response,
};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The layer for `--cors ORIGINS`, or why `ORIGINS` is not usable.
pub(crate) fn layer(origins: &str) -> Result<CorsLayer, String> {
    let origins = origins.trim();
    let base = CorsLayer::new()
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(PREFLIGHT_MAX_AGE);
    if origins == "*" {
        // Any origin, `null` too, and so no credentials: the browser sends
        // no cookie, and every header of the answer may be read.
        return Ok(base
            .allow_origin(AllowOrigin::any())
            .expose_headers(ExposeHeaders::any()));
    }
    let list = origins
        .split(',')
        .map(|origin| site_origin(origin.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(base
        .allow_origin(AllowOrigin::list(list))
        .allow_credentials(true)
        .expose_headers([
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
        ]))
}

/// Drops the upstream's own CORS headers: with `--cors` the gateway alone
/// says which origins may read an answer.
pub(crate) async fn drop_upstream_cors(mut response: Response) -> Response {
    let theirs: Vec<HeaderName> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in theirs {
        response.headers_mut().remove(name);
    }
    response
}

/// One origin of a list: `scheme://host[:port]`, as browsers send it in
/// `Origin`.
fn site_origin(origin: &str) -> Result<HeaderValue, String> {
    let usage = "give --cors '*' (any origin: a plugin's UI) or origins such as https://docs.example.com,https://example.com";
    if origin == "*" {
        return Err(format!("--cors: '*' stands alone, not in a list; {usage}"));
    }
    let url = url::Url::parse(origin).map_err(|e| format!("--cors {origin:?}: {e}; {usage}"))?;
    let serialized = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || serialized != origin.trim_end_matches('/') {
        return Err(format!(
            "--cors {origin:?} is not an origin (a scheme, a host and maybe a port, no path); {usage}"
        ));
    }
    HeaderValue::from_str(&serialized).map_err(|e| format!("--cors {origin:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_alone() {
        assert!(layer("*").is_ok());
        assert!(layer("https://docs.example.com, http://127.0.0.1:8000").is_ok());
        assert!(layer("https://docs.example.com/").is_ok());
        for bad in [
            "",
            "docs.example.com",
            "https://docs.example.com/guide",
            "https://example.com,*",
            "ftp://example.com",
            "null",
        ] {
            let why = layer(bad).unwrap_err();
            assert!(why.starts_with("--cors"), "{bad:?}: {why}");
        }
    }
}
