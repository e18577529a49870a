//! The `websocket` binding: WebSockets a Durable Object accepted (they outlive its instance).
//!
//! A frame an object sends leaves after the event that sent it is confirmed.

use super::durable::binding_error;
use super::nimbus::worker::websocket::{self as wit, Message};
use super::{BindingError, Host};
use nimbus_durable::Frame;

impl wit::Host for Host {
    async fn accept(&mut self, tags: Vec<String>) -> Result<u64, BindingError> {
        self.object()?.accept_socket(tags).map_err(binding_error)
    }

    async fn send(&mut self, socket: u64, message: Message) -> Result<(), BindingError> {
        let frame = match message {
            Message::Text(text) => Frame::Text(text),
            Message::Binary(bytes) => Frame::Binary(bytes),
        };
        self.object()?.send_socket(socket, frame).map_err(binding_error)
    }

    async fn close(&mut self, socket: u64, code: u16, reason: String) -> Result<(), BindingError> {
        self.object()?.send_socket(socket, Frame::Close { code, reason }).map_err(binding_error)
    }

    async fn sockets(&mut self, tag: Option<String>) -> Result<Vec<u64>, BindingError> {
        Ok(self.object()?.sockets(tag.as_deref()))
    }

    async fn tags(&mut self, socket: u64) -> Result<Vec<String>, BindingError> {
        self.object()?.socket_tags(socket).map_err(binding_error)
    }
}
