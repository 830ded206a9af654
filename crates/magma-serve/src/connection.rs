//! The server's TCP connections: a time limit on request headers and a lingering close.
//!
//! **Header time limit.** A request's header must arrive complete within
//! [`Limits::header_timeout`](crate::Limits::header_timeout) of its first byte (of the connection,
//! for the first request); a client that stalls in its header (slowloris) is disconnected.
//! axum's `serve` runs hyper without a timer, which turns hyper's own header timeout off, so the
//! connection watches for the header's end (`\r\n\r\n`) itself. An idle keep-alive connection
//! (no byte of a next request) and a response that takes long are not limited.
//!
//! **Lingering close.** A connection the server closes while the client is still sending (a body
//! refused with 413 before it was read) first sends its response and a FIN, then reads and
//! discards what the client still sends for a bounded time, and only then closes.
//!
//! Closing a socket with unread input makes the kernel answer with a TCP reset, and a reset
//! arriving at the client discards the response it has not read yet: the client then reports a
//! broken pipe or a reset connection instead of the 413 and its JSON reason. Web servers linger
//! for the same reason (nginx's `lingering_close`). The wait is bounded: it ends at the client's
//! FIN, after [`IDLE`] without input, after [`TOTAL`] or after [`MAX_DRAINED`] bytes, so a client
//! cannot hold a closing connection open.

use axum::serve::Listener;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, Instant, Sleep};

/// The longest wait for more input from a client whose connection is closing.
pub(crate) const IDLE: Duration = Duration::from_millis(500);
/// The longest a closing connection lingers in all.
pub(crate) const TOTAL: Duration = Duration::from_secs(10);
/// The most bytes read and discarded while lingering.
pub(crate) const MAX_DRAINED: u64 = 256 << 20;

/// A TCP listener whose connections have a header time limit and linger when they close.
#[derive(Debug)]
pub(crate) struct GuardedListener {
    pub listener: TcpListener,
    pub header_timeout: Duration,
}

impl Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's accept loop for TCP: retries and logs accept errors
        let (stream, addr) = Listener::accept(&mut self.listener).await;
        let header = HeaderWatch {
            timeout: self.header_timeout,
            awaiting: true,
            // the first header is timed from the connection on
            deadline: Some(Box::pin(sleep(self.header_timeout))),
            tail: Vec::with_capacity(3),
        };
        let stream = GuardedStream {
            stream,
            header,
            closing: None,
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection with a header time limit that drains the client's input after shutting down its
/// own side.
#[derive(Debug)]
pub(crate) struct GuardedStream {
    stream: TcpStream,
    header: HeaderWatch,
    closing: Option<Closing>,
}

/// Where the connection is in the current request's header.
#[derive(Debug)]
struct HeaderWatch {
    timeout: Duration,
    /// Between requests or inside a header (not yet seen its end).
    awaiting: bool,
    /// When the header being received must be complete; `None` while no byte of it has arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The last bytes read, for a `\r\n\r\n` split across reads.
    tail: Vec<u8>,
}

impl HeaderWatch {
    fn received(&mut self, bytes: &[u8]) {
        if !self.awaiting || bytes.is_empty() {
            return;
        }
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(sleep(self.timeout)));
        }
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(bytes);
        if window.windows(4).any(|w| w == b"\r\n\r\n") {
            // the header is complete: what follows is its body, not limited here
            self.awaiting = false;
            self.deadline = None;
        } else {
            self.tail = window[window.len().saturating_sub(3)..].to_vec();
        }
    }

    fn responded(&mut self, bytes: &[u8]) {
        // an interim response (100 Continue) comes before the body, not after the request
        if !bytes.is_empty() && !bytes.starts_with(b"HTTP/1.1 1") {
            self.awaiting = true;
            self.tail.clear();
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.awaiting
            && self
                .deadline
                .as_mut()
                .is_some_and(|d| d.as_mut().poll(cx).is_ready())
    }
}

#[derive(Debug)]
struct Closing {
    deadline: Instant,
    idle: Pin<Box<Sleep>>,
    drained: u64,
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.header.received(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.header.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request header did not arrive in time",
            ))),
            other => other,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        this.header.responded(&buf[..written]);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = ready!(Pin::new(&mut this.stream).poll_write_vectored(cx, bufs))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.header.responded(&first[..first.len().min(written)]);
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.closing.is_none() {
            // the response is out: send FIN, keep reading
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            this.closing = Some(Closing {
                deadline: Instant::now() + TOTAL,
                idle: Box::pin(sleep(IDLE)),
                drained: 0,
            });
        }
        let Some(closing) = this.closing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 16 << 10];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                // the client's FIN, or its reset: nothing left to protect
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    closing.drained += buf.filled().len() as u64;
                    let now = Instant::now();
                    if closing.drained >= MAX_DRAINED || now >= closing.deadline {
                        return Poll::Ready(Ok(()));
                    }
                    closing
                        .idle
                        .as_mut()
                        .reset((now + IDLE).min(closing.deadline));
                }
                Poll::Pending => {
                    ready!(closing.idle.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
