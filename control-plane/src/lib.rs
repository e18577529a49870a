//! The Nimbus control plane: stores every version of every worker and every Pages deployment,
//! and pushes them to the nodes.
//!
//! [`run`] opens the SQLite store, serves the HTTP API (for the CLI) and the gRPC watch
//! service (for nodes), reports readiness on stdout as one JSON line, and stops both when the
//! shutdown future completes.
//!
//! # Layout
//! - [`store`]: versions, components, events, rollout state (SQLite).
//! - [`validate`]: deploy-time checks of components.
//! - [`js`]: JavaScript workers, pre-initialised into the engine component at deploy.
//! - [`typescript`]: `.ts` modules to JavaScript by erasing types, lines and columns kept.
//! - [`pages`]: Pages projects, deployments and their content-addressed blobs.
//! - [`api`]: HTTP API with bearer-token auth.
//! - [`watch`]: gRPC `Deployments` service (watch, component fetch, acks).
//! - [`config`], [`error`].

pub mod api;
pub mod config;
pub mod error;
pub mod js;
pub mod pages;
pub mod store;
pub mod typescript;
pub mod validate;
pub mod watch;

use config::ControlPlaneConfig;
use error::ControlPlaneError;
use nimbus_proto::deploy::deployments_server::DeploymentsServer;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Components travel in one gRPC message; allow the largest the API accepts.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The line the control plane prints on stdout once it serves.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Ready {
    pub api: std::net::SocketAddr,
    pub grpc: std::net::SocketAddr,
    /// Where the API token is written (the token itself is never printed).
    pub token_file: std::path::PathBuf,
}

pub async fn run(config: ControlPlaneConfig, shutdown: impl Future<Output = ()>) -> Result<(), ControlPlaneError> {
    let store = Arc::new(store::Store::open(&config.data_dir)?);
    let token = if config.api.token.is_empty() { random_hex(24)? } else { config.api.token.clone() };
    let token_file = config.data_dir.join("api-token");
    write_private(&token_file, &token)?;

    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ControlPlaneError::Io { context: format!("listening on {addr}"), source })
    };
    let api_listener = bind(config.api.listen).await?;
    let grpc_listener = bind(config.grpc.listen).await?;
    let local = |l: &tokio::net::TcpListener| {
        l.local_addr().map_err(|source| ControlPlaneError::Io { context: "local address".into(), source })
    };
    let ready = Ready { api: local(&api_listener)?, grpc: local(&grpc_listener)?, token_file };

    let stop = CancellationToken::new();
    let (changes, _) = tokio::sync::broadcast::channel(64);
    let js = Arc::new(js::JsBuilder::load(config.js.engine.as_deref())?);
    let api = api::Api::new(
        store.clone(),
        changes.clone(),
        &token,
        config.api.max_component_bytes,
        js,
        config.limits.clone(),
    );
    let api_tls =
        nimbus_http::load_tls(&config.api.tls, "api.tls").map_err(|e| ControlPlaneError::Invalid(e.to_string()))?;
    let bounds = nimbus_http::Bounds {
        max_connections: config.api.max_connections,
        header_read_timeout: std::time::Duration::from_secs(15),
        body_read_timeout: std::time::Duration::from_secs(120),
    };
    let gc_task = tokio::spawn(pages::collect_blobs_forever(store.clone(), stop.clone()));
    let api_task = tokio::spawn({
        let (stop, refused) = (stop.clone(), nimbus_http::Counter::default());
        async move { nimbus_http::serve("api", api_listener, api.router(), bounds, api_tls, refused, stop).await }
    });
    let tls = config.grpc.tls.load("grpc.tls").map_err(|e| ControlPlaneError::Invalid(format!("grpc.tls: {e}")))?;
    let service = DeploymentsServer::new(watch::WatchService::new(store, changes, &token, tls.is_some(), stop.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let grpc_task = tokio::spawn({
        let stop = stop.clone();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
        let builder = match &tls {
            Some(tls) => tonic::transport::Server::builder()
                .tls_config(tls.server())
                .map_err(|e| ControlPlaneError::Internal(format!("grpc.tls: {e}")))?,
            None => tonic::transport::Server::builder(),
        };
        let mut builder = builder;
        async move { builder.add_service(service).serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await }
    });

    tracing::info!(api = %ready.api, grpc = %ready.grpc, "control plane ready");
    println!("{}", serde_json::to_string(&ready).unwrap_or_default());
    shutdown.await;
    tracing::info!("shutting down");
    stop.cancel();
    if let Err(e) = api_task.await {
        tracing::warn!("api server: {e}");
    }
    let _ = gc_task.await;
    if let Ok(Err(e)) = grpc_task.await {
        tracing::warn!("grpc server: {e}");
    }
    Ok(())
}

/// `len` random bytes from the OS, as hex.
pub(crate) fn random_hex(len: usize) -> Result<String, ControlPlaneError> {
    use std::io::Read;
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| ControlPlaneError::Io { context: "reading /dev/urandom".into(), source })?;
    Ok(hex::encode(bytes))
}

fn write_private(path: &std::path::Path, contents: &str) -> Result<(), ControlPlaneError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ControlPlaneError::Io { context: format!("writing {}", path.display()), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}
