//! The sign-in routes: `login` sends the visitor to Figma, `callback`
//! exchanges the code for the visitor's ID, `logout` ends the session.

use axum::{
    extract::{Query, Request, State},
    response::{IntoResponse, Redirect, Response},
};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{
    profile::{Profile, MAX_ANSWER, PROFILE_TIMEOUT},
    unix_now, FigmaLogin, FLOW_COOKIE, FLOW_LIFETIME, SCOPE,
};
use crate::UserId;

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Only local paths: never a redirect to another site.
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    verifier: String,
    next: String,
    /// When the flow began, Unix seconds: it is refused once older than
    /// `FLOW_LIFETIME`, whatever the cookie's own expiry says.
    started: u64,
}

/// The most of Figma's token answer read: it is a few hundred bytes.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

/// 429 with `Retry-After`: a sign-in refused for a budget, `why` saying
/// whose, before Figma hears of it.
fn too_many(wait: std::time::Duration, why: &str, login: &FigmaLogin) -> Response {
    let secs = wait.as_secs() + 1;
    tracing::warn!(
        retry_after_secs = secs,
        "sign-in refused: {why} (LoginBuilder::sign_ins_per_minute)"
    );
    let mut response = failed(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Too many sign-ins right now; try again in {secs} seconds."),
        login,
    );
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, secs.into());
    response
}

pub(super) async fn login(
    State(login): State<FigmaLogin>,
    jar: PrivateCookieJar,
    Query(query): Query<LoginQuery>,
    request: Request,
) -> Response {
    let c = &login.inner;
    let client = c.sign_ins.client_of(&request.into_parts().0);
    if let Err(wait) = c.sign_ins.begin(client) {
        return too_many(wait, "too many sign-ins begun this minute", &login);
    }
    let flow = Flow {
        state: random_token(),
        verifier: random_token(),
        next: safe_next(query.next.as_deref()),
        started: unix_now(),
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(flow.verifier.as_bytes()));
    let mut url = c.authorize_url.clone();
    url.query_pairs_mut()
        .append_pair("client_id", &c.client_id)
        .append_pair("redirect_uri", c.callback_url.as_str())
        .append_pair("scope", SCOPE)
        .append_pair("state", &flow.state)
        .append_pair("response_type", "code")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let cookie = login.cookie(
        FLOW_COOKIE.to_owned(),
        serde_json::to_string(&flow).unwrap_or_default(),
        c.prefix.clone(),
        FLOW_LIFETIME,
    );
    (jar.add(cookie), Redirect::to(url.as_str())).into_response()
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    user_id_string: Option<String>,
    user_id: Option<serde_json::Number>,
    /// Used once, for the visitor's profile, then dropped; never logged.
    access_token: Option<String>,
}

/// A sign-in that did not work: a page that says so and offers to start again.
fn failed(status: StatusCode, why: &str, login: &FigmaLogin) -> Response {
    let again = login.login_path("/");
    (
        status,
        axum::response::Html(format!(
            "<!doctype html><title>Sign-in failed</title><h1>Sign-in with Figma did not work</h1><p>{why}</p><p><a href=\"{again}\">Sign in again</a></p>"
        )),
    )
        .into_response()
}

