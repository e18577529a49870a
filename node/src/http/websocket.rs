//! WebSocket upgrades answered by Durable Objects.
//!
//! The edge hands an upgrade request to the worker with [`UPGRADE_HEADER`] added (the
//! `upgrade` header itself is hop-by-hop and never reaches a guest). The worker passes it to
//! an object's stub; the object accepts the socket and answers 101, and the response comes
//! back naming the socket ([`ACCEPTED_HEADER`]). The edge then completes the upgrade and
//! bridges the client: the client's frames go to the object as events (through
//! [`Durable::call`], so from any node), the object's frames come from the owner's socket
//! registry (attached locally or streamed over gRPC). When the owner drops the socket (the
//! object moved), the client is closed with 1012 so it reconnects.

use super::{error_response, Edge};
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request};
use nimbus_durable::Event;
use nimbus_durable::Frame;
use nimbus_durable::{Durable, Namespace, ObjectId};
use nimbus_durable::{ACCEPTED_HEADER, UPGRADE_HEADER};
use nimbus_runtime::Worker;
use std::sync::Arc;

/// True for a request that asks for a WebSocket.
pub fn is_upgrade(req: &Request<Body>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Runs the worker for an upgrade request and completes the upgrade if an object accepted.
pub async fn serve(edge: &Edge, worker: &Arc<Worker>, req: Request<Body>) -> Response {
    let (mut parts, body) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    parts.headers.insert(UPGRADE_HEADER, HeaderValue::from_static("1"));
    let response = match worker.handle(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Body::new),
        Err(e) => return error_response(&e),
    };
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    let target = response.headers().get(ACCEPTED_HEADER).and_then(|v| v.to_str().ok()).and_then(parse_target);
    let Some((namespace, id, socket)) = target else {
        tracing::warn!(worker = %worker.name(), "a 101 without an accepted Durable Object WebSocket");
        return (http::StatusCode::BAD_GATEWAY, "the worker answered 101 without accepting a WebSocket\n")
            .into_response();
    };
    let durable = edge.durable.clone();
    upgrade.on_upgrade(move |ws| bridge(durable, namespace, id, socket, ws))
}

fn parse_target(value: &str) -> Option<(Namespace, ObjectId, u64)> {
    let mut fields = value.split(' ');
    let namespace = Namespace::parse(fields.next()?).ok()?;
    let id = namespace.id_from_string(fields.next()?).ok()?;
    let socket = fields.next()?.parse().ok()?;
    Some((namespace, id, socket))
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

/// Carries frames between the client and the object until either side closes.
async fn bridge(durable: Durable, namespace: Namespace, id: ObjectId, socket: u64, ws: WebSocket) {
    let (mut client_tx, mut client_rx) = ws.split();
    let mut frames = match durable.attach(id, socket).await {
        Ok(frames) => frames,
        Err(e) => {
            let _ = client_tx.send(close(1011, &e.to_string())).await;
            return;
        }
    };
    let closed = loop {
        tokio::select! {
            frame = frames.next() => {
                let message = match frame {
                    Some(Frame::Text(text)) => Message::Text(text.into()),
                    Some(Frame::Binary(bytes)) => Message::Binary(bytes.into()),
                    Some(Frame::Close { code, reason }) => {
                        let _ = client_tx.send(close(code, &reason)).await;
                        return;
                    }
                    None => {
                        let _ = client_tx.send(close(1012, "the object moved; reconnect")).await;
                        return;
                    }
                };
                if client_tx.send(message).await.is_err() {
                    break (1006, String::new());
                }
            }
            message = client_rx.next() => {
                let frame = match message {
                    Some(Ok(Message::Text(text))) => Frame::Text(text.to_string()),
                    Some(Ok(Message::Binary(bytes))) => Frame::Binary(bytes.to_vec()),
                    Some(Ok(Message::Close(frame))) => {
                        break frame.map_or((1005, String::new()), |f| (f.code, f.reason.to_string()));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break (1006, String::new()),
                };
                if let Err(e) = durable.call(&namespace, id, Event::SocketMessage { socket, frame }).await {
                    tracing::debug!(object = %id, socket, "a WebSocket message was not delivered: {e}");
                }
            }
        }
    };
    let (code, reason) = closed;
    if let Err(e) = durable.call(&namespace, id, Event::SocketClose { socket, code, reason }).await {
        tracing::debug!(object = %id, socket, "a WebSocket close was not delivered: {e}");
    }
}
