//! How long what the reverse proxy streams may pause (`--upstream-timeout`,
//! as nginx's `proxy_read_timeout`): a body, the upstream's answer or the
//! client's upload, that sends nothing for that long ends in an error,
//! which closes its connection, and a WebSocket (or any upgraded
//! connection) through which no byte moves either way for that long is
//! closed. A peer that stops sending cannot hold a connection forever; one
//! that stops reading an answer can, within `--max-connections`.

use std::{
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
    time::Duration,
};

use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::oneshot,
    time::{sleep, Instant, Sleep},
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
        // Told once the body has given its last frame, or ended in error.
        ended: Option<oneshot::Sender<()>>,
    }
}

impl<B> Stalls<B> {
    pub(crate) fn new(idle: Duration, body: B) -> Self {
        Self {
            idle,
            timer: None,
            body,
            ended: None,
        }
    }

    /// The same, with what resolves once the body has been read to its
    /// end, has failed, or is dropped: a request's body has been sent.
    pub(crate) fn telling_end(idle: Duration, body: B) -> (Self, oneshot::Receiver<()>) {
        let (tell, ended) = oneshot::channel();
        let mut stalls = Self::new(idle, body);
        stalls.ended = Some(tell);
        (stalls, ended)
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

impl Stalled {
    /// Whether `error` came of a body that paused too long.
    pub(crate) fn caused(error: &(dyn Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if error.is::<Self>() {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

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
        if let Poll::Ready(frame) = this.body.as_mut().poll_frame(cx) {
            this.timer.set(None);
            // The last frame, an error, or a body that says it has ended
            // (and may not be asked again).
            if !matches!(frame, Some(Ok(_))) || this.body.is_end_stream() {
                if let Some(tell) = this.ended.take() {
                    let _ = tell.send(());
                }
            }
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
/// closed (each side's end passed on to the other, the other way going on:
/// tokio's `copy_bidirectional`), or until no byte has moved either way,
/// read or written, for `idle`: a peer that stops reading holds a write
/// as long as one that stops sending holds a read.
pub(crate) async fn splice<C, U>(client: C, upstream: U, idle: Duration) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    // When a byte last moved, in milliseconds since `start`.
    let moved = AtomicU64::new(0);
    let (mut client, mut upstream) = (
        Watched {
            io: client,
            start,
            moved: &moved,
        },
        Watched {
            io: upstream,
            start,
            moved: &moved,
        },
    );
    let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let watchdog = async {
        loop {
            let last = start + Duration::from_millis(moved.load(Ordering::Relaxed));
            if last.elapsed() >= idle {
                return;
            }
            tokio::time::sleep_until(last + idle).await;
        }
    };
    tokio::select! {
        copied = copied => copied.map(drop),
        () = watchdog => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, Stalled(idle))),
    }
}

/// An end of a splice that notes in `moved` when a byte last went through.
struct Watched<'a, T> {
    io: T,
    start: Instant,
    moved: &'a AtomicU64,
}

impl<T> Watched<'_, T> {
    fn note(&self) {
        let since = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved.store(since, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.note();
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(1..))) {
            self.note();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body as AxumBody;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The next frame of `body`.
    async fn next<B: Body>(body: &mut Pin<Box<B>>) -> Option<Result<Frame<B::Data>, B::Error>> {
        std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_pauses_too_long_ends_in_an_error_and_one_that_flows_does_not() {
        // Frames 5 s apart, then nothing: each frame puts the deadline off.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<&'static str, Stalled>>(1);
        tokio::spawn(async move {
            for _ in 0..3 {
                let _ = tx.send(Ok("x")).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            std::future::pending::<()>().await;
        });
        let started = Instant::now();
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut body = Box::pin(Stalls::new(
            Duration::from_secs(6),
            AxumBody::from_stream(stream),
        ));
        for _ in 0..3 {
            let frame = next(&mut body).await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let error = next(&mut body).await.unwrap().unwrap_err();
        assert!(
            error.to_string().contains("sent nothing for 6 s"),
            "{error}"
        );
        // The last frame came at 10 s: ended 6 s later.
        assert_eq!(started.elapsed().as_secs(), 16);
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

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_is_closed_too() {
        let (client, mut far_client) = tokio::io::duplex(64);
        let (upstream, _far_upstream_never_reads) = tokio::io::duplex(64);
        let spliced = tokio::spawn(splice(client, upstream, Duration::from_secs(10)));
        // More than the pipes hold: the splice's write to the upstream waits.
        far_client.write_all(&[7; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
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