pub(super) async fn callback(
    State(login): State<FigmaLogin>,
    jar: PrivateCookieJar,
    Query(query): Query<CallbackQuery>,
    request: Request,
) -> Response {
    let c = &login.inner;
    let client = c.sign_ins.client_of(&request.into_parts().0);
    // A tampered or foreign cookie does not decrypt: no flow.
    let flow: Option<Flow> = jar
        .get(FLOW_COOKIE)
        .and_then(|cookie| serde_json::from_str(cookie.value()).ok());
    let jar = jar.remove(Cookie::build(FLOW_COOKIE).path(c.prefix.clone()));
    let Some(flow) = flow else {
        tracing::debug!("sign-in refused: no sign-in under way in this browser");
        return (
            jar,
            failed(
                StatusCode::BAD_REQUEST,
                "This sign-in was not started in this browser, or took too long.",
                &login,
            ),
        )
            .into_response();
    };
    if query.error.is_some() {
        return (
            jar,
            failed(StatusCode::FORBIDDEN, "Figma did not grant access.", &login),
        )
            .into_response();
    }
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return (
            jar,
            failed(
                StatusCode::BAD_REQUEST,
                "Figma's answer is incomplete.",
                &login,
            ),
        )
            .into_response();
    };
    if !bool::from(state.as_bytes().ct_eq(flow.state.as_bytes())) {
        tracing::warn!("sign-in refused: the state does not match (a forged or crossed callback)");
        return (
            jar,
            failed(
                StatusCode::BAD_REQUEST,
                "This sign-in does not match the one this browser started.",
                &login,
            ),
        )
            .into_response();
    }
    // A flow is good for 10 minutes and one callback: a captured flow
    // cookie cannot be replayed to spend token exchanges at Figma.
    let too_old = unix_now().saturating_sub(flow.started) > FLOW_LIFETIME.as_secs();
    let replayed = c.used_flows.contains_key(&flow.state);
    if too_old || replayed {
        tracing::debug!(too_old, replayed, "sign-in refused: the flow is spent");
        return (
            jar,
            failed(
                StatusCode::BAD_REQUEST,
                "This sign-in was already used or took too long.",
                &login,
            ),
        )
            .into_response();
    }
    // Each exchange spends the app's client credentials at Figma, and
    // anyone can start one: at most so many a minute, for each client and
    // for the replica.
    if let Err(wait) = c.sign_ins.exchange(client) {
        return (jar, too_many(wait, "too many sign-ins this minute", &login)).into_response();
    }
    c.used_flows.insert(flow.state.clone(), ());
    let answer = c
        .http
        .post(c.token_url.clone())
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("redirect_uri", c.callback_url.as_str()),
            ("code", code.as_str()),
            ("grant_type", "authorization_code"),
            ("code_verifier", flow.verifier.as_str()),
        ])
        .send()
        .await;
    let answer = match answer {
        Ok(answer) if answer.status().is_success() => read_bounded(answer, MAX_TOKEN_ANSWER)
            .await
            .and_then(|body| serde_json::from_slice::<TokenAnswer>(&body).ok()),
        Ok(answer) if answer.status().is_client_error() => {
            tracing::debug!(status = %answer.status(), "sign-in refused: Figma refused the code");
            return (
                jar,
                failed(
                    StatusCode::BAD_REQUEST,
                    "The sign-in code expired or was already used.",
                    &login,
                ),
            )
                .into_response();
        }
        Ok(answer) => {
            tracing::warn!(status = %answer.status(), "Figma's token exchange failed");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "Figma's token exchange failed");
            None
        }
    };
    let signed_in = answer.and_then(|a| {
        let id = a
            .user_id_string
            .or_else(|| a.user_id.map(|n| n.to_string()))?;
        Some((UserId::new(id).ok()?, a.access_token))
    });
    let Some((user, access_token)) = signed_in else {
        return (
            jar,
            failed(
                StatusCode::BAD_GATEWAY,
                "Figma could not confirm who you are; try again.",
                &login,
            ),
        )
            .into_response();
    };
    let profile = match access_token {
        Some(token) => profile(&c.http, &c.me_url, &token, &user).await,
        None => None,
    };
    tracing::info!(user_id = %user, "signed in with Figma");
    let session = c.sessions.issue(user, profile);
    let cookie = login.cookie(
        c.cookie_name.clone(),
        serde_json::to_string(&session).unwrap_or_default(),
        "/".to_owned(),
        c.session_lifetime,
    );
    (jar.add(cookie), Redirect::to(&flow.next)).into_response()
}

/// Ends the session on this replica (a copy of the cookie no longer signs
/// in) and clears the cookie.
pub(super) async fn logout(
    State(login): State<FigmaLogin>,
    headers: http::HeaderMap,
    jar: PrivateCookieJar,
) -> Response {
    // Another site's form cannot sign the visitor out (CSRF): browsers say
    // where a POST comes from.
    let site = login.inner.callback_url.origin().ascii_serialization();
    let from_elsewhere = headers
        .get(http::header::ORIGIN)
        .is_some_and(|origin| origin.as_bytes() != site.as_bytes())
        || headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
    if from_elsewhere {
        tracing::debug!("sign-out refused: posted from another site");
        return (StatusCode::FORBIDDEN, "Sign out from the site itself.").into_response();
    }
    if let Some(out) = login
        .session(&headers)
        .and_then(|session| login.inner.sessions.end(&session))
    {
        login.tell(&out);
    }
    let jar = jar.remove(Cookie::build(login.inner.cookie_name.clone()).path("/"));
    (jar, Redirect::to("/")).into_response()
}

