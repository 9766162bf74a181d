//! How long what the reverse proxy streams may pause (`--upstream-timeout`,
//! as nginx's `proxy_read_timeout`): a body that sends nothing for that
//! long ends in an error, which closes its connection, and a WebSocket (or
//! any upgraded connection) silent both ways for that long is closed. A
//! stalled upstream or client cannot hold a connection forever.

use std::{
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::{sleep, Sleep},
};

pin_project! {
    /// `body`, ended with [`Stalled`] once it keeps its next frame waiting
    /// for `idle`. The timer is armed only while a frame is awaited, so a
    /// body whose frames are ready costs nothing; its size is the body's
    /// own, so `Content-Length` is kept (tower-http's `TimeoutBody`
    /// arms a timer for every frame and drops the size, which turns every
    /// answer into a chunked one).
    pub(crate) struct Stalls<B> {
        idle: Duration,
        #[pin]
        timer: Option<Sleep>,
        #[pin]
        body: B,
    }
}

impl<B> Stalls<B> {
    pub(crate) fn new(idle: Duration, body: B) -> Self {
        Self {
            idle,
            timer: None,
            body,
        }
    }
}

/// A body that kept its next frame waiting too long.
#[derive(Debug)]
pub(crate) struct Stalled(Duration);

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the body sent nothing for {} s (--upstream-timeout)",
            self.0.as_secs_f64()
        )
    }
}

impl Error for Stalled {}

impl<B> Body for Stalls<B>
where
    B: Body,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            this.timer.set(None);
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.timer.is_none() {
            this.timer.set(Some(sleep(*this.idle)));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Some(Err(Box::new(Stalled(*this.idle))))),
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Copies bytes both ways between `client` and `upstream` until both have
/// closed, or nothing has passed either way for `idle`. Each side's end is
/// passed on to the other (a half close), and the other way goes on.
pub(crate) async fn splice<C, U>(client: C, upstream: U, idle: Duration) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_in, mut client_out) = tokio::io::split(client);
    let (mut upstream_in, mut upstream_out) = tokio::io::split(upstream);
    let (mut from_client, mut from_upstream) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut client_done, mut upstream_done) = (false, false);
    while !(client_done && upstream_done) {
        tokio::select! {
            read = client_in.read(&mut from_client), if !client_done => match read? {
                0 => {
                    client_done = true;
                    upstream_out.shutdown().await?;
                }
                n => upstream_out.write_all(&from_client[..n]).await?,
            },
            read = upstream_in.read(&mut from_upstream), if !upstream_done => match read? {
                0 => {
                    upstream_done = true;
                    client_out.shutdown().await?;
                }
                n => client_out.write_all(&from_upstream[..n]).await?,
            },
            () = sleep(idle) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    Stalled(idle),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body as AxumBody;

    /// The next frame of `body`.
    async fn next<B: Body>(body: &mut Pin<Box<B>>) -> Option<Result<Frame<B::Data>, B::Error>> {
        std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_pauses_too_long_ends_in_an_error_and_one_that_flows_does_not() {
        // Two frames 5 s apart, then nothing.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<&'static str, Stalled>>(1);
        tokio::spawn(async move {
            for _ in 0..2 {
                let _ = tx.send(Ok("x")).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            std::future::pending::<()>().await;
        });
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut body = Box::pin(Stalls::new(
            Duration::from_secs(6),
            AxumBody::from_stream(stream),
        ));
        for _ in 0..2 {
            let frame = next(&mut body).await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let error = next(&mut body).await.unwrap().unwrap_err();
        assert!(
            error.to_string().contains("sent nothing for 6 s"),
            "{error}"
        );
    }

    #[test]
    fn the_size_of_the_body_is_kept() {
        let body = Stalls::new(Duration::from_secs(1), AxumBody::from("ok"));
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn a_splice_silent_both_ways_too_long_is_closed() {
        let (client, mut far_client) = tokio::io::duplex(64);
        let (upstream, mut far_upstream) = tokio::io::duplex(64);
        let spliced = tokio::spawn(splice(client, upstream, Duration::from_secs(10)));
        far_client.write_all(b"hi").await.unwrap();
        let mut two = [0u8; 2];
        far_upstream.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"hi");
        // Traffic either way keeps it open.
        tokio::time::sleep(Duration::from_secs(9)).await;
        far_upstream.write_all(b"yo").await.unwrap();
        far_client.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"yo");
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!spliced.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ended = spliced.await.unwrap().unwrap_err();
        assert_eq!(ended.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn each_side_s_end_is_passed_on_and_the_other_way_goes_on() {
        let (client, mut far_client) = tokio::io::duplex(64);
        let (upstream, mut far_upstream) = tokio::io::duplex(64);
        let spliced = tokio::spawn(splice(client, upstream, Duration::from_secs(10)));
        far_client.write_all(b"bye").await.unwrap();
        far_client.shutdown().await.unwrap();
        let mut heard = Vec::new();
        far_upstream.read_to_end(&mut heard).await.unwrap();
        assert_eq!(heard, b"bye");
        far_upstream.write_all(b"ok").await.unwrap();
        far_upstream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        far_client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"ok");
        spliced.await.unwrap().unwrap();
    }
}
