//! `GET /_figma_paywall/metrics`: the paywall's metrics in Prometheus's
//! text format, through the `metrics` facade and its Prometheus exporter,
//! for scrapers that send the metrics token.

use std::sync::OnceLock;

use axum::{
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use figma_paywall::Paywall;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::{config::Gateway, flags::Secret};

/// The route, when a metrics token is configured.
pub(crate) fn router(gateway: &Gateway) -> Router {
    let Some(token) = gateway.metrics_token.clone() else {
        return Router::new();
    };
    // The recorder is the process's: installed once, by whichever
    // worker's routes are made first, and rendered by every worker's.
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    let installed = HANDLE.get_or_init(|| match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "no metrics: the Prometheus recorder could not be installed");
            None
        }
    });
    let Some(handle) = installed.clone() else {
        return Router::new();
    };
    let paywall = gateway.paywall.clone();
    Router::new().route(
        "/_figma_paywall/metrics",
        get(move |headers: HeaderMap| async move { scrape(&paywall, &handle, &token, &headers) }),
    )
}

fn scrape(
    paywall: &Paywall,
    handle: &PrometheusHandle,
    token: &Secret,
    headers: &HeaderMap,
) -> Response {
    if !token.held_by(headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "send the metrics token as a bearer token",
        )
            .into_response();
    }
    paywall.record_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
