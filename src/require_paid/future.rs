//! [`RequirePaidFuture`]: the payment check, then the inner service.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use axum::response::Response;
use futures_util::future::BoxFuture;
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::meter::Meter;

/// The payment check: the request let in and its meter, or the refusal.
type Check<B> = BoxFuture<'static, Result<(Request<B>, Option<Box<Meter>>), Response>>;

pin_project! {
    /// The response future of [`RequirePaid`](super::RequirePaid): for a
    /// caller whose fresh answer was cached, the inner service's future
    /// alone; else the payment check (boxed), then the inner service's
    /// future (not boxed).
    ///
    /// The inner service that was made ready waits beside the check, as in
    /// tower-http's `AsyncRequireAuthorization`: no `Option` to take, and no
    /// bound on the inner service beyond what its own future needs.
    pub struct RequirePaidFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, S::Future, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, B> {
        Check {
            check: Check<B>,
            inner: S,
        },
        Inner {
            #[pin]
            future: F,
            meter: Option<Box<Meter>>,
        },
        Answered {
            response: Option<Response>,
        },
    }
}

impl<S, B> RequirePaidFuture<S, B>
where
    S: Service<Request<B>>,
{
    /// The check, then `inner` (the service that was made ready).
    pub(super) fn checking(check: Check<B>, inner: S) -> Self {
        Self {
            state: State::Check { check, inner },
        }
    }

    /// The gate's own answer; the inner service is not called.
    pub(super) fn answered(response: Response) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }

    /// The inner service's future: the caller was let in already, and
    /// `meter` settles their credits when it answers.
    pub(super) fn admitted(future: S::Future, meter: Option<Box<Meter>>) -> Self {
        Self {
            state: State::Inner { future, meter },
        }
    }
}

impl<S, B> Future for RequirePaidFuture<S, B>
where
    S: Service<Request<B>, Response = Response>,
{
    type Output = Result<Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Check { check, inner } => match ready!(check.as_mut().poll(cx)) {
                    Ok((req, meter)) => {
                        let future = inner.call(req);
                        this.state.set(State::Inner { future, meter });
                    }
                    Err(refusal) => return Poll::Ready(Ok(refusal)),
                },
                StateProj::Inner { future, meter } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(meter) = meter.take() {
                        meter.finish(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Answered { response } => {
                    let response = response.take().expect("polled after it was ready");
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}
