//! Lingering close: a connection the server closes while the client is still sending (a body
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

/// A TCP listener whose connections linger when they close.
#[derive(Debug)]
pub(crate) struct LingeringListener(pub TcpListener);

impl Listener for LingeringListener {
    type Io = LingeringStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's accept loop for TCP: retries and logs accept errors
        let (stream, addr) = Listener::accept(&mut self.0).await;
        (
            LingeringStream {
                stream,
                closing: None,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that drains the client's input after shutting down its own side.
#[derive(Debug)]
pub(crate) struct LingeringStream {
    stream: TcpStream,
    closing: Option<Closing>,
}

#[derive(Debug)]
struct Closing {
    deadline: Instant,
    idle: Pin<Box<Sleep>>,
    drained: u64,
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
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
