//! The accept loop every HTTP listener of Nimbus runs on (a node's public edge and
//! management API, the control plane's API), with the bounds axum's `serve` does not offer,
//! and TLS when the operator gives a certificate ([`HttpsConfig`]).
//!
//! - **Connections**: at most `max_connections` at once; a connection past the cap is closed
//!   as soon as it is accepted (counted in the `refused` counter the caller hands in), so a
//!   flood cannot queue behind the ones being served.
//! - **TLS handshake**: a connection that has not finished its handshake within
//!   `header_read_timeout` is closed; handshakes run on the connection's own task, so a slow
//!   one never holds up the accept loop.
//! - **Header read / idle**: a connection that does not deliver a complete request head
//!   within `header_read_timeout` — its first one, or the next on a kept-alive connection — is
//!   closed (hyper's header-read timer), which ends slowloris clients and idle sockets alike.
//! - **Body read**: a request body that has not arrived whole within `body_read_timeout` of
//!   the request's start ends with an error (the handler sees a failed body read).
//!
//! Shutdown stops accepting, lets in-flight requests finish (hyper's graceful shutdown) and
//! waits for them up to [`DRAIN`].

mod tls;

pub use prometheus_client::metrics::counter::Counter;
pub use tls::{acceptor, load as load_tls, HttpsConfig, HttpsError};

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long shutdown waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(5);

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

/// Serves `router` on `listener` within `bounds` until `shutdown`: HTTPS when `tls` is given,
/// plain HTTP otherwise. A connection refused by the cap counts in `refused`.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    bounds: Bounds,
    tls: Option<TlsAcceptor>,
    refused: Counter,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(bounds.max_connections.max(1)));
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(bounds.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, _peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: back off a little instead of spinning.
                tracing::warn!("{name}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused.inc();
            drop(tcp);
            continue;
        };
        // Without TCP_NODELAY a response whose head and body are written separately waits
        // for the client's delayed ACK (~40 ms) on a keep-alive connection.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            body_read_timeout: bounds.body_read_timeout,
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        let handshake_timeout = bounds.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection.serve(tcp).await,
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => connection.serve(stream).await,
                    Ok(Err(e)) => tracing::debug!("{name}: TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!("{name}: TLS handshake timed out"),
                },
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("{name}: requests still running after {DRAIN:?}; closing them");
    }
}

/// What one accepted connection is served with.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    body_read_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Connection {
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let deadline = self.body_read_timeout;
        let service = self.router.map_request(move |req: http::Request<hyper::body::Incoming>| {
            req.map(|body| Body::new(DeadlineBody::new(body, deadline)))
        });
        let connection =
            self.builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
        if let Err(e) = self.watcher.watch(connection.into_owned()).await {
            tracing::trace!("connection ended: {e}");
        }
    }
}

/// A request body that fails once its deadline passes before it has been read whole. The
/// timer is armed only when a read has to wait, so a request whose body is already here (or
/// empty) costs no timer.
struct DeadlineBody<B> {
    inner: B,
    started: tokio::time::Instant,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, limit: Duration) -> Self {
        DeadlineBody { inner, started: tokio::time::Instant::now(), deadline: None, limit }
    }
}

/// The error a body past its deadline ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (http.body_read_timeout_ms)")]
pub struct BodyTimeout(Duration);

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let at = self.started + self.limit;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if deadline.as_mut().poll(cx).is_ready() {
            let limit = self.limit;
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
