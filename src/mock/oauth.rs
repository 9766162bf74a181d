//! The OAuth side of the mock: an authorize page where you pick a demo user,
//! and the token exchange with PKCE.

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    Form, Json,
};
use base64::{engine::general_purpose, Engine};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    fault::envelope, CodeGrant, Shared, CODE_LIFETIME, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET,
};
use crate::UserId;

#[derive(Deserialize)]
pub(super) struct Authorize {
    client_id: String,
    redirect_uri: String,
    scope: Option<String>,
    state: Option<String>,
    response_type: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<Authorize>,
) -> Response {
    if q.client_id != MOCK_CLIENT_ID {
        return (
            StatusCode::BAD_REQUEST,
            Html("Unknown client_id".to_owned()),
        )
            .into_response();
    }
    if q.response_type.as_deref() != Some("code")
        || !q
            .scope
            .as_deref()
            .unwrap_or_default()
            .split([' ', ','])
            .any(|s| s == "current_user:read")
        || q.code_challenge.is_some() && q.code_challenge_method.as_deref() != Some("S256")
    {
        return (
            StatusCode::BAD_REQUEST,
            Html("Invalid authorization request".to_owned()),
        )
            .into_response();
    }
    let users = shared.lock().users.clone();
    let mut items = String::new();
    for user in &users {
        let mut grant = form_urlencoded::Serializer::new(String::new());
        grant
            .append_pair("user_id", user.id.as_str())
            .append_pair("redirect_uri", &q.redirect_uri)
            .append_pair("state", q.state.as_deref().unwrap_or_default());
        if let Some(challenge) = &q.code_challenge {
            grant.append_pair("code_challenge", challenge);
        }
        items.push_str(&format!(
            "<li><a id=\"user-{id}\" href=\"/oauth/grant?{query}\">{handle}</a></li>",
            id = user.id,
            query = escape(&grant.finish()),
            handle = escape(&user.handle),
        ));
    }
    Html(format!(
        "<!doctype html><title>Figma (mock): sign in</title><h1>Sign in with Figma (mock)</h1><p>An app asks to know who you are. Pick a demo user:</p><ul>{items}</ul>"
    ))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct Grant {
    user_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: Option<String>,
}

pub(super) async fn grant(State(shared): State<Arc<Shared>>, Query(g): Query<Grant>) -> Response {
    let Ok(user) = UserId::new(&g.user_id) else {
        return (StatusCode::BAD_REQUEST, "bad user_id").into_response();
    };
    let Ok(mut target) = url::Url::parse(&g.redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response();
    };
    let code = format!("code_{:032x}", rand::random::<u128>());
    {
        let mut state = shared.lock();
        let lifetime = state.code_lifetime.unwrap_or(CODE_LIFETIME);
        let expires_at = crate::clock::later(state.clock.now(), lifetime);
        state.codes.insert(
            code.clone(),
            CodeGrant {
                user,
                redirect_uri: g.redirect_uri.clone(),
                challenge: g.code_challenge,
                expires_at,
                used: false,
            },
        );
    }
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &g.state);
    Redirect::to(target.as_str()).into_response()
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    redirect_uri: String,
    code: String,
    grant_type: String,
    code_verifier: Option<String>,
}

fn client_authenticated(headers: &HeaderMap) -> bool {
    let expected =
        general_purpose::STANDARD.encode(format!("{MOCK_CLIENT_ID}:{MOCK_CLIENT_SECRET}"));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v == expected)
}

pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let mut state = shared.lock();
    state.token_requests += 1;
    if !client_authenticated(&headers) {
        return envelope(StatusCode::UNAUTHORIZED, "Invalid client credentials");
    }
    if f.grant_type != "authorization_code" {
        return envelope(StatusCode::BAD_REQUEST, "Unsupported grant_type");
    }
    let now = state.clock.now();
    let Some(grant) = state.codes.get_mut(&f.code) else {
        return envelope(StatusCode::BAD_REQUEST, "Invalid code");
    };
    if grant.used {
        return envelope(StatusCode::BAD_REQUEST, "Code already used");
    }
    grant.used = true;
    if grant.expires_at <= now {
        return envelope(StatusCode::BAD_REQUEST, "Code expired");
    }
    if grant.redirect_uri != f.redirect_uri {
        return envelope(StatusCode::BAD_REQUEST, "redirect_uri does not match");
    }
    if let Some(challenge) = &grant.challenge {
        let verifier = f.code_verifier.unwrap_or_default();
        let computed = general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if &computed != challenge {
            return envelope(StatusCode::BAD_REQUEST, "code_verifier does not match");
        }
    }
    let user = grant.user.clone();
    let access_token = format!("figu_{:032x}", rand::random::<u128>());
    state
        .oauth_tokens
        .insert(access_token.clone(), user.clone());
    Json(json!({
        "user_id_string": user,
        "user_id": user.as_str().parse::<u64>().ok(),
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": 7_776_000,
        "refresh_token": format!("figur_{:032x}", rand::random::<u128>()),
    }))
    .into_response()
}
