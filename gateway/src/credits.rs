//! `--credits` and `--credit-cost`: what each caller may spend, what a
//! path costs, the upstream's reported cost, and the balance endpoint.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use figma_paywall::{
    credits::{Balance, CreditCharge, CreditCost, Credits},
    PaymentStatus, Paywall, UserId,
};
use serde_json::{json, Value};
use tower_service::Service;

use crate::flags::Secret;

/// What the upstream reports a request really cost, in credits; removed
/// before the client sees the answer.
pub(crate) const CREDITS_USED: HeaderName = HeaderName::from_static("x-figma-credits-used");

/// What the caller has left after this request's reservation, for the
/// upstream (beside the identity headers).
pub(crate) const CREDITS_REMAINING: HeaderName =
    HeaderName::from_static("x-figma-credits-remaining");

/// The credits' flags.
#[derive(clap::Args, Debug)]
pub(crate) struct CreditArgs {
    /// Meter what each caller spends, counted by the Figma user of Figma's
    /// answer: status=amount/window, comma-separated (status paid, trial
    /// or unpaid; window hour, day, month, or none: in all), such as
    /// paid=1000/month,paid=100/day,trial=50/day,unpaid=5 (5 free tries
    /// for non-buyers). Counts live in Redis with REDIS_URL, else in the
    /// store, else in the process.
    #[arg(long, value_name = "ALLOWANCES", env = "FIGMA_PAYWALL_CREDITS")]
    credits: Option<Credits>,

    /// What a request under PATH costs (default 1): /generate=5, the
    /// longest prefix wins. Repeat it, or comma-separate. The upstream may
    /// answer X-Figma-Credits-Used: N to charge N instead (0 gives it back).
    #[arg(
        long = "credit-cost",
        value_name = "PATH=N",
        env = "FIGMA_PAYWALL_CREDIT_COSTS",
        value_delimiter = ',',
        value_parser = cost_route
    )]
    costs: Vec<(String, u64)>,
}

fn cost_route(text: &str) -> Result<(String, u64), String> {
    let usage = "give --credit-cost PATH=N, such as /generate=5";
    let (path, cost) = text.trim().split_once('=').ok_or(usage)?;
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not a path: {usage}"));
    }
    let cost = cost
        .trim()
        .parse()
        .map_err(|_| format!("{cost:?} is not a whole number: {usage}"))?;
    Ok((path.to_owned(), cost))
}

/// The gateway's credits: the allowances, and what each path costs.
#[derive(Debug, Clone)]
pub(crate) struct Metered {
    pub(crate) credits: Credits,
    costs: Arc<[(String, u64)]>,
}

impl Metered {
    pub(crate) fn from_args(args: CreditArgs) -> Result<Option<Self>, String> {
        let Some(credits) = args.credits else {
            if !args.costs.is_empty() {
                return Err(
                    "--credit-cost needs --credits: say what each caller may spend".to_owned(),
                );
            }
            return Ok(None);
        };
        let mut costs = args.costs;
        // Longest first: the first that matches is the longest prefix.
        costs.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Ok(Some(Self {
            credits,
            costs: costs.into(),
        }))
    }

    /// The cost of a request to `path`, if a `--credit-cost` names it.
    fn cost_of(&self, path: &str) -> Option<u64> {
        self.costs
            .iter()
            .find(|(prefix, _)| under(path, prefix))
            .map(|(_, cost)| *cost)
    }
}

/// Whether `path` is `prefix` or below it (`/generate` covers
/// `/generate/image`, not `/generated`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
}

/// Sets each request's [`CreditCost`] from its path, before the gate.
#[derive(Clone)]
pub(crate) struct PriceByPath<S> {
    inner: S,
    metered: Option<Metered>,
    /// The path a request is about (forward auth's is in a header).
    path_of: fn(&Request) -> Option<String>,
}

impl<S> PriceByPath<S> {
    pub(crate) fn new(
        inner: S,
        metered: Option<Metered>,
        path_of: fn(&Request) -> Option<String>,
    ) -> Self {
        Self {
            inner,
            metered,
            path_of,
        }
    }
}

/// [`PriceByPath`] as a layer.
#[derive(Clone)]
pub(crate) struct PriceLayer {
    metered: Option<Metered>,
    path_of: fn(&Request) -> Option<String>,
}

impl PriceLayer {
    pub(crate) fn new(metered: Option<Metered>, path_of: fn(&Request) -> Option<String>) -> Self {
        Self { metered, path_of }
    }
}

impl<S> tower_layer::Layer<S> for PriceLayer {
    type Service = PriceByPath<S>;

    fn layer(&self, inner: S) -> PriceByPath<S> {
        PriceByPath::new(inner, self.metered.clone(), self.path_of)
    }
}

/// A proxied request's own path.
pub(crate) fn own_path(req: &Request) -> Option<String> {
    Some(req.uri().path().to_owned())
}

impl<S: Service<Request, Error = Infallible>> Service<Request> for PriceByPath<S> {
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> S::Future {
        if let Some(metered) = &self.metered {
            if let Some(cost) = (self.path_of)(&req).and_then(|path| metered.cost_of(&path)) {
                req.extensions_mut().insert(CreditCost(cost));
            }
        }
        self.inner.call(req)
    }
}

