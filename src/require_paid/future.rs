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

pin_project! {
    /// The response future of [`RequirePaid`](super::RequirePaid): the
    /// payment check (boxed), then the inner service's future (not boxed).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Check {
            check: BoxFuture<'static, Result<Request<B>, Response>>,
            inner: Option<S>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(check: BoxFuture<'static, Result<Request<B>, Response>>, inner: S) -> Self {
        Self {
            state: State::Check {
                check,
                inner: Some(inner),
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response>,
{
    type Output = Result<Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Check { check, inner } => match ready!(check.as_mut().poll(cx)) {
                    Ok(req) => {
                        let mut inner = inner
                            .take()
                            .expect("ResponseFuture polled after it completed");
                        let future = inner.call(req);
                        this.state.set(State::Inner { future });
                    }
                    Err(refusal) => return Poll::Ready(Ok(refusal)),
                },
                StateProj::Inner { future } => return future.poll(cx),
            }
        }
    }
}
