//! Faults the mock injects instead of answering normally.

use std::time::Duration;

use axum::{
    body::Body,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::Shared;

/// A fault the mock injects instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and Figma's error envelope.
    Status(u16),
    /// Answer 429 with `Retry-After` (seconds) and Figma's tier headers.
    RateLimited {
        /// The `Retry-After` value in seconds.
        retry_after: u64,
    },
    /// Answer 429 with `Retry-After` (seconds) and these tier headers:
    /// `X-Figma-Plan-Tier` (`starter`, `pro`, `org`, `enterprise`) and
    /// `X-Figma-Rate-Limit-Type` (`low`, `high`), which set the budget
    /// the client keeps to afterwards.
    RateLimitedAs {
        /// The `Retry-After` value in seconds.
        retry_after: u64,
        /// `X-Figma-Plan-Tier`.
        plan_tier: &'static str,
        /// `X-Figma-Rate-Limit-Type`.
        rate_limit_type: &'static str,
    },
    /// Answer 429 with this exact `Retry-After` value (an HTTP date,
    /// something unreadable) and Figma's tier headers.
    RateLimitedHeader(String),
    /// Answer 200 with a body that is not JSON.
    MalformedJson,
    /// Answer 200 with an HTML page, as a proxy in front of Figma might.
    Html,
    /// Send the headers, then drop the connection.
    DropConnection,
    /// Wait this long before answering normally (longer than the client's
    /// timeout: no answer at all).
    Delay(Duration),
    /// Answer 200 with this exact JSON body (an answer about someone else,
    /// a new shape, …).
    Answer(Value),
}

pub(super) fn envelope(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": true, "status": status.as_u16(), "message": message})),
    )
        .into_response()
}

/// Figma's 429: `Retry-After` in seconds and the tier headers.
pub(super) fn too_many_requests(
    retry_after: &str,
    plan_tier: &str,
    rate_limit_type: &str,
) -> Response {
    let mut response = envelope(
        StatusCode::TOO_MANY_REQUESTS,
        "Rate limit exceeded. Please wait before retrying.",
    );
    let headers = response.headers_mut();
    for (name, value) in [
        ("retry-after", retry_after),
        ("x-figma-plan-tier", plan_tier),
        ("x-figma-rate-limit-type", rate_limit_type),
        ("x-figma-upgrade-link", "https://www.figma.com/pricing"),
    ] {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    }
    response
}

/// Takes the fault for this request, if any, and the latency to add.
pub(super) fn take_fault(shared: &Shared) -> (Option<Fault>, Duration) {
    let mut state = shared.lock();
    let fault = state
        .faults
        .pop_front()
        .or_else(|| state.steady_fault.clone());
    (fault, state.latency)
}

/// Answers with `fault`, or returns `None` for faults that only delay.
pub(super) async fn apply_fault(fault: Option<Fault>, latency: Duration) -> Option<Response> {
    tokio::time::sleep(latency).await;
    match fault? {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(envelope(
                status,
                status.canonical_reason().unwrap_or("error"),
            ))
        }
        Fault::RateLimitedHeader(value) => Some(too_many_requests(&value, "starter", "low")),
        Fault::RateLimited { retry_after } => Some(too_many_requests(
            &retry_after.to_string(),
            "starter",
            "low",
        )),
        Fault::RateLimitedAs {
            retry_after,
            plan_tier,
            rate_limit_type,
        } => Some(too_many_requests(
            &retry_after.to_string(),
            plan_tier,
            rate_limit_type,
        )),
        Fault::MalformedJson => {
            Some((StatusCode::OK, "{\"status\": 200, \"meta\": {").into_response())
        }
        Fault::Html => Some(
            (
                StatusCode::OK,
                [("content-type", "text/html")],
                "<html><body>Bad gateway</body></html>",
            )
                .into_response(),
        ),
        Fault::DropConnection => {
            let failing = futures_util::stream::once(async {
                Err::<bytes::Bytes, _>(std::io::Error::other("connection dropped by the mock"))
            });
            Some((StatusCode::OK, Body::from_stream(failing)).into_response())
        }
        Fault::Answer(body) => Some(Json(body).into_response()),
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}