/// What the upstream hears of the caller's credits.
pub(crate) fn remaining_header(charge: Option<&CreditCharge>, headers: &mut HeaderMap) {
    if let Some(left) = charge.and_then(CreditCharge::remaining) {
        headers.insert(CREDITS_REMAINING, HeaderValue::from(left.max(0)));
    }
}

/// The upstream's `X-Figma-Credits-Used`, reported and removed: the client
/// never sees it, metered or not.
pub(crate) fn take_reported(charge: Option<&CreditCharge>, headers: &mut HeaderMap) {
    let Some(used) = headers.remove(CREDITS_USED) else {
        return;
    };
    let Some(charge) = charge else {
        return;
    };
    match used
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(used) => charge.report(used),
        None => tracing::warn!(
            "the upstream's X-Figma-Credits-Used is not a whole number; the reserved cost stands"
        ),
    }
}

/// The balance endpoint's state: the paywall, the credits, who may ask.
#[derive(Clone)]
struct Admin {
    paywall: Paywall,
    credits: Credits,
    token: Secret,
}

/// `GET /_figma_paywall/credits/{user}`: a user's balance in each status's
/// allowance; `POST .../grant?amount=N&status=paid`: gives N back. Only to
/// holders of the metrics token; none without one.
pub(crate) fn router(
    paywall: &Paywall,
    metered: Option<&Metered>,
    token: Option<&Secret>,
) -> Router {
    let (Some(metered), Some(token)) = (metered, token) else {
        return Router::new();
    };
    Router::new()
        .route("/_figma_paywall/credits/{user}", get(balance))
        .route("/_figma_paywall/credits/{user}/grant", post(grant))
        .with_state(Admin {
            paywall: paywall.clone(),
            credits: metered.credits.clone(),
            token: token.clone(),
        })
}

/// The user a holder of the metrics token asks about, or the refusal:
/// 401 without the token, 400 for what is not a user ID.
fn asked_about(admin: &Admin, headers: &HeaderMap, user: &str) -> Result<UserId, Box<Response>> {
    if !admin.token.held_by(headers) {
        return Err(Box::new(crate::envelope::envelope(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the metrics token as a bearer token",
        )));
    }
    UserId::new(user).map_err(|e| {
        Box::new(crate::envelope::envelope(
            StatusCode::BAD_REQUEST,
            "invalid_user",
            &e.to_string(),
        ))
    })
}

const STATUSES: [(&str, PaymentStatus); 3] = [
    ("paid", PaymentStatus::Paid),
    ("trial", PaymentStatus::Trial),
    ("unpaid", PaymentStatus::Unpaid),
];

fn shown(balance: &Balance) -> Value {
    balance
        .windows
        .iter()
        .map(|w| {
            json!({
                "window": w.allowance.window.as_str(),
                "allowance": w.allowance.amount,
                "remaining": w.remaining,
                "renews_in_secs": w.renews_in,
            })
        })
        .collect()
}

async fn balance(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let user = match asked_about(&admin, &headers, &user) {
        Ok(user) => user,
        Err(refused) => return *refused,
    };
    let mut body = serde_json::Map::new();
    for (name, status) in STATUSES {
        if admin.credits.allowances(&status).is_empty() {
            continue;
        }
        match admin
            .paywall
            .credits_left(&admin.credits, &user, &status)
            .await
        {
            Ok(balance) => body.insert(name.to_owned(), shown(&balance)),
            Err(e) => return unavailable(&e),
        };
    }
    Json(json!({ "user_id": user.as_str(), "credits": body })).into_response()
}

async fn grant(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(user): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let user = match asked_about(&admin, &headers, &user) {
        Ok(user) => user,
        Err(refused) => return *refused,
    };
    let Some(amount) = query.get("amount").and_then(|a| a.parse::<u64>().ok()) else {
        return crate::envelope::envelope(
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            "give ?amount=N, a whole number of credits",
        );
    };
    let asked = query.get("status").map_or("paid", String::as_str);
    let Some((name, status)) = STATUSES
        .iter()
        .find(|(name, _)| asked.eq_ignore_ascii_case(name))
    else {
        return crate::envelope::envelope(
            StatusCode::BAD_REQUEST,
            "invalid_status",
            "give ?status=paid, trial or unpaid",
        );
    };
    match admin
        .paywall
        .grant_credits(&admin.credits, &user, status, amount)
        .await
    {
        Ok(balance) => {
            tracing::info!(user = %user, status = *name, amount, "credits granted");
            Json(json!({ "user_id": user.as_str(), "credits": { *name: shown(&balance) } }))
                .into_response()
        }
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &figma_paywall::credits::CountsError) -> Response {
    crate::envelope::envelope(
        StatusCode::SERVICE_UNAVAILABLE,
        "credits_unavailable",
        &e.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_names_the_cost() {
        let metered = Metered::from_args(CreditArgs {
            credits: Some("paid=10/day".parse().unwrap()),
            costs: vec![
                ("/generate".into(), 5),
                ("/generate/image".into(), 20),
                ("/".into(), 2),
            ],
        })
        .unwrap()
        .unwrap();
        assert_eq!(metered.cost_of("/generate"), Some(5));
        assert_eq!(metered.cost_of("/generate/text"), Some(5));
        assert_eq!(metered.cost_of("/generate/image/big"), Some(20));
        assert_eq!(metered.cost_of("/generated"), Some(2));
        assert!(cost_route("generate=5").unwrap_err().contains("not a path"));
        assert!(cost_route("/generate=five").is_err());
    }
}
