//! `GET /v1/payments` and `GET /v1/me`, answered as Figma answers them.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use axum::{
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{
    fault::{apply_fault, envelope, take_fault, too_many_requests, Fault},
    purchase_date, MockState, Shared, StatusShape, MOCK_CREATOR_ID,
};
use crate::{error::ceil_secs, PaymentStatus, Resource, ResourceId, ResourceType, UserId};

fn authorized(state: &MockState, headers: &HeaderMap) -> bool {
    let tokens: Vec<_> = headers.get_all("x-figma-token").iter().collect();
    tokens.len() == 1 && tokens[0].as_bytes() == state.access_token.as_bytes()
}

pub(super) async fn payments(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    shared.payment_requests.fetch_add(1, Ordering::SeqCst);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    {
        let mut state = shared.lock();
        state.queries.push(pairs.clone());
        let now = state.clock.now();
        state.arrivals.push(now);
    }
    let (fault, latency) = take_fault(&shared);
    if let Some(Fault::RateLimited { retry_after } | Fault::RateLimitedAs { retry_after, .. }) =
        &fault
    {
        let mut state = shared.lock();
        let now = state.clock.now();
        state
            .back_offs
            .push((now, Duration::from_secs(*retry_after)));
    }
    if let Some(response) = apply_fault(fault, latency).await {
        return response;
    }
    let mut state = shared.lock();
    let now = state.clock.now();
    if let Some(bucket) = &mut state.bucket {
        if let Err(wait) = bucket.take(now) {
            let (plan_tier, kind) = (bucket.plan_tier.clone(), bucket.rate_limit_type.clone());
            state.rate_limited += 1;
            if state.last_was_rate_limited {
                state.rate_limited_in_a_row += 1;
            }
            state.last_was_rate_limited = true;
            let retry_after = ceil_secs(wait).max(1);
            state
                .back_offs
                .push((now, Duration::from_secs(retry_after)));
            return too_many_requests(&retry_after.to_string(), &plan_tier, &kind);
        }
    }
    state.last_was_rate_limited = false;
    if !authorized(&state, &headers) {
        return envelope(StatusCode::UNAUTHORIZED, "Token is missing or incorrect");
    }
    match answer(&state, &pairs) {
        Ok(meta) => Json(json!({"status": 200, "error": false, "meta": meta})).into_response(),
        Err((status, message)) => envelope(status, &message),
    }
}

type Refusal = (StatusCode, String);

fn bad(message: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, message.into())
}

fn answer(state: &MockState, pairs: &[(String, String)]) -> Result<Value, Refusal> {
    let mut params: HashMap<&str, &str> = HashMap::new();
    for (name, value) in pairs {
        if params.insert(name, value).is_some() {
            return Err(bad(format!("Parameter {name} given more than once")));
        }
    }
    const KNOWN: [&str; 5] = [
        "plugin_payment_token",
        "user_id",
        "plugin_id",
        "widget_id",
        "community_file_id",
    ];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(k)) {
        return Err(bad(format!("Unknown parameter {unknown}")));
    }
    let (user, resource) = if let Some(token) = params.get("plugin_payment_token") {
        if params.len() != 1 {
            return Err(bad("plugin_payment_token must be the only parameter"));
        }
        let grant = state.tokens.get(*token).ok_or((
            StatusCode::UNAUTHORIZED,
            "Token is missing or incorrect".to_owned(),
        ))?;
        if grant.expires_at <= state.clock.now() {
            return Err(bad("plugin_payment_token has expired"));
        }
        (grant.user.clone(), grant.resource.clone())
    } else {
        let user = params
            .get("user_id")
            .ok_or_else(|| bad("Provide plugin_payment_token, or user_id and a resource ID"))?;
        let user = UserId::new(user).map_err(|e| bad(e.to_string()))?;
        let given: Vec<_> = [
            ("plugin_id", ResourceType::Plugin),
            ("widget_id", ResourceType::Widget),
            ("community_file_id", ResourceType::CommunityFile),
        ]
        .into_iter()
        .filter_map(|(name, kind)| params.get(name).map(|id| (kind, *id)))
        .collect();
        let [(kind, id)] = &given[..] else {
            return Err(bad(
                "Provide exactly one of community_file_id, plugin_id, or widget_id",
            ));
        };
        let id = ResourceId::new(id).map_err(|e| bad(e.to_string()))?;
        (user, Resource::new(kind.clone(), id))
    };
    let (status, date) = state
        .ledger
        .get(&(resource.kind().clone(), resource.id().clone(), user.clone()))
        .cloned()
        .unwrap_or_else(|| {
            let status = state
                .default_status
                .clone()
                .unwrap_or(PaymentStatus::Unpaid);
            let date = purchase_date(&status);
            (status, date)
        });
    let status_json = match state.shape {
        StatusShape::TypeObject => json!({"type": status.as_str()}),
        StatusShape::StatusObject => json!({"status": status.as_str()}),
        StatusShape::BareString => json!(status.as_str()),
    };
    let mut meta = json!({
        "user_id": user,
        "resource_id": resource.id(),
        "resource_type": resource.kind(),
        "payment_status": status_json,
    });
    if let Some(date) = date {
        meta["date_of_purchase"] = json!(date);
    }
    Ok(meta)
}

