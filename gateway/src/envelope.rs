//! The gateway's own refusals and failures, in Figma's error envelope as
//! every refusal of the gate.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// `status` with Figma's envelope: `reason` for programs, `message` for
/// people (what to do).
pub(crate) fn envelope(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "error": true,
        "status": status.as_u16(),
        "message": message,
        "reason": reason,
    });
    (status, axum::Json(body)).into_response()
}