impl axum::extract::FromRef<FigmaLogin> for Key {
    fn from_ref(login: &FigmaLogin) -> Key {
        login.inner.key.clone()
    }
}

/// The profile of `user`, whose OAuth access token is `token`: one
/// `GET /v1/me`, dropped on any failure (the sign-in goes on without it).
async fn profile(
    http: &reqwest::Client,
    me_url: &url::Url,
    token: &str,
    user: &UserId,
) -> Option<Profile> {
    // A sign-in waits for it: not long.
    let asked = http
        .get(me_url.clone())
        .bearer_auth(token)
        .timeout(PROFILE_TIMEOUT)
        .send()
        .await;
    let answer = match asked {
        Ok(answer) if answer.status().is_success() => answer,
        Ok(answer) => {
            tracing::debug!(status = %answer.status(), "Figma gave no profile at sign-in");
            return None;
        }
        Err(e) => {
            tracing::debug!(error = %e.without_url(), "Figma gave no profile at sign-in");
            return None;
        }
    };
    let body = read_bounded(answer, MAX_ANSWER).await?;
    Profile::of(serde_json::from_slice(&body).ok()?, user)
}

/// The body of `answer`, or `None` past `max` bytes (such as
/// [`MAX_TOKEN_ANSWER`]) or on a broken connection.
pub(super) async fn read_bounded(mut answer: reqwest::Response, max: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.ok()? {
        if body.len() + chunk.len() > max {
            tracing::warn!("Figma's answer is larger than {max} bytes: refused");
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_ever_a_local_path() {
        assert_eq!(safe_next(Some("/docs/intro?a=1")), "/docs/intro?a=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "docs",
            "/a\nb",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    /// The callback of a flow that began `age` ago, as the browser sends it.
    async fn callback_of_a_flow_begun(age: std::time::Duration) -> Response {
        use tower::ServiceExt;
        // Figma's token endpoint is unreachable: a flow that gets as far as
        // the exchange is answered 502, one refused before it 400.
        let login = FigmaLogin::builder("id", "secret", "http://127.0.0.1:1")
            .api_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        let flow = Flow {
            state: "s".repeat(43),
            verifier: "v".repeat(43),
            next: "/".to_owned(),
            started: unix_now() - age.as_secs(),
        };
        let set_cookie = PrivateCookieJar::new(login.inner.key.clone())
            .add(Cookie::new(
                FLOW_COOKIE,
                serde_json::to_string(&flow).unwrap(),
            ))
            .into_response();
        let cookie = set_cookie.headers()[http::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let request = http::Request::get(format!("/auth/callback?code=c&state={}", flow.state))
            .header(http::header::COOKIE, cookie)
            .body(axum::body::Body::empty())
            .unwrap();
        login.router::<()>().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn a_flow_is_refused_once_older_than_ten_minutes() {
        let fresh = callback_of_a_flow_begun(std::time::Duration::from_secs(9 * 60)).await;
        assert_eq!(
            fresh.status(),
            StatusCode::BAD_GATEWAY,
            "it got to the exchange"
        );
        let stale = callback_of_a_flow_begun(std::time::Duration::from_secs(11 * 60)).await;
        assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_token_answer_is_read_only_up_to_its_bound() {
        let small =
            reqwest::Response::from(http::Response::new(b"{\"user_id_string\":\"1\"}".to_vec()));
        assert_eq!(
            read_bounded(small, MAX_TOKEN_ANSWER).await.map(|b| b.len()),
            Some(22)
        );
        let huge = reqwest::Response::from(http::Response::new(vec![b' '; MAX_TOKEN_ANSWER + 1]));
        assert_eq!(read_bounded(huge, MAX_TOKEN_ANSWER).await, None);
    }
}