pub(super) async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.me_requests.fetch_add(1, Ordering::SeqCst);
    let (fault, latency) = take_fault(&shared);
    let latency = latency + shared.lock().me_latency;
    if let Some(response) = apply_fault(fault, latency).await {
        return response;
    }
    let state = shared.lock();
    // A visitor's OAuth token (sign-in): that visitor.
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        let Some(user) = state.oauth_tokens.get(token) else {
            return envelope(StatusCode::FORBIDDEN, "Invalid token");
        };
        let handle = state
            .users
            .iter()
            .find(|u| u.id == *user)
            .map_or_else(|| format!("user{user}"), |u| u.handle.clone());
        return Json(json!({
            "id": user,
            "handle": handle,
            "img_url": mock_avatar(user.as_str()),
            "email": format!("{user}@example.com"),
        }))
        .into_response();
    }
    if !authorized(&state, &headers) {
        return envelope(StatusCode::FORBIDDEN, "Invalid token");
    }
    Json(json!({
        "id": MOCK_CREATOR_ID,
        "handle": "Mock Creator",
        "img_url": mock_avatar(MOCK_CREATOR_ID),
        "email": "creator@example.com",
    }))
    .into_response()
}

/// The avatar `GET /v1/me` names for user `id`: an `https://` URL, as
/// Figma's are (nothing answers it).
fn mock_avatar(id: &str) -> String {
    format!("https://www.figma.com/api/mock/avatar/{id}.png")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::mock::TokenGrant;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn state() -> MockState {
        let mut state = MockState::default();
        let plugin = Resource::plugin("11").unwrap();
        let buyer = UserId::new("2001").unwrap();
        state.ledger.insert(
            (ResourceType::Plugin, plugin.id().clone(), buyer.clone()),
            (PaymentStatus::Paid, None),
        );
        let now = Instant::now();
        let expired = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        for (token, expires_at) in [
            ("ppt_live", now + Duration::from_secs(60)),
            ("ppt_old", expired),
        ] {
            state.tokens.insert(
                token.to_owned(),
                TokenGrant {
                    user: buyer.clone(),
                    resource: plugin.clone(),
                    expires_at,
                },
            );
        }
        state
    }

    #[test]
    fn questions_must_name_exactly_one_resource_or_a_token_alone() {
        let state = state();
        for bad in [
            pairs(&[("user_id", "2001")]),
            pairs(&[
                ("user_id", "2001"),
                ("plugin_id", "11"),
                ("widget_id", "11"),
            ]),
            pairs(&[
                ("user_id", "2001"),
                ("plugin_id", "11"),
                ("plugin_id", "12"),
            ]),
            pairs(&[("user_id", "2001"), ("plugin_id", "11"), ("extra", "1")]),
            pairs(&[("plugin_payment_token", "ppt_live"), ("plugin_id", "11")]),
            pairs(&[("user_id", "x"), ("plugin_id", "11")]),
            pairs(&[("plugin_payment_token", "ppt_old")]),
        ] {
            let (status, _) = answer(&state, &bad).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let (status, _) =
            answer(&state, &pairs(&[("plugin_payment_token", "ppt_forged")])).unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn answers_come_from_the_ledger_then_the_default_status() {
        let mut state = state();
        let by_token = answer(&state, &pairs(&[("plugin_payment_token", "ppt_live")])).unwrap();
        assert_eq!(by_token["user_id"], "2001");
        assert_eq!(by_token["payment_status"], json!({"type": "PAID"}));
        let stranger = pairs(&[("user_id", "3001"), ("plugin_id", "11")]);
        assert_eq!(
            answer(&state, &stranger).unwrap()["payment_status"],
            json!({"type": "UNPAID"})
        );
        state.default_status = Some(PaymentStatus::Paid);
        state.shape = StatusShape::BareString;
        let meta = answer(&state, &stranger).unwrap();
        assert_eq!(meta["payment_status"], "PAID");
        assert_eq!(meta["date_of_purchase"], "2026-01-15T10:30:00Z");
        assert_eq!(meta["resource_type"], "PLUGIN");
    }
}
