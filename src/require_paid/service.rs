//! [`RequirePaid`]: the service, and the one-line layers built from the
//! environment.

use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::Request;
use tower_service::Service;

use super::{
    gate::{cached_grant, check},
    DefaultIdentity, IdentitySource, RequirePaidFuture, RequirePaidLayer,
};
use crate::{Paywall, Resource};

/// A service that lets a request through to `S` only when its caller has
/// paid; made by [`RequirePaidLayer`].
///
/// Refusals are `Ok` responses (401, 402, 503, …): the inner service's error
/// type is unchanged, and no upstream problem ever becomes a 500.
///
/// It is made for axum: the inner service answers with axum's
/// [`Response`] (`http::Response<axum::body::Body>`), as every axum router,
/// handler and tower-http layer in an axum app does.
#[derive(Debug, Clone)]
pub struct RequirePaid<S, I = DefaultIdentity> {
    inner: S,
    layer: RequirePaidLayer<I>,
}

impl RequirePaid<()> {
    /// A layer for buyers of plugin `id`, asking Figma with `FIGMA_TOKEN`
    /// (and `FIGMA_API_URL`, if set).
    ///
    /// Every layer made by these shortcuts shares one [`Paywall`] (one
    /// cache, one rate budget) built from the environment on first use. For
    /// explicit configuration build a [`Paywall`] and call
    /// [`RequirePaidLayer::new`].
    ///
    /// ```no_run
    /// use axum::{routing::post, Router};
    /// use figma_paywall::RequirePaid;
    ///
    /// let app: Router = Router::new()
    ///     .route("/generate", post(|| async { "generated" }))
    ///     .layer(RequirePaid::plugin("1122334455"));
    /// ```
    ///
    /// # Panics
    ///
    /// When the app is built, not on a request: if `FIGMA_TOKEN` is unset or
    /// not a token, `FIGMA_API_URL` is not a URL, or `id` is not a Figma ID.
    #[track_caller]
    pub fn plugin(id: &str) -> RequirePaidLayer {
        Self::from_env(Resource::plugin(id))
    }

    /// A layer for buyers of widget `id`; see [`plugin`](Self::plugin).
    ///
    /// # Panics
    ///
    /// As [`plugin`](Self::plugin).
    #[track_caller]
    pub fn widget(id: &str) -> RequirePaidLayer {
        Self::from_env(Resource::widget(id))
    }

    /// A layer for buyers of Community file `id`; see [`plugin`](Self::plugin).
    ///
    /// # Panics
    ///
    /// As [`plugin`](Self::plugin).
    #[track_caller]
    pub fn community_file(id: &str) -> RequirePaidLayer {
        Self::from_env(Resource::community_file(id))
    }

    #[track_caller]
    fn from_env(resource: Result<Resource, crate::InvalidId>) -> RequirePaidLayer {
        let resource = resource.unwrap_or_else(|e| panic!("RequirePaid: {e}"));
        RequirePaidLayer::new(&Self::paywall_from_env(), resource)
    }

    #[track_caller]
    fn paywall_from_env() -> Paywall {
        Paywall::shared_from_env().unwrap_or_else(|e| panic!("RequirePaid: {e}"))
    }
}

/// Whether `req` is a browser's CORS preflight: an `OPTIONS` request with
/// `Origin` and `Access-Control-Request-Method`.
///
/// [`RequirePaid`] answers a preflight itself, `204 No Content` with no
/// CORS headers, and never passes it to the inner service: a browser sends
/// no credentials on one, and anyone can send one, so no handler may run
/// for it. Put tower-http's [`CorsLayer`] in front of (outside) the gate:
/// it answers preflights before they reach the gate, with the headers that
/// allow the call.
///
/// ```
/// use figma_paywall::is_cors_preflight;
/// use http::{Method, Request};
///
/// let preflight = Request::builder()
///     .method(Method::OPTIONS)
///     .header("origin", "null")
///     .header("access-control-request-method", "POST")
///     .body(())
///     .unwrap();
/// assert!(is_cors_preflight(&preflight));
/// let options = Request::builder().method(Method::OPTIONS).body(()).unwrap();
/// assert!(!is_cors_preflight(&options));
/// ```
///
/// [`CorsLayer`]: https://docs.rs/tower-http/latest/tower_http/cors/struct.CorsLayer.html
pub fn is_cors_preflight<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::OPTIONS
        && req.headers().contains_key(http::header::ORIGIN)
        && req
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S, I> RequirePaid<S, I> {
    pub(crate) fn new(inner: S, layer: RequirePaidLayer<I>) -> Self {
        Self { inner, layer }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, I, B> Service<Request<B>> for RequirePaid<S, I>
where
    S: Service<Request<B>, Response = Response> + Clone,
    I: IdentitySource,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequirePaidFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // A browser's CORS preflight never carries the token, and anyone
        // can send one: it is answered here, and never reaches a handler
        // (one that ignores the method would serve it, body and upgrade
        // included). A `CorsLayer` in front answers it before the gate.
        if is_cors_preflight(&req) {
            return RequirePaidFuture::answered(preflight_answer());
        }
        let (parts, body) = req.into_parts();
        let identity = self.layer.identity.identify(&parts);
        // A buyer whose fresh answer is cached: straight to the service
        // that was made ready.
        if let Some(granted) = cached_grant(&self.layer.gate, &identity, &parts) {
            let mut req = Request::from_parts(parts, body);
            let meter = granted.admit(&self.layer.gate.paywall, &mut req);
            return RequirePaidFuture::admitted(self.inner.call(req), meter);
        }
        // Anything else waits for the check: the service that was made ready
        // goes into the future, a clone stays for the next call. See
        // https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let check = check(self.layer.gate.clone(), identity, parts, body);
        RequirePaidFuture::checking(Box::pin(check), inner)
    }
}

/// What the gate answers a CORS preflight that reached it: nothing
/// allowed, so a browser refuses the call it preflights.
fn preflight_answer() -> Response {
    tracing::debug!(
        "a CORS preflight reached the gate: answered 204 with no CORS headers (put a CorsLayer in front of the gate)"
    );
    http::StatusCode::NO_CONTENT.into_response()
}
