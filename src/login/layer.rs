//! The layer that reads the session cookie and puts a [`UserId`](crate::UserId)
//! (and a [`Profile`](super::Profile)) on the requests of signed-in visitors.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::FigmaLogin;

/// Puts a [`UserId`](crate::UserId), and their [`Profile`](super::Profile)
/// when Figma gave one, on requests of signed-in visitors; see
/// [`FigmaLogin::layer`].
#[derive(Debug, Clone)]
pub struct SignedInLayer {
    pub(super) login: FigmaLogin,
}

impl<S> Layer<S> for SignedInLayer {
    type Service = SignedIn<S>;

    fn layer(&self, inner: S) -> SignedIn<S> {
        SignedIn {
            inner,
            login: self.login.clone(),
        }
    }
}

/// The service of [`SignedInLayer`].
#[derive(Debug, Clone)]
pub struct SignedIn<S> {
    inner: S,
    login: FigmaLogin,
}

impl<S, B> Service<Request<B>> for SignedIn<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        if let Some(session) = self.login.session(req.headers()) {
            let extensions = req.extensions_mut();
            extensions.insert(session.user_id);
            if let Some(profile) = session.profile {
                extensions.insert(profile);
            }
        }
        self.inner.call(req)
    }
}
